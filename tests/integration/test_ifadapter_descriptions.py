"""IFAdapter descriptions tokenised like the official pipeline, checked against transformers' CLIPTokenizer with the
vocabulary ComfyUI ships (``comfy/sd1_tokenizer``): raw text (parentheses, weight syntax, backslashes are text),
``padding="max_length", max_length=77, truncation=True`` for SDXL's two tokenizers (pad EoT / pad "!")."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.integration

TEXTS = [
    "a cute dog",
    "a (cute) dog",
    "(red:1.3) car",
    r"a \(escaped\) word",
    "((very)) [old] {house}: 50% off, 3.5 m tall; back\\slash",
    "émigré café naïve — “quoted” text, 東京",
    "  spaces   and\ttabs\nnewlines  ",
    "",
    " ".join(f"word{i}" for i in range(80)),  # more than 75 tokens
    "a " * 70 + "supercalifragilisticexpialidocious trailing words",  # a long word crossing token 75
    "(" * 40 + "x" + ")" * 40,
]


@pytest.fixture(scope="module")
def sdxl_clip(comfy):
    return comfy.node_class("IFATest_TinyCheckpointLoader")().load("sdxl", 0)[1]


@pytest.fixture(scope="module")
def reference_tokenizers(comfy):
    import comfy.sd1_clip as sd1_clip  # the vocabulary ComfyUI ships
    from transformers import CLIPTokenizer

    path = str(Path(sd1_clip.__file__).parent / "sd1_tokenizer")
    return CLIPTokenizer.from_pretrained(path), CLIPTokenizer.from_pretrained(path, pad_token="!")


def _mod(comfy):
    return sys.modules[comfy.node_class("IFAEncodeAppearanceTokens").__module__]


@pytest.mark.parametrize("text", TEXTS)
def test_token_ids_equal_the_clip_tokenizer(comfy, sdxl_clip, reference_tokenizers, text):
    tok_mod = sys.modules[_mod(comfy).description_tokens.__module__]
    got, cut = tok_mod.description_tokens(sdxl_clip, text)
    for key, ref_tok in zip(("l", "g"), reference_tokenizers):
        ref = ref_tok(text, padding="max_length", max_length=77, truncation=True)["input_ids"]
        assert [t[0] for t in got[key][0]] == ref, key
    full = reference_tokenizers[0](text, add_special_tokens=False)["input_ids"]
    assert bool(cut) == (len(full) > 75)


def test_truncation_warns_with_the_text_that_was_cut(comfy, sdxl_clip, caplog):
    tok_mod = sys.modules[_mod(comfy).description_tokens.__module__]
    text = "a " * 74 + "supercalifragilisticexpialidocious"
    with caplog.at_level(logging.WARNING, logger="comfyui-ifadapter"):
        got, cut = tok_mod.description_tokens(sdxl_clip, text)
    assert cut and cut in "supercalifragilisticexpialidocious" and cut != "supercalifragilisticexpialidocious"
    assert any(cut in r.getMessage() and "75" in r.getMessage() for r in caplog.records)
    ids = [t[0] for t in got["l"][0]]
    assert len(ids) == 77 and ids[76] == 49407 and ids[75] != 49407  # exactly 75 tokens, then EoT


def test_weight_syntax_is_text_by_default_and_stripped_on_request(comfy, sdxl_clip):
    mod = _mod(comfy)
    h, e, m = mod.encode_descriptions(sdxl_clip, ["(red:1.3) car", "red car", r"a \(red\) car"])
    assert not torch.equal(h[0], h[1])  # official: "(", ":", "1", ".", "3", ")" are tokens
    assert m[0].sum() == 8 and m[1].sum() == 2 and m[2].sum() > 4  # \ ( ) are tokens too
    hs, es, ms = mod.encode_descriptions(sdxl_clip, ["(red:1.3) car", "red car"], "strip (ComfyUI)")
    assert torch.equal(hs[0], hs[1]) and torch.equal(es[0], es[1]) and torch.equal(hs[1], h[1])
    with pytest.raises(ValueError, match="weight_syntax"):
        mod.encode_descriptions(sdxl_clip, ["x"], "guess")
