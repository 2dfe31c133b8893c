"""The trainer's configuration: a TOML file with four tables, every key optional except the base model and data.

Defaults are the paper's recipe (spec §5): AdamW at 1e-4, global batch 160, 100k steps, condition dropout 15 %
local / 30 % global drawn independently per sample; and the spec's proposals where the paper is silent: 1024²
buckets, bf16, uniform timesteps, gradient clipping 1.0, no EMA, at most 10 instances, boxes under 1 % dropped.
Every key is documented in docs/training.md. Unknown keys are refused with the list of known ones.
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
    init: str = "scratch"  # "scratch" or an IFAdapter file (spd_adapter.bin / .safetensors) to fine-tune
    resampler_mask: str = "auto"  # "auto", "official-quirk" or "all-words"
    resampler: dict = field(default_factory=dict)  # Resampler sizes for from-scratch runs (default: official)


@dataclass
class DataConfig:
    folder: str = ""  # images + one layout JSON per image (docs/training.md)
    resolution: int = 1024  # bucket area = resolution², SDXL's aspect buckets scaled to it
    bucket_step: int = 64  # bucket sides are multiples of this (>= 32: SDXL's UNet needs latents divisible by 4)
    buckets: list = field(default_factory=list)  # explicit [[width, height], ...] instead of the scaled SDXL list
    random_crop: bool = True  # crop position random (seeded per sample) instead of centred
    min_box_area: float = 0.01  # instances whose box covers less than this fraction of the image are dropped
    max_instances: int = 10  # a random subset (new at every step) when an image has more


@dataclass
class CacheConfig:
    dir: str = ""  # default: <output_dir>/../cache
    dtype: str = "float16"  # storage dtype of latents and text features
    shard_size: int = 256  # samples per safetensors shard


@dataclass
class TrainConfig:
    output_dir: str = "runs/ifadapter"
    name: str = "ifadapter"  # exported file: <output_dir>/<name>.safetensors
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
    drop_local: float = 0.15  # probability of dropping a sample's descriptions (boxes kept)
    drop_global: float = 0.30  # probability of dropping a sample's caption (zero prompt and pooled embeddings)
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    log_every: int = 10
    eval_every: int = 0  # 0: evaluate only at the start and the end
    eval_samples: int = 8  # fixed samples (fixed noise and timesteps) for the eval loss


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
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    samples: SamplesConfig = field(default_factory=SamplesConfig)
    source: str = ""  # the file it was read from (paths are relative to its folder)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("source")
        return d

    def digest(self, *tables: str) -> str:
        """A short hash of the given tables (all when none), for cache keys and resume checks."""
        d = self.to_dict()
        sub = {t: d[t] for t in (tables or d)}
        return hashlib.sha256(json.dumps(sub, sort_keys=True).encode()).hexdigest()[:16]


_TABLES = {"model": ModelConfig, "data": DataConfig, "cache": CacheConfig, "train": TrainConfig,
           "samples": SamplesConfig}


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


def from_dict(raw: dict, source: str = "") -> Config:
    """Build and validate a :class:`Config` from parsed TOML (relative paths resolved against ``source``'s folder)."""
    unknown = sorted(set(raw) - set(_TABLES))
    if unknown:
        raise ConfigError(f"unknown table(s) {unknown}; the config has tables {sorted(_TABLES)}")
    cfg = Config(source=source)
    for table, cls in _TABLES.items():
        values = raw.get(table, {})
        if not isinstance(values, dict):
            raise ConfigError(f"[{table}] must be a table")
        obj = getattr(cfg, table)
        known = {f.name: f for f in dataclasses.fields(cls)}
        bad = sorted(set(values) - set(known))
        if bad:
            raise ConfigError(f"unknown key(s) {bad} in [{table}]; known keys: {sorted(known)}")
        for key, value in values.items():
            setattr(obj, key, _coerce(table, key, value, getattr(obj, key)))
    _resolve_paths(cfg, os.path.dirname(os.path.abspath(source)) if source else os.getcwd())
    validate(cfg)
    return cfg


def load(path: str) -> Config:
    """Read a TOML config file."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    return from_dict(raw, source=path)


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


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def validate(cfg: Config) -> None:
    """Check ranges and combinations; raise :class:`ConfigError` naming the key."""
    m, d, c, t, s = cfg.model, cfg.data, cfg.cache, cfg.train, cfg.samples
    _check(bool(m.base), "[model] base is required: an SDXL checkpoint file or its name in models/checkpoints")
    _check(bool(d.folder), "[data] folder is required: the dataset folder (images + layout JSON files)")
    _check(m.resampler_mask in ("auto", "official-quirk", "all-words"),
           f"[model] resampler_mask must be 'auto', 'official-quirk' or 'all-words', got {m.resampler_mask!r}")
    allowed_res = {"dim", "depth", "heads", "dim_head", "ff_mult"}
    _check(set(m.resampler) <= allowed_res and all(isinstance(v, int) and v > 0 for v in m.resampler.values()),
           f"[model] resampler takes positive integers for {sorted(allowed_res)}, got {m.resampler!r}")
    _check(64 <= d.resolution <= 4096, f"[data] resolution must be in 64..4096, got {d.resolution}")
    _check(d.bucket_step >= 32 and d.bucket_step % 32 == 0,
           f"[data] bucket_step must be a multiple of 32, got {d.bucket_step}")
    for b in d.buckets:
        _check(isinstance(b, list) and len(b) == 2 and all(isinstance(v, int) and v > 0 and v % 32 == 0 for v in b),
               f"[data] buckets entries must be [width, height] multiples of 32, got {b!r}")
    _check(0.0 <= d.min_box_area < 1.0, f"[data] min_box_area must be in [0, 1), got {d.min_box_area}")
    _check(1 <= d.max_instances <= 10, f"[data] max_instances must be in 1..10 (IFAdapter's slots), got "
                                       f"{d.max_instances}")
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
    _check(0.0 <= t.drop_local <= 1.0 and 0.0 <= t.drop_global <= 1.0,
           "[train] drop_local and drop_global are probabilities in [0, 1]")
    _check(t.checkpoint_every >= 1 and t.keep_checkpoints >= 1 and t.log_every >= 1,
           "[train] checkpoint_every, keep_checkpoints and log_every must be >= 1")
    _check(t.eval_every >= 0 and t.eval_samples >= 0, "[train] eval_every and eval_samples must be >= 0")
    _check(s.every >= 0 and s.steps >= 1, "[samples] every must be >= 0 and steps >= 1")
    _check(not s.every or bool(s.layouts), "[samples] every > 0 needs at least one layout file in [samples] layouts")


def accumulation_steps(cfg: Config, world_size: int) -> int:
    """Micro-steps per optimiser step so that ``micro_batch_size x world_size x accumulation == batch_size``."""
    per_pass = cfg.train.micro_batch_size * world_size
    if cfg.train.batch_size % per_pass:
        raise ConfigError(
            f"[train] batch_size {cfg.train.batch_size} is not a multiple of micro_batch_size "
            f"{cfg.train.micro_batch_size} x {world_size} processes = {per_pass}; choose e.g. batch_size "
            f"{max(per_pass, cfg.train.batch_size // per_pass * per_pass)}")
    return cfg.train.batch_size // per_pass
