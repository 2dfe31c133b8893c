"""Alpha schedule, PLMS and MIS (spec §2 "scale" and §4), with expectations computed by hand."""

import math

import torch

from core.instancediffusion.sampler import (
    alpha_schedule,
    ddim_uniform_timesteps,
    fuser_scale,
    linear_alphas_cumprod,
    mis_merge,
    mis_sample,
    mis_steps,
    plms_sample,
    step_index_from_sigma,
)


def ddim(x, e, at, ap):
    return math.sqrt(ap) * (x - math.sqrt(1 - at) * e) / math.sqrt(at) + math.sqrt(1 - ap) * e


def test_alpha_schedule():
    assert alpha_schedule(50, 0.8) == [1.0] * 40 + [0.0] * 10
    assert alpha_schedule(50, 0.75) == [1.0] * 37 + [0.0] * 13
    assert alpha_schedule(50, 1.0) == [1.0] * 50
    s = alpha_schedule(10, 0.2, decay=0.4)
    assert (
        s[:2] == [1.0, 1.0]
        and torch.allclose(torch.tensor(s[2:6]), torch.tensor([1.0, 2 / 3, 1 / 3, 0.0]))
        and s[6:] == [0.0] * 4
    )
    assert [fuser_scale(i, 50, 0.8) for i in range(50)] == alpha_schedule(50, 0.8)


def test_schedule_helpers():
    ts = ddim_uniform_timesteps(50)
    assert ts[0] == 981 and ts[-1] == 1 and len(ts) == 50 and ts[1] == 961
    ac = linear_alphas_cumprod()
    assert abs(float(ac[0]) - 0.99915) < 1e-6
    sig = torch.tensor([14.0, 7.0, 3.0, 1.0, 0.0])
    assert step_index_from_sigma(torch.tensor([3.0001]), sig) == 2
    assert step_index_from_sigma(0.9, sig) == 3


def test_plms_zero_eps_telescopes_and_improved_euler_first_step():
    ac = linear_alphas_cumprod()
    ts = ddim_uniform_timesteps(50)
    calls = []

    def zero(x, t, i):
        calls.append((t, i))
        return torch.zeros_like(x)

    x = torch.randn(1, 4, 2, 2)
    out, _ = plms_sample(zero, x, ts, ac)
    # eps = 0: x_prev = sqrt(a_prev / a_t) x at every step -> sqrt(a_0 / a_981) overall
    assert torch.allclose(out, x * math.sqrt(float(ac[0]) / float(ac[981])), rtol=1e-5)
    assert len(calls) == 51 and calls[:3] == [(981, 0), (961, 0), (961, 1)]


def test_plms_adams_bashforth_coefficients():
    ac = linear_alphas_cumprod()
    ts = [61, 41, 21, 1]
    seq = iter([1.0, 2.0, 3.0, 4.0, 5.0])  # e at (t61), (t41 euler), t41, t21, t1

    def eps(x, t, i):
        return torch.full_like(x, next(seq))

    a = [float(ac[t]) for t in (61, 41, 21, 1, 0)]
    x = torch.full((1,), 0.3)
    out, state = plms_sample(eps, x, ts, ac)
    h = ddim(0.3, (1 + 2) / 2, a[0], a[1])  # improved Euler: mean of e(t) and e(t_next)
    h = ddim(h, (3 * 3 - 1) / 2, a[1], a[2])  # AB2 with history [e0 = 1]
    h = ddim(h, (23 * 4 - 16 * 3 + 5 * 1) / 12, a[2], a[3])  # AB3
    h = ddim(h, (55 * 5 - 59 * 4 + 37 * 3 - 9 * 1) / 24, a[3], a[4])  # AB4; last step ends at alphas_cumprod[0]
    assert torch.allclose(out, torch.tensor([h], dtype=out.dtype), rtol=1e-5)
    assert [float(e) for e in state.old_eps] == [3.0, 4.0, 5.0]


def test_mis_branches_average_then_full_branch_continues():
    ac = linear_alphas_cumprod()
    ts = [21, 1]
    consts = [0.5, -1.0, 2.0]  # full branch, instance 1, instance 2
    calls = [0, 0, 0]

    def make(b):
        def eps(x, t, i):
            calls[b] += 1
            return torch.full_like(x, consts[b])

        return eps

    x = torch.tensor([0.7])
    out = mis_sample([make(b) for b in range(3)], x, ts, ac, mis=0.5)  # int(2 * 0.5) = 1 branch step
    a21, a1, a0 = (float(ac[t]) for t in (21, 1, 0))
    merged = sum(ddim(0.7, c, a21, a1) for c in consts) / 3
    exp = ddim(merged, (3 * 0.5 - 0.5) / 2, a1, a0)  # AB2 with the full branch's history
    assert torch.allclose(out, torch.tensor([exp]), rtol=1e-6)
    assert calls == [3, 2, 2]
    assert mis_steps(50, 0.36) == 18 and mis_steps(50, 0.2) == 10
    assert torch.equal(mis_merge([torch.ones(2), torch.zeros(2)]), torch.full((2,), 0.5))
    # mis = 0 -> plain PLMS with the full branch only
    calls[:] = [0, 0, 0]
    mis_sample([make(b) for b in range(3)], x, ts, ac, mis=0.0)
    assert calls == [3, 0, 0]
