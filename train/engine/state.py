"""Training checkpoints: everything needed to continue exactly, written atomically by rank 0.

A checkpoint ``<output_dir>/checkpoints/step-<N>.pt`` holds the recipe name, the trained (and EMA) weights, the
optimiser, the LR scheduler and gradient scaler states, the step, the data position (epoch, batch in epoch), every
RNG state (torch CPU and CUDA, numpy, Python) and what the recipe's export needs. It is written to a temporary file, flushed to disk and renamed, so a crash
mid-save leaves the previous checkpoint intact; older ones beyond ``keep`` are removed afterwards. It is read back
with ``torch.load(weights_only=True)``: plain tensors and containers, no pickled code.
"""
from __future__ import annotations

import glob
import os
import random
import re

import numpy as np
import torch

_NAME = re.compile(r"step-(\d{8})\.pt$")


def rng_state() -> dict:
    """All RNG states as tensors / plain values (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": [list(v) if isinstance(v, tuple) else v for v in random.getstate()],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dir(output_dir: str) -> str:
    return os.path.join(output_dir, "checkpoints")


def save_checkpoint(output_dir: str, step: int, state: dict, keep: int) -> str:
    """Write ``state`` as ``step-<step>.pt`` atomically; keep the newest ``keep`` checkpoints. Returns the path."""
    folder = checkpoint_dir(output_dir)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"step-{step:08d}.pt")
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    for old in list_checkpoints(output_dir)[:-keep]:
        os.remove(old)
    return path


def list_checkpoints(output_dir: str) -> list[str]:
    """Complete checkpoints, oldest first (temporary files of an interrupted save are ignored)."""
    paths = [p for p in glob.glob(os.path.join(checkpoint_dir(output_dir), "step-*.pt")) if _NAME.search(p)]
    return sorted(paths)


def load_latest(output_dir: str) -> dict | None:
    """The newest readable checkpoint (None if there is none); an unreadable newest one falls back to the previous."""
    for path in reversed(list_checkpoints(output_dir)):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a damaged file: say so and use the one before
            print(f"[train] checkpoint {path} is unreadable ({type(e).__name__}: {e}); trying the previous one")
            continue
        state["path"] = path
        return state
    return None
