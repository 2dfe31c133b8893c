"""IFAdapter over the frames of a video batch: lazy per-frame tokens, the K/V cache budget, per-row routing."""

import pytest
import torch

from core.ifadapter.frames import ByteBudgetCache, FramesRuntime, FrameTokens
from core.ifadapter.runtime import IFAdapterRuntime

U, N = 40, 3


@pytest.fixture(scope="module")
def frame_tokens(tiny):
    g = torch.Generator().manual_seed(5)
    hidden = torch.randn(N, 3, 77, 2048, generator=g) * 0.5
    mask = torch.zeros(N, 77, dtype=torch.bool)
    mask[:, 1:5] = True
    eot = torch.randn(N, 2048, generator=g) * 0.5
    with torch.no_grad():
        cond = tiny.encode_descriptions(hidden, mask, eot)
        uncond = tiny.encode_uncond_descriptions(N)
    t = torch.linspace(0, 1, U)[:, None]
    base = torch.tensor([[0.0, 0.0, 0.4, 0.5], [0.5, 0.1, 0.9, 0.6], [0.2, 0.4, 0.5, 0.9]])
    boxes = (base[None] + 0.1 * t[..., None] * torch.tensor([1.0, 0.5, 1.0, 0.5])).clamp(0, 1)  # [U, N, 4]
    visible = torch.ones(U, N, dtype=torch.bool)
    visible[::3, 2] = False
    tok = FrameTokens(cond, uncond, boxes, torch.arange(U), visible, U)
    return tok, (hidden, mask, eot)


def test_frame_tokens_equal_encoding_each_frame_whole(tiny, frame_tokens):
    tok, (hidden, mask, eot) = frame_tokens
    for u in (0, 17, U - 1):
        one = tok.frame(tiny, u)
        with torch.no_grad():
            cond = tiny.encode_instances(hidden, mask, eot, tok.boxes[u])
            uncond = tiny.encode_uncond(tok.boxes[u])
        torch.testing.assert_close(one.cond, cond, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(one.uncond, uncond, rtol=1e-5, atol=1e-5)


def _layer(rt, frames, positive, key=("output", 0, 1), grid=(6, 8)):
    q = torch.randn(len(frames), grid[0] * grid[1], 128, generator=torch.Generator().manual_seed(len(frames)))
    return rt.layer_delta(key, q, torch.tensor(positive), grid, list(frames)), q


def test_rows_match_a_static_runtime_of_their_frame(tiny, frame_tokens):
    tok, _ = frame_tokens
    rt = FramesRuntime(tiny, tok)
    frames, positive = (3, 30, 3, 30), [True, True, False, False]
    delta, q = _layer(rt, frames, positive)
    for r, (f, p) in enumerate(zip(frames, positive, strict=True)):
        one = tok.frame(tiny, f)
        vis = tok.visible[f]
        static = IFAdapterRuntime(tiny, type(one)(one.cond[vis], one.uncond[vis], one.boxes[vis]))
        ref = static.layer_delta(("output", 0, 1), q[r:r + 1], torch.tensor([p]), (6, 8))
        torch.testing.assert_close(delta[r:r + 1], ref, rtol=1e-5, atol=1e-6)


def test_only_the_frames_a_call_uses_are_built_and_the_cache_keeps_its_budget(tiny, frame_tokens):
    tok, _ = frame_tokens
    unbounded = FramesRuntime(tiny, tok, cache_bytes=1 << 40)
    one_window = 2 * 4 * N * 13 * 2048 * 4  # the tokens of a 4-frame window, cond + uncond
    bounded = FramesRuntime(tiny, tok, cache_bytes=2 * one_window)
    windows = [(0, 1, 2, 3), (4, 5, 6, 7), (8, 9, 10, 11), (0, 1, 2, 3)]
    for _ in range(2):
        for win in windows:
            frames, positive = win + win, [True] * 4 + [False] * 4
            a, _ = _layer(unbounded, frames, positive)
            b, _ = _layer(bounded, frames, positive)
            assert torch.equal(a, b)  # rebuilding evicted frames changes nothing
            assert bounded.cache.bytes <= bounded.cache.budget
    assert {k[-1] for k in unbounded.cache.keys()} == set(windows)  # never all U frames
    assert len(bounded.cache) < len(unbounded.cache)


def test_a_call_larger_than_the_budget_is_computed_and_not_kept(tiny, frame_tokens):
    tok, _ = frame_tokens
    rt = FramesRuntime(tiny, tok, cache_bytes=1024)
    frames = tuple(range(U))
    delta, _ = _layer(rt, frames, [True] * U)
    assert delta.shape == (U, 48, 128) and torch.isfinite(delta).all()
    assert len(rt.cache) == 0 and rt.cache.bytes == 0


def test_byte_budget_cache_evicts_least_recently_used():
    c = ByteBudgetCache(3 * 400)
    for k in "abc":
        c.put(k, torch.zeros(100))  # 400 bytes each
    assert c.get("a") is not None  # a is now the most recent
    c.put("d", torch.zeros(100))
    assert c.keys() == ["c", "a", "d"] and c.bytes == 1200
    c.put("big", torch.zeros(1000))  # over the whole budget: not kept, nothing evicted
    assert c.keys() == ["c", "a", "d"]
