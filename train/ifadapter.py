"""Train IFAdapter on a frozen SDXL checkpoint: ``python -m train.ifadapter --config my.toml``.

One process per device; several with ``torchrun --nproc_per_node N -m train.ifadapter --config my.toml`` (DDP:
NCCL on GPUs, Gloo on CPUs; multi-node with torchrun's ``--nnodes`` / ``--rdzv-endpoint``). The run:

1. loads the base model through ComfyUI's checkpoint loader (``train/comfy_bridge.py``);
2. builds or reuses the cache of latents and text features (``train/cache.py``), then frees the text encoders;
3. trains the adapter (``train/model.py``) with AdamW, warm-up, gradient accumulation, autocast, clipping and
   optional EMA; the same steps whatever the number of processes (``train/batches.py``);
4. writes resumable checkpoints (``train/state.py``), preview images (``train/previews.py``) and finally
   ``<output_dir>/<name>.safetensors`` for the IFAdapter Loader (``train/export.py``).

Restarting the same command continues from the newest checkpoint in ``output_dir``.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import hashlib
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from . import comfy_bridge
from .batches import EVAL_STEP, BatchPlan, collate, draw
from .cache import TextEncoder, ensure_cache, file_sha256
from .config import Config, ConfigError, accumulation_steps, load
from .progress import Progress
from .state import load_latest, rng_state, save_checkpoint, set_rng_state

log = logging.getLogger("train.ifadapter")
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


@dataclass
class Dist:
    """This process's place in the run."""

    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    @classmethod
    def from_env(cls, force_cpu: bool = False) -> Dist:
        """Read torchrun's environment; start the process group when there is more than one process."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        cuda = torch.cuda.is_available() and not force_cpu
        device = torch.device("cuda", local) if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(device)
        if world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo")
        return cls(rank, world, local, device)


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """Linear warm-up over ``warmup`` steps, then constant or cosine decay to 0 at ``total``."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "cosine":
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return 1.0


def adapter_shape(model_patcher) -> dict:
    """``IFAdapter(...)`` width and heads for this UNet's IFAdapter layers (1280 / 20 for real SDXL)."""
    cfg = model_patcher.model.model_config.unet_config
    width = cfg["model_channels"] * list(cfg["channel_mult"])[-1]
    head_ch = cfg.get("num_head_channels", -1)
    heads = width // head_ch if head_ch and head_ch > 0 else cfg["num_heads"]
    return {"hidden_size": int(width), "heads": int(heads), "context_dim": int(cfg["context_dim"])}


def build_adapter(cfg: Config, model_patcher, seed: int):
    """The adapter to train: loaded from ``[model] init`` (fine-tune) or freshly initialised (float32, CPU)."""
    from core.ifadapter import IFAdapter, load_ifadapter, read_metadata
    from core.ifadapter.loading import resampler_mask_quirk

    shape = adapter_shape(model_patcher)
    if cfg.model.init != "scratch":
        quirk = (resampler_mask_quirk(read_metadata(cfg.model.init)) if cfg.model.resampler_mask == "auto"
                 else cfg.model.resampler_mask == "official-quirk")
        adapter = load_ifadapter(cfg.model.init, dtype=torch.float32, official_mask_quirk=quirk)
        adapter = copy.deepcopy(adapter)  # detach from the file's memory map
        if (adapter.hidden_size, adapter.heads) != (shape["hidden_size"], shape["heads"]):
            raise ValueError(f"{cfg.model.init} was built for {adapter.hidden_size}-wide layers with {adapter.heads} "
                             f"heads; this base model's IFAdapter layers are {shape['hidden_size']} / {shape['heads']}")
        if cfg.model.resampler:
            log.warning("[model] resampler is ignored when starting from %s", cfg.model.init)
    else:
        quirk = cfg.model.resampler_mask == "official-quirk"
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            adapter = IFAdapter(official_mask_quirk=quirk, resampler_kwargs=cfg.model.resampler, **shape)
    return adapter.float().train().requires_grad_(True)


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process: CUDA memory allocated on a GPU, resident set size on the CPU (MiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _median(values: list[float]) -> float:
    v = sorted(values)
    return (v[(len(v) - 1) // 2] + v[len(v) // 2]) / 2 if v else float("nan")


def weights_digest(module: torch.nn.Module) -> str:
    """SHA-256 of every parameter's bytes, in order (equal digests = bitwise equal weights)."""
    h = hashlib.sha256()
    for name, p in module.state_dict().items():
        h.update(name.encode())
        h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class Trainer:
    def __init__(self, cfg: Config, d: Dist):
        self.cfg, self.d = cfg, d
        comfy_bridge.setup_comfy(cpu=d.device.type == "cpu")
        self.ifa_nodes = comfy_bridge.pack_module("ifadapter")
        self.patches = comfy_bridge.pack_module("patches")
        self.steps = comfy_bridge.pack_module("steps")
        self.base_path = comfy_bridge.checkpoint_path(cfg.model.base)
        self.patcher, clip, self.vae = comfy_bridge.load_base_model(self.base_path)
        refusal = self.ifa_nodes.sdxl_refusal(self.patcher)
        if refusal:
            raise ValueError(f"{self.base_path}: {refusal}")
        os.makedirs(cfg.cache.dir, exist_ok=True)
        if d.main:
            self.model_hash = file_sha256(self.base_path, cfg.cache.dir)
        d.barrier()
        if not d.main:
            self.model_hash = file_sha256(self.base_path, cfg.cache.dir)
        text = TextEncoder(clip, self.ifa_nodes.encode_descriptions)
        self.reader = ensure_cache(cfg, self.model_hash, functools.partial(tuple, (self.vae, self.patcher, text)),
                                   d.rank, d.world, d.barrier)
        self.previews = None
        if cfg.samples.every and d.main:
            from .previews import PreviewRenderer

            self.previews = PreviewRenderer(cfg.samples.layouts, text, self.ifa_nodes,
                                            os.path.join(cfg.train.output_dir, "samples"))
        del clip, text
        import comfy.model_management as mm

        mm.unload_all_models()
        mm.soft_empty_cache()

    # ------------------------------------------------------------------------------------------------ setup
    def _place_unet(self) -> None:
        dm = self.patcher.model.diffusion_model
        dm.requires_grad_(False).eval()
        dtype = AUTOCAST[self.cfg.train.precision] if self.d.device.type == "cuda" else None
        if dtype is not None:  # frozen weights in the autocast dtype: half the memory, same matmuls
            dm.to(dtype)
            dm.dtype = dtype
        self.patcher.model.to(self.d.device)

    def _encode_adm(self, pooled: torch.Tensor, entry: dict) -> torch.Tensor:
        (oh, ow), (top, left), (bw, bh) = entry["original_size"], entry["crop"], entry["bucket"]
        return self.patcher.model.encode_adm(pooled_output=pooled, width=ow, height=oh, crop_w=left, crop_h=top,
                                             target_width=bw, target_height=bh, device="cpu")

    def _batch(self, positions: list[int], offsets: list[int], step: int, dropout: bool) -> dict:
        t, dcfg = self.cfg.train, self.cfg.data
        samples, draws = [], []
        for pos, off in zip(positions, offsets):
            s = self.reader.get(pos)
            samples.append(s)
            draws.append(draw(t.seed, step, off, tuple(s["latent"].shape), s["boxes"].shape[0], dcfg.max_instances,
                              t.drop_local if dropout else 0.0, t.drop_global if dropout else 0.0))
        batch = collate(samples, draws, self._encode_adm)
        return {k: v.to(self.d.device, non_blocking=True) for k, v in batch.items()}

    # ------------------------------------------------------------------------------------------------ eval
    def evaluate(self, model) -> float:
        """Mean loss on the fixed evaluation set (first ``eval_samples`` samples, fixed draws, no dropout)."""
        n = min(self.cfg.train.eval_samples, len(self.reader))
        if n == 0:
            return float("nan")
        groups: dict = {}
        for pos in range(n):
            groups.setdefault(tuple(self.reader.samples[pos]["bucket"]), []).append(pos)
        total, mb = 0.0, self.cfg.train.micro_batch_size
        with torch.no_grad():
            for members in groups.values():
                for i in range(0, len(members), mb):
                    chunk = members[i:i + mb]
                    batch = self._batch(chunk, chunk, EVAL_STEP, dropout=False)
                    total += float(model(batch)) * len(chunk)
        return total / n

    # ------------------------------------------------------------------------------------------------ run
    def run(self) -> dict:
        cfg, d, t = self.cfg, self.d, self.cfg.train
        accum = accumulation_steps(cfg, d.world)
        plan = BatchPlan([s["bucket"] for s in self.reader.samples], t.batch_size, t.seed)
        adapter = build_adapter(cfg, self.patcher, t.seed).to(d.device)
        self._place_unet()
        from .model import AdapterTrainingModel, enable_gradient_checkpointing

        if t.gradient_checkpointing:
            enable_gradient_checkpointing(self.patcher.model.diffusion_model)
        inner = AdapterTrainingModel(adapter, self.patcher, self.ifa_nodes, self.patches, self.steps,
                                     AUTOCAST[t.precision])
        model = inner
        if d.world > 1:
            model = torch.nn.parallel.DistributedDataParallel(
                inner, device_ids=[d.local_rank] if d.device.type == "cuda" else None)
        params = [p for p in adapter.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=t.lr, betas=tuple(t.adam_betas), eps=t.adam_eps,
                                weight_decay=t.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_factor(s, t.warmup_steps, t.max_steps, t.lr_schedule))
        scaler = torch.amp.GradScaler(d.device.type, enabled=t.precision == "fp16" and d.device.type == "cuda")
        ema = [p.detach().clone() for p in params] if t.ema_decay > 0 else None

        step = 0
        state = load_latest(t.output_dir)
        if state is not None:
            adapter.load_state_dict(state["adapter"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            if ema is not None and state.get("ema") is not None:
                for e, k in zip(ema, [k for k, p in adapter.named_parameters() if p.requires_grad]):
                    e.copy_(state["ema"][k])
            set_rng_state(state["rng"])
            step = int(state["step"])
            if state.get("world_size") != d.world or state.get("batch_size") != t.batch_size:
                log.warning("resuming a run made with %s processes / batch %s on %s / %s: the data order and "
                            "micro-batches follow the new setting", state.get("world_size"), state.get("batch_size"),
                            d.world, t.batch_size)
            if d.main:
                log.info("resumed from %s at step %d", state["path"], step)
        summary_info = {"base_model": os.path.basename(self.base_path), "base_model_sha256": self.model_hash,
                        "data": self.reader.summary(), "resampler_mask":
                        "official-quirk" if adapter.official_mask_quirk else "all-words",
                        "init": "scratch" if cfg.model.init == "scratch" else os.path.basename(cfg.model.init),
                        "batch_size": t.batch_size, "lr": t.lr, "precision": t.precision}
        if d.main:
            left = plan.left_out_per_epoch()
            log.info("%d samples (%d skipped), %d steps per epoch, %d left out per epoch (bucket remainders); "
                     "%d processes x micro-batch %d x %d accumulation = batch %d", len(self.reader),
                     len(self.reader.manifest["bad"]), plan.per_epoch, left, d.world, t.micro_batch_size, accum,
                     t.batch_size)
        progress = Progress(t.output_dir, t.max_steps, step, d.main)
        evals = {}
        if step == 0 and d.main and t.eval_samples:
            evals[0] = self.evaluate(inner)
            progress.record(0, eval_loss=evals[0])
        d.barrier()

        def export_info(at_step: int) -> dict:
            return dict(summary_info, steps=at_step)

        def ema_state() -> dict | None:
            if ema is None:
                return None
            names = [k for k, p in adapter.named_parameters() if p.requires_grad]
            sd = {k: v.detach().cpu() for k, v in adapter.state_dict().items()}
            sd.update({k: e.detach().cpu() for k, e in zip(names, ema)})
            return sd

        def export_weights() -> dict:
            return ema_state() or {k: v.detach().cpu() for k, v in adapter.state_dict().items()}

        step_times = []
        while step < t.max_steps:
            t0 = time.perf_counter()
            positions = plan.batch(step)
            opt.zero_grad(set_to_none=True)
            loss_sum = torch.zeros((), device=d.device)
            for a in range(accum):
                lo = (a * d.world + d.rank) * t.micro_batch_size
                offsets = list(range(lo, lo + t.micro_batch_size))
                batch = self._batch([positions[o] for o in offsets], offsets, step, dropout=True)
                sync = contextlib.nullcontext() if (d.world == 1 or a == accum - 1) else model.no_sync()
                with sync:
                    loss = model(batch) / accum
                    scaler.scale(loss).backward()
                loss_sum += loss.detach()
            scaler.unscale_(opt)
            grad_norm = torch.nn.utils.clip_grad_norm_(params, t.grad_clip if t.grad_clip > 0 else float("inf"))
            scaler.step(opt)
            scaler.update()
            sched.step()
            if ema is not None:
                with torch.no_grad():
                    torch._foreach_lerp_(ema, [p.detach() for p in params], 1.0 - t.ema_decay)
            step += 1
            if d.world > 1:
                dist.all_reduce(loss_sum)
                loss_sum /= d.world
            dt = time.perf_counter() - t0
            step_times.append(dt)
            lr = sched.get_last_lr()[0]
            progress.step(step, float(loss_sum), dt, lr)
            if step % t.log_every == 0 or step == t.max_steps:
                progress.record(step, loss=float(loss_sum), lr=lr, grad_norm=float(grad_norm), step_time=dt)
            if t.eval_every and step % t.eval_every == 0 and d.main:
                evals[step] = self.evaluate(inner)
                progress.record(step, eval_loss=evals[step])
            if cfg.samples.every and step % cfg.samples.every == 0 and self.previews is not None:
                s = cfg.samples
                pics = self.previews.render(self._preview_adapter(adapter, ema_state()), self.patcher, self.vae, step,
                                            s.steps, s.cfg, s.seed, s.sampler, s.scheduler)
                progress.images(step, pics)
                self.patcher.model.to(d.device)
            if step % t.checkpoint_every == 0 or step == t.max_steps:
                if d.main:
                    save_checkpoint(t.output_dir, step, {
                        "adapter": {k: v.detach().cpu() for k, v in adapter.state_dict().items()},
                        "ema": ema_state(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                        "scaler": scaler.state_dict(), "step": step, "epoch": plan.position(step)[0],
                        "batch_in_epoch": plan.position(step)[1], "rng": rng_state(), "world_size": d.world,
                        "batch_size": t.batch_size, "config": json.dumps(cfg.to_dict()),
                        "adapter_config": adapter.config, "official_mask_quirk": adapter.official_mask_quirk,
                        "export_info": export_info(step)}, t.keep_checkpoints)
                d.barrier()
        if d.main and t.eval_samples and (t.max_steps not in evals):
            evals[t.max_steps] = self.evaluate(inner)
            progress.record(t.max_steps, eval_loss=evals[t.max_steps])
        progress.close()
        digests, peaks = [weights_digest(adapter)], [peak_memory_mb(d.device)]
        if d.world > 1:
            gathered = [None] * d.world
            dist.all_gather_object(gathered, (digests[0], peaks[0]))
            digests, peaks = [g[0] for g in gathered], [g[1] for g in gathered]
        out_path = os.path.join(t.output_dir, f"{t.name}.safetensors")
        summary = {"steps": step, "eval_loss": {str(k): v for k, v in evals.items()}, "weight_digests": digests,
                   "world_size": d.world, "step_time_mean": sum(step_times) / max(1, len(step_times)),
                   "step_time_median": _median(step_times[1:] or step_times), "peak_memory_mb": peaks,
                   "output": out_path, "data": self.reader.summary(), "skipped": self.reader.manifest["bad"]}
        if d.main:
            from .export import export_adapter

            export_adapter(export_weights(), adapter.config, adapter.official_mask_quirk, out_path,
                           export_info(step))
            with open(os.path.join(t.output_dir, "summary.json"), "w") as f:
                json.dump(summary, f, indent=1)
            log.info("wrote %s", out_path)
        d.barrier()
        return summary

    def _preview_adapter(self, adapter, ema_sd: dict | None):
        if ema_sd is None:
            return adapter
        shadow = copy.deepcopy(adapter)
        shadow.load_state_dict(ema_sd)
        return shadow


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m train.ifadapter", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="TOML file (docs/training.md lists every key)")
    p.add_argument("--cache-only", action="store_true", help="build the cache and stop")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is present")
    a = p.parse_args(argv)
    if not log.handlers:  # our own handler: ComfyUI configures the root logger its own way (level, format)
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[train] %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    try:
        cfg = load(a.config)
    except ConfigError as e:
        p.error(str(e))
    d = Dist.from_env(force_cpu=a.cpu)
    try:
        trainer = Trainer(cfg, d)
        if a.cache_only:
            summary = {"cache": trainer.reader.folder, "data": trainer.reader.summary()}
            if d.main:
                print(json.dumps(summary, indent=1))
            return summary
        return trainer.run()
    finally:
        if d.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
