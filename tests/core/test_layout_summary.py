"""The text of a layout (its repr) stays short whatever the layout holds (issue 18 item 5): ComfyUI keeps str() of
a failed node's inputs in its history for the life of the server."""
from __future__ import annotations

import numpy as np

from core.layout import Instance, Layout, Region
from core.layout.summary import MAX_REPR


def _hostile() -> Layout:
    poly = Region(kind="polygon", points=[(float(k % 500), float((k * 7) % 380)) for k in range(1024)])
    mask = Region(kind="mask", mask=np.ones((4096, 4096), bool))
    inst = [Instance(description="\U0001F600 " * 1000, regions=[poly, mask, Region(kind="box", box=(1, 2, 30, 40))],
                     keyframes=[(f, [poly]) for f in range(1024)], extra={"junk": list(range(10_000))})
            for _ in range(64)]
    return Layout(width=4096, height=4096, prompt="p" * 10_000, instances=inst,
                  extra={f"field{k}": {"a": [k] * 1000} for k in range(1000)})


def test_repr_of_a_layout_at_the_limits_is_bounded():
    lay = _hostile()
    text = repr(lay)
    assert len(text) <= MAX_REPR and str(lay) == text
    assert text.startswith("Layout(4096x4096, 64 instances")
    assert "... 60 more" in text and "1024 keyframes" in text and "(2000 chars)" in text
    assert "Region(polygon: 1024 points)" in text and "Region(mask: 4096x4096)" in text
    assert "Region(box: (1, 2, 30, 40))" in text
    assert len(repr(lay.instances[0])) < 1000 and len(repr(lay.instances[0].regions[0])) < 100


def test_repr_of_a_small_layout_names_what_it_holds():
    lay = Layout.from_json({"format": "instance-layout", "version": 1, "width": 512, "height": 384,
                            "prompt": "a street", "instances": [
                                {"description": "a red car", "regions": [{"kind": "box", "box": [32, 200, 288, 352]}]},
                                {"description": "a pigeon", "enabled": False,
                                 "regions": [{"kind": "point", "point": [100, 60], "width": 12}]}]})
    assert repr(lay) == ("Layout(512x384, 2 instances, prompt='a street': Instance('a red car', "
                         "regions=[Region(box: (32, 200, 288, 352))]); Instance('a pigeon', "
                         "regions=[Region(point: 1 points)], disabled))")
