"""The trainer's configuration: a TOML file with the engine's tables (``[model]``, ``[data]``, ``[cache]``,
``[train]``, ``[samples]``, ``[eval]``) and the recipe's own table ``[<recipe>]``; every key is optional except the
base model and the data folder.

The engine's defaults are IFAdapter's paper recipe (spec §5: AdamW at 1e-4, global batch 160, 100k steps) and the
spec's proposals where the paper is silent (1024² buckets, bf16, uniform timesteps, gradient clipping 1.0, no EMA,
at most 10 instances, boxes under 1 % dropped); a recipe overrides the ones that differ for it
(``Recipe.defaults``). Every key is documented in docs/training.md. Unknown keys are refused with the list of known
ones.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and what is accepted."""


@dataclass
class ModelConfig:
    base: str = ""  # SDXL single-file checkpoint: a path or a name in ComfyUI's models/checkpoints
    init: str = "scratch"  # "scratch" or a file of the recipe's trained modules to fine-tune


@dataclass
class DataConfig:
    folder: str = ""  # images + one layout JSON per image (docs/training.md)
    resolution: int = 1024  # bucket area = resolution², SDXL's aspect buckets scaled to it
    bucket_step: int = 64  # bucket sides are multiples of this (>= 32: SDXL's UNet needs latents divisible by 4)
    buckets: list = field(default_factory=list)  # explicit [[width, height], ...] instead of the scaled SDXL list
    random_crop: bool = True  # crop position random (seeded per sample) instead of centred
    min_box_area: float = 0.01  # instances whose box covers less than this fraction of the image are dropped
    max_instances: int = 10  # a random subset (new at every step) when an image has more
    holdout: float = 0.0  # fraction of the samples held out of training for the eval loss (chosen by name hash)


@dataclass
class CacheConfig:
    dir: str = ""  # default: <output_dir>/../cache
    dtype: str = "float16"  # storage dtype of latents and text features
    shard_size: int = 256  # samples per safetensors shard


@dataclass
class TrainConfig:
    output_dir: str = ""  # default: runs/<recipe>
    name: str = ""  # exported file: <output_dir>/<name>.safetensors (default: the recipe's name)
    seed: int = 0
    max_steps: int = 100_000
    batch_size: int = 160  # global batch (all processes, all accumulation steps)
    micro_batch_size: int = 4  # per process and forward pass
    lr: float = 1e-4
    warmup_steps: int = 1000
    lr_schedule: str = "constant"  # "constant" or "cosine" (after warm-up)
    weight_decay: float = 0.01
    adam_betas: list = field(default_factory=lambda: [0.9, 0.999])
    adam_eps: float = 1e-8
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    precision: str = "bf16"  # "bf16", "fp16" or "fp32" (autocast; on CPU only bf16/fp32)
    gradient_checkpointing: bool = True  # recompute the frozen UNet's blocks in the backward pass
    ema_decay: float = 0.0  # 0 disables EMA; e.g. 0.9999
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    log_every: int = 10
    eval_every: int = 0  # eval loss every N steps; 0: only at the start and the end
    eval_samples: int = 8  # at most this many eval samples (the held-out split, else the first training samples)
    eval_timesteps: list = field(default_factory=lambda: [100, 300, 500, 700, 900])  # each eval sample at each
    eval_batch_size: int = 4  # eval micro-batch (fixed, so the eval loss is the same at any world size)
    eval_train_split: bool = False  # with a holdout: also the loss on the first eval_samples training samples


@dataclass
class SamplesConfig:
    every: int = 0  # 0 disables preview images
    layouts: list = field(default_factory=list)  # layout JSON files (pack format or official sample format)
    steps: int = 30
    cfg: float = 7.5
    seed: int = 0
    sampler: str = "euler"
    scheduler: str = "normal"


@dataclass
class EvalConfig:
    every: int = 0  # steps between metric evaluations (also at the start and the end); 0 disables
    metrics: list = field(default_factory=list)  # names from train/engine/eval_metrics.py METRICS
    layouts: str = "samples"  # "samples" ([samples] layouts), "holdout" (held-out samples' layouts) or "both"
    max_layouts: int = 16  # at most this many eval layouts (images generated per evaluation)
    models_dir: str = ""  # folder with clip/, detection/, vlm/, yolo/ sub-folders (default: ComfyUI's models)
    clip: str = "openai/clip-vit-large-patch14"  # CLIP / SigLIP for clip_score, instance_clip_score, *_binding
    detector: str = "IDEA-Research/grounding-dino-tiny"  # Grounding DINO / OWLv2 for box_ap and ifs
    detector_threshold: float = 0.1  # the detector's box (and Grounding DINO's text) score threshold
    vlm: str = ""  # image-text-to-text model for ifs (e.g. Qwen/Qwen2-VL-2B-Instruct)
    yolo: str = ""  # ultralytics YOLO-seg .pt for mask_ap, mask_iou, pim_* (needs ultralytics)
    allow_download: bool = False  # fetch a missing hub name into models_dir on first use
    batch_size: int = 8  # images / crops per model call


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    samples: SamplesConfig = field(default_factory=SamplesConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    recipe: str = ""  # the recipe's name (its table is [<recipe>])
    options: Any = None  # the recipe's table (its Options dataclass)
    source: str = ""  # the file it was read from (paths are relative to its folder)

    def to_dict(self) -> dict:
        d = {t: dataclasses.asdict(getattr(self, t)) for t in _TABLES}
        d["recipe"] = self.recipe
        if self.options is not None:
            d[self.recipe] = dataclasses.asdict(self.options)
        return d

    def digest(self, *tables: str) -> str:
        """A short hash of the given tables (all when none), for cache keys and resume checks."""
        d = self.to_dict()
        sub = {t: d[t] for t in (tables or d)}
        return hashlib.sha256(json.dumps(sub, sort_keys=True).encode()).hexdigest()[:16]


_TABLES = {"model": ModelConfig, "data": DataConfig, "cache": CacheConfig, "train": TrainConfig,
           "samples": SamplesConfig, "eval": EvalConfig}


def _coerce(table: str, key: str, value: Any, default: Any) -> Any:
    where = f"[{table}] {key}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        value = float(value)
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
    elif isinstance(default, list) and not isinstance(value, list):
        raise ConfigError(f"{where} must be a list, got {value!r}")
    elif isinstance(default, dict) and not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table, got {value!r}")
    return value


def _recipe_class(recipe):
    if isinstance(recipe, str):
        from ..recipes import get_recipe

        return get_recipe(recipe)
    return recipe


def _fill(table: str, obj: Any, values: Any) -> None:
    if not isinstance(values, dict):
        raise ConfigError(f"[{table}] must be a table")
    known = {f.name for f in dataclasses.fields(obj)}
    bad = sorted(set(values) - known)
    if bad:
        raise ConfigError(f"unknown key(s) {bad} in [{table}]; known keys: {sorted(known)}")
    for key, value in values.items():
        setattr(obj, key, _coerce(table, key, value, getattr(obj, key)))


def from_dict(raw: dict, recipe, source: str = "") -> Config:
    """Build and validate a :class:`Config` for ``recipe`` (a name or a ``Recipe`` class) from parsed TOML
    (relative paths resolved against ``source``'s folder)."""
    rc = _recipe_class(recipe)
    raw = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    own = dict(raw.get(rc.name, {})) if isinstance(raw.get(rc.name, {}), dict) else raw.get(rc.name)
    for (table, key), new in rc.legacy_keys.items():  # older files: recipe keys in an engine table
        if isinstance(raw.get(table), dict) and key in raw[table]:
            value = raw[table].pop(key)
            if isinstance(own, dict):
                own.setdefault(new, value)
    unknown = sorted(set(raw) - set(_TABLES) - {rc.name})
    if unknown:
        raise ConfigError(f"unknown table(s) {unknown}; the config has tables {sorted(_TABLES) + [rc.name]}")
    cfg = Config(source=source, recipe=rc.name, options=rc.Options())
    for table, values in rc.defaults.items():  # the recipe's defaults, then the file
        for key, value in values.items():
            setattr(getattr(cfg, table), key, value)
    for table in _TABLES:
        _fill(table, getattr(cfg, table), raw.get(table, {}))
    _fill(rc.name, cfg.options, own if own is not None else {})
    cfg.train.output_dir = cfg.train.output_dir or os.path.join("runs", rc.name)
    cfg.train.name = cfg.train.name or rc.name
    _resolve_paths(cfg, os.path.dirname(os.path.abspath(source)) if source else os.getcwd())
    validate(cfg, rc.max_instances_limit)
    rc.validate(cfg)
    return cfg


def load(path: str, recipe) -> Config:
    """Read a TOML config file for ``recipe`` (a name or a ``Recipe`` class)."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    return from_dict(raw, recipe, source=path)


def _resolve_paths(cfg: Config, base: str) -> None:
    def rel(p: str) -> str:
        return p if not p or os.path.isabs(p) else os.path.normpath(os.path.join(base, p))

    cfg.data.folder = rel(cfg.data.folder)
    cfg.train.output_dir = rel(cfg.train.output_dir)
    cfg.cache.dir = rel(cfg.cache.dir) if cfg.cache.dir else os.path.join(os.path.dirname(cfg.train.output_dir),
                                                                            "cache")
    if cfg.model.init != "scratch":
        cfg.model.init = rel(cfg.model.init)
    if cfg.model.base and (os.sep in cfg.model.base or cfg.model.base.startswith(".")):
        cfg.model.base = rel(cfg.model.base)
    cfg.samples.layouts = [rel(p) for p in cfg.samples.layouts]
    cfg.eval.models_dir = rel(cfg.eval.models_dir)


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def validate(cfg: Config, max_instances_limit: int = 10) -> None:
    """Check the engine's ranges and combinations; raise :class:`ConfigError` naming the key."""
    m, d, c, t, s = cfg.model, cfg.data, cfg.cache, cfg.train, cfg.samples
    _check(bool(m.base), "[model] base is required: a checkpoint file or its name in models/checkpoints")
    _check(bool(d.folder), "[data] folder is required: the dataset folder (images + layout JSON files)")
    _check(64 <= d.resolution <= 4096, f"[data] resolution must be in 64..4096, got {d.resolution}")
    _check(d.bucket_step >= 32 and d.bucket_step % 32 == 0,
           f"[data] bucket_step must be a multiple of 32, got {d.bucket_step}")
    for b in d.buckets:
        _check(isinstance(b, list) and len(b) == 2 and all(isinstance(v, int) and v > 0 and v % 32 == 0 for v in b),
               f"[data] buckets entries must be [width, height] multiples of 32, got {b!r}")
    _check(0.0 <= d.min_box_area < 1.0, f"[data] min_box_area must be in [0, 1), got {d.min_box_area}")
    _check(1 <= d.max_instances <= max_instances_limit,
           f"[data] max_instances must be in 1..{max_instances_limit} for the {cfg.recipe or 'chosen'} recipe, got "
           f"{d.max_instances}")
    _check(0.0 <= d.holdout <= 0.5, f"[data] holdout must be a fraction in [0, 0.5], got {d.holdout}")
    _check(c.dtype in ("float16", "bfloat16", "float32"),
           f"[cache] dtype must be float16, bfloat16 or float32, got {c.dtype!r}")
    _check(c.shard_size >= 1, f"[cache] shard_size must be >= 1, got {c.shard_size}")
    _check(t.max_steps >= 1, f"[train] max_steps must be >= 1, got {t.max_steps}")
    _check(t.batch_size >= 1 and t.micro_batch_size >= 1, "[train] batch_size and micro_batch_size must be >= 1")
    _check(t.lr > 0, f"[train] lr must be > 0, got {t.lr}")
    _check(t.warmup_steps >= 0, f"[train] warmup_steps must be >= 0, got {t.warmup_steps}")
    _check(t.lr_schedule in ("constant", "cosine"), f"[train] lr_schedule must be 'constant' or 'cosine', got "
                                                    f"{t.lr_schedule!r}")
    _check(len(t.adam_betas) == 2 and all(0 <= b < 1 for b in t.adam_betas),
           f"[train] adam_betas must be two numbers in [0, 1), got {t.adam_betas}")
    _check(t.grad_clip >= 0, f"[train] grad_clip must be >= 0, got {t.grad_clip}")
    _check(t.precision in ("bf16", "fp16", "fp32"), f"[train] precision must be bf16, fp16 or fp32, got "
                                                     f"{t.precision!r}")
    _check(0.0 <= t.ema_decay < 1.0, f"[train] ema_decay must be in [0, 1), got {t.ema_decay}")
    _check(t.checkpoint_every >= 1 and t.keep_checkpoints >= 1 and t.log_every >= 1,
           "[train] checkpoint_every, keep_checkpoints and log_every must be >= 1")
    _check(t.eval_every >= 0 and t.eval_samples >= 0, "[train] eval_every and eval_samples must be >= 0")
    _check(bool(t.eval_timesteps) and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1000
                                          for v in t.eval_timesteps),
           f"[train] eval_timesteps must be a non-empty list of integers in 0..999, got {t.eval_timesteps!r}")
    _check(t.eval_batch_size >= 1, f"[train] eval_batch_size must be >= 1, got {t.eval_batch_size}")
    _check(s.every >= 0 and s.steps >= 1, "[samples] every must be >= 0 and steps >= 1")
    _check(not s.every or bool(s.layouts), "[samples] every > 0 needs at least one layout file in [samples] layouts")
    _validate_eval(cfg)


def _validate_eval(cfg: Config) -> None:
    from .eval_metrics import LAYOUT_SOURCES, METRICS

    e = cfg.eval
    _check(e.every >= 0 and e.max_layouts >= 1 and e.batch_size >= 1,
           "[eval] every must be >= 0, max_layouts and batch_size >= 1")
    _check(0.0 <= e.detector_threshold <= 1.0, f"[eval] detector_threshold must be in [0, 1], got "
                                               f"{e.detector_threshold}")
    bad = [m for m in e.metrics if m not in METRICS]
    _check(not bad, f"[eval] metrics: unknown {bad}; known metrics: {sorted(METRICS)}")
    _check(not e.every or bool(e.metrics), "[eval] every > 0 needs at least one name in [eval] metrics")
    _check(e.layouts in LAYOUT_SOURCES, f"[eval] layouts must be one of {list(LAYOUT_SOURCES)}, got {e.layouts!r}")
    if not e.every:
        return
    _check(e.layouts == "holdout" or bool(cfg.samples.layouts),
           f"[eval] layouts = {e.layouts!r} needs layout files in [samples] layouts")
    _check(e.layouts == "samples" or cfg.data.holdout > 0,
           f"[eval] layouts = {e.layouts!r} needs a held-out split ([data] holdout > 0)")
    for m in e.metrics:
        for kind in METRICS[m]:
            _check(bool(getattr(e, kind)), f"[eval] metric {m} needs a {kind} model: set [eval] {kind}")


def accumulation_steps(cfg: Config, world_size: int) -> int:
    """Micro-steps per optimiser step so that ``micro_batch_size x world_size x accumulation == batch_size``."""
    per_pass = cfg.train.micro_batch_size * world_size
    if cfg.train.batch_size % per_pass:
        raise ConfigError(
            f"[train] batch_size {cfg.train.batch_size} is not a multiple of micro_batch_size "
            f"{cfg.train.micro_batch_size} x {world_size} processes = {per_pass}; choose e.g. batch_size "
            f"{max(per_pass, cfg.train.batch_size // per_pass * per_pass)}")
    return cfg.train.batch_size // per_pass
