"""Property-based tests: the parser returns a valid layout or raises LayoutError, never another exception;
generated valid layouts round-trip exactly."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.layout import REGION_KINDS, Layout, LayoutError

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.floats(allow_nan=True), st.text(max_size=8)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=6), inner, max_size=5)),
    max_leaves=20,
)
clean_json = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8)
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=10,
)
coords = st.one_of(st.integers(-5, 70), st.floats(-5, 70), scalars)


def region_like():
    return st.fixed_dictionaries(
        {"kind": st.one_of(st.sampled_from(REGION_KINDS), scalars)},
        optional={
            "box": st.lists(coords, min_size=0, max_size=5),
            "points": st.lists(st.one_of(st.lists(coords, max_size=3), scalars), max_size=5),
            "point": st.one_of(st.lists(coords, max_size=3), scalars),
            "width": coords,
            "rle": st.one_of(
                json_values,
                st.fixed_dictionaries(
                    {
                        "size": st.one_of(st.lists(st.integers(-1, 6), max_size=3), scalars),
                        "counts": st.one_of(st.text(max_size=8), st.lists(st.integers(-2, 40), max_size=6), scalars),
                    }
                ),
            ),
            "extra": json_values,
        },
    )


def instance_like():
    return st.fixed_dictionaries(
        {"regions": st.one_of(st.lists(region_like(), max_size=4), json_values)},
        optional={
            "description": st.one_of(st.text(max_size=10), scalars),
            "label": st.one_of(st.text(max_size=5), scalars),
            "enabled": st.one_of(st.booleans(), scalars),
            "weight": coords,
            "z": st.one_of(st.integers(-3, 3), scalars),
            "color": st.one_of(st.sampled_from(["#00ff00", "#ABCDEF", "red", "#12345"]), scalars),
            "other": json_values,
        },
    )


def layout_like():
    return st.fixed_dictionaries(
        {
            "format": st.one_of(st.just("instance-layout"), scalars),
            "version": st.one_of(st.just(1), scalars),
            "width": st.one_of(st.integers(-2, 70), scalars),
            "height": st.one_of(st.integers(-2, 70), scalars),
            "instances": st.one_of(st.lists(instance_like(), max_size=4), json_values),
        },
        optional={"prompt": st.one_of(st.text(max_size=10), scalars), "x": json_values},
    )


def parses_or_layout_error(d):
    try:
        layout = Layout.from_json(d)
    except LayoutError as e:
        assert str(e)
        return None
    assert isinstance(layout, Layout)
    # anything accepted is valid, serialises and re-parses to the same JSON
    assert layout.validate() is layout
    out = layout.to_dict()
    assert Layout.from_json(json.loads(json.dumps(out))).to_dict() == out
    layout.rasterize(3, 5)
    return layout


@SETTINGS
@given(json_values)
def test_arbitrary_json_values(d):
    parses_or_layout_error(d)


@SETTINGS
@given(st.text(max_size=60))
def test_arbitrary_text(s):
    parses_or_layout_error(s)


@SETTINGS
@given(layout_like())
def test_structured_native_layouts(d):
    parses_or_layout_error(d)


@SETTINGS
@given(
    st.fixed_dictionaries(
        {"width": st.one_of(st.integers(0, 70), scalars), "height": st.one_of(st.integers(0, 70), scalars),
         "annos": st.one_of(st.lists(st.fixed_dictionaries({}, optional={
             "caption": st.one_of(st.text(max_size=5), scalars), "category_name": scalars,
             "bbox": st.lists(coords, max_size=5), "mask": st.one_of(json_values, st.lists(st.lists(coords, max_size=8), max_size=2)),
             "point": st.lists(coords, max_size=3), "scribble": st.one_of(st.lists(coords, max_size=6), st.lists(st.lists(coords, max_size=3), max_size=4)),
         }), max_size=4), json_values)},
        optional={"caption": st.one_of(st.text(max_size=5), scalars)},
    )
)  # fmt: skip
def test_structured_instancediffusion(d):
    parses_or_layout_error(d)


@SETTINGS
@given(
    st.fixed_dictionaries(
        {"annotations": st.one_of(st.lists(st.fixed_dictionaries({}, optional={
            "box": st.lists(coords, max_size=5), "caption": st.one_of(st.text(max_size=5), st.lists(scalars, max_size=2), scalars),
        }), max_size=4), json_values)},
        optional={"caption": scalars, "width": st.one_of(st.integers(0, 800), scalars)},
    )
)  # fmt: skip
def test_structured_ifadapter(d):
    parses_or_layout_error(d)


valid_region = st.one_of(
    st.builds(lambda x, y, w, h: {"kind": "box", "box": [x, y, x + w, y + h]},
              st.integers(0, 30), st.integers(0, 20), st.integers(1, 30), st.integers(1, 20)),
    st.builds(lambda p, w: {"kind": "scribble", "points": p, "width": w},
              st.lists(st.tuples(st.floats(0, 60), st.floats(0, 40)).map(list), min_size=2, max_size=5), st.floats(0.1, 9)),
    st.builds(lambda p: {"kind": "point", "point": list(p)}, st.tuples(st.integers(0, 60), st.integers(0, 40))),
    st.builds(lambda x, y: {"kind": "polygon", "points": [[x, y], [x + 5, y], [x, y + 5]]},
              st.integers(0, 55), st.integers(0, 35)),
)  # fmt: skip


@SETTINGS
@given(
    st.lists(
        st.fixed_dictionaries({
            "description": st.text(min_size=1, max_size=12).filter(str.strip), "label": st.text(max_size=4),
            "enabled": st.booleans(), "weight": st.floats(0, 3), "z": st.integers(-5, 5),
            "color": st.sampled_from(["#e6194b", "#00FF00"]), "regions": st.lists(valid_region, min_size=1, max_size=3),
        }, optional={"meta": clean_json}),
        max_size=5,
    ),
    st.text(max_size=10),
)  # fmt: skip
def test_valid_layouts_round_trip_exactly(instances, prompt):
    d = {"format": "instance-layout", "version": 1, "width": 64, "height": 48, "prompt": prompt, "instances": instances}
    layout = Layout.from_json(d)
    assert layout.to_dict() == d
    assert Layout.from_json(layout.to_json()).to_dict() == d
    assert layout.rasterize(6, 8).shape == (sum(i["enabled"] for i in instances), 6, 8)
