"""Widths read back from checkpoint shapes, strictness for non-standard widths, and the preview overlay."""

import importlib.util
from pathlib import Path

import pytest
import torch

from core.instancediffusion import (
    AdapterConfig,
    CheckpointError,
    build_model,
    expected_shapes,
    infer_config,
    null_inputs,
)
from core.instancediffusion.inputs import received_overlays
from core.instancediffusion.loading import check_adapter_keys
from core.layout import Layout

_spec = importlib.util.spec_from_file_location(
    "tiny_id", Path(__file__).resolve().parents[1] / "comfy_testnodes" / "tiny_instancediffusion.py")
tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny)


def test_official_shapes_give_the_official_config():
    shapes = expected_shapes()
    cfg = infer_config(shapes)
    assert cfg == AdapterConfig() and cfg.is_official
    assert len(shapes) == 513 and shapes["middle_block.1.transformer_blocks.0.fuser.linear.weight"] == (1280, 768)


def test_tiny_widths_are_inferred_and_load_strictly():
    state = tiny.tiny_adapter_state()
    cfg = infer_config({k: tuple(v.shape) for k, v in state.items()})
    assert cfg == tiny.TINY_CONFIG and not cfg.is_official
    assert cfg.fuser_channels[:2] == (32, 32) and cfg.fuser_channels[6] == 128 and cfg.scaleu_channels[-1] == 32
    model = build_model(state)
    assert model.fusers[4].linear.out_features == 128
    assert model.position_net.linears_list[0][0].out_features == 64
    assert len(model.position_net.convnext_tiny_backbone.stages[2]) == 1
    objs = model.encode(null_inputs())
    assert objs.shape == (1, 184, 768)


def test_inconsistent_widths_are_reported_per_key():
    state = {k: tuple(v.shape) for k, v in tiny.tiny_adapter_state().items()}
    # one fuser with a different width inside: its other tensors no longer match the width read from linear.bias
    state["input_blocks.1.1.transformer_blocks.0.fuser.norm1.weight"] = (40,)
    with pytest.raises(CheckpointError, match=r"1 shape mismatch.*fuser\.norm1\.weight: \(40,\) \(expected \(32,\)\)"):
        check_adapter_keys(state, "x")


def test_received_overlays_follow_the_preset():
    lay = Layout.from_json({"format": "instance-layout", "version": 1, "width": 400, "height": 200, "instances": [
        {"description": "a", "regions": [{"kind": "box", "box": [40, 20, 200, 120]}]},
        {"description": "b", "regions": [{"kind": "scribble", "points": [[250, 50], [300, 100], [350, 150]]}]},
    ]})
    marks = received_overlays(lay)  # auto -> scribbles preset: everything on
    box = next(m for m in marks[0] if m["kind"] == "box")
    assert box["box"] == pytest.approx([40, 20, 200, 120])
    line = next(m for m in marks[1] if m["kind"] == "polyline")
    assert len(line["points"]) == 20  # resampled to 20 points
    assert line["points"][0] == pytest.approx([250, 50]) and line["points"][-1] == pytest.approx([350, 150])
    boxes_only = received_overlays(lay, preset="boxes")
    assert all(m["kind"] != "polyline" for m in boxes_only[1])  # the boxes preset nulls scribbles
    points = received_overlays(lay, preset="points")
    assert all(m["kind"] != "box" for m in points[0])  # the points preset nulls boxes
    assert torch.tensor(next(m for m in points[0] if m["kind"] == "points")["points"][0]).tolist() == \
        pytest.approx([120, 70])  # box centre
