"""comfyui-ifadapter: instance-level control of text-to-image generation in ComfyUI.

Draw where each object goes, describe each one, and generate with IFAdapter (SDXL) or InstanceDiffusion (SD1.5).
ComfyUI loads this folder as a package; everything below is imported relatively so it never clashes with other packs.
"""
import importlib.util

if importlib.util.find_spec("folder_paths") is None:
    # Imported outside ComfyUI (pytest collecting the repository, packaging tools): there are no nodes to offer.
    NODE_CLASS_MAPPINGS: dict = {}
    NODE_DISPLAY_NAME_MAPPINGS: dict = {}
else:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
