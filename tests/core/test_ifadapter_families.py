"""IFAdapter families: the patched-layer rule on each UNet block layout, processor slots, family detection and
refusals, and SD1.5 adapters through save / load with their configuration in the metadata (bounds checked)."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from core.ifadapter import IFAdapter, IFAdapterCheckpointError, load_ifadapter, read_metadata, save_ifadapter
from core.ifadapter.families import (
    FAMILIES,
    BlockLayout,
    detect_family,
    layer_widths,
    patched_layers,
    unet_refusal,
)
from core.ifadapter.loading import adapter_config
from tests.fixtures.ifadapter_official import OFFICIAL_PATCHED_INDICES

# ComfyUI model_detection's unet_config of real SD1.5 / SD2.1 / SDXL / the SDXL refiner (the fields read here)
SD15 = {"model_channels": 320, "num_res_blocks": [2, 2, 2, 2], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
        "channel_mult": [1, 2, 4, 4], "transformer_depth_middle": 1, "context_dim": 768, "num_heads": 8,
        "num_head_channels": -1, "adm_in_channels": None,
        "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]}
SD21 = dict(SD15, context_dim=1024, num_head_channels=64, num_heads=-1)
SDXL = {"model_channels": 320, "num_res_blocks": [2, 2, 2], "transformer_depth": [0, 0, 2, 2, 10, 10],
        "channel_mult": [1, 2, 4], "transformer_depth_middle": 10, "context_dim": 2048, "num_head_channels": 64,
        "adm_in_channels": 2816, "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10]}
REFINER = {"model_channels": 384, "num_res_blocks": [2, 2, 2, 2], "transformer_depth": [0, 0, 4, 4, 4, 4, 0, 0],
           "channel_mult": [1, 2, 4, 4], "transformer_depth_middle": 4, "context_dim": 1280, "num_head_channels": 64,
           "adm_in_channels": 2560, "transformer_depth_output": [0, 0, 0, 4, 4, 4, 4, 4, 4, 0, 0, 0]}


def test_the_rule_on_sdxl_gives_the_released_codes_16_layers_and_indices():
    layers = patched_layers(BlockLayout.from_unet_config(SDXL))
    assert layers == tuple(sorted([("middle", 0, t) for t in range(4)]
                                  + [("output", j, t) for j in range(3) for t in range(4)]))
    fam = FAMILIES["sdxl"]
    assert fam.layers == layers and len(fam.slots) == 140
    assert tuple(sorted(fam.key_to_index.values())) == OFFICIAL_PATCHED_INDICES


def test_the_rule_on_sd15_gives_the_middle_block_and_the_first_attention_decoder_stage():
    layout = BlockLayout.from_unet_config(SD15)
    # output blocks 0-2 (8x8 at 512^2) have no attention; 3-5 (16x16) are the first decoder stage that has
    assert layout.output == (0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1)
    assert patched_layers(layout) == (("middle", 0, 0), ("output", 3, 0), ("output", 4, 0), ("output", 5, 0))
    assert sorted(layout.attention_layers()) == sorted(
        [("input", i, 0) for i in (1, 2, 4, 5, 7, 8)] + [("middle", 0, 0)] + [("output", i, 0) for i in range(3, 12)])
    fam = FAMILIES["sd15"]
    assert fam.layers == patched_layers(layout) and fam.context_dim == 768
    # diffusers' attn_processors order on SD1.5: down_blocks 0-2 (12), up_blocks 1-3 (18), mid_block (2)
    names = {s.index: s.diffusers_name for s in fam.slots}
    assert len(names) == 32
    assert names[0] == "down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor"
    assert names[12] == "up_blocks.1.attentions.0.transformer_blocks.0.attn1.processor"
    assert names[29] == "up_blocks.3.attentions.2.transformer_blocks.0.attn2.processor"
    assert names[31] == "mid_block.attentions.0.transformer_blocks.0.attn2.processor"
    assert fam.key_to_index == {("output", 3, 0): 13, ("output", 4, 0): 15, ("output", 5, 0): 17,
                                ("middle", 0, 0): 31}
    assert FAMILIES["sd2"].key_to_index == fam.key_to_index and FAMILIES["sd2"].context_dim == 1024
    assert layer_widths(SD15, fam.layers) == {k: (1280, 8) for k in fam.layers}
    assert layer_widths(SD21, fam.layers) == {k: (1280, 20) for k in fam.layers}


def test_family_detection():
    assert detect_family(SD15) is FAMILIES["sd15"]
    assert detect_family(SD21) is FAMILIES["sd2"]
    assert detect_family(SDXL) is FAMILIES["sdxl"]
    assert detect_family(REFINER) is None
    assert detect_family(dict(SD21, adm_in_channels=1536)) is None  # SD2.x unCLIP


def test_refusals_name_the_adapters_family_and_the_models():
    sd15, sdxl = FAMILIES["sd15"], FAMILIES["sdxl"]
    assert unet_refusal(SD15, sd15, sd15.layers, 1280, 8) is None
    assert unet_refusal(SDXL, sdxl, sdxl.layers, 1280, 20) is None
    msg = unet_refusal(SD15, sdxl, sdxl.layers, 1280, 20)
    assert msg.startswith("this IFAdapter was trained for SDXL models")
    assert "the connected model is SD1.5 (cross-attention width 768)" in msg
    assert "load an IFAdapter trained for SD1.5" in msg
    msg = unet_refusal(SDXL, sd15, sd15.layers, 1280, 8)
    assert "trained for SD1.5 models" in msg and "the connected model is SDXL" in msg
    msg = unet_refusal(SD21, sd15, sd15.layers, 1280, 8)
    assert "trained for SD1.5" in msg and "SD2.x" in msg
    msg = unet_refusal(REFINER, sdxl, sdxl.layers, 1280, 20)
    assert "the SDXL refiner" in msg and "cannot take an IFAdapter" in msg
    msg = unet_refusal(SD15, sd15, sd15.layers, 128, 8)
    assert "built for 128-wide layers with 8 heads" in msg and "1280 wide with 8 heads" in msg
    shallow = dict(SD15, transformer_depth_output=[1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    assert "has no [('output', 3, 0), ('output', 4, 0), ('output', 5, 0)]" in unet_refusal(
        shallow, sd15, sd15.layers, 1280, 8)


def tiny_sd15(seed: int = 0) -> IFAdapter:
    torch.manual_seed(seed)
    adapter = IFAdapter(hidden_size=32, heads=2, family="sd15",
                        resampler_kwargs=dict(dim=32, depth=2, heads=2, dim_head=16, ff_mult=2))
    with torch.no_grad():
        for proc in adapter.processors().values():
            proc.alpha.fill_(0.5)
    return adapter


def test_sd15_adapter_keys_tokens_and_processors():
    adapter = tiny_sd15()
    modules = {int(k.split(".")[1]) for k in adapter.state_dict() if k.startswith("adapter_modules.")}
    assert modules == {13, 15, 17, 31}
    assert adapter.layer_keys == FAMILIES["sd15"].layers
    assert adapter.processor(("output", 4, 0)) is adapter.adapter_modules[15]
    with pytest.raises(KeyError, match="SD1.5 IFAdapter does not patch layer"):
        adapter.processor(("output", 0, 0))
    n = 3
    tokens = adapter.encode_instances(torch.randn(n, 3, 77, 768), torch.ones(n, 77, dtype=torch.bool),
                                      torch.randn(n, 768), torch.rand(n, 4))
    assert tokens.shape == (n, 13, 768)
    with pytest.raises(ValueError, match=r"\[n, 3, L, 768\] \(CLIP-L 768 at hidden states"):
        adapter.encode_instances(torch.randn(n, 3, 77, 2048), torch.ones(n, 77, dtype=torch.bool),
                                 torch.randn(n, 2048), torch.rand(n, 4))
    with pytest.raises(ValueError, match="SD1.5 IFAdapter reads 768-wide text"):
        IFAdapter(family="sd15", context_dim=2048)
    with pytest.raises(ValueError, match="unknown IFAdapter family 'sd3'"):
        IFAdapter(family="sd3")


def test_sd15_file_records_its_configuration_and_loads_back(tmp_path):
    adapter = tiny_sd15()
    path = tmp_path / "sd15.safetensors"
    save_ifadapter(adapter, path)
    meta = read_metadata(path)
    assert meta["model"] == "ifadapter-sd15"
    cfg = json.loads(meta["ifadapter_config"])
    assert cfg["family"] == "sd15" and cfg["context_dim"] == 768
    assert cfg["text_encoders"] == [["l", 768]]
    assert cfg["layers"] == [["middle", 0, 0, 31], ["output", 3, 0, 13], ["output", 4, 0, 15], ["output", 5, 0, 17]]
    assert (cfg["hidden_size"], cfg["heads"]) == (32, 2)
    loaded = load_ifadapter(path)
    assert loaded.family is FAMILIES["sd15"] and loaded.config == adapter.config
    for k, v in adapter.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    # an official-style nested pickle of it (no metadata): the family comes from which indices hold what width
    sd = adapter.state_dict()
    nested = {s: {k[len(s) + 1:]: v for k, v in sd.items() if k.startswith(s + ".")}
              for s in ("text_proj_model", "adapter_modules", "pos_net")}
    torch.save(nested, tmp_path / "sd15.bin")
    assert load_ifadapter(tmp_path / "sd15.bin").config == adapter.config


def _rewrite(src, dst, **changes) -> None:
    meta = read_metadata(src)
    cfg = json.loads(meta["ifadapter_config"])
    cfg.update(changes)
    meta["ifadapter_config"] = json.dumps(cfg)
    save_file(load_file(src), dst, metadata=meta)


@pytest.mark.parametrize("change, message", [
    ({"family": "sd3"}, "metadata family 'sd3' is not one of"),
    ({"family": 5}, "metadata family 5 is not one of"),
    ({"layers": [["middle", 0, 0, 31], ["output", 3, 0, 13], ["output", 4, 0, 15], ["output", 6, 0, 17]]},
     "metadata layers .* does not match an SD1.5 IFAdapter's"),
    ({"text_encoders": [["l", 768], ["g", 1280]]}, "metadata text_encoders .* does not match"),
    ({"context_dim": 2048}, "context width 2048: an SD1.5 IFAdapter reads 768-wide text"),
    ({"heads": 64}, "64 heads: an IFAdapter layer has 1..20 heads"),
    ({"family": "sdxl"}, "text_encoders .* does not match an SDXL IFAdapter's"),  # an SD1.5 file declared SDXL
])
def test_tampered_metadata_is_refused_before_allocating(tmp_path, change, message):
    src, bad = tmp_path / "ok.safetensors", tmp_path / "bad.safetensors"
    save_ifadapter(tiny_sd15(), src)
    _rewrite(src, bad, **change)
    with pytest.raises(IFAdapterCheckpointError, match=message):
        load_ifadapter(bad)


def test_files_without_a_family_are_sdxl_adapters(tmp_path):
    torch.manual_seed(0)
    sdxl = IFAdapter(hidden_size=32, heads=2, resampler_kwargs=dict(dim=32, depth=1, heads=2, dim_head=16, ff_mult=1))
    path, old = tmp_path / "new.safetensors", tmp_path / "old.safetensors"
    save_ifadapter(sdxl, path)
    meta = read_metadata(path)
    cfg = json.loads(meta["ifadapter_config"])
    for k in ("family", "text_encoders", "layers"):  # as written before families existed
        del cfg[k]
    meta["ifadapter_config"] = json.dumps(cfg)
    save_file(load_file(path), old, metadata=meta)
    assert adapter_config(load_file(old), read_metadata(old))["family"] == "sdxl"
    assert load_ifadapter(old).layer_keys == FAMILIES["sdxl"].layers
