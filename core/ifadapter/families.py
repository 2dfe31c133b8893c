"""Which base models an IFAdapter fits: its text encoders, its patched layers and their slots in the file.

An adapter *family* says three things:

- the text encoders whose hidden states -2, -4, -6 (and EoT feature) the appearance tokens read, concatenated on the
  channel axis: SDXL CLIP-L 768 ++ OpenCLIP-G 1280 = 2048 (the released weights), SD1.x CLIP-L 768, SD2.x
  OpenCLIP-H 1024;
- the patched cross-attention layers, chosen by the paper's rule from the UNet's block layout
  (:func:`patched_layers`): the middle block and the first decoder stage that has cross-attention, transformer
  blocks 0..3 of each. On SDXL that is exactly the released code's 16 layers; on SD1.x / SD2.x it is the middle
  block and output blocks 3-5 (4 layers; their transformers are one block deep);
- the ``adapter_modules.<i>`` index of each patched layer: its position in diffusers' ``unet.attn_processors``
  order (:func:`processor_slots`), the released file's convention, applied to each family's UNet.

Pure python; the block layouts are ComfyUI ``unet_config`` dicts (``num_res_blocks``, ``transformer_depth``,
``transformer_depth_middle``, ``transformer_depth_output``) so a loaded model's own layout can be read the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

MAX_BLOCKS_PER_STACK = 4  # the released code patches transformer blocks 0-3 of each (10-deep) SDXL stack
Key = tuple[str, int, int]  # ComfyUI attn2 patch key (block, id, transformer index)


@dataclass(frozen=True)
class TextEncoder:
    """One CLIP text encoder the appearance tokens read: ComfyUI's token key ("l", "g", "h"), its width, and the
    string its Hugging Face tokenizer treats as a special padding token in the text ("!" for OpenCLIP ones)."""

    key: str
    width: int
    special: str | None = None

    @property
    def attr(self) -> str:
        """The attribute of ComfyUI's CLIP model / tokenizer holding it (``clip_l``, ``clip_g``, ``clip_h``)."""
        return f"clip_{self.key}"


@dataclass(frozen=True)
class ProcessorSlot:
    """One attention processor of a UNet: its index in ``adapter_modules``, diffusers name, ComfyUI key if patched."""

    index: int
    diffusers_name: str
    comfy_key: Key | None


@dataclass(frozen=True)
class BlockLayout:
    """Transformer depth of every attention site of a UNet, in ComfyUI's block numbering.

    ``input[i]``: input block i's depth (its level's blocks, ``num_res_blocks`` per level, downsamplers skipped);
    ``middle``: the middle block's; ``output[i]``: output block i's (decoder order, ``num_res_blocks + 1`` per level);
    ``res_blocks[l]``: ``num_res_blocks`` of level l (encoder order).
    """

    res_blocks: tuple[int, ...]
    input: tuple[int, ...]
    middle: int
    output: tuple[int, ...]

    @classmethod
    def from_unet_config(cls, cfg: Mapping) -> BlockLayout:
        """Read a ComfyUI ``unet_config`` (``model.model.model_config.unet_config``, as ComfyUI's model detection
        writes it: per-block depth lists; ``num_res_blocks`` a list or one int for every level)."""
        nrb = cfg.get("num_res_blocks")
        levels = len(list(cfg.get("channel_mult") or ()))
        nrb = [int(nrb)] * levels if isinstance(nrb, int) else [int(v) for v in (nrb or ())]
        td_in = [int(v) for v in (cfg.get("transformer_depth") or ())]
        td_out = [int(v) for v in (cfg.get("transformer_depth_output") or ())]
        mid = cfg.get("transformer_depth_middle")
        mid = (td_in[-1] if td_in else 0) if mid is None else int(mid)
        if not nrb or len(td_in) != sum(nrb) or len(td_out) != sum(n + 1 for n in nrb):
            raise ValueError(f"unet_config has num_res_blocks {nrb} but transformer depths {td_in} (input) / "
                             f"{td_out} (output): not a UNet block layout this pack can read")
        # ComfyUI builds output blocks from the end of transformer_depth_output (pop): reverse into decoder order
        return cls(tuple(nrb), tuple(td_in), max(mid, 0), tuple(reversed(td_out)))

    def output_level(self, block: int) -> int:
        """The encoder-order level of output block ``block``."""
        i = block
        for level in reversed(range(len(self.res_blocks))):
            if i < self.res_blocks[level] + 1:
                return level
            i -= self.res_blocks[level] + 1
        raise ValueError(f"output block {block} does not exist (the UNet has {len(self.output)})")

    def attention_layers(self) -> set[Key]:
        """Every ComfyUI attn2 key this UNet has (input, middle, output)."""
        keys: set[Key] = set()
        block = 0
        for level, n in enumerate(self.res_blocks):
            for j in range(n):
                block += 1  # input block 0 is the stem; each level ends with a downsampler (its own id)
                keys.update(("input", block, t) for t in range(self.input[sum(self.res_blocks[:level]) + j]))
            block += 1
        keys.update(("middle", 0, t) for t in range(self.middle))
        for i, depth in enumerate(self.output):
            keys.update(("output", i, t) for t in range(depth))
        return keys


def patched_layers(layout: BlockLayout) -> tuple[Key, ...]:
    """The paper's rule for which cross-attention layers IFAdapter patches: those that shape foreground objects,
    the middle block and the first decoder stage that has cross-attention (all its output blocks), transformer
    blocks 0..3 of each. Sorted ComfyUI keys.

    SDXL: ``("middle", 0, 0..3)`` and ``("output", 0..2, 0..3)`` - the released code's 16 layers. SD1.x / SD2.x (no
    attention at the lowest decoder level): ``("middle", 0, 0)`` and ``("output", 3..5, 0)``.
    """
    keys: list[Key] = [("middle", 0, t) for t in range(min(layout.middle, MAX_BLOCKS_PER_STACK))]
    start = 0
    for level in reversed(range(len(layout.res_blocks))):
        blocks = range(start, start + layout.res_blocks[level] + 1)
        if any(layout.output[i] for i in blocks):
            keys += [("output", i, t) for i in blocks for t in range(min(layout.output[i], MAX_BLOCKS_PER_STACK))]
            break
        start += layout.res_blocks[level] + 1
    return tuple(sorted(keys))


def processor_slots(layout: BlockLayout, patched: Sequence[Key]) -> tuple[ProcessorSlot, ...]:
    """The UNet's attention processors in diffusers' ``unet.attn_processors`` order: ``down_blocks``, then
    ``up_blocks``, then ``mid_block`` (module registration order), attn1 before attn2 inside a transformer block;
    levels without attention have no processors. ``comfy_key`` is set on the ``patched`` attn2 layers."""
    patched_set = set(patched)
    slots: list[ProcessorSlot] = []

    def add(prefix: str, depth: int, comfy: tuple[str, int] | None) -> None:
        for t in range(depth):
            for which in (1, 2):
                key = (comfy[0], comfy[1], t) if comfy is not None and which == 2 else None
                slots.append(ProcessorSlot(len(slots), f"{prefix}.transformer_blocks.{t}.attn{which}.processor",
                                           key if key in patched_set else None))

    first = 0
    for level, n in enumerate(layout.res_blocks):
        for j in range(n):
            add(f"down_blocks.{level}.attentions.{j}", layout.input[first + j], None)
        first += n
    block = 0
    for u, level in enumerate(reversed(range(len(layout.res_blocks)))):
        for j in range(layout.res_blocks[level] + 1):
            add(f"up_blocks.{u}.attentions.{j}", layout.output[block], ("output", block))
            block += 1
    add("mid_block.attentions.0", layout.middle, ("middle", 0))
    return tuple(slots)


@dataclass(frozen=True)
class Family:
    """A base-model family an IFAdapter is trained for (see the module docstring)."""

    name: str  # the metadata value: "sdxl", "sd15", "sd2"
    label: str  # for messages: "SDXL", "SD1.5", "SD2.x"
    encoders: tuple[TextEncoder, ...]
    blocks: BlockLayout
    adm_in_channels: int | None  # the UNet's class-conditioning width (SDXL's micro-conditioning 2816)

    @property
    def context_dim(self) -> int:
        """Width of the concatenated text features (and of the tokens): the sum of the encoders' widths."""
        return sum(e.width for e in self.encoders)

    @cached_property
    def layers(self) -> tuple[Key, ...]:
        return patched_layers(self.blocks)

    @cached_property
    def slots(self) -> tuple[ProcessorSlot, ...]:
        return processor_slots(self.blocks, self.layers)

    @cached_property
    def key_to_index(self) -> dict[Key, int]:
        return {s.comfy_key: s.index for s in self.slots if s.comfy_key is not None}

    def describe(self) -> dict:
        """What the exported file's metadata records about the family (checked against the family on load)."""
        return {
            "family": self.name,
            "text_encoders": [[e.key, e.width] for e in self.encoders],
            "layers": [[*key, index] for key, index in sorted(self.key_to_index.items())],
        }


def _layout(nrb: list[int], td: list[int], mid: int, td_out: list[int]) -> BlockLayout:
    return BlockLayout.from_unet_config({"num_res_blocks": nrb, "transformer_depth": td,
                                         "transformer_depth_middle": mid, "transformer_depth_output": td_out})


# ComfyUI model_detection's layouts of each family's UNet
_SD_BLOCKS = _layout([2, 2, 2, 2], [1, 1, 1, 1, 1, 1, 0, 0], 1, [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0])
_SDXL_BLOCKS = _layout([2, 2, 2], [0, 0, 2, 2, 10, 10], 10, [0, 0, 0, 2, 2, 2, 10, 10, 10])
CLIP_L, CLIP_G, CLIP_H = TextEncoder("l", 768), TextEncoder("g", 1280, "!"), TextEncoder("h", 1024, "!")

FAMILIES: dict[str, Family] = {
    "sdxl": Family("sdxl", "SDXL", (CLIP_L, CLIP_G), _SDXL_BLOCKS, 2816),
    "sd15": Family("sd15", "SD1.5", (CLIP_L,), _SD_BLOCKS, None),
    "sd2": Family("sd2", "SD2.x", (CLIP_H,), _SD_BLOCKS, None),
}
DEFAULT_FAMILY = "sdxl"  # files without a family (the released weights) are SDXL adapters


def family(name: str) -> Family:
    """The family called ``name``; ValueError naming the known ones otherwise."""
    if name not in FAMILIES:
        raise ValueError(f"unknown IFAdapter family {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def detect_family(unet_config: Mapping) -> Family | None:
    """The family of a ComfyUI UNet (its ``unet_config``): cross-attention width and class-conditioning width must
    match (SDXL: 2048 and 2816; SD1.x: 768 and none; SD2.x: 1024 and none). None for anything else (the SDXL
    refiner, SD2 unCLIP, other architectures)."""
    ctx, adm = unet_config.get("context_dim"), unet_config.get("adm_in_channels")
    for fam in FAMILIES.values():
        if ctx == fam.context_dim and adm == fam.adm_in_channels:
            return fam
    return None


def describe_model(unet_config: Mapping) -> str:
    """A short description of a UNet for messages: its family, or its cross-attention / conditioning widths."""
    fam = detect_family(unet_config)
    if fam is not None:
        return f"{fam.label} (cross-attention width {fam.context_dim})"
    ctx, adm = unet_config.get("context_dim"), unet_config.get("adm_in_channels")
    guess = {1280: "the SDXL refiner", 1024: "SD2.x unCLIP", 4096: "a T5-conditioned model"}.get(ctx)
    what = guess or "an unknown model"
    return f"{what} (cross-attention width {ctx}, class-conditioning width {adm})"


def layer_widths(unet_config: Mapping, keys: Sequence[Key]) -> dict[Key, tuple[int, int]]:
    """``{key: (width, heads)}`` of a ComfyUI UNet's attn2 layers ``keys`` (middle or output blocks): width
    ``model_channels * channel_mult[level]``, heads ``width / num_head_channels`` (SDXL, SD2.x) or ``num_heads``
    (SD1.x)."""
    layout = BlockLayout.from_unet_config(unet_config)
    mult = [int(m) for m in unet_config.get("channel_mult") or ()]
    base, head_ch = int(unet_config.get("model_channels") or 0), unet_config.get("num_head_channels", -1)
    out = {}
    for key in keys:
        level = len(mult) - 1 if key[0] == "middle" else layout.output_level(key[1])
        width = base * mult[level]
        heads = width // head_ch if head_ch and head_ch > 0 else int(unet_config.get("num_heads") or 0)
        out[tuple(key)] = (width, heads)
    return out


def unet_refusal(unet_config: Mapping, fam: Family, layers: Sequence[Key], hidden_size: int | None = None,
                 heads: int | None = None) -> str | None:
    """None if a ComfyUI UNet (its ``unet_config``) can take an IFAdapter of family ``fam`` patching ``layers``
    with ``hidden_size`` / ``heads`` (not checked when None), else one message saying what the adapter needs and
    what the model is."""
    found = detect_family(unet_config)
    if found is None or found.name != fam.name:  # by name: the pack and the trainer may import this twice
        other = (f"load an IFAdapter trained for {found.label}" if found is not None
                 else "this model cannot take an IFAdapter")
        return (f"this IFAdapter was trained for {fam.label} models (text width {fam.context_dim}, "
                f"{len(layers)} patched layers); the connected model is {describe_model(unet_config)}. Connect an "
                f"{fam.label} model (base or fine-tune), or {other}.")
    try:
        has = BlockLayout.from_unet_config(unet_config).attention_layers()
        widths = layer_widths(unet_config, [k for k in layers if tuple(k) in has])
    except (ValueError, IndexError, TypeError) as e:
        return f"this {fam.label} model's block layout cannot be read ({e}); IFAdapter needs to find its layers"
    missing = [tuple(k) for k in layers if tuple(k) not in has]
    if missing:
        return (f"this {fam.label} IFAdapter patches the cross-attention layers {list(map(tuple, layers))}; the "
                f"connected model has no {missing} (an {fam.label} model with another block layout)")
    wrong = {k: v for k, v in widths.items() if hidden_size is not None and v != (hidden_size, heads)}
    if wrong:
        k, (w, h) = next(iter(wrong.items()))
        return (f"this IFAdapter was built for {hidden_size}-wide layers with {heads} heads, but the model's layer "
                f"{k} is {w} wide with {h} heads")
    return None
