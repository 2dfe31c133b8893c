"""Scoring cost per image and per metric on this machine: the models of the evaluation suite and the metric maths.

Usage: ``python benchmarks/bench_evaluate.py [--sizes tiny,real] [--image 512] [--instances 5] [--repeats 3]
[--threads 2] [--device cpu] [--skip vlm,...]``

One synthetic image (``--image`` pixels square, ``--instances`` coloured boxes drawn where its layout puts them)
is scored the way ``evaluate.layout_check.score`` (the Evaluate Layout node) and the runner score it. Each model
family is built with random weights, saved in the normal layout and loaded back through the pack's wrapper
(``evaluate/models``), then timed per image (median of ``--repeats`` after one warm-up):

- ``tiny``: the test models of tests/evaluate/eval_tiny_models.py (hidden sizes 16-32; plumbing cost only);
- ``real``: the sizes of the models the papers and docs name, built from their configurations with random
  weights (no download): Grounding DINO tiny (Swin-T + BERT-base, 900 queries, 800 px short side), OWLv2 base
  patch16 at 960 px, CLIP ViT-L/14 at 224 px, LLaVA-style VLM = CLIP ViT-L/14-336 vision tower + a Llama-shaped
  text model of Qwen2-0.5B's sizes (896 hidden, 24 layers; the CLIP vocabulary, 49 k, instead of Qwen's 151 k,
  since Qwen's tokenizer is not available offline), Inception-v3 (torchvision's architecture, 299 px).

Random weights give the same compute as trained ones except where the output decides the work: the detector
keeps every box above its threshold (0.0 here, so post-processing sees all queries), and the VLM always
generates ``max_new_tokens`` = 8 tokens (a trained model may stop after "yes"). The metric maths (pycocotools AP,
localisation, CLIP-score and binding arithmetic, yes/no parsing and IFS rates, mask IoU and PiM, FID / KID) are
timed apart from the models, on the outputs the models gave. Prints one table; nothing is written.
"""
from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests" / "evaluate")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import eval_tiny_models as tiny  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.layout import Instance, Layout, Region  # noqa: E402
from evaluate.layout_check import score  # noqa: E402
from evaluate.metrics import attributes, clip_scores, detection, distribution, ifs, masks  # noqa: E402
from evaluate.metrics.crops import crop_box, instance_crops  # noqa: E402
from evaluate.metrics.ground_truth import ground_truth  # noqa: E402

COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (67, 99, 216), (245, 130, 49), (145, 30, 180),
           (70, 240, 240), (240, 50, 230)]  # fmt: skip
NAMES = ["red ball", "green cube", "yellow car", "blue cup", "purple dog", "pink chair", "white tree", "black cat"]


# ------------------------------------------------------------------------------------------------ the scene
def scene(size: int, n: int) -> tuple[Layout, np.ndarray]:
    """A size x size layout of n boxes on a grid and the image with each box filled in its colour."""
    rs = np.random.RandomState(0)
    img = np.full((size, size, 3), 110, np.uint8)
    img += rs.randint(0, 30, img.shape).astype(np.uint8)  # texture, so crops are not flat
    cols = int(np.ceil(np.sqrt(n)))
    cell = size / cols
    insts = []
    for k in range(n):
        r, c = divmod(k, cols)
        x0, y0 = c * cell + cell * 0.15, r * cell + cell * 0.15
        x1, y1 = x0 + cell * 0.7, y0 + cell * 0.6
        img[int(y0):int(y1), int(x0):int(x1)] = COLOURS[k % len(COLOURS)]
        name = NAMES[k % len(NAMES)]
        insts.append(Instance(f"{name} {k + 1}" if k >= len(NAMES) else name, name.split()[-1],
                              [Region("box", box=(x0, y0, x1, y1))]))  # fmt: skip
    return Layout(size, size, "a room with objects on a grey floor", insts).validate(), img


# ---------------------------------------------------------------------------------------- real-size builders
def save_real_grounding_dino(folder: Path) -> Path:
    from transformers import (
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
    )

    torch.manual_seed(0)
    GroundingDinoForObjectDetection(GroundingDinoConfig()).save_pretrained(folder)  # the defaults are "tiny"
    GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(),  # 800 px short side, 1333 long
                           tokenizer=tiny.bert_tokenizer()).save_pretrained(folder)  # fmt: skip
    return folder


def _clip_l_vision(image: int) -> dict:
    return dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                image_size=image, patch_size=14)  # fmt: skip


def save_real_clip(folder: Path) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tok = tiny.clip_tokenizer(max_len=77)
    text = dict(vocab_size=len(tok), hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                num_attention_heads=12, max_position_embeddings=77)  # fmt: skip
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=text, vision_config=_clip_l_vision(224), projection_dim=768)).save_pretrained(
        folder)
    CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=tok).save_pretrained(folder)
    return folder


def save_real_owlv2(folder: Path) -> Path:
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    tok = tiny.clip_tokenizer(max_len=16)
    torch.manual_seed(0)
    cfg = Owlv2Config(text_config={"vocab_size": len(tok)}, vision_config={"image_size": 960, "patch_size": 16})
    Owlv2ForObjectDetection(cfg).save_pretrained(folder)
    Owlv2Processor(image_processor=Owlv2ImageProcessor(size={"height": 960, "width": 960}),
                   tokenizer=tok).save_pretrained(folder)  # fmt: skip
    return folder


def save_real_llava(folder: Path) -> Path:
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tok = tiny.clip_tokenizer(max_len=2048)
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    text = LlamaConfig(vocab_size=len(tok), hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                       num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=4096,
                       pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    torch.manual_seed(0)
    cfg = LlavaConfig(vision_config=CLIPVisionConfig(**_clip_l_vision(336)), text_config=text,
                      image_token_id=tok.convert_tokens_to_ids("<image>"), vision_feature_layer=-2,
                      vision_feature_select_strategy="default")  # fmt: skip
    LlavaForConditionalGeneration(cfg).save_pretrained(folder)
    ip = CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=14, vision_feature_select_strategy="default",
                   chat_template=tiny.CHAT_TEMPLATE, image_token="<image>",
                   num_additional_image_tokens=1).save_pretrained(folder)  # fmt: skip
    return folder


def save_inception(folder: Path) -> Path:
    """torchvision's Inception-v3 with random weights as ``folder/inception.pth`` (the wrapper takes the file)."""
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(inception_v3(weights=None, aux_logits=False, init_weights=True).state_dict(), folder / "inception.pth")
    return folder / "inception.pth"


BUILDERS = {
    "tiny": {"grounding-dino": tiny.save_grounding_dino, "owlv2": tiny.save_owlv2, "clip": tiny.save_clip,
             "vlm": tiny.save_llava, "inception": save_inception},
    "real": {"grounding-dino": save_real_grounding_dino, "owlv2": save_real_owlv2, "clip": save_real_clip,
             "vlm": save_real_llava, "inception": save_inception},
}
LABELS = {
    "tiny": {"grounding-dino": "Grounding DINO (tiny test)", "owlv2": "OWLv2 (tiny test)",
             "clip": "CLIP (tiny test)", "vlm": "LLaVA (tiny test)", "inception": "Inception-v3 (real size)"},
    "real": {"grounding-dino": "Grounding DINO tiny (Swin-T+BERT-base)", "owlv2": "OWLv2 base/16 @960",
             "clip": "CLIP ViT-L/14 @224", "vlm": "LLaVA-style CLIP-L/336 + 0.5B LM",
             "inception": "Inception-v3 @299"},
}


# -------------------------------------------------------------------------------------------------- timing
def timed(fn, repeats: int) -> tuple[float, object]:
    """(median seconds over ``repeats`` calls after one warm-up, the last result)."""
    out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def params(model) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def bench_size(size_name: str, args, lay: Layout, img: np.ndarray, work: Path, rows: list) -> None:
    from evaluate.models.clip import ClipEmbedder
    from evaluate.models.detector import GroundedDetector
    from evaluate.models.inception import InceptionFeatures
    from evaluate.models.vlm import VlmVerifier

    build, label = BUILDERS[size_name], LABELS[size_name]
    gts = ground_truth(lay, (img.shape[1], img.shape[0]))
    queries = list(dict.fromkeys(g.category for g in gts))
    dev = {"device": args.device}
    r = args.repeats if size_name == "tiny" else args.real_repeats

    def load(kind, make):
        t0 = time.perf_counter()
        folder = build[kind](work / size_name / kind)
        t1 = time.perf_counter()
        model = make(str(folder))
        return model, t1 - t0, time.perf_counter() - t1

    for kind in ("grounding-dino", "owlv2"):
        if kind in args.skip:
            continue
        det, _, t_load = load(kind, lambda f: GroundedDetector(f, allow_path=True, threshold=0.0, **dev))
        t_model, found = timed(lambda det=det: det.detect([img], [queries]), r)
        t_score, _ = timed(lambda det=det: score([lay], [img], detector=det), r)
        rows.append((size_name, label[kind], f"{params(det.model):.1f}", "detect (1 image)", t_model, t_load,
                     f"{len(found[0])} boxes; node score() with it {t_score * 1e3:.0f} ms"))  # fmt: skip
        del det
        gc.collect()
    if "clip" not in args.skip:
        clip, _, t_load = load("clip", lambda f: ClipEmbedder(f, allow_path=True, **dev))
        crops = [c for c in instance_crops(lay, img) if c is not None]
        texts = [g.description for g in gts]

        def clip_all():
            clip.images(crops), clip.texts(texts), clip.images([img]), clip.texts([lay.prompt])
            return clip.texts(attributes.candidate_prompts("colour"))

        t_model, _ = timed(clip_all, r)
        t_score, _ = timed(lambda: score([lay], [img], clip=clip), r)
        rows.append((size_name, label["clip"], f"{params(clip.model):.1f}",
                     f"{len(crops)} crops + image + {len(texts) + 1 + 8} texts", t_model, t_load,
                     f"node score() with it {t_score * 1e3:.0f} ms"))  # fmt: skip
        del clip
        gc.collect()
    if "vlm" not in args.skip:
        vlm, _, t_load = load("vlm", lambda f: VlmVerifier(f, allow_path=True, batch_size=args.vlm_batch, **dev))
        crops = [crop_box(img, g.box) for g in gts]
        t_model, answers = timed(lambda: vlm.answers(crops, [g.description for g in gts]), r)
        rows.append((size_name, label["vlm"], f"{params(vlm.model):.1f}",
                     f"{len(crops)} crops, 8 new tokens each", t_model, t_load,
                     f"per crop {t_model / len(crops) * 1e3:.0f} ms"))  # fmt: skip
        del vlm
        gc.collect()
    if "inception" not in args.skip and size_name == "real":
        inc, _, t_load = load("inception", lambda f: InceptionFeatures(f, allow_path=True, **dev))
        t_model, _ = timed(lambda: inc.features([img]), r)
        rows.append((size_name, label["inception"], f"{params(inc.model):.1f}", "pool3 features (1 image)",
                     t_model, t_load, "FID / KID input"))  # fmt: skip
        del inc
        gc.collect()


def bench_metrics(args, lay: Layout, img: np.ndarray, rows: list) -> None:
    """The metric maths alone, on fixed model outputs of the right shapes."""
    size = (img.shape[1], img.shape[0])
    gts = ground_truth(lay, size)
    rs = np.random.RandomState(1)
    dets = []
    for g in gts:  # each instance found twice: once on its box, once shifted (a false positive)
        x0, y0, x1, y1 = g.box
        dets.append(detection.Detection(g.box, 0.9, g.category))
        dets.append(detection.Detection((x0 + 20, y0 + 20, x1 + 20, y1 + 20), 0.4, g.category))
    r = args.repeats
    t, _ = timed(lambda: detection.coco_ap([(lay, size)], [dets]), r)
    rows.append(("-", "box AP (pycocotools)", "-", f"{len(gts)} GT, {len(dets)} detections", t, 0.0, ""))
    mdets = [detection.Detection(d.box, d.score, d.category, mask=g.mask) for d, g in zip(dets[::2], gts)]
    t, _ = timed(lambda: detection.coco_ap([(lay, size)], [mdets], iou_type="segm"), r)
    rows.append(("-", "mask AP (pycocotools)", "-", f"{len(gts)} GT masks at {size[0]}x{size[1]}", t, 0.0, ""))
    t, _ = timed(lambda: [ifs.localise(g.box, [d.box for d in dets if d.category == g.category]) for g in gts], r)
    rows.append(("-", "IFS localisation", "-", f"{len(gts)} instances", t, 0.0, ""))
    pred = [np.roll(g.mask, 7, axis=1) for g in gts] + [rs.rand(*g.mask.shape) > 0.995 for g in gts]
    t, _ = timed(lambda: (masks.instance_mask_iou(gts, pred), masks.pim(gts, pred, "point")), r)
    rows.append(("-", "mask IoU + PiM", "-", f"{len(gts)} GT, {len(pred)} masks", t, 0.0, ""))
    e = rs.randn(len(gts), 768).astype(np.float32)
    cands = rs.randn(8, 768).astype(np.float32)
    t, _ = timed(lambda: (clip_scores.instance_clip_scores(e, e[::-1]), clip_scores.clip_score(e[:1], e[1:2]),
                          attributes.binding_correct(e, cands, [0] * len(gts))), r)  # fmt: skip
    rows.append(("-", "CLIP scores + attribute binding", "-", "on 768-d embeddings", t, 0.0, ""))
    t, _ = timed(lambda: ifs.ifs_rates([True] * len(gts), {"v": [ifs.parse_yes_no("Yes, it does.")] * len(gts)}), r)
    rows.append(("-", "yes/no parsing + IFS rates", "-", f"{len(gts)} answers", t, 0.0, ""))
    f1, f2 = rs.randn(args.fid_n, 2048), rs.randn(args.fid_n, 2048) + 0.1
    t, _ = timed(lambda: distribution.fid(f1, f2), 1)
    rows.append(("-", "FID (per image set)", "-", f"{args.fid_n} vs {args.fid_n} x 2048", t, 0.0, "once per set"))
    t, _ = timed(lambda: distribution.kid(f1, f2, rng=0), 1)
    rows.append(("-", "KID (per image set)", "-", f"100 subsets of {min(args.fid_n, 1000)}", t, 0.0, "once per set"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="tiny,real", help="tiny and / or real (see the module docstring)")
    p.add_argument("--image", type=int, default=512, help="image side in pixels (InstanceDiffusion's COCO size)")
    p.add_argument("--instances", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3, help="timed calls per tiny model and metric (median)")
    p.add_argument("--real-repeats", type=int, default=1, help="timed calls per real-size model")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--vlm-batch", type=int, default=8)
    p.add_argument("--fid-n", type=int, default=1000, help="features per set for the FID / KID timing")
    p.add_argument("--skip", default="", help="comma-separated: grounding-dino, owlv2, clip, vlm, inception, "
                                              "metrics")  # fmt: skip
    args = p.parse_args()
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    lay, img = scene(args.image, args.instances)
    rows: list = []
    work = Path(tempfile.mkdtemp(prefix="bench_eval_"))
    try:
        if "metrics" not in args.skip:
            bench_metrics(args, lay, img, rows)
        for size_name in [s.strip() for s in args.sizes.split(",") if s.strip()]:
            bench_size(size_name, args, lay, img, work, rows)
            shutil.rmtree(work / size_name, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"# scoring cost: {args.image}x{args.image} image, {args.instances} instances, device {args.device}, "
          f"{args.threads} threads, torch {torch.__version__}, load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs")
    print("| sizes | model / metric | params (M) | work per image | ms per image | load s | note |")
    print("|---|---|---|---|---|---|---|")
    for size_name, what, n, work_, t, t_load, note in rows:
        print(f"| {size_name} | {what} | {n} | {work_} | {t * 1e3:.1f} | {t_load:.1f} | {note} |")


if __name__ == "__main__":
    main()
