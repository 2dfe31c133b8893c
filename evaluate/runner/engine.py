"""``python -m evaluate run``: one image per benchmark item, through one workflow, on one or many ComfyUI servers.

One worker per server takes the next item from a shared queue, so a fast server takes more items. An item whose
server dies (:class:`ServerGone`) goes back to the front of the queue for another server, and that server takes no
more items; an item ComfyUI refuses or fails (:class:`ItemFailed`), a benchmark line that is no valid layout and an
image whose size is not its layout's are each reported with the item's number (from 1) and id, logged in
``errors.jsonl``, and the run goes on. Items already in the manifest are skipped (resume). Progress: a bar over the
items with the ETA, and the sampling step of each server.
"""
from __future__ import annotations

import asyncio
import io
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..benchmark_file import BenchmarkItem, item_file_stem, read_benchmark
from .backends import HttpServer, ItemFailed, ServerGone, check_url
from .manifest import RunFolder
from .slots import BenchmarkWorkflow, Override
from .workflow_format import load_workflow, to_api

Event = Callable[[str, BenchmarkItem | None, str], None]


@dataclass
class RunOptions:
    benchmark: str
    workflow: str
    out: str
    servers: list[str] = field(default_factory=list)
    overrides: list[Override] = field(default_factory=list)
    output_node: str | None = None
    prompt_template: str = "{prompt}"
    comfyui: str | None = None
    custom_nodes: tuple[str, ...] = ()
    comfy_models: str | None = None
    item_timeout: float = 3600.0
    limit: int | None = None


@dataclass
class RunSummary:
    generated: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)  # one message per failed item (bad lines included)
    workflow_hash: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed


def image_size(png: bytes) -> tuple[int, int]:
    """(width, height) of an image file's bytes; ItemFailed when they are no image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(png)) as im:
            return im.size
    except (UnidentifiedImageError, OSError) as e:
        raise ItemFailed(f"the server's image cannot be read ({e})") from None


class _Bar:
    """tqdm over the items (ETA), with each server's sampling step in the postfix; messages above the bar."""

    def __init__(self, total: int, out=sys.stderr):
        from tqdm import tqdm

        self.tqdm = tqdm(total=total, unit="img", file=out, dynamic_ncols=True, mininterval=0.5)
        self.steps: dict[str, str] = {}

    def step(self, server: str, value: int, total: int) -> None:
        self.steps[server] = f"{value}/{total}"
        self.tqdm.set_postfix_str(" ".join(f"{s.split('//')[-1]}:{v}" for s, v in self.steps.items()), refresh=False)

    def write(self, msg: str) -> None:
        self.tqdm.write(msg, file=sys.stderr)

    def close(self) -> None:
        self.tqdm.close()


async def _worker(backend, wf: BenchmarkWorkflow, queue: list[BenchmarkItem], state: dict, folder: RunFolder,
                  summary: RunSummary, bar: _Bar, on_event: Event | None) -> None:  # fmt: skip
    name = str(backend)
    while True:
        if not queue:
            if state["in_flight"] == 0:
                return
            await asyncio.sleep(0.1)  # an item in flight elsewhere may come back if its server dies
            continue
        item = queue.pop(0)
        state["in_flight"] += 1
        try:
            if on_event:
                on_event("start", item, name)
            t0 = time.monotonic()

            def progress(value: int, total: int, item: BenchmarkItem = item) -> None:
                bar.step(name, value, total)
                if on_event:
                    on_event("step", item, name)

            png = await backend.generate(wf.for_item(item), wf.output_node, progress)
            w, h = image_size(png)
            if (w, h) != (item.layout.width, item.layout.height):
                raise ItemFailed(f"the image is {w}x{h} but its layout is {item.layout.width}x{item.layout.height}; "
                                 "generate at the layout's size (a size the model's latent can hold: multiples of 8)")
            folder.record({"id": item.id, "number": item.number, "seed": item.seed, "workflow_hash": wf.hash,
                           "server": name, "seconds": round(time.monotonic() - t0, 3), "width": w, "height": h},
                          png, item_file_stem(item.id))
            summary.generated += 1
            bar.tqdm.update(1)
            if on_event:
                on_event("done", item, name)
        except ServerGone as e:
            queue.insert(0, item)
            bar.write(f"{item.label()}: {e}; the item goes to another server, and {name} takes no more items")
            folder.error({"number": item.number, "id": item.id, "server": name, "message": str(e), "retried": True})
            state["alive"].discard(name)
            if on_event:
                on_event("gone", item, name)
            return
        except ItemFailed as e:
            msg = f"{item.label()}: {e}"
            bar.write(msg)
            summary.failed.append(msg)
            folder.error({"number": item.number, "id": item.id, "server": name, "message": str(e)})
            bar.tqdm.update(1)
            if on_event:
                on_event("failed", item, name)
        finally:
            state["in_flight"] -= 1


async def _run_async(opts: RunOptions, log: Callable[[str], None], on_event: Event | None) -> RunSummary:
    summary = RunSummary()
    if not 0 < opts.item_timeout <= 7 * 86400 or (opts.limit is not None and opts.limit < 1):
        raise ValueError(f"--item-timeout must be 0 to 604800 seconds and --limit at least 1, got "
                         f"{opts.item_timeout} and {opts.limit}")
    items, bad = read_benchmark(opts.benchmark)
    folder = RunFolder(opts.out)
    os.makedirs(opts.out, exist_ok=True)
    for b in bad:
        msg = f"{b.message}; the item is skipped"
        log(msg)
        summary.failed.append(msg)
        folder.error({"number": b.number, "id": b.id, "server": None, "message": b.message})
    if opts.limit is not None:
        items = items[:opts.limit]
    session = None
    try:
        if opts.servers:
            import aiohttp

            session = aiohttp.ClientSession()
            backends, specs = [], None
            for url in dict.fromkeys(check_url(u) for u in opts.servers):
                srv = HttpServer(url, session, timeout=opts.item_timeout)
                try:
                    s = await srv.node_specs()
                except ServerGone as e:
                    log(f"{e}; it takes no items")
                    continue
                specs = specs or s
                backends.append(srv)
            if not backends:
                raise RuntimeError("no server answered: " + ", ".join(opts.servers) + "; start ComfyUI there or give "
                                   "other --servers (or none, to run in-process)")
        else:
            from .in_process import InProcessComfy

            backend = await asyncio.to_thread(InProcessComfy, opts.comfyui, os.path.join(opts.out, ".comfy-output"),
                                              tuple(opts.custom_nodes), opts.comfy_models)
            backends, specs = [backend], await backend.node_specs()
        wf = BenchmarkWorkflow.from_prompt(to_api(load_workflow(opts.workflow), specs), opts.overrides,
                                           opts.output_node, opts.prompt_template)
        summary.workflow_hash = wf.hash
        done = folder.done(wf.hash)
        folder.start({"benchmark": os.path.abspath(opts.benchmark), "workflow": os.path.abspath(opts.workflow),
                      "workflow_hash": wf.hash, "overrides": [vars(o) for o in wf.overrides],
                      "output_node": wf.output_node, "prompt_template": wf.prompt_template,
                      "layout_nodes": wf.layout_nodes, "seed_nodes": wf.seed_nodes},
                     wf.prompt, [it.to_dict() | {"number": it.number} for it in items])
        queue = [it for it in items if it.id not in done]
        summary.skipped = len(items) - len(queue)
        if summary.skipped:
            log(f"{summary.skipped} of {len(items)} items are already done in {opts.out}; generating {len(queue)}")
        bar = _Bar(len(queue))
        state = {"in_flight": 0, "alive": {str(b) for b in backends}}
        try:
            await asyncio.gather(*(_worker(b, wf, queue, state, folder, summary, bar, on_event) for b in backends))
        finally:
            bar.close()
        for item in queue:  # every server died
            msg = f"{item.label()}: not generated: no server is left (all died or were unreachable)"
            log(msg)
            summary.failed.append(msg)
        return summary
    finally:
        if session is not None:
            await session.close()


def run_benchmark(opts: RunOptions, log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
                  on_event: Event | None = None) -> RunSummary:  # fmt: skip
    """Generate every pending item of ``opts.benchmark`` into ``opts.out``; see the module docstring."""
    return asyncio.run(_run_async(opts, log, on_event))
