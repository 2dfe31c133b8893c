"""The trainer's ``[eval]`` metrics (``train/engine/eval_metrics.py``) through the evaluation suite's real models:
tiny random-weight CLIP, OWLv2 and LLaVA saved in the normal layout (``tests/evaluate/eval_tiny_models.py``), on
drawn images. Nothing downloads."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "evaluate"))
import eval_tiny_models as tiny  # noqa: E402

from core.layout import Layout  # noqa: E402
from evaluate.metrics import clip_scores, ifs  # noqa: E402
from evaluate.metrics.crops import crop_box  # noqa: E402
from evaluate.metrics.detection import Detection  # noqa: E402
from evaluate.metrics.ground_truth import ground_truth  # noqa: E402
from evaluate.models.clip import ClipEmbedder  # noqa: E402
from evaluate.models.vlm import VlmVerifier  # noqa: E402
from train.engine.config import ConfigError, EvalConfig, from_dict  # noqa: E402
from train.engine.eval_metrics import METRICS, MetricScorer  # noqa: E402

LAYOUT = {"format": "instance-layout", "version": 1, "width": 64, "height": 64, "prompt": "shapes on grey",
          "instances": [{"description": "red circle", "regions": [{"kind": "box", "box": [4, 4, 36, 36]}]},
                        {"description": "blue square", "regions": [{"kind": "box", "box": [28, 24, 60, 60]}]}]}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    tiny.save_clip(root / "clip" / "tiny-clip")
    tiny.save_owlv2(root / "detection" / "tiny-owlv2")
    tiny.save_llava(root / "vlm" / "tiny-llava")
    return root


def _cfg(models, metrics, **kw):
    return EvalConfig(every=1, metrics=metrics, models_dir=str(models), clip="tiny-clip", detector="tiny-owlv2",
                      vlm="tiny-llava", **kw)


def _items():
    lay = Layout.from_json(json.dumps(LAYOUT))
    rs = np.random.RandomState(0)
    return [(lay, rs.randint(0, 256, (64, 64, 3)).astype(np.uint8)) for _ in range(2)]


def test_clip_metrics_equal_the_suite_on_the_same_model(models):
    items = _items()
    got = MetricScorer(_cfg(models, ["clip_score", "instance_clip_score", "colour_binding", "texture_binding"]),
                       "cpu").score(items)
    clip = ClipEmbedder("tiny-clip", str(models), device="cpu")
    images = [im for _, im in items]
    assert got["clip_score"] == pytest.approx(clip_scores.clip_score(clip.images(images),
                                                                     clip.texts(["shapes on grey"] * 2)))
    per_image = []
    for lay, im in items:
        crops = [crop_box(im, g.box) for g in ground_truth(lay, (64, 64))]
        per_image.append(clip_scores.image_instance_clip_score(clip.images(crops),
                                                                clip.texts(["red circle", "blue square"])))
    assert got["instance_clip_score"] == pytest.approx(np.mean(per_image))
    assert got["colour_binding"] in (0.0, 0.25, 0.5, 0.75, 1.0)  # "red", "blue" are colour candidates
    assert np.isnan(got["texture_binding"])  # no description starts with a texture: undefined, not 0


def test_perfect_detections_give_box_ap_one_and_every_instance_goes_to_the_vlm(models):
    items = _items()
    scorer = MetricScorer(_cfg(models, ["box_ap", "ifs"]), "cpu")
    layouts, images = [lay for lay, _ in items], [im for _, im in items]
    gts = [ground_truth(lay, (64, 64)) for lay in layouts]
    found = [[Detection(g.box, 0.9, g.category) for g in gt] for gt in gts]
    got = scorer.detection_metrics(layouts, images, gts, found, {"box_ap", "ifs"})
    assert got["box_AP"] == pytest.approx(1.0) and got["box_AP50"] == pytest.approx(1.0)
    vlm = VlmVerifier("tiny-llava", str(models), device="cpu")
    crops = [crop_box(im, g.box) for im, gt in zip(images, gts) for g in gt]
    verdicts = vlm.verdicts(crops, [g.description for gt in gts for g in gt])
    assert got["ifs"] == ifs.ifs_rates([True] * 4, {"vlm": verdicts})["mean"]
    # nothing found: no instance is localised, the VLM is not asked, the rate is 0
    got = scorer.detection_metrics(layouts, images, gts, [[], []], {"box_ap", "ifs"})
    assert got == {"box_AP": 0.0, "box_AP50": 0.0, "ifs": 0.0}


def test_the_detector_runs_on_the_images(models):
    got = MetricScorer(_cfg(models, ["box_ap", "ifs"], detector_threshold=0.0), "cpu").score(_items())
    assert set(got) == {"box_AP", "box_AP50", "ifs"}
    assert 0.0 <= got["box_AP"] <= 1.0 and 0.0 <= got["ifs"] <= 1.0


def test_a_missing_model_is_named_with_its_folder(models, tmp_path):
    with pytest.raises(ValueError, match=r"clip model 'absent' not found: put it in .*clip/absent"):
        MetricScorer(EvalConfig(every=1, metrics=["clip_score"], models_dir=str(tmp_path), clip="absent"),
                     "cpu").score(_items())


BASE = {"model": {"base": "x.safetensors"}, "data": {"folder": "d", "holdout": 0.1},
        "samples": {"layouts": ["a.json"]}}


@pytest.mark.parametrize("table,msg", [
    ({"every": 5, "metrics": ["fid"]}, r"\[eval\] metrics: unknown \['fid'\]"),
    ({"every": 5}, r"\[eval\] every > 0 needs at least one name in \[eval\] metrics"),
    ({"every": 5, "metrics": ["ifs"], "vlm": ""}, r"\[eval\] metric ifs needs a vlm model: set \[eval\] vlm"),
    ({"every": 5, "metrics": ["mask_iou"]}, r"\[eval\] metric mask_iou needs a yolo model"),
    ({"every": 5, "metrics": ["clip_score"], "layouts": "all"}, r"\[eval\] layouts must be one of"),
    ({"every": 5, "metrics": ["clip_score"], "detector_threshold": 2.0}, r"\[eval\] detector_threshold"),
])
def test_eval_config_errors_name_the_key(table, msg):
    with pytest.raises(ConfigError, match=msg):
        from_dict(dict(BASE, eval=table), "ifadapter")


def test_eval_layouts_need_their_source():
    raw = {"model": {"base": "x"}, "data": {"folder": "d"}, "eval": {"every": 5, "metrics": ["clip_score"],
                                                                       "layouts": "holdout"}}
    with pytest.raises(ConfigError, match=r"needs a held-out split \(\[data\] holdout > 0\)"):
        from_dict(raw, "ifadapter")
    raw["eval"]["layouts"] = "samples"
    with pytest.raises(ConfigError, match=r"needs layout files in \[samples\] layouts"):
        from_dict(raw, "ifadapter")
    assert set(METRICS) >= {"clip_score", "box_ap", "ifs", "mask_iou", "pim_point"}


def test_mask_metrics_without_ultralytics_say_what_to_install(models):
    from evaluate.models import yolo

    if yolo.available():
        pytest.skip("ultralytics is installed here")
    with pytest.raises(ImportError, match="ultralytics"):
        MetricScorer(_cfg(models, ["mask_iou"], yolo="yolov8n-seg.pt"), "cpu").score(_items())
