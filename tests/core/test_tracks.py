"""Importers of per-frame tracks: logtd's TRACKING dict, per-frame box JSON, MASK batches of one instance."""

import numpy as np
import pytest
import torch

from core.layout import Layout, LayoutError
from core.layout.timeline import at_frame, frame_count, regions_at, visible
from core.layout.tracks import from_box_tracks_json, from_mask_frames, from_tracking, parse_captions


def tracking() -> dict:
    W, H = 320, 240
    car = [(10 + 10 * f, 20, 60 + 10 * f, 80, W, H) for f in range(6)]
    person = [None, None, (200, 50, 240, 200, W, H), (205, 50, 245, 200, W, H), None, None]
    return {"car": {0: car}, "person": {3: person, 4: [None] * 6}}


def test_tracking_dict_becomes_keyframes_and_visible_ranges():
    lay = from_tracking(tracking(), '"0.car": "a red car"\n"-1.person": "a man in a coat"', prompt="a road")
    assert (lay.width, lay.height, lay.frames, lay.prompt) == (320, 240, 6, "a road")
    assert [i.description for i in lay.instances] == ["a red car", "a man in a coat"]  # the empty track is dropped
    car, person = lay.instances
    assert car.label == "car" and car.extra == {"track": "0.car"} and car.frames is None
    assert [f for f, _ in car.keyframes] == list(range(6))
    assert regions_at(car, 3)[0].box == (40, 20, 90, 80)
    assert person.frames == (2, 3)
    assert [visible(person, f) for f in range(6)] == [False, False, True, True, False, False]
    assert Layout.from_json(lay.to_json()).to_dict() == lay.to_dict()  # a valid version-2 layout
    assert lay.to_dict()["version"] == 2


def test_tracking_defaults_to_class_names_and_clips_boxes():
    t = {"dog": {1: [(-20, -5, 50, 60, 100, 80), (90, 70, 130, 95, 100, 80), (120, 90, 140, 99, 100, 80)]}}
    lay = from_tracking(t)
    dog = lay.instances[0]
    assert dog.description == "dog"
    assert dog.keyframes[0][1][0].box == (0.0, 0.0, 50.0, 60.0)
    assert dog.keyframes[1][1][0].box == (90.0, 70.0, 100.0, 80.0)
    assert dog.frames == (0, 1)  # frame 2's box lies outside the frame: absent there


@pytest.mark.parametrize(("t", "message"), [
    ({}, "non-empty dict"),
    ({"car": [1, 2]}, "TRACKING['car'] must be a dict"),
    ({"car": {0: "x"}}, "TRACKING['car'][0] must be a list"),
    ({"car": {0: [(1, 2, 3, 4)]}}, "frame 0: expected (x0, y0, x1, y1, W, H)"),
    ({"car": {0: [(1, 2, 3, 4, 10, 10), (1, 2, 3, 4, 12, 10)]}}, "frame 1: frame size 12x10 differs from 10x10"),
    ({"car": {0: [(1, 2, 3, 4, 0, 10)]}}, "frame size 0x10 must be integers"),
    ({"car": {0: [None, None]}}, "no box on any frame"),
    ({"car": {0: [(1, 2, 3, 4, 10, 10)] * 1025}}, "covers 1025 frames; expected 1..1024"),
])  # fmt: skip
def test_tracking_errors_name_the_track(t, message):
    with pytest.raises(LayoutError) as e:
        from_tracking(t)
    assert message in str(e.value)


def test_caption_lines():
    assert parse_captions('{\n"1.car": "a red car",\n  2.dog: a small dog\n}') == {
        (1, "car"): "a red car", (2, "dog"): "a small dog"}
    with pytest.raises(LayoutError, match="captions line 2 'car a red car'"):
        parse_captions('"1.car": "x"\ncar a red car')


def test_box_tracks_json_xyxy_and_xywh():
    d = {"width": 100, "height": 50, "prompt": "p", "tracks": [
        {"description": "a ball", "boxes": [[0, 0, 10, 10], None, [20, 0, 30, 10], None]},
        {"description": "a kite", "label": "kite", "boxes": [None, [50, 5, 70, 25], [60, 5, 80, 25]]}]}
    lay = from_box_tracks_json(d)
    assert lay.frames == 4 and frame_count(lay) == 4
    ball, kite = lay.instances
    assert ball.frames == (0, 2)
    assert regions_at(ball, 1)[0].box == (10.0, 0.0, 20.0, 10.0)  # the gap is bridged by interpolation
    d["box_format"] = "xywh"
    d["tracks"][0]["boxes"] = [[0, 0, 10, 10]]
    d["tracks"][1]["boxes"] = [None, [50, 5, 20, 20], [60, 5, 20, 20]]
    kite = from_box_tracks_json(d).instances[1]
    assert kite.frames == (1, 2) and kite.label == "kite"
    assert kite.keyframes[0][1][0].box == (50.0, 5.0, 70.0, 25.0)
    assert [i.enabled for i in at_frame(from_box_tracks_json(d), 0).instances] == [True, False]


@pytest.mark.parametrize(("d", "message"), [
    ("{nope", "not valid JSON"),
    ({"width": 10, "height": 10}, '"tracks": [{"description", "boxes"}]'),
    ({"width": 0, "height": 10, "tracks": []}, "'width' is 0"),
    ({"width": 10, "height": 10, "tracks": []}, "'tracks' is empty"),
    ({"width": 10, "height": 10, "tracks": [{"boxes": []}]}, "track 1: needs a non-empty 'description'"),
    ({"width": 10, "height": 10, "tracks": [{"description": "a", "boxes": [[1, 2, 3]]}]},
     "track 1 frame 0 must be [x0, y0, x1, y1]"),
    ({"width": 10, "height": 10, "tracks": [{"description": "a", "boxes": [None]}]}, "no box on any frame"),
    ({"width": 10, "height": 10, "box_format": "cxcy", "tracks": [{"description": "a", "boxes": [None]}]},
     "'box_format' is 'cxcy'"),
    ({"width": 10, "height": 10, "tracks": [{"description": "a", "boxes": [[1, 1, float("nan"), 3]]}]},
     "track 1 frame 0 x1 is nan; expected a finite number"),
])  # fmt: skip
def test_box_tracks_errors(d, message):
    with pytest.raises(LayoutError) as e:
        from_box_tracks_json(d)
    assert message in str(e.value)


def test_mask_batch_is_one_instance_over_frames():
    m = torch.zeros(5, 16, 24)
    m[1, 2:6, 3:9] = 1
    m[2, 4:8, 5:11] = 1
    m[3, 6:10, 7:13] = 0.4  # below 0.5: empty
    lay = from_mask_frames(m, " a cat ")
    assert (lay.width, lay.height, lay.frames) == (24, 16, 5)
    cat = lay.instances[0]
    assert cat.description == "a cat" and cat.frames == (1, 2)
    np.testing.assert_array_equal(regions_at(cat, 2)[0].mask, (m[2] > 0.5).numpy())
    assert lay.to_dict()["instances"][0]["keyframes"][0]["frame"] == 1
    base = Layout.from_json({"format": "instance-layout", "version": 1, "width": 48, "height": 32,
                             "instances": [{"description": "a tree", "regions": [{"kind": "box", "box": [0, 0, 9, 9]}]}]})
    both = from_mask_frames(m, "a cat", layout=base)
    assert (both.width, both.frames, len(both.instances)) == (48, 5, 2)
    assert len(base.instances) == 1  # the input layout is not modified
    assert at_frame(both, 2).rasterize(16, 24)[1].sum() > 0


def test_mask_batch_errors():
    with pytest.raises(LayoutError, match="all 2 masks are empty"):
        from_mask_frames(torch.zeros(2, 4, 4), "a")
    with pytest.raises(LayoutError, match="needs a non-empty description"):
        from_mask_frames(torch.ones(2, 4, 4), "  ")
    with pytest.raises(LayoutError, match=r"masks must be \[frames, H, W\]"):
        from_mask_frames(torch.ones(1, 2, 4, 4), "a")


# -- issue 18 items 2 and 6: counted before anything is built; every number finite ---------------------------------

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(("entry", "field"), [
    ((0, 0, 5, 5, NAN, 64), "frame 0: frame W is nan"),
    ((0, 0, 5, 5, 64, INF), "frame 0: frame H is inf"),
    ((0, 0, 5, 5, 10**400, 64), "frame 0: frame W is an integer of 1329 bits"),
    ((0, NAN, 5, 5, 64, 64), "frame 0 y0 is nan"),
    ((0, 0, 10**400, 5, 64, 64), "frame 0 x1 is an integer of 1329 bits"),
    ((0, 0, 5, -INF, 64, 64), "frame 0 y1 is -inf"),
])  # fmt: skip
def test_tracking_numbers_must_be_finite(entry, field):
    with pytest.raises(LayoutError) as e:
        from_tracking({"car": {7: [(0, 0, 5, 5, 64, 64), entry]}})
    assert f"TRACKING['car'][7] {field}".replace(" 0", " 1", 1) in str(e.value)


@pytest.mark.parametrize(("box", "formats"), [([0, 0, 10**400, 5], ("xyxy", "xywh")),
                                               ([NAN, 0, 5, 5], ("xyxy", "xywh")),
                                               ([1e308, 0, 1e308, 5], ("xywh",))])  # x + w overflows
def test_box_tracks_numbers_must_be_finite(box, formats):
    for fmt in formats:
        with pytest.raises(LayoutError, match=r"track 1 frame 0 x[01] is "):
            from_box_tracks_json({"width": 64, "height": 64, "box_format": fmt,
                                  "tracks": [{"description": "a", "boxes": [box]}]})


def _alloc_peak_mb(fn) -> float:
    import tracemalloc
    tracemalloc.start()
    try:
        with pytest.raises(LayoutError):
            fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_too_many_tracks_are_refused_before_any_is_built():
    """10,000 tracks of 1,024 frames each: refused by their count, with nothing built (issue 18 item 2)."""
    frames = [(0, 0, 5, 5, 64, 64)] * 1024
    tracking = {"car": {k: frames for k in range(5000)}, "person": {k: frames for k in range(5000)}}
    with pytest.raises(LayoutError, match=r"TRACKING: the number of tracked objects \(one instance each\) is 5000; "
                                          "at most 64"):
        from_tracking(tracking)
    assert _alloc_peak_mb(lambda: from_tracking(tracking)) < 1
    many_classes = {f"c{k}": {} for k in range(100_000)}
    with pytest.raises(LayoutError, match=r"TRACKING: the number of classes is 100000; at most 64"):
        from_tracking(many_classes)
    boxes = {"width": 64, "height": 64, "tracks": [{"description": "a", "boxes": [[0, 0, 5, 5]] * 1024}] * 10_000}
    with pytest.raises(LayoutError, match=r"box tracks: the number of 'tracks' \(one instance each\) is 10000; "
                                          "at most 64"):
        from_box_tracks_json(boxes)
    assert _alloc_peak_mb(lambda: from_box_tracks_json(boxes)) < 1


def test_box_tracks_text_length_is_checked_before_it_is_parsed():
    from core.layout import MAX_JSON_CHARS
    text = '{"width": 64, "height": 64, "tracks": [' + ",".join(['{"description": "a", "boxes": [[0,0,5,5]]}'] * 400_000) + "]}"
    assert len(text) > MAX_JSON_CHARS
    with pytest.raises(LayoutError, match=r"box tracks: the length of the JSON text is \d+; at most 16777216"):
        from_box_tracks_json(text)
    assert _alloc_peak_mb(lambda: from_box_tracks_json(text)) < 1


def test_every_tracked_frame_counts_in_the_layout_budget():
    """Each frame with a box or a mask is a keyframe region, counted before the region is built: every track the
    importers admit (64 objects x 1,024 frames) fits the layout's 65,536 keyframe regions, and masks count in its
    67,108,864 mask pixels (docs/layout-format.md#limits)."""
    boxes = [[0, 0, 10, 10]] * 1024
    lay = from_box_tracks_json({"width": 64, "height": 64,
                                "tracks": [{"description": f"t{i}", "boxes": boxes} for i in range(64)]})
    assert sum(len(regs) for i in lay.instances for _, regs in i.keyframes) == 64 * 1024
    assert len(from_tracking({"car": {k: [(0, 0, 10, 10, 64, 64)] * 300 for k in range(5)}}).instances) == 5
    assert len(from_mask_frames(torch.ones(300, 2, 2), "a dot").instances[0].keyframes) == 300
    wall = torch.ones(1, 4096, 4096).expand(5, -1, -1)  # five 4096 x 4096 masks, the fifth over the pixel total
    with pytest.raises(LayoutError, match=r"^the MASK batch frame 4 \(each non-empty mask is a keyframe region\): the "
                                          r"number of mask pixels in the layout \(with this one\) is 83886080"):
        from_mask_frames(wall, "a wall")
    with pytest.raises(LayoutError, match=r"^the MASK batch: the size of one mask \(4097x4096\) in pixels is "
                                          r"16781312; at most 16777216"):
        from_mask_frames(torch.ones(1, 4097, 4096).expand(3, -1, -1), "a wall")
