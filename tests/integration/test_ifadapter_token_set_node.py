"""Apply IFAdapter's optional ``token_set`` (the paper's Table 3 ablation) in a real ComfyUI: the default is the
official set (a graph without the input is unchanged), and each ablation changes the image."""
from __future__ import annotations

import pytest
import torch
from test_ifadapter_nodes import adapters, ifa_graph, nonce, run_latent  # noqa: F401

pytestmark = pytest.mark.integration


def _graph(token_set=None):
    g = ifa_graph(nonce=nonce())
    if token_set is not None:
        g["apply"]["inputs"]["token_set"] = token_set
    return g


def test_token_set_default_is_official_and_ablations_change_the_image(comfy, adapters):  # noqa: F811
    spec = comfy.node_class("IFAApplyIFAdapter").INPUT_TYPES()
    choices, opts = spec["optional"]["token_set"]
    assert choices == ["appearance + EoT (official)", "appearance only (no EoT)", "EoT only (no appearance)"]
    assert opts["default"] == choices[0] and "token_set" not in spec["required"]
    plain = run_latent(comfy, _graph())
    official = run_latent(comfy, _graph(choices[0]))
    assert torch.equal(plain, official)
    appearance = run_latent(comfy, _graph(choices[1]))
    eot = run_latent(comfy, _graph(choices[2]))
    for lat in (appearance, eot):
        assert torch.isfinite(lat).all() and not torch.equal(lat, plain)
    assert not torch.equal(appearance, eot)
