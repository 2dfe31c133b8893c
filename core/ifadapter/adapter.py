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

That is the SDXL family (the released weights). ``IFAdapter(family="sd15")`` (or ``"sd2"``) builds the same modules
for one text encoder (CLIP-L 768 / OpenCLIP-H 1024 wide tokens) and the SD UNet's 32 attention processors, of which
4 are patched: up_blocks.1.attentions.{0,1,2}.transformer_blocks.0.attn2 (13, 15, 17; ComfyUI ``("output", 3..5,
0)``) and mid_block (31; ``("middle", 0, 0)``). See :mod:`.families`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from .box_embedding import BoxEmbedding
from .families import DEFAULT_FAMILY, FAMILIES, ProcessorSlot
from .resampler import Resampler
from .semantic_map import IFAttnProcessor

TOKENS_PER_INSTANCE = 13  # 3 depths x 4 resampled tokens + the EoT token
TEXT_DEPTHS = (-2, -4, -6)  # CLIP hidden_states used, in this order


SDXL_PROCESSOR_SLOTS: tuple[ProcessorSlot, ...] = FAMILIES["sdxl"].slots
PATCHED_SLOTS: tuple[ProcessorSlot, ...] = tuple(s for s in SDXL_PROCESSOR_SLOTS if s.comfy_key is not None)
PATCHED_INDICES: tuple[int, ...] = tuple(s.index for s in PATCHED_SLOTS)
COMFY_KEY_TO_INDEX: dict[tuple[str, int, int], int] = {s.comfy_key: s.index for s in PATCHED_SLOTS}


class UnpatchedProcessor(nn.Module):
    """Parameter-free placeholder for a UNet attention layer IFAdapter leaves alone (keeps indices aligned)."""


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
        context_dim: int | None = None,
        resampler_kwargs: Mapping | None = None,
        family: str = DEFAULT_FAMILY,
    ) -> None:
        super().__init__()
        fam = FAMILIES.get(family) if isinstance(family, str) else None
        if fam is None:
            raise ValueError(f"unknown IFAdapter family {family!r}; known: {', '.join(FAMILIES)}")
        if context_dim is None:
            context_dim = fam.context_dim
        if context_dim != fam.context_dim:
            raise ValueError(f"an {fam.label} IFAdapter reads {fam.context_dim}-wide text features "
                             f"({' + '.join(str(e.width) for e in fam.encoders)}); context_dim {context_dim} given")
        self.family = fam
        self.config = {
            "hidden_size": int(hidden_size),
            "heads": int(heads),
            "context_dim": int(context_dim),
            "resampler_kwargs": dict(resampler_kwargs or {}),
            "family": fam.name,
        }
        kwargs = dict(in_dim=context_dim, out_dim=context_dim, official_mask_quirk=official_mask_quirk)
        kwargs.update(resampler_kwargs or {})
        self.context_dim = context_dim
        self.text_proj_model = Resampler(**kwargs)
        self.pos_net = BoxEmbedding(out_dim=context_dim)
        self._key_to_index = fam.key_to_index
        patched = set(self._key_to_index.values())
        self.adapter_modules = nn.ModuleList(
            IFAttnProcessor(hidden_size, context_dim, heads) if s.index in patched else UnpatchedProcessor()
            for s in fam.slots
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

    @property
    def layer_keys(self) -> tuple[tuple[str, int, int], ...]:
        """The patched layers' ComfyUI attn2 keys, sorted (16 for SDXL, 4 for SD1.5 / SD2.x)."""
        return tuple(sorted(self._key_to_index))

    def processor(self, comfy_key: tuple[str, int, int]) -> IFAttnProcessor:
        """The processor for a patched layer's ComfyUI attn2 key, e.g. ``("middle", 0, t)`` / ``("output", j, t)``
        (SDXL: j in 0..2, t in 0..3; SD1.5: ``("middle", 0, 0)``, ``("output", 3..5, 0)``)."""
        key = tuple(comfy_key)
        if key not in self._key_to_index:
            raise KeyError(f"this {self.family.label} IFAdapter does not patch layer {key}; patched layers: "
                           f"{list(self.layer_keys)}")
        return self.adapter_modules[self._key_to_index[key]]

    def processors(self) -> dict[tuple[str, int, int], IFAttnProcessor]:
        """All patched processors keyed by ComfyUI ``(block, id, block_index)``."""
        return {key: self.adapter_modules[i] for key, i in sorted(self._key_to_index.items())}

    @property
    def max_obj(self) -> int:
        """Instance slots of the fusion softmax (10)."""
        return next(iter(self.processors().values())).max_obj

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
            widths = " + ".join(f"CLIP-{e.key.upper()} {e.width}" for e in self.family.encoders)
            raise ValueError(
                f"text_hidden must be [n, 3, L, {self.context_dim}] ({widths} at hidden states -2, -4, -6); got "
                f"shape {tuple(text_hidden.shape)}"
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
            text_hidden: per-instance CLIP features ``[n, 3, L, C]`` in depth order -2, -4, -6 (or a sequence of
                three ``[n, L, C]``, or a mapping ``{-2: ..., -4: ..., -6: ...}``); channels = the family's encoders
                concatenated (SDXL: CLIP-L 768 ++ CLIP-G 1280 = 2048; SD1.5: CLIP-L 768; SD2.x: OpenCLIP-H 1024),
                hidden states without final LayerNorm.
            word_mask: ``[n, L]`` 1 at word tokens (tokenizer-1 attention mask without SOT and EoT).
            eot: ``[n, C]`` hidden state -2 of the encoder(s) at the EoT position.
            boxes: ``[n, 4]`` normalised xyxy.
        Returns:
            ``[n, 13, C]``: 12 resampled tokens (depth-major) then the EoT token, all plus the box embedding.
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
        """The box-free part of :meth:`encode_instances`: ``[n, 13, C]`` resampled tokens + EoT token.

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
        boxes alone. ``boxes`` ``[n, 4]`` -> ``[n, 13, C]``.
        """
        n = boxes.shape[0]
        dtype, device = self.text_proj_model.proj_in.weight.dtype, boxes.device
        text = torch.zeros(n, len(TEXT_DEPTHS), seq_len, self.context_dim, dtype=dtype, device=device)
        mask = torch.zeros(n, seq_len, dtype=torch.bool, device=device)
        eot = torch.zeros(n, self.context_dim, dtype=dtype, device=device)
        return self.encode_instances(text, mask, eot, boxes)
