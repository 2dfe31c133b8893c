"""ComfyUI node classes of the pack, one module per capability.

Each capability module is imported on its own: if one fails (a missing optional dependency, say), ComfyUI still
gets every other node and the log says exactly what is missing and how to fix it.
"""
from __future__ import annotations

import importlib
import logging

from . import folders

log = logging.getLogger("comfyui-ifadapter")

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
LOAD_ERRORS: dict[str, str] = {}

_CAPABILITIES = ("layout", "ifadapter", "instancediffusion", "training_sample", "video", "evaluate_layout")

folders.register_model_folders()

for _name in _CAPABILITIES:
    try:
        _mod = importlib.import_module(f".{_name}", __name__)
    except ModuleNotFoundError as e:  # capability not present in this build, or a dependency is missing
        if e.name and e.name.endswith(f"nodes.{_name}"):
            continue
        LOAD_ERRORS[_name] = f"{type(e).__name__}: {e}"
        log.error("[comfyui-ifadapter] the %s nodes are disabled: %s. Install the pack's requirements "
                  "(pip install -r requirements.txt in the pack folder) and restart ComfyUI.", _name, e)
        continue
    except Exception as e:  # never let one capability take ComfyUI down
        LOAD_ERRORS[_name] = f"{type(e).__name__}: {e}"
        log.exception("[comfyui-ifadapter] the %s nodes failed to load: %s", _name, e)
        continue
    NODE_CLASS_MAPPINGS.update(getattr(_mod, "NODE_CLASS_MAPPINGS", {}))
    NODE_DISPLAY_NAME_MAPPINGS.update(getattr(_mod, "NODE_DISPLAY_NAME_MAPPINGS", {}))
