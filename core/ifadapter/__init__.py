"""IFAdapter (arXiv 2409.08240) re-implemented from the project spec: appearance tokens, Instance Semantic Map,
gated fusion, and loading of the released ``spd_adapter.bin`` layout. Pure torch; never imports ComfyUI."""

from .adapter import (
    COMFY_KEY_TO_INDEX,
    PATCHED_INDICES,
    PATCHED_SLOTS,
    SDXL_PROCESSOR_SLOTS,
    TOKENS_PER_INSTANCE,
    IFAdapter,
    ProcessorSlot,
)
from .box_embedding import BoxEmbedding, fourier_embed
from .loading import (
    IFAdapterCheckpointError,
    adapter_config,
    base_model_refusal,
    check_state_dict,
    convert_to_safetensors,
    load_ifadapter,
    read_metadata,
    read_state_dict,
    save_ifadapter,
)
from .resampler import Resampler, block_word_masks
from .semantic_map import (
    CBAM,
    MAX_OBJ,
    IFAttnProcessor,
    InstanceCrops,
    InstanceGeometry,
    InstanceKV,
    rasterize_boxes,
)

__all__ = [
    "CBAM",
    "COMFY_KEY_TO_INDEX",
    "MAX_OBJ",
    "PATCHED_INDICES",
    "PATCHED_SLOTS",
    "SDXL_PROCESSOR_SLOTS",
    "TOKENS_PER_INSTANCE",
    "BoxEmbedding",
    "IFAdapter",
    "IFAdapterCheckpointError",
    "IFAttnProcessor",
    "InstanceCrops",
    "InstanceGeometry",
    "InstanceKV",
    "ProcessorSlot",
    "Resampler",
    "adapter_config",
    "base_model_refusal",
    "block_word_masks",
    "check_state_dict",
    "convert_to_safetensors",
    "fourier_embed",
    "load_ifadapter",
    "rasterize_boxes",
    "read_metadata",
    "read_state_dict",
    "save_ifadapter",
]
