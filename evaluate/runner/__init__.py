"""The benchmark runner (``python -m evaluate run``), one concept a file:

- ``workflow_format.py``: a workflow file (UI or API format) -> an API prompt, its hash;
- ``slots.py``: where an item's layout, seed, size and prompt go in that prompt; the overrides and ablations;
- ``backends.py``: a ComfyUI server over HTTP + websocket (:class:`HttpServer`), its two failure kinds;
- ``in_process.py``: ComfyUI's executor in this process, when no server is given;
- ``manifest.py``: the run folder (images, manifest, errors), written atomically;
- ``engine.py``: the queue, one worker per server, resume, progress.
"""
