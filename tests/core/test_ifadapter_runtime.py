"""Sampling-time pieces of IFAdapter: token positions, grid recovery, cond/uncond routing, caches, config files."""

import copy

import pytest
import torch

from core.ifadapter import IFAdapter, adapter_config, load_ifadapter, read_metadata, save_ifadapter
from core.ifadapter.runtime import IFAdapterRuntime, InstanceTokens, eot_and_word_mask, token_grid
from core.ifadapter.semantic_map import InstanceGeometry, InstanceKV


def test_eot_and_word_mask():
    ids = [49406, 320, 736, 1615, 49407] + [49407] * 72
    eot, mask = eot_and_word_mask(ids)
    assert eot == 4 and mask.nonzero().flatten().tolist() == [1, 2, 3] and mask.shape == (77,)
    eot, mask = eot_and_word_mask([49406, 49407] + [0] * 75)  # empty description
    assert eot == 1 and not mask.any()
    with pytest.raises(ValueError, match="no EoT"):
        eot_and_word_mask([49406, 1, 2])


@pytest.mark.parametrize(
    "latent,n,expected",
    [((128, 128), 32 * 32, (32, 32)), ((96, 128), 24 * 32, (24, 32)), ((97, 130), 25 * 33, (25, 33)),
     ((24, 32), 6 * 8, (6, 8)), ((17, 25), 5 * 7, (5, 7)), ((17, 25), 9 * 13, (9, 13))],
)
def test_token_grid_from_latent(latent, n, expected):
    assert token_grid(n, latent) == expected


def test_token_grid_prefers_activations_and_falls_back_to_aspect():
    assert token_grid(6 * 8, (24, 32), (6, 8)) == (6, 8)
    assert token_grid(6 * 8, None, aspect=8 / 6) == (6, 8)
    with pytest.raises(ValueError, match="cannot tell the token grid"):
        token_grid(7 * 11, (24, 32))


def _tokens(n=3):
    g = torch.Generator().manual_seed(3)
    boxes = torch.tensor([[0.0, 0.0, 0.5, 0.6], [0.4, 0.3, 1.0, 1.0], [0.1, 0.5, 0.3, 0.9]])[:n]
    return InstanceTokens(torch.randn(n, 13, 2048, generator=g), torch.randn(n, 13, 2048, generator=g), boxes)


def test_rows_get_their_own_tokens_in_any_order(tiny):
    rt = IFAdapterRuntime(tiny, _tokens(), scale=1.0)
    key = ("output", 1, 2)
    q = torch.randn(2, 6 * 8, 128)
    # [uncond, cond] vs [cond, uncond]: the rows swap with cond_or_uncond
    a = rt.layer_delta(key, q, torch.tensor([False, True]), (6, 8))
    b = rt.layer_delta(key, q.flip(0), torch.tensor([True, False]), (6, 8))
    torch.testing.assert_close(a, b.flip(0))
    # each row equals the processor run on that row's tokens alone (by hand)
    proc = tiny.processor(key)
    geo = InstanceGeometry.from_boxes(rt.tokens.boxes[None], 6, 8)
    cond = proc(q[1:], rt.tokens.cond[None], geo)
    uncond = proc(q[:1], rt.tokens.uncond[None], geo)
    torch.testing.assert_close(a[1:], cond, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a[:1], uncond, rtol=1e-5, atol=1e-6)
    # and equals the literal reference transcription
    ref = proc(q[1:], proc.project_tokens(rt.tokens.cond[None]), geo, reference=True)
    torch.testing.assert_close(a[1:], ref, rtol=1e-4, atol=1e-5)
    assert not torch.equal(a[0], a[1])


def test_scale_caches_and_deepcopy(tiny):
    rt = IFAdapterRuntime(tiny, _tokens(), scale=2.0)
    rt1 = IFAdapterRuntime(tiny, _tokens(), scale=1.0)
    q = torch.randn(3, 6 * 8, 128)
    pos = torch.tensor([True, True, False])
    torch.testing.assert_close(rt.layer_delta(("middle", 0, 1), q, pos, (6, 8)),
                               2 * rt1.layer_delta(("middle", 0, 1), q, pos, (6, 8)))
    rt.layer_delta(("middle", 0, 1), q, pos, (6, 8))
    rt.layer_delta(("middle", 0, 2), q[:2], pos[:2], (6, 8))
    sizes = rt.cache_sizes()
    assert sizes["kv"] == 2 and sizes["geometry"] == 2 and sizes["processors"] == 0  # adapter already on CPU
    assert copy.deepcopy(rt) is rt and copy.deepcopy(rt.tokens) is rt.tokens


def test_half_precision_rows_stay_close(tiny):
    rt = IFAdapterRuntime(tiny, _tokens(), scale=1.0)
    q = torch.randn(2, 6 * 8, 128)
    pos = torch.tensor([False, True])
    full = rt.layer_delta(("output", 0, 0), q, pos, (6, 8))
    half = rt.layer_delta(("output", 0, 0), q.to(torch.bfloat16), pos, (6, 8))
    assert half.dtype == torch.bfloat16 and torch.isfinite(half).all()
    torch.testing.assert_close(half.float(), full, rtol=0.05, atol=0.02)
    kv = rt.kv(("output", 0, 0), torch.device("cpu"), torch.bfloat16)
    assert isinstance(kv, InstanceKV) and kv.k.dtype == torch.bfloat16 and kv.k.shape[:2] == (2, 3)


def test_wrong_width_is_named(tiny):
    rt = IFAdapterRuntime(tiny, _tokens(), scale=1.0)
    with pytest.raises(ValueError, match="128 wide.*1280 wide"):
        rt.layer_delta(("middle", 0, 0), torch.randn(2, 48, 1280), torch.tensor([True, False]), (6, 8))


def test_too_many_instances(tiny):
    g = torch.Generator().manual_seed(0)
    tok = InstanceTokens(torch.randn(11, 13, 2048, generator=g), torch.randn(11, 13, 2048, generator=g),
                         torch.rand(11, 4))
    with pytest.raises(ValueError, match="11 instances.*at most 10"):
        IFAdapterRuntime(tiny, tok)


def test_tiny_config_roundtrips_through_metadata_and_shapes(tiny, tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_ifadapter(tiny, path)
    assert "ifadapter_config" in read_metadata(path)
    loaded = load_ifadapter(path)
    assert loaded.config == tiny.config
    for k, v in tiny.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    # without metadata (an official-style nested pickle) the sizes come from the shapes
    sd = tiny.state_dict()
    assert adapter_config(sd) == tiny.config
    nested = {s: {k[len(s) + 1:]: v for k, v in sd.items() if k.startswith(s + ".")}
              for s in ("text_proj_model", "adapter_modules", "pos_net")}
    torch.save(nested, tmp_path / "tiny.bin")
    assert load_ifadapter(tmp_path / "tiny.bin").config == tiny.config


def test_official_shapes_give_the_official_config():
    with torch.device("meta"):
        sd = IFAdapter().state_dict()
    assert adapter_config(sd) == {"hidden_size": 1280, "heads": 20, "context_dim": 2048, "resampler_kwargs": {},
                                  "family": "sdxl"}


def test_convert_command_line(tiny, tmp_path, capsys):
    from core.ifadapter.convert import main

    sd = tiny.state_dict()
    nested = {s: {k[len(s) + 1:]: v for k, v in sd.items() if k.startswith(s + ".")}
              for s in ("text_proj_model", "adapter_modules", "pos_net")}
    torch.save(nested, tmp_path / "a.bin")
    assert main([str(tmp_path / "a.bin"), str(tmp_path / "a.safetensors"), "--dtype", "fp16"]) == 0
    loaded = load_ifadapter(tmp_path / "a.safetensors")
    assert loaded.config == tiny.config and loaded.processor(("middle", 0, 0)).alpha.dtype == torch.float16
    torch.save({"image_proj": {"w": torch.zeros(2)}}, tmp_path / "ip.bin")
    assert main([str(tmp_path / "ip.bin"), str(tmp_path / "ip.safetensors")]) == 1
    assert "missing" in capsys.readouterr().err
