"""Sampler-level logic of InstanceDiffusion as pure torch (spec §2 "scale", §4): alpha schedule, PLMS and the
multi-instance sampler (MIS).

The denoiser is abstracted as ``eps_fn(x [B,4,h,w], t: int, step: int) -> eps [B,4,h,w]``: the already
classifier-free-guided ε at DDPM timestep t (the caller runs cond/uncond, picks the grounding of its branch and sets
the fuser scale from :func:`fuser_scale` for ``step``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

EpsFn = Callable[[torch.Tensor, int, int], torch.Tensor]


def alpha_schedule(steps: int, alpha: float, decay: float = 0.0) -> list[float]:
    """Per-step fuser scale (official ``alpha_generator(steps, [alpha, decay, 1 - alpha - decay])``).

    ``int(alpha·steps)`` ones, then ``int(decay·steps)`` values linearly decaying from 1 to 0, then zeros. All official
    calls use decay 0: alpha 0.8, 50 steps -> 40 ones and 10 zeros.
    """
    if steps <= 0:
        raise ValueError(f"alpha_schedule: steps must be positive, got {steps}")
    if not 0.0 <= alpha <= 1.0 or not 0.0 <= decay <= 1.0 - alpha + 1e-9:
        raise ValueError(f"alpha_schedule: need 0 <= alpha <= 1 and 0 <= decay <= 1 - alpha, got {alpha}, {decay}")
    n_on, n_decay = int(alpha * steps), int(decay * steps)
    ramp = torch.linspace(1, 0, n_decay).tolist() if n_decay > 0 else []
    out = [1.0] * n_on + ramp
    return (out + [0.0] * steps)[:steps]


def fuser_scale(step: int, steps: int, alpha: float) -> float:
    """Fuser scale at sampler step ``step`` (0-based) of ``steps``: 1.0 while step < int(alpha·steps), else 0.0."""
    return 1.0 if step < int(alpha * steps) else 0.0


def step_index_from_sigma(sigma: float | torch.Tensor, sample_sigmas: torch.Tensor) -> int:
    """Index of the current step in ComfyUI's ``transformer_options["sample_sigmas"]`` (nearest sigma; the trailing
    0 is never a step)."""
    s = sample_sigmas.detach().float().reshape(-1)
    if s.numel() > 1 and float(s[-1]) == 0.0:
        s = s[:-1]
    sig = float(torch.as_tensor(sigma).detach().float().reshape(-1)[0])
    return int(torch.argmin((s - sig).abs()))


def linear_alphas_cumprod(n: int = 1000, start: float = 0.00085, end: float = 0.012) -> torch.Tensor:
    """SD1.5 "linear" schedule: betas = linspace(sqrt(start), sqrt(end), n)² (float64) -> cumprod(1 - betas)."""
    betas = torch.linspace(start**0.5, end**0.5, n, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def ddim_uniform_timesteps(steps: int = 50, n_train: int = 1000) -> list[int]:
    """DDIM "uniform" timesteps in sampling order (descending): range(0, n_train, n_train // steps) + 1."""
    c = n_train // steps
    return [t + 1 for t in range(0, n_train, c)][::-1]


class PLMSState:
    """ε history of one PLMS trajectory (the last up to 3 raw ε's, most recent last)."""

    def __init__(self) -> None:
        self.old_eps: list[torch.Tensor] = []

    def clone(self) -> PLMSState:
        s = PLMSState()
        s.old_eps = list(self.old_eps)
        return s


def _ddim_step(x: torch.Tensor, eps: torch.Tensor, a_t: float, a_prev: float) -> torch.Tensor:
    """eta = 0: x0 = (x - sqrt(1-a_t)·ε)/sqrt(a_t); x_prev = sqrt(a_prev)·x0 + sqrt(1-a_prev)·ε."""
    x0 = (x - (1.0 - a_t) ** 0.5 * eps) / a_t**0.5
    return a_prev**0.5 * x0 + (1.0 - a_prev) ** 0.5 * eps


def plms_levels(
    eps_fn: EpsFn,
    x: torch.Tensor,
    levels: Sequence,
    alphas: Sequence[float],
    start: int = 0,
    stop: int | None = None,
    state: PLMSState | None = None,
) -> tuple[torch.Tensor, PLMSState]:
    """PLMS steps ``start..stop-1`` over ``levels`` (what ``eps_fn`` is called with: DDPM timesteps, or sigmas).

    alphas: ``len(levels) + 1`` cumulative alphas: ``alphas[i]`` at levels[i], the last one where the last step
    ends. x: [B, 4, h, w] in LDM scaling (``x_t = sqrt(a)·x0 + sqrt(1-a)·ε``) at levels[start]. The first step of a
    fresh history is the pseudo improved-Euler step (two ε evaluations, the second at levels[i + 1], both with step
    index i); later steps are Adams–Bashforth of order 2/3/4. Every operation is elementwise per row, so branches
    stacked along the batch give the same numbers as branches run one by one.
    Returns (x after the last step, the ε history to continue with). x is not modified.
    """
    if len(alphas) != len(levels) + 1:
        raise ValueError(f"plms_levels: need {len(levels) + 1} alphas for {len(levels)} levels, got {len(alphas)}")
    stop = len(levels) if stop is None else stop
    state = PLMSState() if state is None else state.clone()
    for i in range(start, stop):
        a_t, a_prev = float(alphas[i]), float(alphas[i + 1])
        e_t = eps_fn(x, levels[i], i)
        old = state.old_eps
        if len(old) == 0:
            x_next = _ddim_step(x, e_t, a_t, a_prev)
            e_prime = (e_t + eps_fn(x_next, levels[min(i + 1, len(levels) - 1)], i)) / 2
        elif len(old) == 1:
            e_prime = (3 * e_t - old[-1]) / 2
        elif len(old) == 2:
            e_prime = (23 * e_t - 16 * old[-1] + 5 * old[-2]) / 12
        else:
            e_prime = (55 * e_t - 59 * old[-1] + 37 * old[-2] - 9 * old[-3]) / 24
        x = _ddim_step(x, e_prime, a_t, a_prev)
        state.old_eps = (old + [e_t])[-3:]
    return x, state


def official_alphas(timesteps: Sequence[int], alphas_cumprod: torch.Tensor) -> list[float]:
    """alphas_cumprod at each timestep, then alphas_cumprod[0]: the official sampler ends at t = 0's alpha."""
    ac = alphas_cumprod.detach().double().cpu()
    return [float(ac[int(t)]) for t in timesteps] + [float(ac[0])]


def plms_sample(
    eps_fn: EpsFn,
    x: torch.Tensor,
    timesteps: Sequence[int],
    alphas_cumprod: torch.Tensor,
    start: int = 0,
    stop: int | None = None,
    state: PLMSState | None = None,
) -> tuple[torch.Tensor, PLMSState]:
    """The official PLMS: :func:`plms_levels` over descending DDPM ``timesteps`` (e.g. 981, 961, ..., 1) with
    :func:`official_alphas` (x = unit noise at timesteps[0] for start 0)."""
    return plms_levels(eps_fn, x, [int(t) for t in timesteps], official_alphas(timesteps, alphas_cumprod), start,
                       stop, state)


def mis_merge(latents: Sequence[torch.Tensor]) -> torch.Tensor:
    """MIS merge: the equal-weight mean of the n+1 branch latents (full branch included), each [B, 4, h, w]."""
    if len(latents) == 0:
        raise ValueError("mis_merge: no branch latents")
    return torch.stack(list(latents), dim=0).mean(dim=0)


def mis_steps(steps: int, mis: float) -> int:
    """Number of per-instance branch steps: int(steps·mis) (0.36 of 50 -> 18)."""
    if not 0.0 <= mis <= 1.0:
        raise ValueError(f"MIS fraction must be in 0..1, got {mis}")
    return int(steps * mis)


def mis_sample(
    branch_eps_fns: Sequence[EpsFn],
    x_T: torch.Tensor,
    timesteps: Sequence[int],
    alphas_cumprod: torch.Tensor,
    mis: float,
) -> torch.Tensor:
    """Multi-instance sampler (official ``PLMSSamplerInst``).

    branch_eps_fns[0] is the full input (global prompt, all instances); branch_eps_fns[1 + i] is instance i alone
    (its caption as prompt, only its grounding in slot 0; the same negative). Every branch starts from the same
    x_T [B, 4, h, w] and runs the first ``int(steps·mis)`` PLMS steps with its own ε history; the n+1 latents are
    averaged once, then sampling continues with the full branch and the full branch's ε history.
    Deviation: with mis = 1.0 the official code returns the last instance branch (a loop bug); we return the mean.
    """
    n_steps = len(timesteps)
    k = mis_steps(n_steps, mis)
    if k == 0 or len(branch_eps_fns) == 1:
        return plms_sample(branch_eps_fns[0], x_T, timesteps, alphas_cumprod)[0]
    results = [plms_sample(fn, x_T, timesteps, alphas_cumprod, 0, k) for fn in branch_eps_fns]
    x = mis_merge([r[0] for r in results])
    return plms_sample(branch_eps_fns[0], x, timesteps, alphas_cumprod, k, n_steps, results[0][1])[0]
