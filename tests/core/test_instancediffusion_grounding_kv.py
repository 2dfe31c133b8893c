"""The once-per-run grounding keys/values of the fusers (core.instancediffusion.grounding_kv) against the per-call
fuser maths (GatedSelfAttentionDense.forward over cat[visual, grounding])."""

import pytest
import torch

from core.instancediffusion import InstanceDiffusion
from core.instancediffusion.fuser import GatedSelfAttentionDense
from core.instancediffusion.grounding_kv import GroundingKV
from core.instancediffusion.position_net import PositionNet

CHANNELS = (32, 32, 64, 64, 128, 128, 128, 128, 128, 128, 64, 64, 64, 32, 32, 32)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    pn = PositionNet(mid_dim=64, convnext_dims=(8, 16, 32, 48), convnext_depths=(1, 1, 1, 1), seg_size=64)
    m = InstanceDiffusion(pn, fuser_channels=CHANNELS, scaleu_channels=(128,) * 7 + (64,) * 3 + (32,) * 2)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith(("alpha_attn", "alpha_dense")):
                p.fill_(0.7)
            elif p.ndim >= 2:
                p.normal_(0, 0.05)
            else:
                p.normal_(0, 0.1)
    return m


def test_forward_kv_equals_forward_over_the_concatenated_tokens():
    torch.manual_seed(1)
    f = GatedSelfAttentionDense(64, 768, 8, 8)
    with torch.no_grad():
        f.alpha_attn.fill_(0.9)
        f.alpha_dense.fill_(-0.4)
    x = torch.randn(3, 20, 64)
    objs = torch.randn(3, 184, 768)
    x0 = x.clone()
    with torch.no_grad():
        ref = f(x, objs, 0.8)
        k, v = f.grounding_kv(objs)
        out = f.forward_kv(x, k, v, 0.8)
        one = f.forward_kv(x, *f.grounding_kv(objs[:1]), 0.8)  # [1, M, inner] broadcast over the batch
        ref_one = f(x, objs[:1], 0.8)
    assert k.shape == v.shape == (3, 184, 64)
    assert (out - ref).abs().max() <= 1e-5
    assert (one - ref_one).abs().max() <= 1e-5
    assert torch.equal(x, x0)
    assert f.forward_kv(x, k, v, 0.0) is x


def test_cache_matches_per_call_fusers_for_mixed_rows_and_projects_once():
    m = tiny_model()
    torch.manual_seed(2)
    table = torch.randn(4, 184, 768)  # null, full, two MIS instances
    rows = torch.tensor([0, 0, 1, 3])
    kv = GroundingKV(m)
    for step in range(3):
        for i, c in enumerate(CHANNELS):
            x = torch.randn(4, 16, c)
            got = kv.fuse(x, table, rows, i, 1.0)
            want = m.fuse(x, table[rows], i, 1.0)
            assert (got - want).abs().max() <= 1e-5, (step, i)
    assert kv.projections == 16  # once per fuser for the whole run, not per step
    assert kv.cached_bytes() == kv.table_bytes(table) == 2 * 4 * 184 * sum(CHANNELS) * 4
    # every batch row on one table row (e.g. all positive rows of a plain run): same result via broadcasting
    x = torch.randn(2, 16, 32)
    same = torch.tensor([1, 1])
    assert (kv.fuse(x, table, same, 0) - m.fuse(x, table[same], 0)).abs().max() <= 1e-5
    assert kv.projections == 16


def test_cache_is_rebuilt_for_a_new_table_and_for_new_weights_dtype():
    m = tiny_model()
    kv = GroundingKV(m)
    t1, t2 = torch.randn(2, 184, 768), torch.randn(2, 184, 768)
    rows = torch.tensor([0, 1])
    x = torch.randn(2, 16, 32)
    kv.fuse(x, t1, rows, 0)
    kv.fuse(x, t1, rows, 0)
    assert kv.projections == 1
    assert (kv.fuse(x, t2, rows, 0) - m.fuse(x, t2[rows], 0)).abs().max() <= 1e-5
    assert kv.projections == 2
    m.fusers.to(torch.float64)
    out = kv.fuse(x.double(), t2, rows, 0)
    assert out.dtype == torch.float64 and kv.projections == 3
    assert (out - m.fuse(x.double(), t2[rows], 0)).abs().max() <= 1e-10


def test_over_budget_tables_project_only_the_rows_in_use_per_call():
    m = tiny_model()
    kv = GroundingKV(m, max_bytes=0)
    table = torch.randn(6, 184, 768)
    rows = torch.tensor([0, 0, 5, 2])
    x = torch.randn(4, 16, 64)
    assert (kv.fuse(x, table, rows, 2) - m.fuse(x, table[rows], 2)).abs().max() <= 1e-5
    assert kv.cached_bytes() == 0


def test_scale_zero_and_bad_blocks():
    m = tiny_model()
    kv = GroundingKV(m)
    x = torch.randn(2, 16, 32)
    table = torch.randn(2, 184, 768)
    assert kv.fuse(x, table, torch.tensor([0, 1]), 0, 0.0) is x
    assert kv.projections == 0
    with pytest.raises(ValueError, match="transformer_index 16"):
        kv.fuse(x, table, torch.tensor([0, 1]), 16)
    with pytest.raises(ValueError, match="expects 64 channels"):
        kv.fuse(x, table, torch.tensor([0, 1]), 2)
