"""The loaded InstanceDiffusion weights as a handle shared by every clone, and the check that a MODEL is SD1.5."""
from __future__ import annotations

import os

import comfy.model_management as mm
import comfy.model_patcher
import torch

from ...core.instancediffusion.loading import build_model, load_any
from ...core.instancediffusion.model import InstanceDiffusion
from ..common import load_once

ADAPTER = "INSTANCEDIFFUSION"  # the socket type of loaded weights


class Adapter:
    """The loaded weights (an eval-mode :class:`InstanceDiffusion`) and where they came from.

    Never deep-copied (``__deepcopy__`` returns self): every clone of a patched MODEL points at the same tensors.
    Fusers and ScaleU follow the UNet's device and dtype; the position net stays fp32.
    """

    def __init__(self, module: InstanceDiffusion, source: str, origin: str):
        self.module = module.eval().requires_grad_(False)
        self.module.position_net.float()
        self.source = source
        self.origin = origin
        self._patcher = None

    def __deepcopy__(self, memo):
        return self

    def __repr__(self) -> str:
        return f"InstanceDiffusion({os.path.basename(self.source)}, from {self.origin}, {self.module.config})"

    def patcher(self):
        """A ModelPatcher around the adapter (so ComfyUI's memory manager counts and moves it), created once."""
        if self._patcher is None:
            self._patcher = comfy.model_patcher.ModelPatcher(
                self.module, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device())
        return self._patcher

    def to_device(self, device: torch.device) -> None:
        if self.module.scaleu.scaleu_s_0.device != torch.device(device):
            self.module.to(device)

    def to_dtype(self, dtype: torch.dtype) -> None:
        """Fusers and ScaleU in the UNet dtype; position net fp32."""
        if dtype.is_floating_point and self.module.fusers[0].linear.weight.dtype != dtype:
            self.module.fusers.to(dtype)
            self.module.scaleu.to(dtype)


def load_adapter(path: str) -> Adapter:
    """Any supported file (official .pth, converted .safetensors, logtd's set via any one of its files); loader nodes
    on the same file share one copy."""
    def load(p: str) -> Adapter:
        state, origin = load_any(p)
        return Adapter(build_model(state), p, origin)

    return load_once(path, None, load)


def transformer_layout(model) -> tuple[list[int], list[int], int | None, list[int]]:
    """(widths of the transformer blocks in transformer_index order, their depths, cross-attention context width,
    backbone channels entering each output block) of a MODEL's UNet."""
    from comfy.ldm.modules.attention import SpatialTransformer

    dm = model.model.diffusion_model
    widths, depths, ctx = [], [], None
    blocks = list(getattr(dm, "input_blocks", [])) + [getattr(dm, "middle_block", [])] + \
        list(getattr(dm, "output_blocks", []))
    for blk in blocks:
        for layer in blk:
            if isinstance(layer, SpatialTransformer):
                widths.append(int(layer.in_channels))
                depths.append(len(layer.transformer_blocks))
                attn2 = getattr(layer.transformer_blocks[0], "attn2", None)
                if ctx is None and attn2 is not None:
                    ctx = int(attn2.to_k.in_features)
    scaleu = []
    try:
        prev = int(dm.middle_block[-1].out_channels)
        for ob in dm.output_blocks:
            scaleu.append(prev)
            prev = int(ob[0].out_channels)
    except (AttributeError, IndexError, TypeError):
        scaleu = []
    return widths, depths, ctx, scaleu


def check_model(model, adapter: Adapter) -> None:
    """Refuse a MODEL the adapter cannot patch, saying what it is and what would be right."""
    widths, depths, ctx, scaleu = transformer_layout(model)
    cfg = adapter.module.config
    want = list(cfg.fuser_channels)
    kind = type(getattr(model.model, "model_config", None)).__name__
    if widths != want or any(d != 1 for d in depths):
        raise ValueError(
            f"InstanceDiffusion works with SD1.5 models only: this MODEL ({kind}) has {len(widths)} transformer "
            f"blocks of widths {widths} and depths {depths}, the loaded InstanceDiffusion weights need 16 blocks of "
            f"depth 1 with widths {want}. Load an SD1.5 checkpoint (SDXL, SD2.x, SD3 and Flux are not supported).")
    if ctx != 768:
        raise ValueError(
            f"InstanceDiffusion works with SD1.5 models only: this MODEL ({kind}) has a {ctx}-wide text context "
            "(SD1.5: 768; SD2.x: 1024). Load an SD1.5 checkpoint.")
    if scaleu and scaleu != list(cfg.scaleu_channels):
        raise ValueError(f"InstanceDiffusion: this MODEL's decoder widths {scaleu} do not match the ScaleU weights "
                         f"{list(cfg.scaleu_channels)}; load an SD1.5 checkpoint.")
