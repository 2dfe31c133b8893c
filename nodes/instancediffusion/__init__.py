"""InstanceDiffusion (arXiv 2402.03290) nodes for SD1.5, one module per concept:

- ``adapter``: the loaded weights (shared by every clone) and the SD1.5 model check;
- ``grounding``: the patch objects (fusers, ScaleU, MIS context) and the state they share;
- ``loader``: Load InstanceDiffusion, Convert to safetensors;
- ``apply``: Apply InstanceDiffusion;
- ``sampler``: KSampler (InstanceDiffusion MIS);
- ``mis_sampler``: the MIS as a SAMPLER for SamplerCustom / SamplerCustomAdvanced (and the official PLMS path).
"""
from __future__ import annotations

from .apply import ApplyInstanceDiffusion
from .loader import InstanceDiffusionConvert, InstanceDiffusionLoader
from .mis_sampler import SamplerInstanceDiffusionMIS
from .sampler import InstanceDiffusionSampler

NODE_CLASS_MAPPINGS = {
    "IFAInstanceDiffusionLoader": InstanceDiffusionLoader,
    "IFAInstanceDiffusionConvert": InstanceDiffusionConvert,
    "IFAApplyInstanceDiffusion": ApplyInstanceDiffusion,
    "IFAInstanceDiffusionSampler": InstanceDiffusionSampler,
    "IFASamplerInstanceDiffusionMIS": SamplerInstanceDiffusionMIS,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "IFAInstanceDiffusionLoader": "Load InstanceDiffusion",
    "IFAInstanceDiffusionConvert": "Convert InstanceDiffusion to safetensors",
    "IFAApplyInstanceDiffusion": "Apply InstanceDiffusion",
    "IFAInstanceDiffusionSampler": "KSampler (InstanceDiffusion MIS)",
    "IFASamplerInstanceDiffusionMIS": "InstanceDiffusion MIS (SAMPLER)",
}
