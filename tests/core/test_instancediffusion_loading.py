"""Strict, safe loading of the official training snapshot, logtd's split files and converted safetensors.

Fixtures carry every official adapter key (same names and nesting) at small widths, each tensor in its own storage
(see id_checkpoint_fixtures); the widths are read back from the shapes exactly as for the released 368.8 M-parameter
file.
"""

import os
import pickle
import sys

import pytest
import torch
from id_checkpoint_fixtures import FIXTURE_CONFIG, Payload, write_logtd_split, write_training_snapshot
from safetensors import safe_open

from core.instancediffusion import (
    CheckpointError,
    build_model,
    convert_to_safetensors,
    load_adapter_state_dict,
    load_instancediffusion,
    load_logtd_split,
    null_inputs,
)
from core.instancediffusion.loading import TorchArchive, expected_shapes

N_KEYS = len(expected_shapes(FIXTURE_CONFIG))  # every official key (513 at the released depths, 396 here)


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    d = tmp_path_factory.mktemp("snap")
    path, pwn = str(d / "instancediffusion_sd15.pth"), str(d / "pwned")
    states = write_training_snapshot(path)
    return path, pwn, states


def test_payload_is_live_but_refused_outright_and_never_executed(tmp_path):
    path, pwn = str(tmp_path / "instancediffusion_sd15.pth"), str(tmp_path / "pwned")
    write_training_snapshot(path, payload_path=pwn)
    live = str(tmp_path / "live")
    pickle.loads(pickle.dumps(Payload(live)))  # an unrestricted unpickler would run it
    assert os.path.isdir(live)
    with pytest.raises(CheckpointError, match=r"instancediffusion_sd15.pth: refused: the pickle references "
                                              r"(posix|nt|os)\.mkdir"):
        load_adapter_state_dict(path)
    assert not os.path.exists(pwn)


def test_unknown_classes_become_logged_placeholders_and_never_import(snapshot, caplog):
    path, pwn, states = snapshot
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)  # the OmegaConf-like config_dict is outside torch's allow-list
    had_omegaconf = "omegaconf" in sys.modules
    with caplog.at_level("INFO", logger="comfyui-ifadapter"):
        sd, origin = load_adapter_state_dict(path)
    assert "inert placeholders" in caplog.text and "omegaconf.dictconfig.DictConfig" in caplog.text
    assert ("omegaconf" in sys.modules) == had_omegaconf
    assert origin == "ema" and len(sd) == N_KEYS
    for k in (
        "position_net.linears_list.3.0.weight",
        "middle_block.1.transformer_blocks.0.fuser.alpha_attn",
        "scaleu_s_4",
    ):
        assert torch.equal(sd[k], states["ema"][k]) and sd[k].is_contiguous()
    assert not torch.equal(sd["scaleu_b_0"], states["model"]["scaleu_b_0"])


def test_archive_keeps_other_entries_lazy_and_opaque(snapshot):
    path, pwn, _ = snapshot
    with TorchArchive(path) as arc:
        root = arc.root
        assert set(root) >= {
            "model",
            "ema",
            "opt",
            "scheduler",
            "iters",
            "config_dict",
            "text_encoder",
            "autoencoder",
            "diffusion",
        }
        assert type(root["config_dict"]).__name__ == "Opaque[omegaconf.dictconfig.DictConfig]"
        assert type(root["opt"]["state"][0]["exp_avg"]).__name__ == "LazyTensor"
        t = arc.read(root["ema"]["input_blocks.0.0.weight"], torch.float16)
        assert t.shape == (320, 4, 3, 3) and t.dtype == torch.float16
    assert not os.path.exists(pwn)


def test_fallback_to_model_when_ema_is_incomplete(tmp_path):
    path = str(tmp_path / "ckpt.pth")
    states = write_training_snapshot(path, ema_drop=2)
    sd, origin = load_adapter_state_dict(path)
    assert origin == "model" and torch.equal(sd["scaleu_s_11"], states["model"]["scaleu_s_11"])


def test_incomplete_wrong_unexpected_and_truncated_files(tmp_path):
    p = str(tmp_path / "a.pth")
    write_training_snapshot(p, drop=3)
    with pytest.raises(CheckpointError, match=r"3 missing key\(s\): .*scaleu_s_11"):
        load_adapter_state_dict(p)
    write_training_snapshot(p, reshape="position_net.null_seg_feature")
    with pytest.raises(
        CheckpointError, match=r"shape mismatch.*position_net.null_seg_feature: \(129,\) \(expected \(128,\)\)"
    ):
        load_adapter_state_dict(p)
    write_training_snapshot(p, extra={"position_net.linears.4.weight": torch.zeros(2)})
    with pytest.raises(CheckpointError, match=r"unexpected key\(s\): position_net.linears.4.weight"):
        load_adapter_state_dict(p)
    good = str(tmp_path / "good.pth")
    write_training_snapshot(good)
    data = open(good, "rb").read()
    for cut in (len(data) // 2, len(data) - 100):
        with open(p, "wb") as f:
            f.write(data[:cut])
        with pytest.raises(CheckpointError, match="truncated"):
            load_adapter_state_dict(p)
    with pytest.raises(CheckpointError, match="file not found"):
        load_adapter_state_dict(str(tmp_path / "nope.pth"))
    torch.save({"foo": torch.zeros(1)}, p)
    with pytest.raises(CheckpointError, match="no InstanceDiffusion keys"):
        load_adapter_state_dict(p)


def test_logtd_split_files(tmp_path):
    pn, fu, su, state = write_logtd_split(str(tmp_path))
    sd = load_logtd_split(pn, fu, su)
    assert len(sd) == N_KEYS
    for k in (
        "position_net.pos_embedding",
        "output_blocks.6.1.transformer_blocks.0.fuser.ff.net.2.weight",
        "scaleu_b_7",
    ):
        assert torch.equal(sd[k], state[k])
    broken = torch.load(fu, weights_only=True)
    del broken["output_blocks"]["11"]
    torch.save(broken, fu)
    with pytest.raises(CheckpointError, match=r"missing key\(s\): output_blocks.11.1.transformer_blocks.0.fuser"):
        load_logtd_split(pn, fu, su)


def test_convert_to_fp16_safetensors_and_run_the_loaded_model(snapshot, tmp_path):
    path, _, states = snapshot
    out = str(tmp_path / "id_adapter.safetensors")
    meta = convert_to_safetensors(path, out, torch.float16)
    assert meta["origin"] == "ema"
    with safe_open(out, "pt") as f:
        assert len(list(f.keys())) == N_KEYS and f.metadata()["origin"] == "ema"
        assert f.get_tensor("scaleu_b_0").dtype == torch.float16
    model = load_instancediffusion(out, dtype=torch.float32)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    w = model.fusers[6].attn.to_q.weight
    ref = states["ema"]["middle_block.1.transformer_blocks.0.fuser.attn.to_q.weight"]
    assert torch.equal(w, ref.half().float())
    objs = model.encode(null_inputs())
    assert objs.shape == (1, 184, 768) and torch.isfinite(objs).all()
    x = torch.randn(2, 64, 16)  # fuser 0 of the fixture widths
    y = model.fuse(x, objs, 0, scale=1.0)
    assert y.shape == x.shape and not torch.equal(y, x)
    h, hsp = model.scale_u(torch.randn(1, 64, 8, 8), torch.randn(1, 64, 8, 8), 0)
    assert h.shape == (1, 64, 8, 8)
    with pytest.raises(CheckpointError, match="missing"):
        build_model({k: v for k, v in load_adapter_state_dict(out)[0].items() if k != "scaleu_b_0"})
