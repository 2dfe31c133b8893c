"""Step windows counted in sampler steps, as the official code counts them, on every supported ComfyUI.

Both adapters switch on a step count, not on a noise level:

- InstanceDiffusion's fusers are on while ``i < int(alpha · steps)`` (official ``alpha_generator``);
- IFAdapter is on while ``i < steps · control_ratio`` (official pipeline; ``end_percent`` here), and, as this pack's
  extension, from ``i >= steps · start_percent``.

``i`` is the index of the current step in the run's schedule. Where the schedule comes from:

1. ``transformer_options[SCHEDULE_KEY]``: set by this pack's samplers (MIS), always the whole schedule;
   ``transformer_options[STEP_KEY]`` (the exact PLMS path) even names the step, so a second evaluation inside one
   step (PLMS's first step) counts as that step;
2. ``transformer_options["sample_sigmas"]``: set by ComfyUI v0.3+ for every sampler;
3. on the 2024 build, which has no ``sample_sigmas``, :func:`ensure_schedule_capture` wraps
   ``comfy.samplers.sample`` (the one function every KSampler / SamplerCustom run goes through) so that it puts the
   run's sigmas there too — only when the host does not set them itself;
4. otherwise (a sampler that bypasses all of the above) the window falls back to sigma thresholds at the same
   fractions of the model's timestep range, as ComfyUI's ControlNet start/end percent does.

The step index of a UNet call is the position of its sigma in the schedule (nearest value, the trailing 0 is never
a step), computed once per UNet call however many patched layers ask.
"""
from __future__ import annotations

import functools
import inspect
import logging
import threading

import torch

from .patches import current_sigma, percent_window

log = logging.getLogger("comfyui-ifadapter")

SCHEDULE_KEY = "ifa_id_sigmas"  # transformer_options: the full schedule of the run (this pack's samplers)
STEP_KEY = "ifa_step"  # transformer_options: the step index, when the sampler knows it (exact PLMS)


def step_index(sigma: float, step_sigmas: torch.Tensor) -> int:
    """Index of the step whose starting sigma is nearest ``sigma`` (``step_sigmas`` = the schedule minus its end)."""
    s = step_sigmas.detach().float().reshape(-1).cpu()
    return int(torch.argmin((s - float(sigma)).abs()))


def schedule_of(extra_options: dict) -> torch.Tensor | None:
    """The schedule of the run (see the module docstring), or None when the host exposes none."""
    sched = extra_options.get(SCHEDULE_KEY)
    if sched is None:
        sched = extra_options.get("sample_sigmas")
    return sched if sched is not None and len(sched) > 1 else None


class StepWindow:
    """On/off by step: on while ``first(steps) <= i < last(steps)``.

    rule "int" (InstanceDiffusion alpha): first = 0, on while ``i < int(end · steps)``.
    rule "ratio" (IFAdapter control_ratio): on while ``steps · start <= i < steps · end``.
    ``sigma_start`` / ``sigma_end``: the fallback thresholds when no schedule is visible.
    Memoised per UNet call (the sigma tensor and the schedule object).
    """

    def __init__(self, start: float, end: float, rule: str, sigma_start: float, sigma_end: float):
        if rule not in ("int", "ratio"):
            raise ValueError(f"unknown step rule {rule!r}")
        self.start, self.end, self.rule = float(start), float(end), rule
        self.sigma_start, self.sigma_end = float(sigma_start), float(sigma_end)
        self._memo: tuple | None = None

    @classmethod
    def for_model(cls, model, start: float, end: float, rule: str) -> StepWindow:
        """A window with the fallback thresholds of ``model``'s sampling; installs the 2024 schedule capture."""
        ensure_schedule_capture()
        sigma_start, sigma_end = percent_window(model, start, end)
        return cls(start, end, rule, sigma_start, sigma_end)

    def __deepcopy__(self, memo):
        return self

    def on_step(self, i: int, steps: int) -> bool:
        """The official rule for step ``i`` (0-based) of ``steps``."""
        if self.rule == "int":
            return i < int(self.end * steps)
        return steps * self.start <= i < steps * self.end

    def active(self, extra_options: dict) -> bool:
        """Whether the current UNet call is inside the window."""
        sigmas = extra_options.get("sigmas")
        sched = schedule_of(extra_options)
        step = extra_options.get(STEP_KEY)
        memo = self._memo
        if memo is not None and memo[0] is sigmas and memo[1] is sched and memo[2] == step:
            return memo[3]
        if sched is not None:  # steps + 1 sigmas: step i goes from sched[i] to sched[i + 1]
            i = int(step) if step is not None else step_index(current_sigma(extra_options), sched[:-1])
            on = self.on_step(i, len(sched) - 1)
        elif sigmas is None:
            on = True  # not inside a sampler (a direct UNet call): nothing to count
        else:
            sigma = current_sigma(extra_options)
            on = self.sigma_start >= sigma >= self.sigma_end if self.rule == "ratio" else sigma >= self.sigma_end
        self._memo = (sigmas, sched, step, on)
        return on


# --------------------------------------------------------------------------------------------------------------
# 2024 ComfyUI: capture the schedule

_CAPTURE_LOCK = threading.Lock()
_CAPTURE: dict = {"installed": None}


def host_sets_sample_sigmas() -> bool:
    """True when this ComfyUI puts ``sample_sigmas`` into transformer_options itself (v0.3+)."""
    import comfy.samplers

    try:
        return "sample_sigmas" in inspect.getsource(comfy.samplers)
    except (OSError, TypeError):  # no source available: assume a current ComfyUI
        return True


def _with_schedule(original):
    sig = inspect.signature(original)

    @functools.wraps(original)
    def sample(*args, **kwargs):
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError:
            return original(*args, **kwargs)
        sigmas = bound.arguments.get("sigmas")
        opts = bound.arguments.get("model_options")
        if sigmas is not None and isinstance(opts, dict):
            to = opts.get("transformer_options", {})
            if "sample_sigmas" not in to:  # a copy: the caller's model_options stay untouched
                bound.arguments["model_options"] = {**opts, "transformer_options": {**to, "sample_sigmas": sigmas}}
        return original(*bound.args, **bound.kwargs)

    sample.ifa_schedule_capture = True
    return sample


def ensure_schedule_capture() -> bool:
    """Make the run's sigmas visible as ``transformer_options["sample_sigmas"]`` on a ComfyUI that does not do it.

    Installs (once) a wrapper around ``comfy.samplers.sample`` that adds the key to a copy of the model options when
    it is absent; the wrapped function is otherwise called unchanged. Returns whether the capture is active.
    """
    with _CAPTURE_LOCK:
        if _CAPTURE["installed"] is not None:
            return _CAPTURE["installed"]
        import comfy.samplers

        if host_sets_sample_sigmas():
            _CAPTURE["installed"] = False
            return False
        current = comfy.samplers.sample
        if not getattr(current, "ifa_schedule_capture", False):
            comfy.samplers.sample = _with_schedule(current)
            log.info("[comfyui-ifadapter] this ComfyUI does not expose the sampling schedule; capturing it in "
                     "comfy.samplers.sample so that step windows count exact steps")
        _CAPTURE["installed"] = True
        return True
