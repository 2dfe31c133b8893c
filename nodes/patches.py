"""ComfyUI patch objects of the pack, built to chain with other packs' patches on the same keys.

ComfyUI keeps one replace patch per ``patches_replace["attn2"][key]``: the last writer wins. Packs that inject
extra cross-attention (IPAdapter_plus and its followers) avoid that with a small protocol: the object on a key keeps
lists ``callback`` / ``kwargs``, ``add(callback, **kwargs)`` appends one, and calling the object computes plain
attention and then adds ``callback(out, q, k, v, extra_options, **kw)`` for every callback whose
``sigma_start >= sigma >= sigma_end``. :class:`ChainedAttn2` speaks that protocol and also

- wraps whatever already sits on the key (any callable ``(q, k, v, extra_options) -> out``) and uses its output as
  the base, so a patch applied *before* ours keeps working;
- carries this pack's own *contributions*: objects called as ``contribution(q, out, extra_options) -> delta``,
  added to the attention output before the layer's ``to_out`` (where IFAdapter injects its semantic map).

Clone semantics: ``ModelPatcher.clone()`` deep-copies ``model_options``. A :class:`ChainedAttn2` copy gets its own
lists (so ``add`` on a clone never reaches the parent) but shares the contribution objects and callbacks, and
contributions that hold weights define ``__deepcopy__`` returning themselves, so adapter weights exist once in
memory however many clones follow.
"""
from __future__ import annotations

import copy
import functools
from collections.abc import Callable

import torch
from comfy.ldm.modules.attention import optimized_attention

_LAST_SIGMA: list = [None, 1e9]  # (the sigmas tensor of the current UNet call, its value)


def current_sigma(extra_options: dict) -> float:
    """The sigma of the step being computed (``extra_options["sigmas"]``), or +inf-like 1e9 when absent.

    Every patched layer of one UNet call sees the same ``sigmas`` tensor, so its value is read (a device sync on a
    GPU) once per call, not once per layer.
    """
    s = extra_options.get("sigmas")
    if s is None:
        return 1e9
    if _LAST_SIGMA[0] is not s:
        _LAST_SIGMA[:] = [s, float(s.detach().flatten()[0].cpu())]
    return _LAST_SIGMA[1]


class ChainedAttn2:
    """An attn2 replace patch that chains: previous patch (or plain attention) + protocol callbacks + contributions."""

    def __init__(self, previous: Callable | None = None):
        self.previous = previous
        self.callback: list[Callable] = []
        self.kwargs: list[dict] = []
        self.contributions: list = []

    # IPAdapter_plus protocol
    def add(self, callback: Callable, **kwargs) -> None:
        self.callback.append(callback)
        self.kwargs.append(kwargs)

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, extra_options: dict) -> torch.Tensor:
        if self.previous is not None:
            out = self.previous(q, k, v, extra_options)
        else:
            out = optimized_attention(q, k, v, extra_options["n_heads"])
        if self.callback:
            sigma = current_sigma(extra_options)
            for cb, kw in zip(self.callback, self.kwargs, strict=True):
                if kw.get("sigma_start", 1e9) >= sigma >= kw.get("sigma_end", 0.0):
                    out = out + cb(out, q, k, v, extra_options, **kw)
        for contrib in self.contributions:
            delta = contrib(q, out, extra_options)
            if delta is not None:
                out = out + delta.to(out.dtype)
        return out.to(q.dtype)

    def __deepcopy__(self, memo):
        new = ChainedAttn2.__new__(ChainedAttn2)
        memo[id(self)] = new
        new.previous = copy.deepcopy(self.previous, memo)
        new.callback = list(self.callback)
        new.kwargs = [dict(kw) for kw in self.kwargs]
        new.contributions = list(self.contributions)
        return new

    def to(self, *args, **kwargs):  # ModelPatcher.model_patches_to moves patch objects; contributions move lazily
        for c in self.contributions:
            if hasattr(c, "to"):
                c.to(*args, **kwargs)
        if self.previous is not None and hasattr(self.previous, "to"):
            moved = self.previous.to(*args, **kwargs)
            if moved is not None:
                self.previous = moved
        return self


def add_attn2_contribution(model, key: tuple, contribution) -> None:
    """Put ``contribution`` on the attn2 layer ``key`` = (block, id, index) of ``model`` (a fresh clone).

    Whatever already sits on the key is kept: our own :class:`ChainedAttn2` gets one more contribution, an object
    speaking the IPAdapter protocol or any other callable becomes the chain's base.
    """
    to = model.model_options["transformer_options"]
    replace = to.setdefault("patches_replace", {}).setdefault("attn2", {})
    existing = replace.get(key)
    if isinstance(existing, ChainedAttn2):
        patch = existing
    else:
        patch = ChainedAttn2(previous=existing)
    patch.contributions.append(contribution)
    replace[key] = patch


def percent_window(model, start_percent: float, end_percent: float) -> tuple[float, float]:
    """(sigma_start, sigma_end) for a start/end percent of sampling, as ComfyUI's ControlNet apply does."""
    ms = model.get_model_object("model_sampling") if hasattr(model, "get_model_object") else \
        model.model.model_sampling
    return float(ms.percent_to_sigma(start_percent)), float(ms.percent_to_sigma(end_percent))


def rows_by_cond(extra_options: dict, batch: int) -> tuple[torch.Tensor, list[int]]:
    """Which rows of a batch are positive (``cond_or_uncond == 0``) and each row's chunk index.

    Rows are laid out chunk by chunk (chunk j = rows j*B .. (j+1)*B-1 with ``B = batch / len(cond_or_uncond)``);
    never assume uncond comes first. Memoised per (chunks, batch): every patched layer of a UNet call asks the same
    question. Callers must not modify the returned objects.
    """
    return _rows_by_cond(tuple(extra_options.get("cond_or_uncond") or [0]), batch)


@functools.lru_cache(maxsize=64)
def _rows_by_cond(cou: tuple, batch: int) -> tuple[torch.Tensor, list[int]]:
    per = batch // len(cou)
    if per * len(cou) != batch:
        raise RuntimeError(f"batch {batch} is not a multiple of the {len(cou)} chunks {list(cou)}")
    chunk = [j for j in range(len(cou)) for _ in range(per)]
    positive = torch.tensor([cou[j] == 0 for j in chunk], dtype=torch.bool)
    return positive, chunk
