"""Token ids of an IFAdapter instance description, as the official pipeline makes them.

The official code runs each description through SDXL's two CLIP tokenizers as raw text: ``padding="max_length",
max_length=77, truncation=True``. So

- every character is text: ``a (cute) dog``, ``(red:1.3) car`` and ``a \\(escaped\\) word`` keep their ``(``,
  ``:``, digits and backslashes as tokens (ComfyUI's prompt-weight syntax means nothing there);
- a description longer than 75 tokens is cut after exactly 75 tokens (then EoT), wherever that falls inside a word;
- SDXL's second tokenizer (OpenCLIP-G) is loaded with ``pad_token="!"``, which makes ``!`` a special token: every
  ``!`` of the text becomes its own token, id 0 (the padding id), and splits the text there (``wow!!!`` is
  ``wow``, 0, 0, 0 there, ``wow`` + ``!!!`` for CLIP-L), so the two encoders can count different lengths;
- a literal ``<|endoftext|>`` in the text is the EoT id, but the EoT the official reads (``sum(attention_mask) - 1``
  of tokenizer 1) is the one after the text: :attr:`DescriptionTokens.eot`;
- the text is not stripped (the tokenizer drops ordinary whitespace at the ends itself; control characters such as
  ``\x1c`` are tokens).

:func:`description_tokens` reproduces that with the tokenizer ComfyUI loaded for the CLIP (the same vocabulary and
BPE); ComfyUI's own ``clip.tokenize`` would parse weight syntax and split long prompts at word boundaries. The
option ``weight_syntax="strip (ComfyUI)"`` instead takes ComfyUI's parse (syntax removed, weights dropped), then
truncates the same way.
"""
from __future__ import annotations

import logging
from typing import NamedTuple

log = logging.getLogger("comfyui-ifadapter")

WEIGHT_SYNTAX = ("keep as text (official)", "strip (ComfyUI)")
MAX_WORDS = 75  # 77 positions: BoS + 75 tokens + EoT
PAD_TEXT_G = "!"  # the official tokenizer_2's pad_token: a special token, also where it occurs in the text
SDXL_ENCODERS: tuple[tuple[str, str | None], ...] = (("l", None), ("g", PAD_TEXT_G))


class DescriptionTokens(NamedTuple):
    """What :func:`description_tokens` returns."""

    tokens: dict  # {"l": [[(id, 1.0)] * 77], "g": [[(id, 1.0)] * 77]}, the form clip.encode_from_tokens takes
    cut: str  # the text that did not fit ("" when nothing was cut)
    eot: int  # the EoT position of tokenizer 1 (CLIP-L), 1 + its content tokens: where the official reads e_i


def _pad_token(clip, key: str) -> int:
    """The padding id of encoder ``key`` ("l": EoT, "g" / "h": 0), read from ComfyUI's tokenisation of ""."""
    chunk = clip.tokenize("")[key][0]
    return int(chunk[-1][0])


def _content_ids_raw(sd_tokenizer, text: str, special: str | None = None) -> list[int]:
    """The raw text through the CLIP BPE tokenizer, without BoS / EoT. With ``special``, that string is a special
    token as transformers treats one: the text is split at each occurrence, each piece tokenised on its own, and
    the occurrence becomes the string's vocabulary id."""
    tok = sd_tokenizer.tokenizer
    if special is None:
        return [int(i) for i in tok(text, add_special_tokens=False)["input_ids"]]
    sid = int(tok.convert_tokens_to_ids(special))
    out: list[int] = []
    for k, piece in enumerate(text.split(special)):
        if k:
            out.append(sid)
        if piece:
            out += _content_ids_raw(sd_tokenizer, piece)
    return out


def _content_ids_comfy(clip, key: str, text: str, end_token: int) -> list[int]:
    """ComfyUI's parse (weight syntax removed, long prompts chunked): the tokens of every chunk, BoS/EoT/pad left
    out."""
    out = []
    for chunk in clip.tokenize(text)[key]:
        for t in chunk[1:]:
            tid = t[0]
            if not isinstance(tid, int):
                raise ValueError(f"description {text!r}: textual-inversion embeddings are not supported in IFAdapter "
                                 "descriptions; write the words instead")
            if tid == end_token:
                break
            out.append(tid)
    return out


def description_tokens(clip, text: str, weight_syntax: str = WEIGHT_SYNTAX[0],
                       encoders: tuple[tuple[str, str | None], ...] = SDXL_ENCODERS) -> DescriptionTokens:
    """77-token ids per encoder for ``text``, the text that did not fit ("" when nothing was cut) and the EoT
    position the official reads.

    ``encoders`` are (ComfyUI token key, the string the Hugging Face tokenizer treats as a special token): SDXL's
    ``("l", None), ("g", "!")`` by default; an SD1.5 adapter reads ``("l", None)`` only, an SD2.x one
    ``("h", "!")`` (the SD2 tokenizer's pad token is ``!`` too). Returns (tokens, cut, eot) with tokens
    ``{"l": [[(id, 1.0)] * 77], "g": [[(id, 1.0)] * 77]}`` in the form ``clip.encode_from_tokens`` takes (one chunk
    per encoder): BoS, the first 75 content tokens of that encoder's tokenizer, EoT, then its padding; the EoT
    position is the first encoder's. ``weight_syntax="strip (ComfyUI)"`` takes ComfyUI's own tokenisation after
    its parse (``!`` stays ComfyUI's token there).
    """
    if weight_syntax not in WEIGHT_SYNTAX:
        raise ValueError(f"weight_syntax must be one of {', '.join(WEIGHT_SYNTAX)}; got {weight_syntax!r}")
    tok = getattr(clip, "tokenizer", None)
    if tok is None or not all(hasattr(tok, f"clip_{key}") for key, _ in encoders):
        names = " and ".join(f"clip_{key}" for key, _ in encoders)
        raise ValueError(f"these IFAdapter descriptions need a CLIP with the tokenizers {names}")
    out: dict = {}
    cut = ""
    eot = 0
    for n, (key, special) in enumerate(encoders):
        sd_tok = getattr(tok, f"clip_{key}")
        start, end = int(sd_tok.start_token), int(sd_tok.end_token)
        if weight_syntax == WEIGHT_SYNTAX[0]:
            ids = _content_ids_raw(sd_tok, text, special)
        else:
            ids = _content_ids_comfy(clip, key, text, end)
        if len(ids) > MAX_WORDS and not cut:
            cut = sd_tok.tokenizer.decode(ids[MAX_WORDS:]).strip()
        ids = ids[:MAX_WORDS]
        if n == 0:
            eot = 1 + len(ids)
        pad = _pad_token(clip, key)
        row = [start, *ids, end] + [pad] * (MAX_WORDS - len(ids))
        out[key] = [[(i, 1.0) for i in row]]
    if cut:
        log.warning("[comfyui-ifadapter] description %r is longer than %d tokens; IFAdapter (like the official code) "
                    "reads the first %d, so this was cut: %r", text, MAX_WORDS, MAX_WORDS, cut)
    return DescriptionTokens(out, cut, eot)
