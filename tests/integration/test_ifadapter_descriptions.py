"""IFAdapter descriptions tokenised like the official pipeline, checked against transformers' CLIPTokenizer with the
vocabulary ComfyUI ships (``comfy/sd1_tokenizer``): raw text (parentheses, weight syntax, backslashes are text),
``padding="max_length", max_length=77, truncation=True`` for SDXL's two tokenizers (pad EoT / pad "!", which makes
every "!" of the text token 0 for the second), the EoT where the official reads it (``sum(attention_mask) - 1`` of
tokenizer 1), and the description as written (no stripping)."""
from __future__ import annotations

import json
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
    # "!" is the second tokenizer's pad token, a special token: 0, and the text is split there
    "wow!!! great",
    "a dog!) and a cat?!",
    "!",
    "hi !! there!",
    "a!b!c",
    "a red car! " * 20,  # over 75 tokens for both, cut at another word
    "stop" + "!" * 80,  # over 75 tokens for the second tokenizer only
    # a literal end-of-text token: the EoT id, but not the EoT the official reads
    "x<|endoftext|>y",
    "a <|endoftext|> b!",
    # control characters at the ends are tokens, not whitespace
    "\x1ca dog\x1f",
    "\x1d\x1ea\x1c\x1fdog\x1e",
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
    got, cut, eot = tok_mod.description_tokens(sdxl_clip, text)
    for key, ref_tok in zip(("l", "g"), reference_tokenizers):
        ref = ref_tok(text, padding="max_length", max_length=77, truncation=True)
        assert [t[0] for t in got[key][0]] == ref["input_ids"], key
        if key == "l":
            assert eot == sum(ref["attention_mask"]) - 1  # the official EoT position
    full = [len(t(text, add_special_tokens=False)["input_ids"]) for t in reference_tokenizers]
    assert bool(cut) == (max(full) > 75)


def test_truncation_warns_with_the_text_that_was_cut(comfy, sdxl_clip, caplog):
    tok_mod = sys.modules[_mod(comfy).description_tokens.__module__]
    text = "a " * 74 + "supercalifragilisticexpialidocious"
    with caplog.at_level(logging.WARNING, logger="comfyui-ifadapter"):
        got, cut, _ = tok_mod.description_tokens(sdxl_clip, text)
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


def test_literal_end_of_text_is_a_word_and_the_eot_is_after_the_text(comfy, sdxl_clip, reference_tokenizers):
    mod = _mod(comfy)
    text = "a <|endoftext|> dog"
    ref = reference_tokenizers[0](text, padding="max_length", max_length=77, truncation=True)
    official_eot = sum(ref["attention_mask"]) - 1
    assert ref["input_ids"][2] == 49407 and official_eot == 4
    h, e, m = mod.encode_descriptions(sdxl_clip, [text])
    assert m[0].nonzero().flatten().tolist() == [1, 2, 3]  # the words: attention mask less BoS and EoT
    assert torch.equal(e[0], h[0, 0, official_eot])


@pytest.fixture(scope="module")
def tiny_adapter(comfy):
    sys.modules[comfy.node_class("IFATest_SaveLatentTensor").__module__].write_tiny_ifadapter(
        str(comfy.models_dir / "ifadapter" / "tiny_ifa_desc.safetensors"), seed=0, alpha=0.5)
    return comfy.node_class("IFAAdapterLoader")().load("tiny_ifa_desc.safetensors")[0]


def test_encode_node_tokenises_the_description_as_written(comfy, sdxl_clip, tiny_adapter):
    """The official tokenises the raw description: control characters at its ends (which str.strip() would drop)
    are tokens, so they change the tokens."""
    def tokens(desc):
        layout = json.dumps({"format": "instance-layout", "version": 1, "width": 64, "height": 64, "instances": [
            {"description": desc, "regions": [{"kind": "box", "box": [8, 8, 40, 40]}]}]})
        lay = comfy.node_class("IFAInstanceLayout")().build(64, 64, layout)["result"][0]
        return comfy.node_class("IFAEncodeAppearanceTokens")().encode(sdxl_clip, tiny_adapter, lay)[0]

    raw, plain = tokens("\x1ca dog\x1f"), tokens("a dog")
    assert raw.descriptions == ("\x1ca dog\x1f",)
    h, e, m = _mod(comfy).encode_descriptions(sdxl_clip, ["\x1ca dog\x1f", "a dog"])
    assert int(m[0].sum()) == 4 and int(m[1].sum()) == 2
    assert not torch.equal(raw.cond, plain.cond)


def test_random_texts_with_special_tokens_equal_the_clip_tokenizer(comfy, sdxl_clip, reference_tokenizers):
    import random

    tok_mod = sys.modules[_mod(comfy).description_tokens.__module__]
    rnd = random.Random(0)
    parts = ["!", "!!", "!)", "a", "dog", " ", "  ", "?", "(", ".", "é", "東", "<|endoftext|>", "<|startoftext|>",
             "\x1c", "\t", "'s", "1", "\u0301"]
    for _ in range(300):
        text = "".join(rnd.choice(parts) for _ in range(rnd.randint(0, 40)))
        got, _, eot = tok_mod.description_tokens(sdxl_clip, text)
        for key, ref_tok in zip(("l", "g"), reference_tokenizers):
            ref = ref_tok(text, padding="max_length", max_length=77, truncation=True)
            assert [t[0] for t in got[key][0]] == ref["input_ids"], (key, text)
            if key == "l":
                assert eot == sum(ref["attention_mask"]) - 1, text
