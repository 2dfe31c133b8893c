"""Which samples each step trains on, and the per-sample randomness: both pure functions of (seed, step).

- Batch plan: in epoch e, the samples of each aspect bucket are shuffled (seeded by e and the bucket) and cut into
  global batches of ``batch_size`` (a batch never mixes buckets; a bucket's remainder waits for the next epoch's
  shuffle); the epoch's batches are shuffled again. Step s trains on batch ``s mod n`` of epoch ``s div n``. The
  data position is therefore the step itself, which makes resuming exact.
- A global batch is split into micro-batches: micro-batch ``a`` of rank ``r`` holds the global positions
  ``[(a * world + r) * micro, ... + micro)``.
- Each sample's noise, timestep (uniform in [0, 1000)) and the recipe's draws (condition dropout, instance subset)
  come from a generator seeded by (run seed, step, position in the global batch): the same whatever the number of
  processes.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .data import sample_seed

EVAL_STEP = 1 << 40  # the "step" whose draws make up the fixed evaluation set


class BatchPlan:
    """Global batches of manifest positions, epoch by epoch."""

    def __init__(self, bucket_of: list[tuple[int, int]], batch_size: int, seed: int,
                 exclude: frozenset[int] | set[int] = frozenset()):
        """``bucket_of[pos]``: the bucket of manifest position ``pos``; positions in ``exclude`` (the held-out split)
        are never trained on."""
        self.batch_size, self.seed = batch_size, seed
        self.groups: dict[tuple[int, int], list[int]] = {}
        for pos, b in enumerate(bucket_of):
            if pos not in exclude:
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
class Draw:
    """One sample's draws: the engine's noise ``[C, h, w]`` and timestep, the recipe's own choices, and the
    generator they came from (the recipe draws from it after the noise and timestep)."""

    noise: torch.Tensor
    timestep: int
    recipe: Any = None


def draw(seed: int, step: int, offset: int, latent_shape: tuple, recipe_draw: Callable[[torch.Generator], Any],
         timestep: int | None = None) -> Draw:
    """The draws of the sample at global-batch position ``offset`` of ``step``: noise, a uniform timestep in
    [0, 1000) (or ``timestep`` when given: the eval loss's fixed ones), then ``recipe_draw(generator)``."""
    g = torch.Generator().manual_seed(sample_seed(seed, step, offset))
    noise = torch.randn(latent_shape, generator=g)
    t = int(torch.randint(0, 1000, (1,), generator=g))
    if timestep is not None:
        t = int(timestep)
    return Draw(noise, t, recipe_draw(g))
