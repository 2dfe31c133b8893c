"""IFAdapter's token-set ablation (paper Table 3): all 13 tokens, the 12 appearance tokens only, or the EoT only."""

import pytest
import torch

from core.ifadapter.runtime import IFAdapterRuntime, InstanceTokens
from core.ifadapter.semantic_map import InstanceGeometry
from core.ifadapter.token_sets import OFFICIAL, TOKEN_SETS, select_tokens

APPEARANCE, EOT = "appearance only (no EoT)", "EoT only (no appearance)"


def _tokens(n=2):
    g = torch.Generator().manual_seed(5)
    boxes = torch.tensor([[0.0, 0.0, 0.5, 0.6], [0.4, 0.3, 1.0, 1.0]])[:n]
    return InstanceTokens(torch.randn(n, 13, 2048, generator=g), torch.randn(n, 13, 2048, generator=g), boxes)


def test_selection_keeps_the_named_tokens_and_leaves_the_input_alone():
    tok = _tokens()
    before = tok.cond.clone()
    assert select_tokens(tok) is tok and select_tokens(tok, OFFICIAL) is tok
    app, eot = select_tokens(tok, APPEARANCE), select_tokens(tok, EOT)
    assert torch.equal(app.cond, tok.cond[:, :12]) and torch.equal(app.uncond, tok.uncond[:, :12])
    assert torch.equal(eot.cond, tok.cond[:, 12:]) and torch.equal(eot.uncond, tok.uncond[:, 12:])
    assert eot.boxes is tok.boxes and torch.equal(tok.cond, before)
    assert list(TOKEN_SETS) == [OFFICIAL, APPEARANCE, EOT]
    with pytest.raises(ValueError, match="token_set must be one of"):
        select_tokens(tok, "semantic map only")
    with pytest.raises(ValueError, match="needs the full 13 tokens"):
        select_tokens(eot, APPEARANCE)


@pytest.mark.parametrize("token_set", [APPEARANCE, EOT])
def test_runtime_attends_to_the_kept_tokens_only(tiny, token_set):
    """The fast path on a subset equals the literal reference transcription on the same subset, and differs from
    the full set's result."""
    tok = _tokens()
    sub = select_tokens(tok, token_set)
    rt, full = IFAdapterRuntime(tiny, sub), IFAdapterRuntime(tiny, tok)
    key = ("output", 1, 2)
    q = torch.randn(2, 6 * 8, 128, generator=torch.Generator().manual_seed(1))
    pos = torch.tensor([False, True])
    got = rt.layer_delta(key, q, pos, (6, 8))
    proc = tiny.processor(key)
    geo = InstanceGeometry.from_boxes(tok.boxes[None], 6, 8)
    ref_cond = proc(q[1:], proc.project_tokens(sub.cond[None]), geo, reference=True)
    ref_uncond = proc(q[:1], proc.project_tokens(sub.uncond[None]), geo, reference=True)
    torch.testing.assert_close(got[1:], ref_cond, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got[:1], ref_uncond, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(got, full.layer_delta(key, q, pos, (6, 8)))


def test_runtime_refuses_more_tokens_than_an_instance_has(tiny):
    tok = _tokens()
    big = InstanceTokens(torch.randn(2, 14, 2048), torch.randn(2, 14, 2048), tok.boxes)
    with pytest.raises(ValueError, match=r"\(14, 2048\) per instance.*subset of the 13"):
        IFAdapterRuntime(tiny, big)


def test_frame_tokens_of_a_layout_over_time_keep_the_same_subset(tiny):
    from core.ifadapter.frames import FramesRuntime, FrameTokens

    g = torch.Generator().manual_seed(9)
    boxes = torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]], [[0.1, 0.1, 0.6, 0.6], [0.4, 0.4, 0.9, 0.9]]])
    ft = FrameTokens(torch.randn(2, 13, 2048, generator=g), torch.randn(2, 13, 2048, generator=g), boxes,
                     torch.tensor([0, 1, 1]), torch.ones(2, 2, dtype=torch.bool), 3)
    sub = select_tokens(ft, EOT)
    assert isinstance(sub, FrameTokens) and sub.cond.shape == (2, 1, 2048) and torch.equal(sub.index, ft.index)
    got = FramesRuntime(tiny, sub).frame_tokens((1,))
    full = FramesRuntime(tiny, ft).frame_tokens((1,))
    assert got.shape == (2, 2, 1, 2048)
    torch.testing.assert_close(got, full[:, :, 12:])  # the box embedding is added to every kept token alike
