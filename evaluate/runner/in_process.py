"""The in-process backend: ComfyUI booted inside the runner, prompts run by its own ``execution.PromptExecutor``
(the engine the server runs), one at a time. Used when ``run`` is given no ``--servers``.

Which ComfyUI: ``--comfyui DIR``, else ``COMFYUI_PATH``, else the ComfyUI this pack is installed in
(``<ComfyUI>/custom_nodes/<pack>``). Its own ``custom_nodes`` and ``models`` folders are used, plus any
``custom_nodes_dirs`` (more node packs) and ``models_dir`` (a models folder whose ``checkpoints``, ``loras``,
``controlnet``, ``ifadapter`` and ``instancediffusion`` sub-folders are read too). On a machine without CUDA
ComfyUI runs on the CPU. Images are saved into ``output_dir`` and read back from there.
"""
from __future__ import annotations

import asyncio
import inspect
import os
import sys
import uuid
from pathlib import Path

from .backends import ItemFailed, Progress
from .workflow_format import input_specs_from_classes

PACK_ROOT = Path(__file__).resolve().parents[2]
MODEL_KINDS = ("checkpoints", "loras", "controlnet", "ifadapter", "instancediffusion", "vae", "clip")


def find_comfyui(given: str | None) -> Path:
    """The ComfyUI folder to boot; ValueError saying what to pass when there is none."""
    candidates = [given, os.environ.get("COMFYUI_PATH")]
    if PACK_ROOT.parent.name == "custom_nodes":
        candidates.append(str(PACK_ROOT.parent.parent))
    for c in candidates:
        if not c:
            continue
        p = Path(c).expanduser().resolve()
        if (p / "main.py").is_file() and (p / "nodes.py").is_file() and (p / "comfy").is_dir():
            return p
        if c is given:
            raise ValueError(f"--comfyui {c}: not a ComfyUI folder (no main.py, nodes.py and comfy/ there)")
    raise ValueError("no ComfyUI to run in-process: pass --comfyui DIR (or set COMFYUI_PATH), or give --servers URL")


class InProcessComfy:
    """ComfyUI in this process; ``generate`` runs one API prompt and returns its first saved image's PNG bytes."""

    def __init__(self, comfy_dir: str | None, output_dir: str, custom_nodes_dirs: tuple[str, ...] = (),
                 models_dir: str | None = None):  # fmt: skip
        self.comfy_dir = find_comfyui(comfy_dir)
        self.output_dir = Path(output_dir).resolve()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._boot([str(Path(d).resolve()) for d in custom_nodes_dirs], models_dir)

    def __str__(self) -> str:
        return "in-process"

    def _boot(self, custom_nodes_dirs: list[str], models_dir: str | None) -> None:
        import torch

        sys.path.insert(0, str(self.comfy_dir))
        cwd = os.getcwd()
        os.chdir(self.comfy_dir)
        try:
            from comfy.cli_args import args  # must precede comfy.model_management

            if not torch.cuda.is_available():
                args.cpu = True
            import folder_paths

            folder_paths.set_output_directory(str(self.output_dir))
            if models_dir:
                for kind in MODEL_KINDS:
                    d = Path(models_dir).resolve() / kind
                    if d.is_dir():
                        folder_paths.add_model_folder_path(kind, str(d))
            for d in custom_nodes_dirs:
                folder_paths.add_model_folder_path("custom_nodes", d)
            import execution

            import nodes

            if inspect.iscoroutinefunction(getattr(nodes, "init_extra_nodes", None)):
                kw = {"init_custom_nodes": True}
                if "init_api_nodes" in inspect.signature(nodes.init_extra_nodes).parameters:
                    kw["init_api_nodes"] = False
                asyncio.run(nodes.init_extra_nodes(**kw))
            else:
                nodes.init_custom_nodes()
        finally:
            os.chdir(cwd)
        if "IFAInstanceLayout" not in nodes.NODE_CLASS_MAPPINGS:
            raise ValueError(f"this pack's nodes did not load into the ComfyUI at {self.comfy_dir}: install the pack "
                             "in its custom_nodes folder or pass --custom-nodes with a folder that holds it")
        self.nodes, self.execution = nodes, execution
        self.server = _MessageSink()
        if "cache_args" in inspect.signature(execution.PromptExecutor.__init__).parameters:
            self.executor = execution.PromptExecutor(self.server, cache_type=execution.CacheType.CLASSIC,
                                                     cache_args={"lru": 0, "ram": 0})
        else:
            self.executor = execution.PromptExecutor(self.server)

    async def node_specs(self) -> dict:
        return input_specs_from_classes(self.nodes.NODE_CLASS_MAPPINGS)

    def _validate(self, prompt: dict):
        fn = self.execution.validate_prompt
        if inspect.iscoroutinefunction(fn):
            if "partial_execution_list" in inspect.signature(fn).parameters:
                return asyncio.run(fn(str(uuid.uuid4()), prompt, None))
            return asyncio.run(fn(str(uuid.uuid4()), prompt))
        return fn(prompt)

    def _run(self, prompt: dict, output_node: str, progress: Progress | None) -> bytes:
        ok, error, outputs, node_errors = self._validate(prompt)
        if not ok:
            msgs = [f"node {nid}: {e.get('message')} {e.get('details', '')}".strip()
                    for nid, ne in (node_errors or {}).items() for e in ne.get("errors", [])]
            raise ItemFailed(f"ComfyUI refused the prompt: {error.get('message', error)} {' '.join(msgs)}".strip())
        self.executor.execute(prompt, str(uuid.uuid4()), {}, outputs)
        if not self.executor.success:
            errs = [m[1] for m in self.executor.status_messages if m[0] == "execution_error"]
            d = errs[-1] if errs else {}
            raise ItemFailed(f"ComfyUI failed in node {d.get('node_id')} ({d.get('node_type')}): "
                             f"{d.get('exception_type')}: {d.get('exception_message')}")
        hist = getattr(self.executor, "history_result", None)
        ui = hist["outputs"] if hist is not None and "outputs" in hist else self.executor.outputs_ui
        images = (ui.get(output_node) or {}).get("images") or []
        if not images:
            raise ItemFailed(f"the output node {output_node} saved no image")
        ref = images[0]
        path = self.output_dir / ref.get("subfolder", "") / ref["filename"]
        data = path.read_bytes()
        path.unlink()  # the run folder keeps its own copy
        return data

    async def generate(self, prompt: dict, output_node: str, progress: Progress | None = None) -> bytes:
        # a thread of its own: newer ComfyUI's validation and execution start event loops of their own
        return await asyncio.to_thread(self._run_in_comfy_dir, prompt, output_node, progress)

    def _run_in_comfy_dir(self, prompt: dict, output_node: str, progress: Progress | None) -> bytes:
        import comfy.utils

        def hook(value, total, *rest, **kw):
            if progress is not None:
                progress(int(value), int(total))

        comfy.utils.set_progress_bar_global_hook(hook)
        cwd = os.getcwd()
        os.chdir(self.comfy_dir)
        try:
            return self._run(prompt, output_node, progress)
        finally:
            os.chdir(cwd)
            comfy.utils.set_progress_bar_global_hook(None)


class _MessageSink:
    """The few attributes ``PromptExecutor`` needs from the server (its messages are not needed here)."""

    def __init__(self):
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None

    def send_sync(self, event, data, sid=None):
        pass

    def queue_updated(self):
        pass
