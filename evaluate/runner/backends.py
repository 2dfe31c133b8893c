"""Where prompts run: a ComfyUI server over its HTTP + websocket API, or ComfyUI's executor in this process.

Both give the same two calls: ``node_specs()`` (the node definitions, to convert UI-format workflows) and
``generate(prompt, output_node, progress)`` -> the PNG bytes of the first image ``output_node`` saved.

Failures are of two kinds, and the runner treats them differently:

- :class:`ServerGone`: the server is unreachable or died (connection refused or reset, websocket closed, no answer
  within ``timeout``): the item did not fail, the server did; the item goes back to the queue for another server;
- :class:`ItemFailed`: the server ran the prompt and refused it (validation) or failed (execution): the item's
  error, with ComfyUI's message; the server goes on with the next item.

Over HTTP (the API every ComfyUI version since 2023 serves): ``POST /prompt`` with a client id, progress and
completion from ``/ws?clientId=`` (``progress``, ``executing`` with ``node: null``, ``execution_success``,
``execution_error``), the result from ``GET /history/<id>`` and the image from ``GET /view``. When the websocket is
quiet for ``poll_s`` seconds, ``/history`` is asked directly, so a missed message cannot hang a run.
"""
from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from urllib.parse import urlencode, urlsplit

Progress = Callable[[int, int], None]
MAX_IMAGE_BYTES = 256 << 20
HISTORY_WAIT_S = 60.0


class ServerGone(RuntimeError):
    """The server cannot be reached or stopped answering; the item goes to another server."""


class ItemFailed(RuntimeError):
    """ComfyUI refused or failed the item's prompt; the message is ComfyUI's."""


def check_url(url: str) -> str:
    """A server URL as ``http(s)://host[:port]`` without a trailing slash; ValueError otherwise."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"server {url!r}: give it as http://host:port (e.g. http://127.0.0.1:8188)")
    return url


def _error_text(body: str) -> str:
    """ComfyUI's /prompt 400 body -> one line: the error and each node error's messages."""
    try:
        d = json.loads(body)
    except json.JSONDecodeError:
        return body[:2000]
    err = d.get("error") or {}
    parts = [str(err.get("message", "")), str(err.get("details", ""))] if isinstance(err, dict) else [str(err)]
    for nid, ne in (d.get("node_errors") or {}).items():
        for e in ne.get("errors", []) if isinstance(ne, dict) else []:
            parts.append(f"node {nid} ({ne.get('class_type')}): {e.get('message')} {e.get('details', '')}".strip())
    return " ".join(p for p in parts if p).strip()[:4000] or body[:2000]


class HttpServer:
    """One ComfyUI server at ``url``; ``session`` an ``aiohttp.ClientSession``."""

    def __init__(self, url: str, session, timeout: float = 3600.0, poll_s: float = 5.0):
        self.url = check_url(url)
        self.session = session
        self.timeout = float(timeout)
        self.poll_s = float(poll_s)

    def __str__(self) -> str:
        return self.url

    async def _get(self, path: str, as_json: bool = True):
        import aiohttp

        try:
            async with self.session.get(self.url + path, timeout=aiohttp.ClientTimeout(total=60)) as r:
                if r.status != 200:
                    raise ServerGone(f"server {self.url}: GET {path.split('?')[0]} answered HTTP {r.status}")
                if as_json:
                    return await r.json(content_type=None)
                if (r.content_length or 0) > MAX_IMAGE_BYTES:
                    raise ItemFailed(f"the image is larger than {MAX_IMAGE_BYTES} bytes")
                return await r.read()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            raise ServerGone(f"server {self.url} is unreachable ({type(e).__name__}: {e})") from None

    async def node_specs(self) -> dict:
        from .workflow_format import input_specs_from_object_info

        return input_specs_from_object_info(await self._get("/object_info"))

    async def generate(self, prompt: dict, output_node: str, progress: Progress | None = None) -> bytes:
        import aiohttp

        client_id = uuid.uuid4().hex
        ws_url = self.url.replace("http", "ws", 1) + "/ws?" + urlencode({"clientId": client_id})
        try:
            ws = await self.session.ws_connect(ws_url, heartbeat=30, max_msg_size=0)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            raise ServerGone(f"server {self.url} is unreachable ({type(e).__name__}: {e})") from None
        try:
            prompt_id = await self._post(prompt, client_id)
            await self._wait(ws, prompt_id, progress)
        finally:
            await ws.close()
        return await self._image(prompt_id, output_node)

    async def _post(self, prompt: dict, client_id: str) -> str:
        import aiohttp

        try:
            async with self.session.post(self.url + "/prompt", json={"prompt": prompt, "client_id": client_id},
                                         timeout=aiohttp.ClientTimeout(total=120)) as r:
                body = await r.text()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            raise ServerGone(f"server {self.url} is unreachable ({type(e).__name__}: {e})") from None
        if r.status == 400:
            raise ItemFailed(f"the server refused the prompt: {_error_text(body)}")
        if r.status != 200:
            raise ServerGone(f"server {self.url}: POST /prompt answered HTTP {r.status}: {body[:500]}")
        try:
            return json.loads(body)["prompt_id"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ServerGone(f"server {self.url}: POST /prompt gave no prompt_id: {body[:500]}") from None

    async def _wait(self, ws, prompt_id: str, progress: Progress | None) -> None:
        import aiohttp

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while True:
            if loop.time() > deadline:
                raise ServerGone(f"server {self.url}: prompt {prompt_id} did not finish within {self.timeout:.0f} s")
            try:
                msg = await asyncio.wait_for(ws.receive(), timeout=self.poll_s)
            except asyncio.TimeoutError:
                if await self._finished(prompt_id):
                    return
                continue
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING,
                            aiohttp.WSMsgType.ERROR):
                raise ServerGone(f"server {self.url} closed the connection while running the item (it died?)")
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue  # binary preview images
            try:
                m = json.loads(msg.data)
            except json.JSONDecodeError:
                continue
            kind, data = m.get("type"), m.get("data") or {}
            if data.get("prompt_id") not in (None, prompt_id):
                continue
            if kind == "progress" and progress is not None:
                progress(int(data.get("value", 0)), int(data.get("max", 0)))
            elif kind == "execution_error":
                raise ItemFailed(f"ComfyUI failed in node {data.get('node_id')} ({data.get('node_type')}): "
                                 f"{data.get('exception_type')}: {data.get('exception_message')}".strip())
            elif kind == "execution_success" or (kind == "executing" and data.get("node") is None
                                                 and data.get("prompt_id") == prompt_id):
                return

    async def _history(self, prompt_id: str) -> dict | None:
        hist = await self._get(f"/history/{prompt_id}")
        return hist.get(prompt_id) if isinstance(hist, dict) else None

    async def _finished(self, prompt_id: str) -> bool:
        entry = await self._history(prompt_id)
        if not entry:
            return False
        return (entry.get("status") or {}).get("completed") is not None or bool(entry.get("outputs"))

    async def _image(self, prompt_id: str, output_node: str) -> bytes:
        # The server announces the end on the websocket before its queue worker writes the history entry (newer
        # ComfyUI writes it after execute() returns), so the entry may need a moment to appear.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HISTORY_WAIT_S
        while True:
            entry = await self._history(prompt_id)
            if entry and ((entry.get("status") or {}).get("completed") is not None or entry.get("outputs")):
                break
            if loop.time() > deadline:
                raise ServerGone(f"server {self.url}: prompt {prompt_id} finished but is not in its history after "
                                 f"{HISTORY_WAIT_S:.0f} s")
            await asyncio.sleep(0.2)
        status = entry.get("status") or {}
        if status.get("status_str") == "error":
            msgs = [m[1] for m in status.get("messages", []) if m and m[0] == "execution_error"]
            detail = msgs[-1] if msgs else {}
            raise ItemFailed(f"ComfyUI failed in node {detail.get('node_id')} ({detail.get('node_type')}): "
                             f"{detail.get('exception_message')}")
        images = ((entry.get("outputs") or {}).get(output_node) or {}).get("images") or []
        if not images:
            raise ItemFailed(f"the output node {output_node} saved no image")
        ref = images[0]
        q = urlencode({"filename": ref["filename"], "subfolder": ref.get("subfolder", ""),
                       "type": ref.get("type", "output")})
        return await self._get(f"/view?{q}", as_json=False)
