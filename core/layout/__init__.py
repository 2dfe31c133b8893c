"""The instance layout: canvas, global prompt and instances with regions, its JSON format and rasterisation.

This is the one object every back-end reads (IFAdapter boxes, InstanceDiffusion boxes/masks/scribbles/points) and
the one the editor widget writes. Coordinates are canvas pixels: origin top-left, x right, y down. The JSON format is
documented in docs/layout-format.md ("format": "instance-layout", "version": 1, or 2 when the layout is time-aware).

The package, one concept a file:

- ``limits.py``: the documented limits, :class:`LayoutError` and the layout-wide budget;
- ``values.py``: reading JSON values (numbers, points, RLE masks, frame indices) and naming instances from 1;
- ``model.py``: :class:`Region`, :class:`Instance`, :class:`Layout` and their queries;
- ``parse.py``: JSON to a layout (native versions 1 and 2, auto-detected sample formats);
- ``validate.py``: the geometry and limit checks of a whole layout;
- ``importers.py``: InstanceDiffusion demo JSON, IFAdapter sample layouts, MASK batches;
- ``timeline.py``: a layout over time resolved to the static layout of one frame;
- ``tracks.py``: per-frame tracks (TRACKING dicts, box tracks, mask batches) into layouts over time.
"""

from __future__ import annotations

from ..raster import box_cells, rasterize_boxes
from ..rle import rle_decode, rle_encode
from .importers import from_ifadapter_json, from_instancediffusion_json, from_masks
from .limits import (
    LIMITS_DOC,
    MAX_CANVAS,
    MAX_DESCRIPTION_CHARS,
    MAX_FRAMES,
    MAX_INSTANCES,
    MAX_JSON_CHARS,
    MAX_JSON_DEPTH,
    MAX_KEYFRAME_REGIONS,
    MAX_KEYFRAMES,
    MAX_LABEL_CHARS,
    MAX_MASK_PIXELS,
    MAX_MASK_PIXELS_TOTAL,
    MAX_POINTS,
    MAX_POINTS_PER_REGION,
    MAX_PROMPT_CHARS,
    MAX_REGIONS,
    MAX_REGIONS_PER_INSTANCE,
    MAX_RLE_CHARS,
    MAX_STROKE_WIDTH,
    LayoutError,
)
from .model import (
    DEFAULT_WIDTH,
    FORMAT,
    PALETTE,
    READ_VERSIONS,
    REGION_KINDS,
    VERSION,
    VERSION_TIMED,
    Instance,
    Layout,
    Region,
)

__all__ = [
    "DEFAULT_WIDTH", "FORMAT", "LIMITS_DOC", "MAX_CANVAS", "MAX_DESCRIPTION_CHARS", "MAX_FRAMES", "MAX_INSTANCES",
    "MAX_JSON_CHARS", "MAX_JSON_DEPTH", "MAX_KEYFRAME_REGIONS", "MAX_KEYFRAMES", "MAX_LABEL_CHARS", "MAX_MASK_PIXELS", "MAX_MASK_PIXELS_TOTAL",
    "MAX_POINTS", "MAX_POINTS_PER_REGION", "MAX_PROMPT_CHARS", "MAX_REGIONS", "MAX_REGIONS_PER_INSTANCE",
    "MAX_RLE_CHARS", "MAX_STROKE_WIDTH", "PALETTE", "READ_VERSIONS", "REGION_KINDS", "VERSION", "VERSION_TIMED", "Instance", "Layout",
    "LayoutError", "Region", "box_cells", "from_ifadapter_json", "from_instancediffusion_json", "from_masks",
    "rasterize_boxes", "rle_decode", "rle_encode",
]  # fmt: skip
