"""A test stand-in for another pack's attn2 replace patch that follows IPAdapter_plus's ``Attn2Replace`` protocol.

The protocol (cubiq/ComfyUI_IPAdapter_plus, ``CrossAttentionPatch.py``), restated:

- the patch object keeps parallel lists ``callback`` and ``kwargs``; ``add(callback, **kwargs)`` appends one;
- calling it with ``(q, k, v, extra_options)`` computes plain attention of ``q`` over the text ``k, v``, then for
  each callback whose ``sigma_start >= sigma >= sigma_end`` adds ``callback(out, q, k, v, extra_options, **kw)``;
- a pack applying itself looks up ``patches_replace["attn2"][key]``: if an entry is there it calls ``.add`` on it
  (assuming that entry speaks this protocol), else it stores a new patch object.

This module implements that protocol independently so the suite can check, without network access, that the
IFAdapter and InstanceDiffusion patches chain with it in either order. ``CALLS`` counts every callback invocation
so tests can prove the other pack's contribution was really applied.
"""
from __future__ import annotations

import torch
from comfy.ldm.modules.attention import optimized_attention

CALLS: dict[str, int] = {"callback": 0}

SDXL_IFADAPTER_KEYS = [("middle", 0, i) for i in range(4)] + [("output", b, i) for b in range(3) for i in range(4)]


class ProtocolAttn2Replace:
    def __init__(self, callback=None, **kwargs):
        self.callback = [callback]
        self.kwargs = [kwargs]

    def add(self, callback, **kwargs):
        self.callback.append(callback)
        self.kwargs.append(kwargs)

    def __call__(self, q, k, v, extra_options):
        out = optimized_attention(q, k, v, extra_options["n_heads"])
        sigma = float(extra_options["sigmas"].detach().cpu()[0]) if "sigmas" in extra_options else 1e9
        for cb, kw in zip(self.callback, self.kwargs, strict=True):
            if kw["sigma_start"] >= sigma >= kw["sigma_end"]:
                out = out + cb(out, q, k, v, extra_options, **kw)
        return out.to(q.dtype)


def extra_tokens_attention(out, q, k, v, extra_options, tokens=None, weight=1.0, **kw):
    """The callback: attention of q over a few extra tokens projected by a fixed random matrix (like IP tokens)."""
    CALLS["callback"] += 1
    tok = tokens.to(q.device, q.dtype)
    proj = torch.nn.functional.linear(tok, torch.ones(q.shape[-1], tok.shape[-1], dtype=q.dtype, device=q.device)
                                      / tok.shape[-1])
    kk = proj.expand(q.shape[0], -1, -1)
    return optimized_attention(q, kk, kk, extra_options["n_heads"]) * weight


def _keys_for(model, which: str):
    unet = model.model.diffusion_model
    if which == "ifadapter16":
        return SDXL_IFADAPTER_KEYS
    keys = []
    for name, blocks in (("input", unet.input_blocks), ("output", unet.output_blocks)):
        for i, block in enumerate(blocks):
            for layer in block:
                if hasattr(layer, "transformer_blocks"):
                    keys += [(name, i, j) for j in range(len(layer.transformer_blocks))]
    for layer in unet.middle_block:
        if hasattr(layer, "transformer_blocks"):
            keys += [("middle", 0, j) for j in range(len(layer.transformer_blocks))]
    return keys


def apply_ipadapter_style_patch(model, weight: float, which: str, seed: int):
    m = model.clone()
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(1, 4, 64, generator=g)
    kw = {"tokens": tokens, "weight": weight, "sigma_start": 1e9, "sigma_end": 0.0}
    to = m.model_options["transformer_options"].copy()
    pr = dict(to.get("patches_replace", {}))
    attn2 = dict(pr.get("attn2", {}))
    for key in _keys_for(m, which):
        if key in attn2:
            attn2[key].add(extra_tokens_attention, **kw)
        else:
            attn2[key] = ProtocolAttn2Replace(extra_tokens_attention, **kw)
    pr["attn2"] = attn2
    to["patches_replace"] = pr
    m.model_options["transformer_options"] = to
    return m
