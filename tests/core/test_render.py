"""The Layout Preview picture (core/render.py): tag positions, numbering from 1, bounded legend, bounded size."""

import time

import numpy as np

from core.layout import Instance, Layout, Region
from core.render import LEGEND_LINES, PREVIEW_MAX_SIDE, legend_rows, render_layout, wrap_lines

RED, BLUE = "#ff0000", "#0000ff"


def _is(px, color: str) -> bool:
    want = np.array([int(color[k : k + 2], 16) for k in (1, 3, 5)]) / 255.0
    return bool(np.abs(np.asarray(px) - want).max() < 1e-6)


def test_tag_of_a_mask_instance_sits_at_its_canvas_position():
    """A brush mask is stored at its own resolution (512 here) and stretched over the 1024 canvas: the tag goes
    at the mask's top-left on the canvas (600, 600), not at its pixel position in the mask (300, 300)."""
    mask = np.zeros((512, 512), dtype=bool)
    mask[300:400, 300:400] = True
    layout = Layout(1024, 1024, instances=[
        Instance("a box", color=BLUE, regions=[Region("box", box=(0, 0, 200, 200))]),
        Instance("a brushed cat", color=RED, regions=[Region("mask", mask=mask)]),
    ]).validate()
    img = render_layout(layout, opacity=0.0, legend=False)
    lw = 4  # max(2, round(1024 / 256))
    assert img.shape == (1024, 1024, 3)
    assert _is(img[600 + lw + 1, 600 + lw + 1], RED)  # inside the tag box, at the mask's canvas corner
    assert not _is(img[300 + lw + 1, 300 + lw + 1], RED)  # not at half its position


def test_tags_and_legend_number_instances_by_their_place_in_the_layout():
    """With instance 2 disabled, the third instance is still "3" (as in the editor), not "2"."""
    box = [Region("box", box=(0, 0, 10, 10))]
    layout = Layout(100, 100, prompt="a scene", instances=[
        Instance("first", regions=box), Instance("second", regions=box, enabled=False),
        Instance("third", label="cat", regions=box),
    ]).validate()
    rows = legend_rows(layout, layout.active(), layout.active_numbers(), 40)
    assert [t for _, t in rows] == ["prompt: a scene", "1. first", "3. [cat] third"]
    assert [i for i, _ in rows] == [None, 0, 1]


def test_legend_wraps_in_linear_time_and_is_elided():
    assert wrap_lines("a short one", 30) == ["a short one"]
    lines = wrap_lines("word " * 1000, 30)
    assert len(lines) == LEGEND_LINES and lines[-1].endswith("…") and all(len(x) <= 30 for x in lines)
    t = time.perf_counter()
    lines = wrap_lines("x" * 10_000_000, 80)  # a 10 MB single word (was quadratic: minutes)
    assert time.perf_counter() - t < 1.0
    assert len(lines) == LEGEND_LINES and lines[-1] == "x" * 79 + "…"


def test_preview_of_a_long_description_is_quick_and_short():
    layout = Layout(256, 256, instances=[Instance("y" * 100_000, regions=[Region("box", box=(0, 0, 99, 99))])])
    t = time.perf_counter()
    img = render_layout(layout)  # not validated: the renderer alone must cope
    assert time.perf_counter() - t < 5.0
    assert img.shape[1] == 256 and img.shape[0] < 256 + 5 * 30  # the canvas and a few legend lines


def test_preview_of_a_huge_canvas_is_drawn_scaled_down():
    layout = Layout(16384, 8192, instances=[Instance("sky", color=RED, regions=[Region("box", box=(0, 0, 8192, 4096))])])
    img = render_layout(layout.validate(), opacity=1.0, legend=False)
    assert img.shape == (PREVIEW_MAX_SIDE // 2, PREVIEW_MAX_SIDE, 3)
    assert _is(img[300, 700], RED) and not _is(img[800, 1500], RED)  # the box is the top-left quarter


def test_legend_draws_descriptions_with_separator_characters():
    """\x1c..\x1f and \x85 are whitespace to Python and tokens to CLIP; Pillow's text layout refuses them."""
    lay = Layout(64, 64, "a\x85prompt", [Instance("\x1ca dog\x1f\tin\x1d\x1ethe\x85park", "",
                                                  [Region("box", box=(8, 8, 40, 40))])])
    img = render_layout(lay)
    assert img.shape[1] == 64 and img.shape[0] > 64  # the canvas and its legend
