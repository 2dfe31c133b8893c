"""Official checkpoint layout (full key/shape set), parameter counts, processor indices, safe/strict loading."""

import os
import pickle

import pytest
import torch

from core.ifadapter import (
    COMFY_KEY_TO_INDEX,
    PATCHED_INDICES,
    SDXL_PROCESSOR_SLOTS,
    IFAdapter,
    IFAdapterCheckpointError,
    base_model_refusal,
    check_state_dict,
    convert_to_safetensors,
    load_ifadapter,
    read_state_dict,
)
from tests.fixtures.ifadapter_official import (
    OFFICIAL_PATCHED_INDICES,
    official_flat_shapes,
    write_official_like_checkpoint,
)


@pytest.fixture(scope="module")
def meta_adapter() -> IFAdapter:
    with torch.device("meta"):
        return IFAdapter()


def test_state_dict_has_exactly_the_official_keys_and_shapes(meta_adapter):
    ours = {k: tuple(v.shape) for k, v in meta_adapter.state_dict().items()}
    official = official_flat_shapes()
    assert sorted(set(official) - set(ours)) == []
    assert sorted(set(ours) - set(official)) == []
    assert {k: ours[k] for k in official} == official
    assert len(ours) == 255


def test_parameter_counts(meta_adapter):
    def count(m):
        return sum(p.numel() for p in m.parameters())

    assert count(meta_adapter.text_proj_model) == 429_982_208
    assert count(meta_adapter.pos_net) == 2_559_488
    for i in PATCHED_INDICES:
        assert count(meta_adapter.adapter_modules[i]) == 5_450_548
    assert count(meta_adapter.adapter_modules) == 16 * 5_450_548 == 87_208_768
    assert count(meta_adapter) == 519_750_464


def test_processor_indices_names_and_comfy_keys():
    assert len(SDXL_PROCESSOR_SLOTS) == 140
    assert PATCHED_INDICES == OFFICIAL_PATCHED_INDICES
    names = {s.index: s.diffusers_name for s in SDXL_PROCESSOR_SLOTS}
    assert names[49] == "up_blocks.0.attentions.0.transformer_blocks.0.attn2.processor"
    assert names[95] == "up_blocks.0.attentions.2.transformer_blocks.3.attn2.processor"
    assert names[121] == "mid_block.attentions.0.transformer_blocks.0.attn2.processor"
    assert names[0] == "down_blocks.1.attentions.0.transformer_blocks.0.attn1.processor"
    assert names[139] == "mid_block.attentions.0.transformer_blocks.9.attn2.processor"
    expected = {("output", j, t): 48 + 20 * j + 2 * t + 1 for j in range(3) for t in range(4)}
    expected.update({("middle", 0, t): 121 + 2 * t for t in range(4)})
    assert COMFY_KEY_TO_INDEX == expected


def test_processor_lookup_by_comfy_key(meta_adapter):
    assert meta_adapter.processor(("output", 2, 3)) is meta_adapter.adapter_modules[95]
    assert meta_adapter.processor(("middle", 0, 0)) is meta_adapter.adapter_modules[121]
    assert len(meta_adapter.processors()) == 16
    with pytest.raises(KeyError, match="does not patch layer"):
        meta_adapter.processor(("output", 3, 0))


def test_strict_check_lists_missing_unexpected_and_mismatched(meta_adapter):
    sd = {k: torch.empty(s, device="meta") for k, s in official_flat_shapes().items()}
    check_state_dict(meta_adapter, sd)  # the full official set passes
    del sd["pos_net.linears_position.0.bias"]
    sd["adapter_modules.50.to_k_ap.weight"] = torch.empty(1280, 2048, device="meta")
    sd["text_proj_model.latents"] = torch.empty(1, 16, 2560, device="meta")
    with pytest.raises(IFAdapterCheckpointError) as err:
        check_state_dict(meta_adapter, sd, source="bad.bin")
    msg = str(err.value)
    assert "missing 1 of 255 keys: pos_net.linears_position.0.bias" in msg
    assert "1 unexpected keys: adapter_modules.50.to_k_ap.weight" in msg
    assert "text_proj_model.latents: expected [1, 4, 2560], found [1, 16, 2560]" in msg
    assert "adapter_modules indices found" in msg


def test_wrong_model_file_is_named(tmp_path):
    torch.save(
        {"image_proj": {"proj.weight": torch.zeros(4, 4)}, "ip_adapter": {"1.to_k_ip.weight": torch.zeros(2)}},
        tmp_path / "ip.bin",
    )
    with pytest.raises(IFAdapterCheckpointError, match="missing 255 of 255 keys"):
        load_ifadapter(tmp_path / "ip.bin")


class Exploit:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_pickle_with_code_is_refused(tmp_path):
    path, pwn = tmp_path / "evil.bin", tmp_path / "pwned"
    with open(path, "wb") as f:
        pickle.dump({"text_proj_model": Exploit(str(pwn))}, f)
    with pytest.raises(IFAdapterCheckpointError, match=r"evil.bin: refused: the pickle references (posix|os)"):
        read_state_dict(path)  # a bare pickle
    for legacy in (False, True):
        torch.save({"text_proj_model": Exploit(str(pwn))}, path, _use_new_zipfile_serialization=not legacy)
        with pytest.raises(IFAdapterCheckpointError, match=r"evil.bin: refused: the pickle references (posix|os)"):
            read_state_dict(path)
    assert not pwn.exists()


def test_full_official_layout_roundtrip_bin_and_safetensors(tmp_path):
    """Write a random fp16 file with every official key and shape (1 GB), load it, convert it, load again."""
    src = tmp_path / "spd_adapter.bin"
    probes = write_official_like_checkpoint(src, dtype=torch.float16)
    model = load_ifadapter(src)
    sd = model.state_dict()
    assert len(sd) == len(probes) == 255
    for key, probe in probes.items():
        assert torch.equal(sd[key].flatten()[:8], probe), key
    assert sd["text_proj_model.latents"].dtype == torch.float16
    del model, sd

    dst = tmp_path / "spd_adapter.safetensors"
    assert convert_to_safetensors(src, dst) == 255
    model = load_ifadapter(dst, dtype=torch.float32)
    sd = model.state_dict()
    for key, probe in probes.items():
        assert torch.equal(sd[key].flatten()[:8], probe.float()), key
    assert not any(p.requires_grad for p in model.parameters())
    # the loaded module runs
    proc = model.processor(("middle", 0, 0))
    assert proc.alpha.dtype == torch.float32


def test_base_model_refusal():
    assert base_model_refusal(2048) is None
    msg = base_model_refusal(768)
    assert "trained for SDXL models" in msg and "looks like SD1.5" in msg and "768" in msg
    assert base_model_refusal(768, "sd15") is None
    msg = base_model_refusal(2048, "sd15")
    assert "trained for SD1.5 models" in msg and "looks like SDXL" in msg
