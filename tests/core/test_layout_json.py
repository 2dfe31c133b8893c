"""The version-1 JSON format: exact round-trips, unknown fields, defaults, format detection, validation messages."""

import copy
import json
import math

import numpy as np
import pytest

from core.layout import FORMAT, PALETTE, VERSION, Instance, Layout, LayoutError, Region


def canonical() -> dict:
    return {
        "format": "instance-layout",
        "version": 1,
        "width": 1024,
        "height": 768,
        "prompt": "a street at dusk",
        "instances": [
            {
                "description": "a red vintage car with chrome bumpers",
                "label": "car",
                "enabled": True,
                "weight": 1.0,
                "z": 0,
                "color": "#e6194b",
                "regions": [
                    {"kind": "box", "box": [100, 200, 612.5, 700]},
                    {"kind": "polygon", "points": [[100, 200], [600, 210.25], [300, 700]]},
                    {"kind": "mask", "rle": {"size": [3, 3], "counts": "322OO"}},
                    {"kind": "scribble", "points": [[10, 10], [500, 400]], "width": 4},
                    {"kind": "point", "point": [320, 400]},
                ],
            },
            {
                "description": "a lamp post",
                "label": "",
                "enabled": False,
                "weight": 0.5,
                "z": 2,
                "color": "#3cb44b",
                "regions": [{"kind": "point", "point": [800, 300], "width": 12.5}],
            },
        ],
    }


def test_canonical_round_trip_is_exact_as_dict_and_text():
    d = canonical()
    layout = Layout.from_json(d)
    assert layout.to_dict() == d
    text = json.dumps(d)
    assert Layout.from_json(text).to_json() == text


def test_round_trip_keeps_unknown_fields_at_every_level():
    d = canonical()
    d["editor"] = {"zoom": 2, "grid": [8, 8]}
    d["instances"][0]["locked"] = True
    d["instances"][0]["regions"][0]["handle"] = "corner"
    d["instances"][0]["regions"][2]["source"] = {"file": "x.png"}
    d["instances"][1]["regions"][0]["note"] = None
    assert Layout.from_json(d).to_dict() == d
    assert Layout.from_json(copy.deepcopy(d)).extra == {"editor": {"zoom": 2, "grid": [8, 8]}}


def test_field_of_another_kind_is_kept_as_unknown_field():
    d = canonical()
    d["instances"][0]["regions"][0]["points"] = [[1, 2]]  # not a box field: kept verbatim, ignored
    layout = Layout.from_json(d)
    assert layout.instances[0].regions[0].extra == {"points": [[1, 2]]}
    assert layout.to_dict() == d


def test_numbers_keep_their_type():
    out = Layout.from_json(canonical()).to_json()
    assert '"box": [100, 200, 612.5, 700]' in out
    assert '"weight": 1.0' in out


def test_rle_counts_form_is_preserved():
    d = canonical()
    d["instances"][0]["regions"][2]["rle"] = {"size": [3, 3], "counts": [3, 2, 2, 1, 1]}
    assert Layout.from_json(d).to_dict() == d


def test_parsed_objects():
    layout = Layout.from_json(canonical())
    assert (layout.width, layout.height, layout.prompt) == (1024, 768, "a street at dusk")
    car = layout.instances[0]
    assert car.region("box").box == (100, 200, 612.5, 700)
    assert car.region("point").points == [(320, 400)]
    assert car.region("scribble").width == 4
    assert car.region("mask").mask.tolist() == [[False, True, False], [False, True, True], [False, False, False]]
    assert layout.instances[1].region("point").width == 12.5
    assert [i.description for i in layout.active()] == ["a red vintage car with chrome bumpers"]


def test_defaults_and_palette_colours():
    d = {"format": FORMAT, "version": VERSION, "width": 64, "height": 64,
         "instances": [{"description": f"thing {i}", "regions": [{"kind": "box", "box": [0, 0, 8, 8]}]}
                       for i in range(22)]}  # fmt: skip
    out = Layout.from_json(d).to_dict()
    assert out["prompt"] == ""
    first = out["instances"][0]
    assert (first["label"], first["enabled"], first["weight"], first["z"]) == ("", True, 1.0, 0)
    assert [i["color"] for i in out["instances"]] == [PALETTE[i % 20] for i in range(22)]
    # the normalised form is a fixed point
    assert Layout.from_json(out).to_dict() == out


def test_programmatic_layout_serialises_and_reparses():
    mask = np.zeros((4, 6), dtype=bool)
    mask[1:3, 2:5] = True
    layout = Layout(
        60, 40, "p", [Instance("a cat", regions=[Region("mask", mask=mask), Region("box", box=(1, 2, 30, 20))])]
    )
    again = Layout.from_json(layout.to_json())
    assert again.instances[0].regions == layout.instances[0].regions
    assert again.to_dict() == layout.to_dict()


def test_region_equality_compares_masks():
    a = Region("mask", mask=np.eye(3, dtype=bool))
    assert a == Region("mask", mask=np.eye(3, dtype=bool))
    assert a != Region("mask", mask=np.ones((3, 3), dtype=bool))
    assert a != Region("box", box=(0, 0, 1, 1))


def test_from_json_detects_importer_formats():
    idj = {"caption": "c", "width": 512, "height": 512, "annos": [{"caption": "a dog", "bbox": [0, 0, 10, 10]}]}
    ifa = {"caption": "c", "annotations": [{"box": [0, 0, 10, 10], "caption": ["a dog"]}]}
    assert Layout.from_json(idj).instances[0].region("box").box == (0, 0, 10, 10)
    assert Layout.from_json(json.dumps(ifa)).width == 768


# ------------------------------------------------------------------------------------------------ errors


def err(d) -> str:
    with pytest.raises(LayoutError) as e:
        Layout.from_json(d)
    return str(e.value)


def with_region(region: dict, **inst) -> dict:
    d = canonical()
    d["instances"][0]["regions"] = [region]
    d["instances"][0].update(inst)
    return d


def test_error_not_json_and_not_object():
    assert "not valid JSON" in err("{nope")
    assert "must be a JSON object" in err("[1, 2]")


def test_error_wrong_format_and_version():
    d = canonical()
    d["format"] = "other"
    assert "'format' is 'other'; expected 'instance-layout'" in err(d)
    d = canonical()
    d["version"] = 3
    assert "'version' is 3; this build reads versions 1 and 2; the layout was written by a newer build" in err(d)


def test_error_unrecognised_json():
    assert "unrecognised layout JSON" in err({"foo": 1})


def test_error_box_outside_canvas_names_instance_and_field():
    msg = err(with_region({"kind": "box", "box": [10, 10, 1200, 100]}))
    assert 'instance 1 ("a red vintage car with chrome bumpers")' in msg
    assert "regions[0] (box)" in msg
    assert "x1=1200 is outside the canvas 0..1024 (width)" in msg


def test_error_box_negative_y():
    assert "y0=-1 is outside the canvas 0..768 (height)" in err(with_region({"kind": "box", "box": [0, -1, 5, 5]}))


@pytest.mark.parametrize("box", [[10, 10, 10, 50], [10, 60, 50, 20]])
def test_error_box_zero_or_negative_area(box):
    assert "zero or negative area; expected x0 < x1 and y0 < y1" in err(with_region({"kind": "box", "box": box}))


def test_error_nan_in_box_from_dict_and_text():
    msg = err(with_region({"kind": "box", "box": [0, 0, math.nan, 5]}))
    assert "box x1" in msg and "NaN" in msg
    text = json.dumps(with_region({"kind": "point", "point": [1, 2]})).replace("[1, 2]", "[NaN, 2]")
    assert "finite number" in err(text)


def test_error_missing_description():
    d = canonical()
    del d["instances"][1]["description"]
    msg = err(d)
    assert "instance 2: missing 'description'" in msg


def test_empty_description_is_a_valid_layout_and_refused_only_by_text_encoding_backends():
    """A drawn but not yet described instance previews and rasterises; a back-end that encodes descriptions
    names it (counted from 1) when it needs the text."""
    d = canonical()
    d["instances"][0]["description"] = "  "
    layout = Layout.from_json(d)
    assert layout.instances[0].description == "  "
    assert layout.rasterize(4, 4).shape[0] == 1
    with pytest.raises(LayoutError, match=r"^instance 1: missing description; IFAdapter encodes"):
        layout.require_descriptions("IFAdapter")
    layout.instances[0].enabled = False
    assert layout.require_descriptions("IFAdapter") is layout


def test_error_unknown_region_kind():
    msg = err(with_region({"kind": "ellipse", "center": [1, 1]}))
    assert "unknown region kind 'ellipse'; expected one of box, polygon, mask, scribble, point" in msg
    assert "regions[0]" in msg


def test_error_malformed_rle_names_instance():
    msg = err(with_region({"kind": "mask", "rle": {"size": [3, 3], "counts": [3, 2]}}))
    assert 'instance 1 ("a red vintage car' in msg and "malformed RLE in 'rle'" in msg and "needs 9" in msg


def test_error_empty_mask():
    assert "mask is empty" in err(with_region({"kind": "mask", "rle": {"size": [2, 2], "counts": [4]}}))


@pytest.mark.parametrize(
    ("region", "needle"),
    [
        ({"kind": "polygon", "points": [[0, 0], [5, 5]]}, "a polygon needs at least 3 points, got 2"),
        ({"kind": "polygon", "points": [[0, 0], [5, 5], [10, 10]]}, "polygon has zero area"),
        ({"kind": "scribble", "points": [[0, 0]]}, "a scribble needs at least 2 points, got 1"),
        ({"kind": "scribble", "points": [[0, 0], [5, 5]], "width": 0}, "width is 0; expected a stroke width"),
        ({"kind": "point", "point": [2000, 5]}, "points[0] x=2000 is outside the canvas 0..1024 (width)"),
        ({"kind": "point", "point": [5]}, "must be a pair [x, y]"),
        ({"kind": "box", "box": [1, 2, 3]}, "'box' must be [x0, y0, x1, y1] pixels"),
        ({"kind": "box", "box": [0, 0, "5", 5]}, "box x1 must be a number"),
    ],
)
def test_error_region_geometry(region, needle):
    assert needle in err(with_region(region))


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("color", "red", "'color' must be '#rrggbb' or null"),
        ("weight", -1, "'weight' is -1; expected a number >= 0"),
        ("z", True, "'z' must be an integer"),
        ("enabled", "yes", "'enabled' must be true or false"),
        ("regions", [], "'regions' is empty"),
        ("label", 3, "'label' must be a string"),
    ],
)
def test_error_instance_fields(field, value, needle):
    d = canonical()
    d["instances"][0][field] = value
    msg = err(d)
    assert needle in msg and msg.startswith('instance 1 ("a red vintage car')


@pytest.mark.parametrize(("key", "value"), [("width", 0), ("height", 20000), ("width", 512.5)])
def test_error_canvas(key, value):
    d = canonical()
    d[key] = value
    assert f"layout '{key}'" in err(d)


def test_error_non_json_unknown_field():
    d = canonical()
    d["instances"][0]["blob"] = {1, 2}
    assert "unknown fields must be plain JSON values" in err(d)


def test_max_instances_per_backend():
    layout = Layout.from_json(canonical())
    assert layout.validate(max_instances=1, backend="ifadapter") is layout  # the disabled one does not count
    layout.instances[1].enabled = True
    with pytest.raises(LayoutError) as e:
        layout.validate(max_instances=1, backend="ifadapter")
    assert "layout has 2 enabled instances but back-end 'ifadapter' allows at most 1" in str(e.value)


def test_validate_catches_programmatic_mistakes():
    layout = Layout(100, 100, instances=[Instance("a cat", regions=[Region("box", box=(0, 0, 150, 10))])])
    with pytest.raises(LayoutError, match=r'instance 1 \("a cat"\): regions\[0\] \(box\): x1=150 is outside'):
        layout.validate()
    layout.instances[0].regions[0] = Region("blob")
    with pytest.raises(LayoutError, match="unknown region kind 'blob'"):
        layout.validate()


def test_long_description_is_shortened_in_messages():
    d = with_region({"kind": "box", "box": [0, 0, 0, 5]}, description="x" * 100)
    assert '("' + "x" * 37 + '...")' in err(d)


def test_describe_summarises():
    text = Layout.from_json(canonical()).describe()
    assert text.splitlines()[0] == '1024x768 layout, 1/2 instances enabled, prompt "a street at dusk"'
    assert "box+polygon+mask+scribble+point [100,200,612,700]" in text
    assert "[disabled]" in text.splitlines()[2]


def test_instances_are_numbered_from_1_in_messages_and_summaries():
    """The fifth instance is "instance 5", as the editor's layer list and the preview's tags number it."""
    box = {"kind": "box", "box": [0, 0, 10, 10]}
    d = canonical()
    d["instances"] = [{"description": f"thing {k}", "regions": [box]} for k in range(5)]
    d["instances"][4]["regions"] = [{"kind": "box", "box": [0, 0, 10, 2000]}]
    assert err(d).startswith('instance 5 ("thing 4"): regions[0] (box): y1=2000')
    d["instances"][4] = "not an object"
    assert err(d).startswith("instance 5 must be an object")
    d["instances"][4] = {"description": "thing 4", "regions": [box]}
    d["instances"][2]["enabled"] = False
    layout = Layout.from_json(d)
    assert layout.active_numbers() == [1, 2, 4, 5]
    assert layout.describe().splitlines()[1].startswith('  1: "thing 0"')
    assert layout.describe().splitlines()[5].startswith('  5: "thing 4"')
