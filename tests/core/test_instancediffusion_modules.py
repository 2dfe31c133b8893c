"""Position net, mask-encoder reshape, fusers and ScaleU against expectations derived by hand from the spec."""

import math

import pytest
import torch

from core.instancediffusion import (
    FUSER_PREFIXES,
    DropFlags,
    FourierEmbedder,
    GatedSelfAttentionDense,
    InstanceDiffusion,
    PositionNet,
    ScaleU,
    expected_shapes,
    fourier_filter,
    fourier_filter_fft,
    null_inputs,
    to_official_key,
)
from core.instancediffusion.convnext import ConvNeXt, features_to_tokens


# --------------------------------------------------------------------------------------------- Fourier embedder
def test_fourier_layout_is_sin_cos_per_frequency_block():
    emb = FourierEmbedder(16, 100.0)
    x = torch.tensor([[0.1, 0.7]])  # D = 2
    out = emb(x)
    assert out.shape == (1, 64)
    for k in range(16):
        f = 100.0 ** (k / 16)
        assert torch.allclose(out[0, 4 * k : 4 * k + 2], torch.sin(f * x[0]), atol=1e-6)
        assert torch.allclose(out[0, 4 * k + 2 : 4 * k + 4], torch.cos(f * x[0]), atol=1e-6)
    assert emb.freq_bands[0] == 1.0 and abs(emb.freq_bands[15] - 100 ** (15 / 16)) < 1e-4


# --------------------------------------------------------------------------------------------- position net
def tiny_net(seed=0):
    torch.manual_seed(seed)
    net = PositionNet(
        in_dim=8,
        out_dim=6,
        mid_dim=10,
        fourier_freqs=2,
        convnext_depths=(1, 1, 1, 1),
        convnext_dims=(4, 4, 4, 32),
        seg_size=64,
    )
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.5)
    return net.eval()


def tiny_inputs(n=2, segs=False, seed=1):
    g = torch.Generator().manual_seed(seed)
    d = {
        "boxes": torch.zeros(1, 30, 4),
        "masks": torch.zeros(1, 30),
        "positive_embeddings": torch.zeros(1, 30, 8),
        "points": torch.zeros(1, 30, 2),
        "scribbles": torch.zeros(1, 30, 40),
        "polygons": torch.zeros(1, 30, 512),
        "segs": torch.zeros(1, 30, 64, 64),
    }
    d["masks"][0, :n] = 1
    for k in ("boxes", "positive_embeddings", "points", "scribbles", "polygons"):
        d[k][0, :n] = torch.rand(d[k][0, :n].shape, generator=g)
    if segs:
        d["segs"][0, :n, 8:40, 16:48] = 1
    return d


def mlp_tokens(net, i, text, layout):
    return net.linears_list[i](torch.cat([text, layout], -1))


def test_tiny_position_net_output_layout_and_null_replacement():
    net, inp = tiny_net(), tiny_inputs(n=2)
    with torch.no_grad():
        objs = net(inp, DropFlags())
        assert objs.shape == (1, 4 * 30 + 64, 6)
        f = net.fourier
        # real slot 0, box token = MLP0(text, fourier(box))
        exp = mlp_tokens(net, 0, inp["positive_embeddings"][0, 0], f(inp["boxes"][0, 0]))
        assert torch.allclose(objs[0, 0], exp, atol=1e-5)
        # padded slot 5: null text + null box / point / scribble / polygon
        nt = net.null_positive_feature
        for i, (base, null) in enumerate(
            [
                (0, net.null_position_feature),
                (30, net.null_point_feature),
                (60, net.null_scribble_feature),
                (90, net.null_polygon_feature),
            ]
        ):
            assert torch.allclose(objs[0, base + 5], mlp_tokens(net, i, nt, null), atol=1e-5)
        # no segs in the sample -> null seg + pos_embedding
        seg_exp = net.linears_list[4](net.null_seg_feature + net.pos_embedding[0])
        assert torch.allclose(objs[0, 120:], seg_exp, atol=1e-5)


def test_drop_flags_and_scribble_zero_rule():
    net, inp = tiny_net(), tiny_inputs(n=1)
    inp["scribbles"][0, 0] = 0  # real slot with all-zero scribble: Fourier-embedded zeros, NOT null
    f, t = net.fourier, inp["positive_embeddings"][0, 0]
    with torch.no_grad():
        objs = net(inp, DropFlags())
        assert torch.allclose(objs[0, 60], mlp_tokens(net, 2, t, f(torch.zeros(40))), atol=1e-5)
        objs = net(inp, DropFlags(boxes=False, points=False, scribbles=True, masks=True))  # test_box.yaml
        assert torch.allclose(objs[0, 60], mlp_tokens(net, 2, t, net.null_scribble_feature), atol=1e-5)
        assert torch.allclose(objs[0, 90], mlp_tokens(net, 3, t, net.null_polygon_feature), atol=1e-5)
        assert torch.allclose(objs[0, 0], mlp_tokens(net, 0, t, f(inp["boxes"][0, 0])), atol=1e-5)
        # everything dropped -> boxes forced back on
        objs = net(inp, DropFlags(True, True, True, True))
        assert torch.allclose(objs[0, 0], mlp_tokens(net, 0, t, f(inp["boxes"][0, 0])), atol=1e-5)
        assert torch.allclose(objs[0, 30], mlp_tokens(net, 1, t, net.null_point_feature), atol=1e-5)
        # the "drop" entry of the inputs dict is honoured when no argument is given
        inp["drop"] = DropFlags(boxes=True).as_tensor()
        objs = net(inp)
        assert torch.allclose(objs[0, 0], mlp_tokens(net, 0, t, net.null_position_feature), atol=1e-5)


def test_seg_branch_per_sample_flag_uses_convnext_and_reshape():
    net = tiny_net()
    a, b = tiny_inputs(n=1, segs=True), tiny_inputs(n=1, segs=False)
    batch = {k: torch.cat([a[k], b[k]]) for k in a}
    with torch.no_grad():
        objs = net(batch, DropFlags())
        feat = features_to_tokens(net.convnext_tiny_backbone(net.in_conv(a["segs"])))
        exp_a = net.linears_list[4](feat[0] + net.pos_embedding[0])
        exp_b = net.linears_list[4](net.null_seg_feature + net.pos_embedding[0])
        assert torch.allclose(objs[0, 120:], exp_a, atol=1e-5)
        assert torch.allclose(objs[1, 120:], exp_b, atol=1e-5)
        # masks dropped -> null even with segs present
        objs = net(batch, DropFlags(masks=True))
        assert torch.allclose(objs[0, 120:], exp_b, atol=1e-5)


def test_null_input_is_independent_of_drop_flags():
    net = tiny_net()
    nul = null_inputs(seg_size=64)
    nul["positive_embeddings"] = torch.zeros(1, 30, 8)
    with torch.no_grad():
        outs = [net(nul, DropFlags(*f)) for f in [(0, 0, 0, 0), (0, 0, 1, 1), (1, 0, 1, 1), (0, 0, 1, 0)]]
        for o in outs[1:]:
            assert torch.equal(o, outs[0])
        exp = mlp_tokens(net, 0, net.null_positive_feature, net.null_position_feature)
        assert torch.allclose(outs[0][0, :30], exp.expand(30, -1), atol=1e-5)


def test_mask_encoder_raw_reshape_order():
    # token j, feature 4c+q == feature map value at channel c, flat pixel q*64 + j (spec §1.4)
    feat = torch.arange(768 * 256, dtype=torch.float32).reshape(1, 768, 16, 16)
    tok = features_to_tokens(feat, 64)
    assert tok.shape == (1, 64, 3072)
    for j, c, q in [(0, 0, 0), (5, 0, 1), (63, 767, 3), (17, 300, 2)]:
        assert tok[0, j, 4 * c + q] == c * 256 + q * 64 + j
        y, x = divmod(q * 64 + j, 16)
        assert tok[0, j, 4 * c + q] == feat[0, c, y, x]


def test_convnext_tiny_and_full_key_layout():
    with torch.device("meta"):
        cn = ConvNeXt()
    sd = cn.state_dict()
    assert len(sd) == 178 and sum(v.numel() for v in sd.values()) == 27_818_592
    shapes = expected_shapes()
    assert len(shapes) == 513
    counts = {"pn": 0, "fu": 0, "su": 0}
    for k, s in shapes.items():
        counts["pn" if k.startswith("position_net.") else "fu" if ".fuser." in k else "su"] += math.prod(s)
    assert counts == {"pn": 160_782_669, "fu": 208_018_272, "su": 11_532}
    assert shapes["position_net.linears_list.3.0.weight"] == (3072, 17152)
    assert shapes["position_net.pos_embedding"] == (1, 64, 3072)
    assert shapes["position_net.in_conv.weight"] == (3, 30, 3, 3)
    assert shapes["middle_block.1.transformer_blocks.0.fuser.ff.net.0.proj.weight"] == (10240, 1280)
    assert shapes["output_blocks.11.1.transformer_blocks.0.fuser.alpha_attn"] == ()
    assert shapes["scaleu_b_7"] == (640,) and shapes["scaleu_s_11"] == (1,)
    assert to_official_key("fusers.6.attn.to_q.weight") == "middle_block.1.transformer_blocks.0.fuser.attn.to_q.weight"
    assert FUSER_PREFIXES[13].startswith("output_blocks.9.")


# --------------------------------------------------------------------------------------------- fuser
def reference_fuser(f, x, objs, scale):
    """Hand-written maths of spec §2 (explicit softmax per head)."""
    n = x.shape[1]
    o = objs @ f.linear.weight.T + f.linear.bias
    h = torch.nn.functional.layer_norm(torch.cat([x, o], 1), (x.shape[-1],), f.norm1.weight, f.norm1.bias)
    heads, c = f.attn.heads, x.shape[-1]
    d = c // heads
    q, k, v = (h @ w.T for w in (f.attn.to_q.weight, f.attn.to_k.weight, f.attn.to_v.weight))
    outs = []
    for i in range(heads):
        sl = slice(i * d, (i + 1) * d)
        a = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(d), -1)
        outs.append(a @ v[..., sl])
    att = torch.cat(outs, -1) @ f.attn.to_out[0].weight.T + f.attn.to_out[0].bias
    x = x + scale * math.tanh(f.alpha_attn.item()) * att[:, :n]
    hn = torch.nn.functional.layer_norm(x, (c,), f.norm2.weight, f.norm2.bias)
    pr = hn @ f.ff.net[0].proj.weight.T + f.ff.net[0].proj.bias
    val, gate = pr[..., : 4 * c], pr[..., 4 * c :]
    ff = (val * torch.nn.functional.gelu(gate)) @ f.ff.net[2].weight.T + f.ff.net[2].bias
    return x + scale * math.tanh(f.alpha_dense.item()) * ff


@pytest.mark.parametrize("c,n_tok", [(16, 7), (32, 64)])
def test_fuser_matches_hand_maths_and_keeps_only_visual_tokens(c, n_tok):
    torch.manual_seed(0)
    f = GatedSelfAttentionDense(c, 12, 8, c // 8)
    with torch.no_grad():
        for p in f.parameters():
            p.normal_(0, 0.3)
        f.alpha_attn.fill_(0.5)
        f.alpha_dense.fill_(-0.7)
    x, objs = torch.randn(2, n_tok, c), torch.randn(1, 184, 12)
    x0 = x.clone()
    with torch.no_grad():
        out = f(x, objs, 1.0)
        ref = reference_fuser(f, x, objs.expand(2, -1, -1), 1.0)
        half = f(x, objs, 0.5)
    assert out.shape == x.shape and torch.equal(x, x0)
    assert torch.allclose(out, ref, atol=1e-5)
    assert torch.allclose(half, reference_fuser(f, x, objs.expand(2, -1, -1), 0.5), atol=1e-5)


def test_fuser_is_identity_with_zero_gates_or_zero_scale():
    torch.manual_seed(0)
    f = GatedSelfAttentionDense(16, 12, 8, 2)
    x, objs = torch.randn(1, 9, 16), torch.randn(1, 184, 12)
    with torch.no_grad():
        assert torch.equal(f(x, objs), x)  # fresh fuser: alpha_attn = alpha_dense = 0 -> tanh(0) = 0
        f.alpha_attn.fill_(1.0)
        f.alpha_dense.fill_(1.0)
        assert not torch.allclose(f(x, objs), x)
        assert torch.equal(f(x, objs, 0.0), x)


def test_instance_diffusion_fuse_checks_index_and_width():
    with torch.device("meta"):
        m = InstanceDiffusion()
    with pytest.raises(ValueError, match="transformer_index 16"):
        m.fuse(torch.zeros(1, 4, 320, device="meta"), torch.zeros(1, 184, 768, device="meta"), 16)
    with pytest.raises(ValueError, match="fuser 2 expects 640 channels"):
        m.fuse(torch.zeros(1, 4, 320, device="meta"), torch.zeros(1, 184, 768, device="meta"), 2)


# --------------------------------------------------------------------------------------------- ScaleU
def test_fourier_filter_hand_cases():
    s = 3.0
    const = torch.full((1, 1, 4, 4), 2.0)
    assert torch.allclose(fourier_filter(const, 1, s), const * s)  # only DC -> scaled
    w = torch.arange(4, dtype=torch.float32)
    cos1 = torch.cos(2 * math.pi * w / 4).expand(1, 1, 4, 4).contiguous()
    # bins at +1 and -1; only -1 lies in the 2x2 centre block, so .real gives (s + 1)/2 of the wave
    assert torch.allclose(fourier_filter(cos1, 1, s), cos1 * (s + 1) / 2, atol=1e-6)
    nyq = torch.cos(math.pi * w).expand(1, 1, 4, 4).contiguous()  # frequency 2: untouched
    assert torch.allclose(fourier_filter(nyq, 1, s), nyq, atol=1e-6)
    # odd and degenerate sizes follow the same Python slicing (H=3: bins -1, 0; H=1: bin 0)
    c3 = torch.full((1, 2, 3, 5), 1.5)
    assert torch.allclose(fourier_filter(c3, 1, s), c3 * s, atol=1e-6)
    c1 = torch.full((1, 1, 1, 1), 2.0)
    assert torch.allclose(fourier_filter(c1, 1, s), c1 * s)
    # fp16 in -> fp16 out; input untouched
    h = torch.randn(1, 2, 8, 8).half()
    h0 = h.clone()
    out = fourier_filter(h, 1, 1.0)
    assert out.dtype == torch.float16 and torch.equal(h, h0)
    assert torch.allclose(out.float(), h.float(), atol=1e-2)


@pytest.mark.parametrize("threshold", [1, 2, 3])
def test_fourier_filter_equals_the_official_full_fft_path(threshold):
    # the scaled bins only (rank-2t products) == fft -> shift -> mask -> ifft, for every size incl. odd/degenerate
    g = torch.Generator().manual_seed(threshold)
    for hh in range(1, 10):
        for ww in range(1, 10):
            x = torch.randn(2, 3, hh, ww, generator=g) * 3
            for s in (1.3, torch.tensor([0.2]), 1.0):
                got, want = fourier_filter(x, threshold, s), fourier_filter_fft(x, threshold, s)
                assert got.shape == want.shape and got.dtype == want.dtype
                assert (got - want).abs().max() <= 1e-5, (hh, ww, s)
    x = torch.randn(2, 320, 64, 64, generator=g)  # SD1.5's largest ScaleU input at 512x512
    assert (fourier_filter(x, 1, 1.7) - fourier_filter_fft(x, 1, 1.7)).abs().max() <= 1e-5
    xh = torch.randn(1, 8, 16, 16, generator=g).half()
    assert (fourier_filter(xh, 1, 1.7).float() - fourier_filter_fft(xh, 1, 1.7).float()).abs().max() <= 2e-3


def test_scaleu_block_scales():
    su = ScaleU((4, 2))
    h, hsp = torch.randn(2, 4, 4, 4), torch.randn(2, 3, 4, 4)
    h1, s1 = su(h, hsp, 0)  # zero-initialised -> identity
    assert torch.equal(h1, h) and torch.allclose(s1, hsp, atol=1e-6)
    with torch.no_grad():
        su.scaleu_b_0.copy_(torch.tensor([0.0, 0.5, -0.5, 2.0]))
        su.scaleu_s_0.fill_(0.3)
    h2, s2 = su(h, hsp, 0)
    b = torch.tanh(torch.tensor([0.0, 0.5, -0.5, 2.0])) + 1
    assert torch.allclose(h2, h * b[None, :, None, None])
    assert torch.allclose(s2, fourier_filter(hsp, 1, math.tanh(0.3) + 1), atol=1e-6)
    with pytest.raises(ValueError, match="expects 2 backbone channels"):
        su(h, hsp, 1)
    with pytest.raises(ValueError, match="outside 0..1"):
        su(h, hsp, 2)


def test_fuser_query_rows_only_equals_full_self_attention():
    """The fuser attends with visual queries only; it must equal the official full self-attention's visual rows."""
    import torch

    from core.instancediffusion.fuser import GatedSelfAttentionDense

    torch.manual_seed(0)
    f = GatedSelfAttentionDense(64, context_dim=768, n_heads=8).eval()
    with torch.no_grad():
        f.alpha_attn.fill_(0.7)
        f.alpha_dense.fill_(-0.4)
        x = torch.randn(2, 49, 64)
        objs = torch.randn(2, 184, 768)
        o = f.linear(objs)
        full = f.attn(f.norm1(torch.cat([x, o], dim=1)))[:, :49]  # official: queries for every token
        ref = x + torch.tanh(f.alpha_attn) * full
        ref = ref + torch.tanh(f.alpha_dense) * f.ff(f.norm2(ref))
        out = f(x, objs)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
