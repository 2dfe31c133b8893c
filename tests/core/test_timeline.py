"""Layouts over time (version 2): parsing and limits, interpolation, visibility ranges, frame grouping."""

import copy

import numpy as np
import pytest

from core.layout import MAX_FRAMES, Layout, LayoutError
from core.layout.timeline import Timeline, at_frame, frame_count, frame_span, regions_at, visible


def timed() -> dict:
    return {
        "format": "instance-layout", "version": 2, "width": 200, "height": 100, "prompt": "a road", "frames": 16,
        "instances": [
            {"description": "a car", "label": "", "enabled": True, "weight": 1.0, "z": 0, "color": "#e6194b",
             "regions": [{"kind": "box", "box": [0, 0, 20, 20]}],
             "keyframes": [
                 {"frame": 2, "regions": [{"kind": "box", "box": [0, 10, 20, 30]},
                                          {"kind": "point", "point": [10, 20]}]},
                 {"frame": 6, "regions": [{"kind": "box", "box": [100, 50, 140, 90]},
                                          {"kind": "point", "point": [120, 70], "width": 8}]},
             ]},
            {"description": "a bird", "label": "", "enabled": True, "weight": 1.0, "z": 0, "color": "#3cb44b",
             "regions": [{"kind": "box", "box": [150, 0, 190, 20]}], "frames": [3, 9]},
        ]}  # fmt: skip


def test_round_trip_is_exact_and_written_as_version_2():
    d = timed()
    lay = Layout.from_json(d)
    assert lay.timed and lay.frames == 16
    assert lay.to_dict() == d
    assert Layout.from_json(lay.to_json()).to_dict() == d


def test_static_layout_is_still_written_as_version_1():
    d = timed()
    del d["frames"]
    for inst in d["instances"]:
        inst.pop("keyframes", None)
        inst.pop("frames", None)
    d["version"] = 2  # read as 2, nothing time-aware in it: written back as 1 for older builds
    out = Layout.from_json(d).to_dict()
    assert out["version"] == 1 and "frames" not in out


def test_version_1_with_time_fields_is_read_and_written_as_2():
    d = timed()
    d["version"] = 1
    assert Layout.from_json(d).to_dict()["version"] == 2


def test_keyframed_instance_may_omit_plain_regions():
    d = timed()
    del d["instances"][0]["regions"]
    lay = Layout.from_json(d)
    assert lay.instances[0].regions == []
    assert regions_at(lay.instances[0], 4)[0].box == (50.0, 30.0, 80.0, 60.0)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d["instances"][0]["keyframes"].reverse(), "keyframes must be sorted by frame with no frame twice"),
    (lambda d: d["instances"][0]["keyframes"][1].update(frame=2), "keyframes[1] is at frame 2 after frame 2"),
    (lambda d: d["instances"][0]["keyframes"][0].update(frame=-1), "expected an integer frame index in 0..1023"),
    (lambda d: d["instances"][0]["keyframes"][0].update(frame=MAX_FRAMES), "keyframes[0] 'frame' is 1024"),
    (lambda d: d["instances"][0]["keyframes"][0].update(frame=1.5), "keyframes[0] 'frame' is 1.5"),
    (lambda d: d["instances"][0]["keyframes"][0].update(regions=[]), "keyframes[0] (frame 2) has no region"),
    (lambda d: d["instances"][0]["keyframes"][0]["regions"][0].update(box=[0, 0, 300, 10]),
     "keyframes[0] (frame 2) regions[0] (box): x1=300 is outside the canvas 0..200"),
    (lambda d: d["instances"][0].update(keyframes=[{"frame": f, "regions": [{"kind": "box", "box": [0, 0, 9, 9]}]}
                                                   for f in range(MAX_FRAMES + 1)]), "at most 1024 per instance"),
    (lambda d: d["instances"][0].update(keyframes={"frame": 1}), "'keyframes' must be a list"),
    (lambda d: d["instances"][1].update(frames=[9, 3]), "'frames' [9, 3] ends before it starts"),
    (lambda d: d["instances"][1].update(frames=[3]), "'frames' must be [first, last]"),
    (lambda d: d["instances"][1].update(frames=[3, 5000]), "'frames' last is 5000"),
    (lambda d: d.update(frames=0), "layout 'frames' is 0; expected the frame count, an integer in 1..1024"),
    (lambda d: d.update(frames=2000), "layout 'frames' is 2000"),
    (lambda d: d.update(version=3), "this build reads versions 1 and 2"),
])  # fmt: skip
def test_time_fields_are_validated_with_named_messages(mutate, message):
    d = timed()
    mutate(d)
    with pytest.raises(LayoutError) as e:
        Layout.from_json(d)
    assert message in str(e.value)


def test_boxes_and_points_interpolate_linearly_and_hold_outside_the_keyframes():
    car = Layout.from_json(timed()).instances[0]
    assert regions_at(car, 0)[0].box == (0, 10, 20, 30)  # before the first keyframe the first holds
    assert regions_at(car, 2)[0].box == (0, 10, 20, 30)
    r = regions_at(car, 3)  # t = 1/4
    assert r[0].box == (25.0, 20.0, 50.0, 45.0)
    assert r[1].points == [(37.5, 32.5)] and r[1].width == 5.0  # radius 4 -> 8 moves too
    assert regions_at(car, 6)[0].box == (100, 50, 140, 90)
    assert regions_at(car, 500)[0].box == (100, 50, 140, 90)  # after the last the last holds
    assert car.keyframes[0][1][0].box == (0, 10, 20, 30)  # never modified in place


def polygon_layout(n_b: int, kind: str = "polygon") -> Layout:
    a = [[10, 10], [50, 10], [30, 40]]
    b = [[110, 10], [150, 10], [130, 40], [120, 45]][:n_b]
    extra = {"width": 6} if kind == "scribble" else {}
    d = {"format": "instance-layout", "version": 2, "width": 200, "height": 100, "instances": [
        {"description": "x", "keyframes": [{"frame": 0, "regions": [{"kind": kind, "points": a, **extra}]},
                                           {"frame": 10, "regions": [{"kind": kind, "points": b, **extra}]}]}]}
    return Layout.from_json(d)


@pytest.mark.parametrize("kind", ["polygon", "scribble"])
def test_vertices_interpolate_when_counts_match(kind):
    inst = polygon_layout(3, kind).instances[0]
    r = regions_at(inst, 5)[0]
    assert r.kind == kind and r.points == [(60.0, 10.0), (100.0, 10.0), (80.0, 40.0)]


@pytest.mark.parametrize("kind", ["polygon", "scribble"])
def test_vertex_count_mismatch_holds_the_nearest_keyframe(kind):
    inst = polygon_layout(4, kind).instances[0]
    assert regions_at(inst, 4)[0].points == [(10, 10), (50, 10), (30, 40)]
    assert regions_at(inst, 5)[0].points == [(10, 10), (50, 10), (30, 40)]  # the middle: the earlier one
    assert len(regions_at(inst, 6)[0].points) == 4


def test_masks_and_kind_changes_hold_the_nearest_keyframe():
    d = {"format": "instance-layout", "version": 2, "width": 8, "height": 8, "instances": [
        {"description": "x", "keyframes": [
            {"frame": 0, "regions": [{"kind": "mask", "rle": {"size": [2, 2], "counts": [0, 1, 3]}},
                                     {"kind": "box", "box": [0, 0, 2, 2]}]},
            {"frame": 4, "regions": [{"kind": "mask", "rle": {"size": [2, 2], "counts": [3, 1]}},
                                     {"kind": "point", "point": [6, 6]}]}]}]}
    inst = Layout.from_json(d).instances[0]
    r1, r3 = regions_at(inst, 1), regions_at(inst, 3)
    assert r1[0].mask[0, 0] and not r1[0].mask[1, 1] and r1[1].kind == "box"
    assert r3[0].mask[1, 1] and not r3[0].mask[0, 0] and r3[1].kind == "point"


def test_region_count_mismatch_holds_the_nearest_keyframe():
    d = timed()
    d["instances"][0]["keyframes"][1]["regions"].pop()
    car = Layout.from_json(d).instances[0]
    assert len(regions_at(car, 3)) == 2 and regions_at(car, 3)[0].box == (0, 10, 20, 30)
    assert len(regions_at(car, 5)) == 1 and regions_at(car, 5)[0].box == (100, 50, 140, 90)


def test_visible_range_is_inclusive_and_open_ended():
    lay = Layout.from_json(timed())
    bird = lay.instances[1]
    assert [visible(bird, f) for f in (2, 3, 9, 10)] == [False, True, True, False]
    bird.frames = (3, None)
    assert visible(bird, 1000)
    assert visible(lay.instances[0], 0)


def test_at_frame_is_static_keeps_slots_and_disables_absent_instances():
    lay = Layout.from_json(timed())
    f1 = at_frame(lay, 1)
    assert not f1.timed and f1.to_dict()["version"] == 1
    assert [i.enabled for i in f1.instances] == [True, False]
    assert [i.description for i in f1.active()] == ["a car"]
    f4 = at_frame(lay, 4)
    assert [i.enabled for i in f4.instances] == [True, True]
    np.testing.assert_allclose(f4.boxes_normalized()[0].numpy(), [50 / 200, 30 / 100, 80 / 200, 60 / 100])
    assert f4.validate() is f4
    with pytest.raises(LayoutError, match="frame must be an integer >= 0"):
        at_frame(lay, -1)


def test_static_layout_at_any_frame_is_itself():
    d = timed()
    del d["frames"]
    for inst in d["instances"]:
        inst.pop("keyframes", None)
        inst.pop("frames", None)
    d["version"] = 1
    lay = Layout.from_json(d)
    assert at_frame(lay, 7).to_dict() == lay.to_dict()
    assert frame_count(lay) == frame_span(lay) == 1


def test_frame_count_and_span():
    lay = Layout.from_json(timed())
    assert frame_span(lay) == 11  # bird leaves after frame 9: frame 10 onwards is constant
    assert frame_count(lay) == 16  # the count it was drawn for
    lay.frames = None
    assert frame_count(lay) == 11


def test_timeline_groups_equal_frames_and_tracks_visibility():
    lay = Layout.from_json(timed())
    tl = Timeline(lay, 16)
    # frames 0..2 equal (first keyframe holds, bird absent); 3..6 each differ; 6..9 equal (last keyframe holds);
    # 10..15 equal (bird gone)
    assert tl.index.tolist() == [0, 0, 0, 1, 2, 3, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5]
    assert tl.visible.tolist() == [[True, False], [True, True], [True, True], [True, True], [True, True],
                                   [True, False]]
    assert all(all(i.enabled for i in f.instances) for f in tl.layouts)  # slots stay; visibility says who is there
    assert Timeline(lay, 2).index.tolist() == [0, 0]


def test_timeline_skips_disabled_instances():
    d = timed()
    d["instances"][0]["enabled"] = False
    tl = Timeline(Layout.from_json(d), 12)
    assert [len(f.instances) for f in tl.layouts] == [1] * len(tl)
    assert tl.visible[:, 0].tolist() == [False, True, False]


def test_scaled_scales_keyframes():
    lay = Layout.from_json(timed()).scaled(400, 200)
    assert lay.instances[0].keyframes[1][1][0].box == (200, 100, 280, 180)
    assert copy.deepcopy(lay).to_dict()["frames"] == 16
