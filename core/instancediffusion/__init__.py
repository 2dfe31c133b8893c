"""InstanceDiffusion (arXiv 2402.03290) for SD1.5 as plain torch modules: position net, UniFusion fusers, ScaleU,
input preparation, sampler logic (alpha schedule, PLMS, MIS) and safe checkpoint loading. No ComfyUI imports."""

from .fuser import FUSER_BLOCKS, FUSER_CHANNELS, FUSER_PREFIXES, GatedSelfAttentionDense, build_fusers
from .inputs import (
    MISSING_BOX,
    PRESET_NAMES,
    PRESETS,
    InstanceInput,
    choose_preset,
    from_layout,
    null_inputs,
    prepare_inputs,
    single_instance_inputs,
)
from .loading import (
    CheckpointError,
    build_model,
    convert_to_safetensors,
    expected_shapes,
    infer_config,
    load_adapter_state_dict,
    load_instancediffusion,
    load_logtd_split,
)
from .model import AdapterConfig, InstanceDiffusion, from_official_key, to_official_key
from .position_net import DropFlags, FourierEmbedder, PositionNet
from .sampler import alpha_schedule, ddim_uniform_timesteps, fuser_scale, linear_alphas_cumprod, mis_sample, plms_sample
from .scaleu import SCALEU_CHANNELS, ScaleU, fourier_filter, fourier_filter_fft

__all__ = [
    "MISSING_BOX",
    "FUSER_BLOCKS",
    "FUSER_CHANNELS",
    "FUSER_PREFIXES",
    "GatedSelfAttentionDense",
    "build_fusers",
    "PRESET_NAMES",
    "PRESETS",
    "InstanceInput",
    "choose_preset",
    "from_layout",
    "null_inputs",
    "prepare_inputs",
    "single_instance_inputs",
    "CheckpointError",
    "build_model",
    "convert_to_safetensors",
    "expected_shapes",
    "infer_config",
    "AdapterConfig",
    "load_adapter_state_dict",
    "load_instancediffusion",
    "load_logtd_split",
    "InstanceDiffusion",
    "from_official_key",
    "to_official_key",
    "DropFlags",
    "FourierEmbedder",
    "PositionNet",
    "alpha_schedule",
    "ddim_uniform_timesteps",
    "fuser_scale",
    "linear_alphas_cumprod",
    "mis_sample",
    "plms_sample",
    "SCALEU_CHANNELS",
    "ScaleU",
    "fourier_filter",
    "fourier_filter_fft",
]
