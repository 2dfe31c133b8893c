"""The IFS verifier through a real image-text-to-text class: a tiny random-weight LLaVA (CLIP vision tower + Llama,
the ComfyUI-shipped CLIP vocabulary, a chat template) saved in the normal layout. Nothing downloads."""

from __future__ import annotations

import eval_tiny_models as tiny
import numpy as np
import pytest

from evaluate.metrics import ifs
from evaluate.models import paths
from evaluate.models.vlm import VlmVerifier


@pytest.fixture(scope="session")
def models_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("comfy") / "models"
    tiny.save_llava(root / "vlm" / "tiny-llava")
    tiny.save_clip(root / "clip" / "tiny-clip")
    return root


def _crops(n):
    rs = np.random.RandomState(3)
    return [rs.randint(0, 256, (20 + 5 * i, 30, 3)).astype(np.uint8) for i in range(n)]


def test_prompt_is_the_versioned_question_in_the_chat_template(models_root):
    v = VlmVerifier("tiny-llava", str(models_root), device="cpu")
    text = v.prompt("red dog")
    assert text == "user: <image>" + ifs.verification_prompt("red dog") + "assistant:"
    with pytest.raises(ValueError, match="IFS prompt version"):
        VlmVerifier("tiny-llava", str(models_root), device="cpu", prompt_version="ifs-v0")


def test_answers_batched_equal_one_by_one_and_parse(models_root):
    v = VlmVerifier("tiny-llava", str(models_root), device="cpu", batch_size=2, max_new_tokens=4)
    crops, descs = _crops(3), ["red dog", "a cat", "a blue car on a tree"]
    answers = v.answers(crops, descs)
    assert len(answers) == 3 and all(isinstance(a, str) for a in answers)
    assert answers == [v.answers([c], [d])[0] for c, d in zip(crops, descs)]
    assert answers == v.answers(crops, descs)  # greedy: deterministic
    verdicts = v.verdicts(crops, descs)
    assert verdicts == [ifs.parse_yes_no(a) for a in answers] and all(x in (True, False, None) for x in verdicts)
    rates = ifs.ifs_rates([True, False, True], {"tiny-llava": verdicts})
    assert 0.0 <= rates["tiny-llava"] <= 1.0
    with pytest.raises(ValueError, match="description 2"):
        v.answers(crops[:2], ["red dog", " "])


def test_missing_and_wrong_kind(models_root, tmp_path):
    with pytest.raises(paths.ModelNotFound, match="'Qwen/Qwen2-VL-2B-Instruct' not found: put it in .*Qwen--Qwen2-VL"):
        VlmVerifier("Qwen/Qwen2-VL-2B-Instruct", str(tmp_path))
    with pytest.raises(paths.WrongModelKind, match="tiny-clip' at .* is a 'clip' model; a vlm model must be one of"):
        VlmVerifier(str(models_root / "clip" / "tiny-clip"), allow_path=True)
