"""The eval loss (engine): the held-out split and a loss at fixed timesteps and fixed noise, the same value for the
same weights at any number of processes.

- **Split** (:func:`holdout_positions`): ``[data] holdout`` is the fraction of the cached samples kept out of
  training, chosen by the SHA-256 of each sample's name (so the split does not move with the seed, and a sample
  stays on its side when images are added or removed elsewhere in the folder). With no holdout the eval set is the first training samples
  (a training-set loss, as a sanity check only).
- **Units**: each eval sample (at most ``[train] eval_samples``) at each of ``[train] eval_timesteps``, with the
  noise of the sample (seeded by run seed and the sample's position, the same at every timestep) and the recipe's
  draws without dropout.
- **Chunks**: units are cut into micro-batches of ``[train] eval_batch_size`` within an aspect bucket, in a fixed
  order; chunk ``c`` runs on rank ``c mod world``. Every unit therefore sees the same batch at any world size, and the
  mean is summed on every rank in the same order (float64), so the value is bitwise the same for 1 or N processes.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import torch


def name_fraction(name: str) -> float:
    """A sample name's place in [0, 1): the first 8 bytes of its SHA-256."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") / 2**64


def holdout_positions(samples: list[dict], fraction: float) -> list[int]:
    """Manifest positions of the held-out split: every sample whose :func:`name_fraction` is below ``fraction``
    (a sample stays on its side whatever else is in the folder); when that leaves none (tiny datasets), the one with
    the smallest value. Never every sample: at least one trains."""
    if fraction <= 0 or len(samples) < 2:
        return []
    where = [name_fraction(s["name"]) for s in samples]
    held = [p for p in range(len(samples)) if where[p] < fraction]
    if not held:
        held = [min(range(len(samples)), key=where.__getitem__)]
    if len(held) == len(samples):
        held.remove(max(held, key=where.__getitem__))
    return sorted(held)


def eval_units(samples: list[dict], positions: list[int], timesteps: list[int], chunk: int) -> list[list[tuple]]:
    """Chunks of ``(position, timestep)`` units: per bucket (sorted), positions then timesteps in order."""
    groups: dict[tuple, list[int]] = {}
    for pos in positions:
        groups.setdefault(tuple(samples[pos]["bucket"]), []).append(pos)
    chunks = []
    for _, members in sorted(groups.items()):
        units = [(pos, t) for pos in members for t in timesteps]
        chunks += [units[i:i + chunk] for i in range(0, len(units), chunk)]
    return chunks


class EvalLoss:
    """The fixed eval set of a run and its loss for the current weights.

    ``batch_fn(positions, timesteps) -> batch dict`` builds one eval micro-batch (engine draws with the fixed
    timesteps, recipe draws without dropout); ``model(batch) -> [B]`` per-sample losses; ``gather(obj) -> list``
    gathers one object per rank.
    """

    def __init__(self, samples: list[dict], positions: list[int], timesteps: list[int], chunk: int,
                 rank: int, world: int, split: str):
        self.positions, self.timesteps, self.split = positions, list(timesteps), split
        self.chunks = eval_units(samples, positions, self.timesteps, chunk)
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        return len(self.positions)

    def __call__(self, model, batch_fn: Callable, gather: Callable) -> float:
        if not self.positions:
            return float("nan")
        mine = {}
        with torch.no_grad():
            for c in range(self.rank, len(self.chunks), self.world):
                units = self.chunks[c]
                losses = model(batch_fn([u[0] for u in units], [u[1] for u in units]))
                for u, v in zip(units, losses.detach().float().cpu().tolist()):
                    mine[u] = v
        values = {}
        for part in gather(mine):
            values.update(part)
        total = math.fsum(values[u] for chunk in self.chunks for u in chunk)
        return total / sum(len(chunk) for chunk in self.chunks)
