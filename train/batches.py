"""Which samples each step trains on, and the per-sample randomness: both pure functions of (seed, step).

- Batch plan: in epoch e, the samples of each aspect bucket are shuffled (seeded by e and the bucket) and cut into
  global batches of ``batch_size`` (a batch never mixes buckets; a bucket's remainder waits for the next epoch's
  shuffle); the epoch's batches are shuffled again. Step s trains on batch ``s mod n`` of epoch ``s div n``. The
  data position is therefore the step itself, which makes resuming exact.
- A global batch is split into micro-batches: micro-batch ``a`` of rank ``r`` holds the global positions
  ``[(a * world + r) * micro, ... + micro)``.
- Each sample's noise, timestep (uniform in [0, 1000)), condition dropout draws and instance subset come from a
  generator seeded by (run seed, step, position in the global batch): the same whatever the number of processes.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from .data import sample_seed

EVAL_STEP = 1 << 40  # the "step" whose draws make up the fixed evaluation set


class BatchPlan:
    """Global batches of manifest positions, epoch by epoch."""

    def __init__(self, bucket_of: list[tuple[int, int]], batch_size: int, seed: int):
        self.batch_size, self.seed = batch_size, seed
        self.groups: dict[tuple[int, int], list[int]] = {}
        for pos, b in enumerate(bucket_of):
            self.groups.setdefault(tuple(b), []).append(pos)
        self.per_epoch = sum(len(v) // batch_size for v in self.groups.values())
        if self.per_epoch == 0:
            sizes = {f"{w}x{h}": len(v) for (w, h), v in self.groups.items()}
            raise ValueError(f"no aspect bucket holds a whole batch of {batch_size} samples (bucket sizes: {sizes}); "
                             "lower [train] batch_size or add images")
        self._cache: dict[int, list[list[int]]] = {}

    def left_out_per_epoch(self) -> int:
        return sum(len(v) % self.batch_size for v in self.groups.values())

    def epoch(self, e: int) -> list[list[int]]:
        if e not in self._cache:
            batches = []
            for k, (_, members) in enumerate(sorted(self.groups.items())):
                order = list(members)
                random.Random(sample_seed(self.seed, e, k, 1)).shuffle(order)
                for i in range(len(order) // self.batch_size):
                    batches.append(order[i * self.batch_size:(i + 1) * self.batch_size])
            random.Random(sample_seed(self.seed, e, 2)).shuffle(batches)
            self._cache = {e: batches}
        return self._cache[e]

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, batch index in the epoch) of ``step``."""
        return divmod(step, self.per_epoch)

    def batch(self, step: int) -> list[int]:
        e, i = self.position(step)
        return self.epoch(e)[i]


@dataclass
class Draws:
    """Per-sample draws: noise ``[4, h, w]``, timestep, dropout flags, kept instance indices."""

    noise: torch.Tensor
    timestep: int
    keep_text: bool
    keep_prompt: bool
    instances: torch.Tensor


def draw(seed: int, step: int, offset: int, latent_shape: tuple, n_instances: int, max_instances: int,
         drop_local: float, drop_global: float) -> Draws:
    """The draws of the sample at global-batch position ``offset`` of ``step``."""
    g = torch.Generator().manual_seed(sample_seed(seed, step, offset))
    noise = torch.randn(latent_shape, generator=g)
    t = int(torch.randint(0, 1000, (1,), generator=g))
    u = torch.rand(2, generator=g)
    keep = torch.arange(n_instances)
    if n_instances > max_instances:
        keep = torch.randperm(n_instances, generator=g)[:max_instances].sort().values
    return Draws(noise, t, bool(u[0] >= drop_local), bool(u[1] >= drop_global), keep)


def collate(samples: list[dict], draws: list[Draws], encode_adm) -> dict:
    """One micro-batch from cached samples and their draws (CPU tensors; see ``AdapterTrainingModel``).

    ``encode_adm(pooled [1, 1280], entry) -> [1, 2816]`` builds SDXL's micro-conditioning vector for one sample.
    """
    b = len(samples)
    s_max = max(len(d.instances) for d in draws)
    l_max = max(s["desc_hidden"].shape[2] for s in samples)
    ctx = samples[0]["desc_hidden"].shape[-1]
    hidden = torch.zeros(b, s_max, 3, l_max, ctx)
    eot = torch.zeros(b, s_max, ctx)
    mask = torch.zeros(b, s_max, l_max, dtype=torch.bool)
    boxes = torch.zeros(b, s_max, 4)
    valid = torch.zeros(b, s_max, dtype=torch.bool)
    context, ys = [], []
    for i, (s, d) in enumerate(zip(samples, draws)):
        idx, n, length = d.instances, len(d.instances), s["desc_hidden"].shape[2]
        hidden[i, :n, :, :length] = s["desc_hidden"][idx]
        eot[i, :n] = s["desc_eot"][idx]
        mask[i, :n, :length] = s["desc_mask"][idx]
        boxes[i, :n] = s["boxes"][idx]
        valid[i, :n] = True
        keep = 1.0 if d.keep_prompt else 0.0  # global dropout: zero prompt and pooled (SDXL's zero uncond)
        context.append(s["prompt"] * keep)
        ys.append(encode_adm(s["pooled"][None] * keep, s["entry"]))
    return {
        "latent": torch.stack([s["latent"] for s in samples]),
        "noise": torch.stack([d.noise for d in draws]),
        "timestep": torch.tensor([d.timestep for d in draws], dtype=torch.long),
        "context": torch.stack(context),
        "y": torch.cat(ys).float(),
        "desc_hidden": hidden, "desc_eot": eot, "desc_mask": mask, "boxes": boxes, "valid": valid,
        "keep_text": torch.tensor([d.keep_text for d in draws], dtype=torch.bool),
    }
