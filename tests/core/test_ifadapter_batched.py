"""The training-time IFAdapter path (per-row layouts, gradients) against the inference runtime and the reference."""

import pytest
import torch

from core.ifadapter import IFAdapter
from core.ifadapter.batched import BatchedRuntime, encode_instance_batch
from core.ifadapter.runtime import IFAdapterRuntime, InstanceTokens
from core.ifadapter.semantic_map import InstanceGeometry

TINY = dict(hidden_size=128, heads=2, context_dim=2048,
            resampler_kwargs=dict(dim=64, depth=2, heads=2, dim_head=32, ff_mult=2))
KEY = ("output", 1, 2)


@pytest.fixture(scope="module")
def adapter():
    torch.manual_seed(0)
    m = IFAdapter(**TINY)
    with torch.no_grad():
        for p in m.processors().values():
            p.alpha.fill_(0.6)
            p.q_norm.weight.normal_(0, 0.1)
            p.k_norm.weight.normal_(0, 0.1)
    return m


def _features(n, length=9, seed=1):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, 3, length, 2048, generator=g)
    eot = torch.randn(n, 2048, generator=g)
    mask = torch.zeros(n, length, dtype=torch.bool)
    mask[:, 1:6] = True
    return hidden, eot, mask


BOXES = torch.tensor([[0.0, 0.0, 0.5, 0.6], [0.4, 0.3, 1.0, 1.0], [0.1, 0.5, 0.3, 0.9]])


def test_training_path_equals_inference_path(adapter):
    """A batch row with one layout gives exactly what Apply IFAdapter's runtime gives for that layout, for the
    conditional tokens and for the dropped-description (unconditional) tokens."""
    hidden, eot, mask = _features(3)
    with torch.no_grad():
        cond = adapter.encode_instances(hidden, mask, eot, BOXES)
        uncond = adapter.encode_uncond(BOXES, seq_len=hidden.shape[2])
        inference = IFAdapterRuntime(adapter, InstanceTokens(cond, uncond, BOXES))
        q = torch.randn(2, 6 * 8, 128, generator=torch.Generator().manual_seed(2))
        want = inference.layer_delta(KEY, q, torch.tensor([True, False]), (6, 8))
        tokens = encode_instance_batch(adapter, hidden[None].expand(2, -1, -1, -1, -1), mask[None].expand(2, -1, -1),
                                       eot[None].expand(2, -1, -1), BOXES[None].expand(2, -1, -1),
                                       torch.ones(2, 3, dtype=torch.bool), keep_text=torch.tensor([True, False]))
        got = BatchedRuntime(adapter, tokens, BOXES[None].expand(2, -1, -1), torch.ones(2, 3, dtype=torch.bool))
        got = got.layer_delta(KEY, q, torch.tensor([True, True]), (6, 8))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert want.abs().max() > 1e-3


def test_padded_slots_act_as_absent_instances(adapter):
    """Row 0 has 3 instances, row 1 has 1 (two padding slots): row 1 equals the same layout run alone."""
    hidden, eot, mask = _features(3)
    valid = torch.tensor([[True, True, True], [True, False, False]])
    boxes = torch.stack([BOXES, torch.cat([BOXES[1:2], torch.zeros(2, 4)])])
    feats = torch.stack([hidden, torch.cat([hidden[1:2], torch.randn(2, 3, 9, 2048)])])  # padding content ignored
    eots = torch.stack([eot, torch.cat([eot[1:2], torch.randn(2, 2048)])])
    masks = torch.stack([mask, mask])
    q = torch.randn(2, 6 * 8, 128, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        tokens = encode_instance_batch(adapter, feats, masks, eots, boxes, valid)
        assert torch.equal(tokens[1, 1:], torch.zeros_like(tokens[1, 1:]))
        batched = BatchedRuntime(adapter, tokens, boxes, valid).layer_delta(KEY, q, torch.ones(2, dtype=torch.bool),
                                                                            (6, 8))
        proc = adapter.processor(KEY)
        alone = proc(q[1:], adapter.encode_instances(hidden[1:2], mask[1:2], eot[1:2], BOXES[1:2])[None],
                     InstanceGeometry.from_boxes(BOXES[None, 1:2], 6, 8))
    torch.testing.assert_close(batched[1:], alone, rtol=1e-5, atol=1e-6)


def test_gradients_match_the_reference_transcription(adapter):
    """Gradients through the optimised processor equal those through the literal reference (spec §3)."""
    hidden, eot, mask = _features(2)
    q = torch.randn(1, 6 * 8, 128, generator=torch.Generator().manual_seed(4), requires_grad=True)
    proc = adapter.processor(KEY)
    geo = InstanceGeometry.from_boxes(BOXES[None, :2], 6, 8)
    grads = []
    for reference in (False, True):
        adapter.zero_grad()
        q.grad = None
        tokens = adapter.encode_instances(hidden, mask, eot, BOXES[:2])[None]
        out = proc(q, proc.project_tokens(tokens), geo, reference=reference)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads.append([q.grad.clone()] + [p.grad.clone() for p in adapter.parameters() if p.grad is not None])
    assert len(grads[0]) == len(grads[1]) > 10
    for a, b in zip(*grads):  # float32 sums in a different order: compare at the scale of each gradient
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4 * float(b.abs().max()) + 1e-12)
    assert grads[0][0].abs().max() > 0


def test_batched_runtime_refuses_unconditional_rows_and_batch_mismatch(adapter):
    tokens = torch.zeros(1, 1, 13, 2048)
    rt = BatchedRuntime(adapter, tokens, BOXES[None, :1], torch.ones(1, 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="all conditional"):
        rt.layer_delta(KEY, torch.zeros(1, 48, 128), torch.tensor([False]), (6, 8))
    with pytest.raises(ValueError, match="2 rows but the instance batch 1"):
        rt.layer_delta(KEY, torch.zeros(2, 48, 128), torch.tensor([True, True]), (6, 8))
