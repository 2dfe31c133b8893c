"""The evaluation models through their real transformers classes: tiny random-weight CLIP, OWLv2, Grounding DINO
and torchvision Inception-v3 saved in the normal layout, fed into the metrics. Nothing downloads (HF_HUB_OFFLINE)."""

from __future__ import annotations

import eval_tiny_models as tiny
import numpy as np
import pytest
import torch
from eval_scenes import two_boxes

from evaluate.metrics import attributes, clip_scores, detection, distribution, ifs
from evaluate.models import paths
from evaluate.models.clip import ClipEmbedder
from evaluate.models.detector import GroundedDetector
from evaluate.models.inception import InceptionFeatures


@pytest.fixture(scope="session")
def models_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("comfy") / "models"
    tiny.save_clip(root / "clip" / "tiny-clip")
    tiny.save_siglip(root / "clip" / "tiny-siglip")
    tiny.save_owlv2(root / "detection" / "tiny-owlv2")
    tiny.save_grounding_dino(root / "detection" / "owner--tiny-gdino")
    torch.manual_seed(0)
    from torchvision.models import inception_v3

    (root / "inception").mkdir()
    torch.save(inception_v3(weights=None, aux_logits=False, init_weights=True).state_dict(),
               root / "inception" / "inception.pth")
    return root


def _images(n, h=64, w=80, seed=0):
    rs = np.random.RandomState(seed)
    return [rs.randint(0, 256, (h + 8 * (i % 2), w, 3)).astype(np.uint8) for i in range(n)]


def test_missing_model_names_it_and_its_folder(tmp_path):
    with pytest.raises(paths.ModelNotFound) as e:
        paths.resolve_model("IDEA-Research/grounding-dino-tiny", "detection", str(tmp_path))
    msg = str(e.value)
    assert "'IDEA-Research/grounding-dino-tiny'" in msg
    assert str(tmp_path / "detection" / "IDEA-Research--grounding-dino-tiny") in msg
    assert "allow downloads" in msg


def test_names_stay_in_their_folder(models_root, tmp_path):
    for bad in ("../clip/tiny-clip", "/etc", "..", ""):
        with pytest.raises(ValueError):
            paths.resolve_model(bad, "detection", str(models_root))
    assert paths.resolve_model("owner/tiny-gdino", "detection", str(models_root)).endswith("owner--tiny-gdino")
    # an explicit path only where the caller allows paths (the CLI)
    folder = str(models_root / "clip" / "tiny-clip")
    with pytest.raises(paths.ModelNotFound):
        paths.resolve_model(folder, "clip", str(tmp_path))
    assert paths.resolve_model(folder, "clip", None, allow_path=True) == folder


def test_download_refused_offline_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(paths.ModelNotFound, match="'owner/none' could not be downloaded"):
        paths.resolve_model("owner/none", "clip", str(tmp_path), allow_download=True)


def test_placement_is_cpu_fp32_without_gpu():
    p = paths.placement("cpu")
    assert p == paths.Placement(torch.device("cpu"), torch.float32)
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        paths.placement("cpu", fp16=True)


def test_wrong_kind_folder_names_the_model(models_root):
    with pytest.raises(paths.WrongModelKind, match="tiny-owlv2' at .*'owlv2' model; a clip model must be one of"):
        ClipEmbedder(str(models_root / "detection" / "tiny-owlv2"), None, allow_path=True)
    with pytest.raises(paths.WrongModelKind, match="tiny-clip' at .*'clip' model"):
        GroundedDetector(str(models_root / "clip" / "tiny-clip"), allow_path=True)
    with pytest.raises(paths.WrongModelKind, match="no config.json"):
        GroundedDetector(str(models_root / "inception"), allow_path=True)
    with pytest.raises(paths.WrongModelKind, match="not Inception-v3 weights"):
        bad = models_root / "inception" / "not-inception.pth"
        torch.save({"weight": torch.zeros(2)}, bad)
        InceptionFeatures("not-inception.pth", str(models_root))


@pytest.mark.parametrize(("name", "dim"), [("tiny-clip", 16), ("tiny-siglip", 32)])
def test_clip_batched_equals_one_by_one_and_feeds_the_metrics(models_root, name, dim):
    emb = ClipEmbedder(name, str(models_root), device="cpu", batch_size=2)
    ims = _images(3)
    a = emb.images(ims)
    assert a.shape == (3, dim) and a.dtype == np.float32
    np.testing.assert_allclose(a, np.concatenate([emb.images([im]) for im in ims]), atol=1e-5)
    np.testing.assert_array_equal(a, emb.images(ims))  # deterministic
    texts = ["red dog", "a cat", "a blue car on a tree"]
    t = emb.texts(texts)
    assert t.shape == (3, dim)
    np.testing.assert_allclose(t, np.concatenate([emb.texts([x]) for x in texts]), atol=1e-5)
    scores = clip_scores.instance_clip_scores(a, t)
    assert scores.shape == (3,) and np.all(np.abs(scores) <= 1 + 1e-6)
    assert 0.0 <= clip_scores.clip_score(a, t) <= 100.0
    cands = emb.texts(attributes.candidate_prompts("colour"))
    correct = attributes.binding_correct(a, cands, [attributes.attribute_of(x, "colour") for x in texts])
    assert len(correct) == 3 and correct[1] is None and correct[0] in (0, 1)
    assert emb.images([]).shape == (0, dim)
    with pytest.raises(ValueError, match="image 1: must be a non-empty"):
        emb.images([np.zeros((4, 4), np.uint8)])


@pytest.mark.parametrize("name", ["tiny-owlv2", "owner/tiny-gdino"])
def test_detector_outputs_feed_box_ap_and_ifs(models_root, name):
    det = GroundedDetector(name, str(models_root), device="cpu", batch_size=2, threshold=0.0, text_threshold=0.0)
    same_size = name == "owner/tiny-gdino"  # DETR-style batches pad images to one size, which changes features
    ims = [im[:80] for im in _images(3, 80, 100)] if same_size else _images(3, 80, 100)
    queries = [["ball", "red cube"], ["tree"], ["cube", "dog", "ball"]]
    if same_size:  # and its text is padded to the longest prompt, which changes it too: one prompt for all
        queries = [["ball", "red cube"]] * 3
    out = det.detect(ims, queries)
    assert len(out) == 3
    for dets, qs, im in zip(out, queries, ims):
        assert dets and all(isinstance(d, detection.Detection) for d in dets)
        h, w = im.shape[:2]
        for d in dets:
            assert d.category in qs and 0.0 <= d.score <= 1.0
            x0, y0, x1, y1 = d.box
            assert 0 <= x0 <= x1 <= w and 0 <= y0 <= y1 <= h
    single = [det.detect([im], [q])[0] for im, q in zip(ims, queries)]
    for a, b in zip(out, single):
        assert [d.category for d in a] == [d.category for d in b]
        np.testing.assert_allclose([d.box for d in a], [d.box for d in b], atol=1e-3)
        np.testing.assert_allclose([d.score for d in a], [d.score for d in b], atol=1e-4)
    again = det.detect(ims, queries)
    assert [[(d.box, d.score, d.category) for d in x] for x in again] == [[(d.box, d.score, d.category) for d in x]
                                                                           for x in out]  # fmt: skip
    ap = detection.coco_ap([(two_boxes(), (100, 80))], [out[0]])
    assert set(ap) == set(detection.STAT_NAMES) and 0.0 <= ap["AP"] <= 1.0
    loc = ifs.localise((10, 10, 40, 50), [d.box for d in out[0] if d.category == "ball"])
    assert isinstance(loc.ok, bool) and 0.0 <= loc.iou <= 1.0
    with pytest.raises(ValueError, match="image 2, query 1"):
        det.detect(ims[:2], [["cat"], [""]])


def test_inception_features_feed_kid(models_root):
    inc = InceptionFeatures("inception.pth", str(models_root), device="cpu", batch_size=2)
    ims = _images(3, 40, 50)
    f = inc.features(ims)
    assert f.shape == (3, 2048) and f.dtype == np.float32 and np.isfinite(f).all()
    np.testing.assert_allclose(f, np.concatenate([inc.features([im]) for im in ims]), rtol=1e-4, atol=1e-5)
    g = inc.features(_images(3, 40, 50, seed=1))
    k = distribution.kid(f, g, num_subsets=2, max_subset_size=3, rng=0)  # 3 features: FID's covariance is singular
    assert np.isfinite(k.mean)
    from safetensors.torch import save_file

    sd = torch.load(models_root / "inception" / "inception.pth", weights_only=True)
    save_file(sd, str(models_root / "inception" / "inception.safetensors"))
    f2 = InceptionFeatures("inception.safetensors", str(models_root), device="cpu").features(ims)
    np.testing.assert_allclose(f, f2, rtol=1e-4, atol=1e-5)


def test_yolo_without_ultralytics_says_what_to_install(tmp_path):
    from evaluate.models import yolo

    if yolo.available():
        pytest.skip("ultralytics is installed here")
    with pytest.raises(ImportError, match="needs the 'ultralytics' package.*models/yolo"):
        yolo.YoloSegmenter("yolov8x-seg.pt", str(tmp_path))
