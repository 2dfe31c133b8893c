"""Trainer pieces that need no model: config, dataset preparation, batch plan and draws, checkpoint files."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from train.engine import config as config_mod
from train.engine.batches import BatchPlan, draw
from train.engine.config import ConfigError, accumulation_steps, from_dict
from train.engine.data import BadSample, buckets, list_samples, nearest_bucket, prepare_sample
from train.engine.evaluation import eval_units, holdout_positions
from train.engine.state import list_checkpoints, load_latest, save_checkpoint
from train.engine.trainer import lr_factor
from train.recipes import get_recipe, recipe_names
from train.recipes.ifadapter import IFAdapterRecipe

BASE = {"model": {"base": "sdxl.safetensors"}, "data": {"folder": "data"}}


def test_config_defaults_are_the_paper_recipe(tmp_path):
    cfg = from_dict(BASE, "ifadapter", source=str(tmp_path / "run.toml"))
    t, o = cfg.train, cfg.options
    assert (t.lr, t.batch_size, t.max_steps, o.drop_local, o.drop_global) == (1e-4, 160, 100_000, 0.15, 0.30)
    assert (t.grad_clip, t.precision, t.ema_decay, cfg.data.max_instances, cfg.data.min_box_area) == \
        (1.0, "bf16", 0.0, 10, 0.01)
    assert cfg.data.folder == str(tmp_path / "data")  # relative to the config file
    assert (t.output_dir, t.name) == (str(tmp_path / "runs" / "ifadapter"), "ifadapter")  # the recipe's name
    assert accumulation_steps(cfg, 8) == 5  # 160 = 4 per pass x 8 GPUs x 5
    with pytest.raises(ConfigError, match="not a multiple"):
        accumulation_steps(cfg, 7)


@pytest.mark.parametrize("raw,msg", [
    ({"train": {"lr": "fast"}}, r"\[train\] lr must be a number"),
    ({"train": {"learning_rate": 1}}, r"unknown key\(s\) \['learning_rate'\] in \[train\]"),
    ({"optim": {}}, r"unknown table"),
    ({"data": {"folder": "d", "max_instances": 11}}, "max_instances must be in 1..10 for the ifadapter recipe"),
    ({"train": {"precision": "fp8"}}, "precision must be bf16, fp16 or fp32"),
    ({"samples": {"every": 10}}, "needs at least one layout"),
    ({"ifadapter": {"drop_local": 2.0}}, r"\[ifadapter\] drop_local and drop_global are probabilities"),
    ({"ifadapter": {"resampler": {"width": 3}}}, r"\[ifadapter\] resampler takes positive integers"),
    ({"ifadapter": {"dropout": 0.1}}, r"unknown key\(s\) \['dropout'\] in \[ifadapter\]"),
    ({"data": {"holdout": 0.9}}, r"\[data\] holdout must be a fraction in \[0, 0.5\]"),
    ({"train": {"eval_timesteps": [1000]}}, r"\[train\] eval_timesteps must be a non-empty list"),
])
def test_config_errors_name_the_key(raw, msg):
    merged = json.loads(json.dumps(BASE))
    for k, v in raw.items():
        merged.setdefault(k, {}).update(v)
    with pytest.raises(ConfigError, match=msg):
        from_dict(merged, "ifadapter")


def test_config_reads_toml_and_moves_legacy_recipe_keys(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[model]\nbase = "x.safetensors"\nresampler_mask = "official-quirk"\n[data]\nfolder = "d"\n'
                 '[train]\nbatch_size = 8\ndrop_local = 0.5\n')
    cfg = config_mod.load(str(p), "ifadapter")
    assert cfg.train.batch_size == 8
    # keys an older file holds in [model] / [train] land in [ifadapter]
    assert (cfg.options.resampler_mask, cfg.options.drop_local) == ("official-quirk", 0.5)
    assert cfg.to_dict()["ifadapter"]["drop_local"] == 0.5
    p.write_text("[model\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config_mod.load(str(p), "ifadapter")


def test_registry_lists_and_loads_recipes():
    assert "ifadapter" in recipe_names() and get_recipe("ifadapter") is IFAdapterRecipe
    with pytest.raises(ValueError, match="unknown recipe 'nope'"):
        get_recipe("nope")
    for name in recipe_names():  # every registered recipe states the interface's class attributes
        r = get_recipe(name)
        assert r.name == name and r.cache_fields and "latent" not in r.cache_fields


def test_lr_warmup_and_cosine():
    assert lr_factor(0, 4, 100, "constant") == 0.25 and lr_factor(3, 4, 100, "constant") == 1.0
    assert lr_factor(50, 0, 100, "constant") == 1.0
    assert lr_factor(0, 0, 100, "cosine") == 1.0 and lr_factor(100, 0, 100, "cosine") == pytest.approx(0.0)


def test_sdxl_buckets():
    b = buckets(1024, 64)
    assert b[0] == (1024, 1024) and (1216, 832) in b and len(b) == 9
    assert nearest_bucket(1920, 1080, b) == (1344, 768)
    assert nearest_bucket(600, 800, b) == (896, 1152)
    assert all(w % 32 == 0 and h % 32 == 0 for w, h in buckets(512, 32))


def _sample(folder, name, size, instances, prompt="a scene"):
    Image.new("RGB", size, (200, 10, 10)).save(os.path.join(folder, name + ".png"))
    layout = {"format": "instance-layout", "version": 1, "width": size[0], "height": size[1], "prompt": prompt,
              "instances": [{"description": d, "regions": [{"kind": "box", "box": b}]} for d, b in instances]}
    with open(os.path.join(folder, name + ".json"), "w") as f:
        json.dump(layout, f)


def test_crop_and_resize_move_the_boxes_with_the_pixels(tmp_path):
    # 200 x 100 image -> bucket 128 x 64 (2:1): resized by 0.64 (exactly 128 x 64), no crop needed
    d = str(tmp_path)
    _sample(d, "a", (200, 100), [("big", [20, 10, 120, 90]), ("tiny", [190, 90, 195, 94])])
    files, missing = list_samples(d)
    assert [f.name for f in files] == ["a"] and not missing
    s = prepare_sample(files[0], [(64, 64), (128, 64)], 0.01, random_crop=False, seed=0)
    assert s.bucket == (128, 64) and s.pixels.shape == (64, 128, 3) and s.crop == (0, 0)
    assert s.original_size == (100, 200)
    assert s.descriptions == ["big"]  # the 5 x 4 box covers 0.1 % of the image: dropped
    torch.testing.assert_close(s.boxes, torch.tensor([[0.1, 0.1, 0.6, 0.9]]))
    # square bucket: the 200 x 100 image is scaled to 128 x 64... cover -> 128 x 64 at scale 0.64 then centre crop
    s = prepare_sample(files[0], [(64, 64)], 0.01, random_crop=False, seed=0)
    assert s.bucket == (64, 64) and s.crop == (0, 32)  # resized to 128 x 64, 32 px cut on the left
    x0, y0, x1, y1 = s.boxes[0].tolist()
    assert (x0, y0) == pytest.approx((0.0, 0.1)) and (x1, y1) == pytest.approx(((120 * 0.64 - 32) / 64, 0.9))


def test_pixels_follow_the_crop(tmp_path):
    d = str(tmp_path)
    img = np.zeros((64, 128, 3), dtype=np.uint8)
    img[:, 96:] = 255  # right quarter white
    Image.fromarray(img).save(os.path.join(d, "w.png"))
    with open(os.path.join(d, "w.json"), "w") as f:
        json.dump({"format": "instance-layout", "version": 1, "width": 128, "height": 64, "prompt": "p",
                   "instances": [{"description": "white", "regions": [{"kind": "box", "box": [96, 0, 128, 64]}]}]}, f)
    files, _ = list_samples(d)
    for seed in range(4):
        s = prepare_sample(files[0], [(64, 64)], 0.01, random_crop=True, seed=seed)
        x0, _, x1, _ = s.boxes[0].tolist() if s.descriptions == ["white"] else (0, 0, 0, 0)
        white = s.pixels[..., 0].mean(dim=0) > 0.5  # columns that are white
        if s.descriptions == ["white"]:
            cols = white.nonzero().flatten()
            assert int(cols.min()) == pytest.approx(x0 * 64, abs=1) and int(cols.max()) + 1 == pytest.approx(
                x1 * 64, abs=1)
        else:  # cropped away: the caption becomes the one instance over the whole image
            assert s.descriptions == ["p"] and s.boxes.tolist() == [[0.0, 0.0, 1.0, 1.0]] and not white.any()


def test_bad_samples_raise_with_their_name(tmp_path):
    d = str(tmp_path)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    (tmp_path / "bad.json").write_text("{}")
    _sample(d, "lay", (32, 32), [("x", [0, 0, 10, 10])])
    (tmp_path / "lay.json").write_text('{"format": "instance-layout", "version": 1, "width": 32}')
    files, _ = list_samples(d)
    for f in files:
        with pytest.raises(BadSample, match=f"^{f.name}: "):
            prepare_sample(f, [(64, 64)], 0.01, False, 0)


def test_batch_plan_is_deterministic_bucketed_and_independent_of_processes():
    plan = BatchPlan([(64, 64)] * 5 + [(96, 64)] * 4, batch_size=2, seed=1)
    assert plan.per_epoch == 2 + 2 and plan.left_out_per_epoch() == 1
    for step in range(12):
        b = plan.batch(step)
        assert len({(64, 64) if p < 5 else (96, 64) for p in b}) == 1  # never mixes buckets
    assert [BatchPlan([(64, 64)] * 5 + [(96, 64)] * 4, 2, 1).batch(s) for s in range(12)] == \
        [plan.batch(s) for s in range(12)]
    assert plan.epoch(0) != plan.epoch(1)  # reshuffled every epoch
    with pytest.raises(ValueError, match="no aspect bucket holds a whole batch"):
        BatchPlan([(64, 64)], 2, 0)


def _ifadapter(**options):
    raw = dict(BASE, ifadapter=options)
    return IFAdapterRecipe(from_dict(raw, "ifadapter"))


def _draw(recipe, seed, step, offset, shape, n, train=True, timestep=None):
    return draw(seed, step, offset, shape, lambda g: recipe.draw(g, {"boxes": torch.zeros(n, 4)}, train), timestep)


def test_draws_are_per_sample_and_dropout_rates_hold():
    r = _ifadapter()
    a, b = _draw(r, 5, 10, 3, (4, 8, 8), 14), _draw(r, 5, 10, 3, (4, 8, 8), 14)
    assert torch.equal(a.noise, b.noise) and a.timestep == b.timestep
    assert torch.equal(a.recipe.instances, b.recipe.instances)
    assert len(a.recipe.instances) == 10 and len(set(a.recipe.instances.tolist())) == 10  # 10 of 14 at random
    draws = [_draw(r, 0, s, o, (1, 1, 1), 3) for s in range(200) for o in range(10)]
    local = np.mean([not d.recipe.keep_text for d in draws])
    glob = np.mean([not d.recipe.keep_prompt for d in draws])
    both = np.mean([not d.recipe.keep_text and not d.recipe.keep_prompt for d in draws])
    assert abs(local - 0.15) < 0.03 and abs(glob - 0.30) < 0.03 and abs(both - 0.045) < 0.015  # independent
    assert 0 <= min(d.timestep for d in draws) and max(d.timestep for d in draws) <= 999
    # eval draws: the given timestep, the same noise, no dropout
    e = [_draw(r, 0, 7, 1, (4, 8, 8), 3, train=False, timestep=t) for t in (100, 900)]
    assert [d.timestep for d in e] == [100, 900] and torch.equal(e[0].noise, e[1].noise)
    assert all(d.recipe.keep_text and d.recipe.keep_prompt for d in
               (_draw(r, 0, s, 0, (1, 1, 1), 3, train=False) for s in range(50)))


def test_collate_pads_instances_and_applies_dropout():
    def sample(n, length):
        return {"latent": torch.ones(4, 8, 8), "prompt": torch.ones(77, 16), "pooled": torch.ones(4),
                "desc_hidden": torch.ones(n, 3, length, 16), "desc_eot": torch.ones(n, 16),
                "desc_mask": torch.ones(n, length, dtype=torch.bool), "boxes": torch.rand(n, 4), "entry": {}}

    r = _ifadapter(drop_local=0.0, drop_global=1.0)
    d1 = _draw(r, 0, 0, 0, (4, 8, 8), 3).recipe  # prompt dropped
    r = _ifadapter(drop_local=0.0, drop_global=0.0)
    d2 = _draw(r, 0, 0, 1, (4, 8, 8), 1).recipe
    r._encode_adm = lambda pooled, entry: torch.cat([pooled, pooled], 1)  # SDXL's vector needs the model
    batch = r.collate([sample(3, 5), sample(1, 7)], [d1, d2])
    assert batch["desc_hidden"].shape == (2, 3, 3, 7, 16) and batch["valid"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["desc_mask"][0, :, 5:].sum() == 0 and batch["desc_hidden"][1, 1:].abs().sum() == 0
    assert batch["context"][0].abs().sum() == 0 and batch["y"][0].abs().sum() == 0  # global dropout
    assert batch["context"][1].abs().sum() > 0


def test_holdout_split_is_by_name_and_eval_chunks_do_not_depend_on_processes():
    samples = [{"name": f"s{i:03d}", "bucket": [64, 64] if i % 3 else [96, 64]} for i in range(200)]
    held = holdout_positions(samples, 0.2)
    assert 20 < len(held) < 60 and held == sorted(held)
    # a sample keeps its side when others are added or removed: the split is a function of each name
    more = samples[:100] + [{"name": f"new{i}", "bucket": [64, 64]} for i in range(50)]
    assert [p for p in holdout_positions(more, 0.2) if p < 100] == [p for p in held if p < 100]
    assert holdout_positions(samples, 0.0) == [] and holdout_positions(samples[:1], 0.5) == []
    assert len(holdout_positions(samples[:3], 0.01)) == 1  # at least one when asked for
    assert len(holdout_positions(samples[:2], 0.5)) == 1  # never all
    chunks = eval_units(samples, held, [100, 500], chunk=3)
    assert sorted(u for c in chunks for u in c) == sorted((p, t) for p in held for t in (100, 500))
    for c in chunks:  # a chunk never mixes buckets
        assert len({tuple(samples[p]["bucket"]) for p, _ in c}) == 1


def test_checkpoints_are_atomic_pruned_and_a_damaged_newest_falls_back(tmp_path):
    out = str(tmp_path)
    for step in (1, 2, 3):
        save_checkpoint(out, step, {"step": step, "w": torch.full((2,), float(step))}, keep=2)
    assert [os.path.basename(p) for p in list_checkpoints(out)] == ["step-00000002.pt", "step-00000003.pt"]
    # an interrupted save leaves only a temporary file, which is ignored
    (tmp_path / "checkpoints" / "step-00000004.pt.tmp-123").write_bytes(b"partial")
    assert load_latest(out)["step"] == 3
    (tmp_path / "checkpoints" / "step-00000003.pt").write_bytes(b"garbage")
    assert load_latest(out)["step"] == 2


def test_coco_and_official_importers_write_readable_samples(tmp_path):
    from train.importers import import_coco, import_official

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.new("RGB", (200, 100)).save(imgs / "000001.jpg")
    Image.new("RGB", (384, 384)).save(imgs / "sample1.png")
    instances = {"images": [{"id": 1, "file_name": "000001.jpg", "width": 200, "height": 100},
                            {"id": 2, "file_name": "missing.jpg", "width": 10, "height": 10}],
                 "categories": [{"id": 3, "name": "dog"}],
                 "annotations": [{"image_id": 1, "category_id": 3, "bbox": [10, 20, 50, 40], "iscrowd": 0},
                                 {"image_id": 1, "category_id": 3, "bbox": [0, 0, 200, 100], "iscrowd": 1},
                                 {"image_id": 2, "category_id": 3, "bbox": [0, 0, 5, 5], "iscrowd": 0}]}
    captions = {"annotations": [{"image_id": 1, "caption": "A dog on grass. "}]}
    (tmp_path / "inst.json").write_text(json.dumps(instances))
    (tmp_path / "caps.json").write_text(json.dumps(captions))
    out = tmp_path / "out"
    assert import_coco(str(tmp_path / "inst.json"), str(tmp_path / "caps.json"), str(imgs), str(out)) == 1
    official = {"caption": "a cat", "annotations": [{"box": [0, 0, 384, 384], "caption": ["a grey cat"]}]}
    (tmp_path / "sample1.json").write_text(json.dumps(official))
    assert import_official([str(tmp_path / "sample1.json")], str(imgs), str(out)) == 1
    files, missing = list_samples(str(out))
    assert [f.name for f in files] == ["000001", "sample1"] and not missing
    coco = prepare_sample(files[0], [(128, 64)], 0.01, False, 0)
    assert coco.prompt == "A dog on grass." and coco.descriptions == ["a dog"]  # the crowd box is skipped
    torch.testing.assert_close(coco.boxes, torch.tensor([[0.05, 0.2, 0.3, 0.6]]))
    off = prepare_sample(files[1], [(64, 64)], 0.01, False, 0)
    assert off.descriptions == ["a grey cat"]
    torch.testing.assert_close(off.boxes, torch.tensor([[0.0, 0.0, 0.5, 0.5]]))  # 384 px of the 768 canvas


def test_collate_for_sd15_has_no_micro_conditioning_and_zero_descriptions_drops_every_description():
    from core.ifadapter.families import FAMILIES

    def sample(n):
        return {"latent": torch.ones(4, 8, 8), "prompt": torch.ones(77, 768), "pooled": torch.ones(768),
                "desc_hidden": torch.ones(n, 3, 5, 768), "desc_eot": torch.ones(n, 768),
                "desc_mask": torch.ones(n, 5, dtype=torch.bool), "boxes": torch.rand(n, 4) / 2 + 0.1, "entry": {}}

    r = _ifadapter(drop_local=0.0, drop_global=0.0)
    r.family = FAMILIES["sd15"]  # what setup() detects from an SD1.5 model
    batch = r.collate([sample(2)], [_draw(r, 0, 0, 0, (4, 8, 8), 2).recipe])
    assert "y" not in batch and batch["context"].shape == (1, 77, 768)
    assert batch["keep_text"].all() and batch["boxes"].abs().sum() > 0
    z = _ifadapter(drop_local=0.0, drop_global=0.0, zero_descriptions=True)
    z.family = FAMILIES["sd15"]
    d = _draw(z, 0, 0, 0, (4, 8, 8), 2, train=False).recipe
    assert not d.keep_text and d.keep_prompt  # the descriptions go, the caption stays
    batch = z.collate([sample(2)], [d])
    assert batch["boxes"].abs().sum() > 0 and batch["valid"].all() and not batch["keep_text"].any()
    with pytest.raises(ConfigError, match=r"\[ifadapter\] family must be one of"):
        _ifadapter(family="sd3")
