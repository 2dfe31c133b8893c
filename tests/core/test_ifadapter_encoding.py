"""Resampler word masks (incl. the official quirk), Fourier box features and instance-token assembly."""

import math

import pytest
import torch

from core.ifadapter import IFAdapter, Resampler, block_word_masks, fourier_embed
from core.ifadapter.norms import GemmaRMSNorm
from core.ifadapter.resampler import GatedMLP

TINY = dict(dim=32, depth=4, heads=2, dim_head=16, num_queries=4, in_dim=24, out_dim=24, ff_mult=2)


def word_mask_for(eot: int, length: int = 12) -> torch.Tensor:
    """Tokenizer mask for a prompt whose EoT sits at ``eot``, minus SOT and EoT: ones at 1..eot-1."""
    m = torch.zeros(length, dtype=torch.bool)
    m[1:eot] = True
    return m


def simulate_official_in_place(tokenizer_mask: torch.Tensor, depth: int) -> list[torch.Tensor]:
    """Spec §2.2, literally: every block zeroes SOT and position sum(mask)-1 of one shared mask, then attends."""
    shared = tokenizer_mask.clone().long()
    seen = []
    for _ in range(depth):
        eot = int(shared.sum()) - 1
        shared[0] = 0
        shared[eot] = 0
        seen.append(shared.bool().clone())
    return seen


def test_quirk_hand_built_case():
    # prompt "a b c d e": SOT=0, words 1..5, EoT=6
    masks = block_word_masks(word_mask_for(6)[None], depth=4, official_mask_quirk=True)[:, 0]
    as_sets = [set(torch.nonzero(m).flatten().tolist()) for m in masks]
    assert as_sets == [{1, 2, 3, 4, 5}, {1, 2, 3, 5}, {1, 2, 5}, {1, 5}]  # E-2=4, then 3, then 2 dropped


def test_quirk_matches_literal_in_place_simulation():
    for eot in range(3, 12):
        tok = torch.zeros(12, dtype=torch.long)
        tok[: eot + 1] = 1
        expected = simulate_official_in_place(tok, 4)
        got = block_word_masks(word_mask_for(eot)[None], 4, official_mask_quirk=True)[:, 0]
        for b in range(4):
            assert torch.equal(got[b], expected[b]), (eot, b)


def test_no_quirk_keeps_all_words_and_empty_mask_stays_empty():
    m = block_word_masks(word_mask_for(6)[None], 4, official_mask_quirk=False)
    assert all(torch.equal(m[b, 0], word_mask_for(6)) for b in range(4))
    empty = block_word_masks(torch.zeros(2, 12, dtype=torch.bool), 4, official_mask_quirk=True)
    assert not empty.any()


def test_gemma_rmsnorm_and_gated_mlp_by_hand():
    x = torch.tensor([[3.0, 4.0]])
    norm = GemmaRMSNorm(2)
    rms = math.sqrt((9 + 16) / 2 + 1e-6)
    assert torch.allclose(norm(x), x / rms)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, -0.5]))
    assert torch.allclose(norm(x), x / rms * torch.tensor([2.0, 0.5]))

    mlp = GatedMLP(2, mult=1)
    with torch.no_grad():
        mlp.gate_proj.weight.copy_(torch.eye(2))
        mlp.up_proj.weight.copy_(2 * torch.eye(2))
        mlp.down_proj.weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, -1.0]])
    gelu = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    inner = gelu * 2 * x
    assert torch.allclose(mlp(x), inner / inner.pow(2).mean().add(1e-6).sqrt(), atol=1e-6)


def test_resampler_reads_only_masked_words():
    torch.manual_seed(0)
    r = Resampler(**TINY, official_mask_quirk=False).eval()
    text = torch.randn(1, 3, 12, 24)
    mask = word_mask_for(6)[None]
    base = r(text, mask)
    assert base.shape == (1, 3, 4, 24)
    poked = text.clone()
    poked[:, :, 9] += 5.0  # padding position: not a word
    assert torch.allclose(r(poked, mask), base, atol=1e-6)
    poked = text.clone()
    poked[:, :, 3] += 5.0  # a word
    assert not torch.allclose(r(poked, mask), base, atol=1e-3)


def test_resampler_all_zero_mask_attends_to_latents_only():
    torch.manual_seed(0)
    r = Resampler(**TINY).eval()
    empty = torch.zeros(2, 12, dtype=torch.bool)
    a = r(torch.randn(2, 3, 12, 24), empty)
    b = r(torch.randn(2, 3, 12, 24), empty)
    assert torch.allclose(a, b, atol=1e-6)
    assert torch.allclose(a[0], a[1]) and torch.allclose(a[:, 0], a[:, 2])


def test_resampler_quirk_changes_what_late_blocks_see():
    torch.manual_seed(0)
    quirk, clean = Resampler(**TINY, official_mask_quirk=True).eval(), Resampler(**TINY, official_mask_quirk=False)
    clean.load_state_dict(quirk.state_dict())
    text, mask = torch.randn(1, 3, 12, 24), word_mask_for(6)[None]
    assert not torch.allclose(quirk(text, mask), clean(text, mask), atol=1e-4)
    one_word = word_mask_for(2)[None]  # single word at position 1: the quirk never removes it
    assert torch.allclose(quirk(text, one_word), clean(text, one_word), atol=1e-6)


def test_fourier_layout_by_hand():
    box = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    emb = fourier_embed(box)
    assert emb.shape == (1, 512)
    for k in (0, 1, 17, 63):
        f = 100.0 ** (k / 64)
        for c in range(4):
            assert emb[0, k * 8 + c].item() == pytest.approx(math.sin(f * box[0, c].item()), abs=1e-5)
            assert emb[0, k * 8 + 4 + c].item() == pytest.approx(math.cos(f * box[0, c].item()), abs=1e-5)


def tiny_adapter() -> IFAdapter:
    torch.manual_seed(0)
    return IFAdapter(resampler_kwargs=dict(dim=32, depth=4, heads=2, dim_head=16, ff_mult=2)).eval()


@pytest.fixture(scope="module")
def adapter():
    return tiny_adapter()


def test_encode_instances_adds_box_embedding_to_all_13_tokens(adapter):
    n = 3
    text = torch.randn(n, 3, 77, 2048)
    mask = torch.zeros(n, 77, dtype=torch.bool)
    mask[:, 1:5] = True
    eot = torch.randn(n, 2048)
    boxes = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.2, 0.1, 0.9, 0.6]])
    with torch.no_grad():
        tokens = adapter.encode_instances(text, mask, eot, boxes)
        p = adapter.pos_net(boxes)
        res = adapter.text_proj_model(text, mask).flatten(1, 2)
    assert tokens.shape == (n, 13, 2048)
    assert torch.allclose(tokens[:, 12], eot + p, atol=1e-5)
    assert torch.allclose(tokens[:, :12], res + p[:, None], atol=1e-5)
    # a sequence or a {-2,-4,-6} mapping gives the same result
    with torch.no_grad():
        as_map = adapter.encode_instances({-2: text[:, 0], -4: text[:, 1], -6: text[:, 2]}, mask, eot, boxes)
    assert torch.equal(as_map, tokens)


def test_encode_uncond_depends_on_boxes_only(adapter):
    boxes = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])
    with torch.no_grad():
        u = adapter.encode_uncond(boxes)
        explicit = adapter.encode_instances(
            torch.randn(2, 3, 77, 2048), torch.zeros(2, 77), torch.zeros(2, 2048), boxes
        )
    assert u.shape == (2, 13, 2048)
    assert torch.allclose(u, explicit, atol=1e-5)
    assert not torch.allclose(u[0], u[1])  # boxes still differ
