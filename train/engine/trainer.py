"""The training run (engine): the same loop for every recipe.

1. load the base model through ComfyUI's checkpoint loader (``comfy_bridge``) and let the recipe check it;
2. build or reuse the cache of latents and recipe features (``cache.py``), prepare the preview layouts, then free the
   text encoders;
3. train the recipe's module with AdamW, warm-up, gradient accumulation, autocast, clipping and optional EMA, on the
   same global batches and draws whatever the number of processes (``batches.py``); the eval loss on the held-out
   split at fixed timesteps and noise (``evaluation.py``) and the ``[eval]`` metrics every N steps;
4. write resumable checkpoints (``state.py``), preview images (``previews.py``), metrics (``progress.py``) and finally
   ``<output_dir>/<name>.safetensors`` through the recipe's ``export``.

Restarting the same command continues from the newest checkpoint in ``output_dir``.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import logging
import math
import os
import time

import torch
import torch.distributed as dist

from . import comfy_bridge
from .batches import EVAL_STEP, BatchPlan, draw
from .cache import ensure_cache, file_sha256
from .config import Config, accumulation_steps
from .distributed import Dist, peak_memory_mb
from .evaluation import EvalLoss, holdout_positions
from .objective import DiffusionObjective, enable_gradient_checkpointing
from .progress import Progress
from .state import load_latest, rng_state, save_checkpoint, set_rng_state

log = logging.getLogger("train")
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """Linear warm-up over ``warmup`` steps, then constant or cosine decay to 0 at ``total``."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "cosine":
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return 1.0


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
    """One run of ``recipe`` (a :class:`~train.engine.recipe.Recipe` class) with ``cfg`` on this process."""

    def __init__(self, cfg: Config, d: Dist, recipe_cls):
        self.cfg, self.d = cfg, d
        comfy_bridge.setup_comfy(cpu=d.device.type == "cpu")
        self.recipe = recipe_cls(cfg)
        self.base_path = comfy_bridge.checkpoint_path(cfg.model.base)
        self.patcher, clip, self.vae = comfy_bridge.load_base_model(self.base_path)
        self.recipe.bind(self.patcher, self.base_path)
        self.recipe.setup()
        os.makedirs(cfg.cache.dir, exist_ok=True)
        if d.main:
            self.model_hash = file_sha256(self.base_path, cfg.cache.dir)
        d.barrier()
        if not d.main:
            self.model_hash = file_sha256(self.base_path, cfg.cache.dir)
        encoders = self.recipe.text_encoders(clip)
        self.reader = ensure_cache(cfg, self.model_hash, self.recipe,
                                   functools.partial(tuple, (self.vae, self.patcher, encoders)), d.rank, d.world,
                                   d.barrier)
        t = cfg.train
        self.holdout = holdout_positions(self.reader.samples, cfg.data.holdout)
        held = set(self.holdout)
        training = [p for p in range(len(self.reader)) if p not in held][:t.eval_samples]
        self.eval_sets = {}  # metrics.jsonl key -> EvalLoss
        if self.holdout:
            self.eval_sets["eval_loss"] = EvalLoss(self.reader.samples, self.holdout[:t.eval_samples],
                                                   t.eval_timesteps, t.eval_batch_size, d.rank, d.world, "holdout")
        if training and (not self.holdout or t.eval_train_split):
            key = "eval_loss_train" if self.holdout else "eval_loss"
            self.eval_sets[key] = EvalLoss(self.reader.samples, training, t.eval_timesteps, t.eval_batch_size,
                                           d.rank, d.world, "train")
        self.previews = self.eval_images = None
        if d.main and (cfg.samples.every or cfg.eval.every):
            from .previews import PreviewRenderer, read_layouts

            out = cfg.train.output_dir
            previews = read_layouts(cfg.samples.layouts)
            if cfg.samples.every:
                self.previews = PreviewRenderer(previews, self.recipe, encoders, os.path.join(out, "samples"))
            if cfg.eval.every:
                layouts = previews if cfg.eval.layouts != "holdout" else []
                if cfg.eval.layouts != "samples":
                    layouts = layouts + self._holdout_layouts()
                self.eval_images = PreviewRenderer(layouts[:cfg.eval.max_layouts], self.recipe, encoders,
                                                   os.path.join(out, "eval"), strict=False)
        del clip, encoders
        import comfy.model_management as mm

        mm.unload_all_models()
        mm.soft_empty_cache()

    def _holdout_layouts(self) -> list:
        """``(name, layout)`` of each held-out sample, its layout scaled to the sample's bucket."""
        from core.layout import Layout

        out = []
        for pos in self.holdout:
            entry = self.reader.samples[pos]
            with open(os.path.join(self.cfg.data.folder, entry["name"] + ".json"), encoding="utf-8") as f:
                layout = Layout.from_json(f.read())
            bw, bh = entry["bucket"]
            out.append((entry["name"].replace("/", "_"), layout.scaled(bw, bh)))
        return out

    # ------------------------------------------------------------------------------------------------ setup
    def _place_unet(self) -> None:
        dm = self.patcher.model.diffusion_model
        dm.requires_grad_(False).eval()
        dtype = AUTOCAST[self.cfg.train.precision] if self.d.device.type == "cuda" else None
        if dtype is not None:  # frozen weights in the autocast dtype: half the memory, same matmuls
            dm.to(dtype)
            dm.dtype = dtype
        self.patcher.model.to(self.d.device)

    def _batch(self, positions: list[int], offsets: list[int], step: int, train: bool,
               timesteps: list[int] | None = None) -> dict:
        seed = self.cfg.train.seed
        samples, draws = [], []
        for i, (pos, off) in enumerate(zip(positions, offsets)):
            s = self.reader.get(pos)
            samples.append(s)
            draws.append(draw(seed, step, off, tuple(s["latent"].shape),
                              lambda g, s=s: self.recipe.draw(g, s, train),
                              None if timesteps is None else timesteps[i]))
        batch = self.recipe.collate(samples, [dr.recipe for dr in draws])
        batch["latent"] = torch.stack([s["latent"] for s in samples])
        batch["noise"] = torch.stack([dr.noise for dr in draws])
        batch["timestep"] = torch.tensor([dr.timestep for dr in draws], dtype=torch.long)
        return {k: v.to(self.d.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}

    def _eval_batch(self, positions: list[int], timesteps: list[int]) -> dict:
        # noise and recipe draws of eval sample ``pos`` come from (seed, EVAL_STEP, pos): the same at every timestep
        return self._batch(positions, positions, EVAL_STEP, False, timesteps)

    def evaluate_metrics(self, trainable, step: int) -> dict[str, float]:
        """Rank 0: generate the eval layouts with ``trainable`` and score them with the ``[eval]`` metrics."""
        import numpy as np

        from .eval_metrics import MetricScorer
        from .previews import side_by_side

        s = self.cfg.samples
        items = []
        for name, layout, image in self.eval_images.generate(trainable, self.vae, s.steps, s.cfg, s.seed, s.sampler,
                                                             s.scheduler):
            items.append((layout, (image * 255).round().astype(np.uint8)))
            self.eval_images.save(step, name, side_by_side(image, self._layout_picture(layout, image)))
        self.patcher.model.to(self.d.device)
        return MetricScorer(self.cfg.eval, str(self.d.device)).score(items)

    @staticmethod
    def _layout_picture(layout, image):
        from core.render import render_layout

        return render_layout(layout.scaled(image.shape[1], image.shape[0]))

    def evaluate(self, model: DiffusionObjective) -> dict[str, float]:
        """The eval losses (see ``evaluation.py``) by metrics key, with the trained module in eval mode (dropout
        off); every rank must call it."""
        was_training = model.trainable.training
        model.trainable.eval()
        try:
            return {k: e(model, self._eval_batch, self.d.gather) for k, e in self.eval_sets.items()}
        finally:
            model.trainable.train(was_training)

    # ------------------------------------------------------------------------------------------------ run
    def run(self) -> dict:
        cfg, d, t, recipe = self.cfg, self.d, self.cfg.train, self.recipe
        accum = accumulation_steps(cfg, d.world)
        plan = BatchPlan([s["bucket"] for s in self.reader.samples], t.batch_size, t.seed, set(self.holdout))
        with torch.random.fork_rng():
            torch.manual_seed(t.seed)
            trainable = recipe.build_trainable(t.seed)
        trainable = trainable.float().train().to(d.device)
        self._place_unet()
        if t.gradient_checkpointing:
            enable_gradient_checkpointing(self.patcher.model.diffusion_model)
        inner = DiffusionObjective(recipe, trainable, self.patcher, AUTOCAST[t.precision])
        model = inner
        if d.world > 1:
            model = torch.nn.parallel.DistributedDataParallel(
                inner, device_ids=[d.local_rank] if d.device.type == "cuda" else None)
        names = [k for k, p in trainable.named_parameters() if p.requires_grad]
        params = [p for p in trainable.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=t.lr, betas=tuple(t.adam_betas), eps=t.adam_eps,
                                weight_decay=t.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_factor(s, t.warmup_steps, t.max_steps, t.lr_schedule))
        scaler = torch.amp.GradScaler(d.device.type, enabled=t.precision == "fp16" and d.device.type == "cuda")
        ema = [p.detach().clone() for p in params] if t.ema_decay > 0 else None

        step = 0
        state = load_latest(t.output_dir)
        if state is not None:
            if state.get("recipe", recipe.name) != recipe.name:
                raise ValueError(f"{state['path']} is a checkpoint of the {state['recipe']} recipe, not "
                                 f"{recipe.name}; use another [train] output_dir")
            trainable.load_state_dict(state["trainable"] if "trainable" in state else state["adapter"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            if ema is not None and state.get("ema") is not None:
                for e, k in zip(ema, names):
                    e.copy_(state["ema"][k])
            set_rng_state(state["rng"])
            step = int(state["step"])
            if state.get("world_size") != d.world or state.get("batch_size") != t.batch_size:
                log.warning("resuming a run made with %s processes / batch %s on %s / %s: the data order and "
                            "micro-batches follow the new setting", state.get("world_size"), state.get("batch_size"),
                            d.world, t.batch_size)
            if d.main:
                log.info("resumed from %s at step %d", state["path"], step)
        init = cfg.model.init
        summary_info = {"recipe": recipe.name, "base_model": os.path.basename(self.base_path),
                        "base_model_sha256": self.model_hash, "data": self.reader.summary(),
                        "init": "scratch" if init == "scratch" else os.path.basename(init),
                        "batch_size": t.batch_size, "lr": t.lr, "precision": t.precision,
                        **recipe.export_metadata(trainable)}
        if d.main:
            log.info("%d samples (%d skipped, %d held out), %d steps per epoch, %d left out per epoch (bucket "
                     "remainders); %d processes x micro-batch %d x %d accumulation = batch %d", len(self.reader),
                     len(self.reader.manifest["bad"]), len(self.holdout), plan.per_epoch, plan.left_out_per_epoch(),
                     d.world, t.micro_batch_size, accum, t.batch_size)
        progress = Progress(t.output_dir, t.max_steps, step, d.main, recipe.title or recipe.name)
        evals: dict[int, dict[str, float]] = {}
        scores: dict[int, dict[str, float]] = {}

        def eval_now(at: int) -> None:
            if self.eval_sets:
                evals[at] = self.evaluate(inner)
                progress.record(at, **evals[at])

        def metrics_now(at: int) -> None:
            if self.eval_images is not None:
                scores[at] = self.evaluate_metrics(self._shadow(trainable, ema_state()), at)
                progress.record(at, **{f"eval/{k}": v for k, v in scores[at].items()})

        def export_info(at_step: int) -> dict:
            return dict(summary_info, steps=at_step)

        def ema_state() -> dict | None:
            if ema is None:
                return None
            sd = {k: v.detach().cpu() for k, v in trainable.state_dict().items()}
            sd.update({k: e.detach().cpu() for k, e in zip(names, ema)})
            return sd

        def export_weights() -> dict:
            return ema_state() or {k: v.detach().cpu() for k, v in trainable.state_dict().items()}

        if step == 0:
            eval_now(0)
            metrics_now(0)
        d.barrier()
        step_times = []
        while step < t.max_steps:
            t0 = time.perf_counter()
            positions = plan.batch(step)
            opt.zero_grad(set_to_none=True)
            loss_sum = torch.zeros((), device=d.device)
            for a in range(accum):
                lo = (a * d.world + d.rank) * t.micro_batch_size
                offsets = list(range(lo, lo + t.micro_batch_size))
                batch = self._batch([positions[o] for o in offsets], offsets, step, train=True)
                sync = contextlib.nullcontext() if (d.world == 1 or a == accum - 1) else model.no_sync()
                with sync:
                    loss = model(batch).mean() / accum
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
            if t.eval_every and step % t.eval_every == 0:
                eval_now(step)
            if cfg.eval.every and step % cfg.eval.every == 0:
                metrics_now(step)
            if cfg.samples.every and step % cfg.samples.every == 0 and self.previews is not None:
                s = cfg.samples
                pics = self.previews.render(self._shadow(trainable, ema_state()), self.vae, step, s.steps, s.cfg,
                                            s.seed, s.sampler, s.scheduler)
                progress.images(step, pics)
                self.patcher.model.to(d.device)
            if step % t.checkpoint_every == 0 or step == t.max_steps:
                if d.main:
                    save_checkpoint(t.output_dir, step, {
                        "recipe": recipe.name,
                        "trainable": {k: v.detach().cpu() for k, v in trainable.state_dict().items()},
                        "ema": ema_state(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                        "scaler": scaler.state_dict(), "step": step, "epoch": plan.position(step)[0],
                        "batch_in_epoch": plan.position(step)[1], "rng": rng_state(), "world_size": d.world,
                        "batch_size": t.batch_size, "config": json.dumps(cfg.to_dict()),
                        "recipe_info": recipe.checkpoint_info(trainable), "export_info": export_info(step)},
                        t.keep_checkpoints)
                d.barrier()
        if t.max_steps not in evals:
            eval_now(t.max_steps)
        if cfg.eval.every and t.max_steps not in scores:
            metrics_now(t.max_steps)
        progress.close()
        digests, peaks = [weights_digest(trainable)], [peak_memory_mb(d.device)]
        gathered = d.gather((digests[0], peaks[0]))
        digests, peaks = [g[0] for g in gathered], [g[1] for g in gathered]
        out_path = os.path.join(t.output_dir, f"{t.name}.safetensors")
        summary = {"recipe": recipe.name, "steps": step,
                   **{key: {str(k): v[key] for k, v in evals.items()} for key in self.eval_sets},
                   "eval_samples": {key: len(e) for key, e in self.eval_sets.items()},
                   "eval_metrics": {str(k): v for k, v in scores.items()},
                   "held_out": [self.reader.samples[p]["name"] for p in self.holdout], "weight_digests": digests,
                   "world_size": d.world, "step_time_mean": sum(step_times) / max(1, len(step_times)),
                   "step_time_median": _median(step_times[1:] or step_times), "peak_memory_mb": peaks,
                   "output": out_path, "data": self.reader.summary(), "skipped": self.reader.manifest["bad"]}
        if d.main:
            recipe.export(export_weights(), recipe.checkpoint_info(trainable), out_path, export_info(step))
            with open(os.path.join(t.output_dir, "summary.json"), "w") as f:
                json.dump(summary, f, indent=1)
            log.info("wrote %s", out_path)
        d.barrier()
        return summary

    @staticmethod
    def _shadow(trainable, ema_sd: dict | None):
        if ema_sd is None:
            return trainable
        shadow = copy.deepcopy(trainable)
        shadow.load_state_dict(ema_sd)
        return shadow
