"""The whole IFAdapter module with the exact layout of the released ``spd_adapter.bin`` (spec §4).

``IFAdapter.state_dict()`` keys are those of the official checkpoint:

- ``text_proj_model.*``: the :class:`~.resampler.Resampler` (429,982,208 params);
- ``pos_net.linears_position.{0,2,4}.*``: the :class:`~.box_embedding.BoxEmbedding` (2,559,488 params);
- ``adapter_modules.<i>.*``: one entry per SDXL UNet attention processor in diffusers' ``unet.attn_processors``
  order (140 entries). Only the 16 patched cross-attention layers hold parameters (5,450,548 each); the others are
  parameter-free placeholders so that the indices line up with the file.

Processor order (diffusers registers ``down_blocks`` and ``up_blocks`` before ``mid_block``, so
``named_children`` yields down, up, mid; inside a transformer block attn1 comes before attn2)::

    0..47     down_blocks.1 (2 attentions x 2 blocks x attn1/attn2), down_blocks.2 (2 x 10 x 2)
    48..107   up_blocks.0.attentions.{0,1,2}.transformer_blocks.{0..9}.attn{1,2}   index = 48 + 20*j + 2*t + (attn2)
    108..119  up_blocks.1.attentions.{0,1,2}.transformer_blocks.{0,1}.attn{1,2}
    120..139  mid_block.attentions.0.transformer_blocks.{0..9}.attn{1,2}           index = 120 + 2*t + (attn2)

Patched (16): up_blocks.0 j=0: 49 51 53 55; j=1: 69 71 73 75; j=2: 89 91 93 95; mid_block: 121 123 125 127.
ComfyUI keys: ``("output", j, t)`` for up_blocks.0.attentions.j.transformer_blocks.t and ``("middle", 0, t)`` for
the mid block, t = 0..3.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .box_embedding import BoxEmbedding
from .resampler import Resampler
from .semantic_map import IFAttnProcessor

TOKENS_PER_INSTANCE = 13  # 3 depths x 4 resampled tokens + the EoT token
TEXT_DEPTHS = (-2, -4, -6)  # CLIP hidden_states used, in this order


@dataclass(frozen=True)
class ProcessorSlot:
    """One SDXL attention processor: its index in ``adapter_modules``, diffusers name, ComfyUI key if patched."""

    index: int
    diffusers_name: str
    comfy_key: tuple[str, int, int] | None


def _sdxl_processor_slots() -> tuple[ProcessorSlot, ...]:
    # (diffusers prefix, comfy block name, comfy block id or None, attentions, transformer depth)
    layout = [
        ("down_blocks.1", None, None, 2, 2),
        ("down_blocks.2", None, None, 2, 10),
        ("up_blocks.0", "output", "j", 3, 10),
        ("up_blocks.1", None, None, 3, 2),
        ("mid_block", "middle", 0, 1, 10),
    ]
    slots = []
    for prefix, comfy_block, comfy_id, n_attn, depth in layout:
        for j in range(n_attn):
            for t in range(depth):
                for which in (1, 2):
                    name = f"{prefix}.attentions.{j}.transformer_blocks.{t}.attn{which}.processor"
                    key = None
                    if comfy_block is not None and which == 2 and t < 4:
                        key = (comfy_block, j if comfy_id == "j" else comfy_id, t)
                    slots.append(ProcessorSlot(len(slots), name, key))
    return tuple(slots)


SDXL_PROCESSOR_SLOTS: tuple[ProcessorSlot, ...] = _sdxl_processor_slots()
PATCHED_SLOTS: tuple[ProcessorSlot, ...] = tuple(s for s in SDXL_PROCESSOR_SLOTS if s.comfy_key is not None)
PATCHED_INDICES: tuple[int, ...] = tuple(s.index for s in PATCHED_SLOTS)
COMFY_KEY_TO_INDEX: dict[tuple[str, int, int], int] = {s.comfy_key: s.index for s in PATCHED_SLOTS}


class UnpatchedProcessor(nn.Module):
    """Parameter-free placeholder for an SDXL attention layer IFAdapter leaves alone (keeps indices aligned)."""


class IFAdapter(nn.Module):
    """IFAdapter weights plus the instance encoder; the per-layer processors are reached via :meth:`processor`.

    ``official_mask_quirk`` reproduces the released resampler's word-mask behaviour (needed for the released
    weights, see :func:`~.resampler.block_word_masks`). ``resampler_kwargs`` exists for tiny test configurations.
    """

    def __init__(
        self,
        official_mask_quirk: bool = True,
        hidden_size: int = 1280,
        heads: int = 20,
        context_dim: int = 2048,
        resampler_kwargs: Mapping | None = None,
    ) -> None:
        super().__init__()
        self.config = {
            "hidden_size": int(hidden_size),
            "heads": int(heads),
            "context_dim": int(context_dim),
            "resampler_kwargs": dict(resampler_kwargs or {}),
        }
        kwargs = dict(in_dim=context_dim, out_dim=context_dim, official_mask_quirk=official_mask_quirk)
        kwargs.update(resampler_kwargs or {})
        self.context_dim = context_dim
        self.text_proj_model = Resampler(**kwargs)
        self.pos_net = BoxEmbedding(out_dim=context_dim)
        patched = set(PATCHED_INDICES)
        self.adapter_modules = nn.ModuleList(
            IFAttnProcessor(hidden_size, context_dim, heads) if s.index in patched else UnpatchedProcessor()
            for s in SDXL_PROCESSOR_SLOTS
        )

    @property
    def hidden_size(self) -> int:
        return self.config["hidden_size"]

    @property
    def heads(self) -> int:
        return self.config["heads"]

    @property
    def official_mask_quirk(self) -> bool:
        return self.text_proj_model.official_mask_quirk

    def processor(self, comfy_key: tuple[str, int, int]) -> IFAttnProcessor:
        """The processor for a ComfyUI attn2 key ``("middle", 0, t)`` / ``("output", j, t)``, j in 0..2, t in 0..3."""
        key = tuple(comfy_key)
        if key not in COMFY_KEY_TO_INDEX:
            raise KeyError(f"IFAdapter does not patch layer {key}; patched layers: {sorted(COMFY_KEY_TO_INDEX)}")
        return self.adapter_modules[COMFY_KEY_TO_INDEX[key]]

    def processors(self) -> dict[tuple[str, int, int], IFAttnProcessor]:
        """All 16 patched processors keyed by ComfyUI ``(block, id, block_index)``."""
        return {s.comfy_key: self.adapter_modules[s.index] for s in PATCHED_SLOTS}

    # ------------------------------------------------------------------------------------------ instances

    def _stack_depths(self, text_hidden: Tensor | Sequence[Tensor] | Mapping[int, Tensor]) -> Tensor:
        if isinstance(text_hidden, Mapping):
            missing = [d for d in TEXT_DEPTHS if d not in text_hidden]
            if missing:
                raise KeyError(f"text_hidden needs CLIP hidden states {TEXT_DEPTHS}; missing {missing}")
            text_hidden = [text_hidden[d] for d in TEXT_DEPTHS]
        if not isinstance(text_hidden, Tensor):
            text_hidden = torch.stack(list(text_hidden), dim=1)
        if (
            text_hidden.dim() != 4
            or text_hidden.shape[1] != len(TEXT_DEPTHS)
            or text_hidden.shape[-1] != self.context_dim
        ):
            raise ValueError(
                f"text_hidden must be [n, 3, L, {self.context_dim}] (CLIP-L 768 + CLIP-G 1280 at hidden states "
                f"-2, -4, -6); got shape {tuple(text_hidden.shape)}"
            )
        return text_hidden

    def encode_instances(
        self,
        text_hidden: Tensor | Sequence[Tensor] | Mapping[int, Tensor],
        word_mask: Tensor,
        eot: Tensor,
        boxes: Tensor,
    ) -> Tensor:
        """Appearance tokens for n instances.

        Args:
            text_hidden: per-instance CLIP features ``[n, 3, L, 2048]`` in depth order -2, -4, -6 (or a sequence of
                three ``[n, L, 2048]``, or a mapping ``{-2: ..., -4: ..., -6: ...}``); channels = CLIP-L 768 ++ CLIP-G
                1280, penultimate-style hidden states without final LayerNorm.
            word_mask: ``[n, L]`` 1 at word tokens (tokenizer-1 attention mask without SOT and EoT).
            eot: ``[n, 2048]`` hidden state -2 of both encoders at the EoT position.
            boxes: ``[n, 4]`` normalised xyxy.
        Returns:
            ``[n, 13, 2048]``: 12 resampled tokens (depth-major) then the EoT token, all plus the box embedding.
        """
        tokens = self.encode_descriptions(text_hidden, word_mask, eot)
        if tuple(boxes.shape) != (tokens.shape[0], 4):
            raise ValueError(f"boxes must be [{tokens.shape[0]}, 4] normalised xyxy; got {tuple(boxes.shape)}")
        return self.add_boxes(tokens, boxes)

    def encode_descriptions(
        self,
        text_hidden: Tensor | Sequence[Tensor] | Mapping[int, Tensor],
        word_mask: Tensor,
        eot: Tensor,
    ) -> Tensor:
        """The box-free part of :meth:`encode_instances`: ``[n, 13, 2048]`` resampled tokens + EoT token.

        The box embedding is added after the resampler, so a layout over time encodes each description once and
        adds each frame's box with :meth:`add_boxes`.
        """
        text = self._stack_depths(text_hidden)
        n = text.shape[0]
        if tuple(eot.shape) != (n, self.context_dim):
            raise ValueError(f"eot must be [{n}, {self.context_dim}]; got {tuple(eot.shape)}")
        dtype = self.text_proj_model.proj_in.weight.dtype
        resampled = self.text_proj_model(text.to(dtype), word_mask).flatten(1, 2)  # [n, 12, C]
        return torch.cat([resampled, eot.to(dtype)[:, None, :]], dim=1)

    def add_boxes(self, tokens: Tensor, boxes: Tensor) -> Tensor:
        """``tokens`` ``[..., n, 13, C]`` plus the box embedding of ``boxes`` ``[..., n, 4]`` on every token."""
        dtype = self.text_proj_model.proj_in.weight.dtype
        pos = self.pos_net(boxes.reshape(-1, 4).to(dtype)).view(*boxes.shape[:-1], -1)
        return tokens + pos[..., None, :]

    def encode_uncond_descriptions(self, n: int, seq_len: int = 77, device: torch.device | str | None = None
                                   ) -> Tensor:
        """The box-free part of :meth:`encode_uncond` for ``n`` instances (zero descriptions): ``[n, 13, C]``."""
        dtype = self.text_proj_model.proj_in.weight.dtype
        text = torch.zeros(n, len(TEXT_DEPTHS), seq_len, self.context_dim, dtype=dtype, device=device)
        mask = torch.zeros(n, seq_len, dtype=torch.bool, device=device)
        eot = torch.zeros(n, self.context_dim, dtype=dtype, device=device)
        return self.encode_descriptions(text, mask, eot)

    def encode_uncond(self, boxes: Tensor, seq_len: int = 77) -> Tensor:
        """Tokens of the unconditional (CFG) branch: zero descriptions, zero EoT, empty word mask, boxes kept.

        With an empty word mask the resampler's latents attend only to themselves, so the result depends on the
        boxes alone. ``boxes`` ``[n, 4]`` -> ``[n, 13, 2048]``.
        """
        n = boxes.shape[0]
        dtype, device = self.text_proj_model.proj_in.weight.dtype, boxes.device
        text = torch.zeros(n, len(TEXT_DEPTHS), seq_len, self.context_dim, dtype=dtype, device=device)
        mask = torch.zeros(n, seq_len, dtype=torch.bool, device=device)
        eot = torch.zeros(n, self.context_dim, dtype=dtype, device=device)
        return self.encode_instances(text, mask, eot, boxes)
