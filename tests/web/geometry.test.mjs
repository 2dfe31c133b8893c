import { test } from "node:test";
import assert from "node:assert/strict";
import * as g from "../../web/js/geometry.js";

test("normRect orders corners and rectFromDrag clamps to the canvas", () => {
  assert.deepEqual(g.normRect([10, 20, 5, 2]), [5, 2, 10, 20]);
  assert.deepEqual(g.rectFromDrag([50, 60], [-10, 200], 100, 100), [0, 60, 50, 100]);
});

test("eight handles sit on corners and edge midpoints", () => {
  const h = g.handlePositions([0, 0, 100, 50]);
  assert.deepEqual(Object.keys(h).sort(), [...g.HANDLES].sort());
  assert.deepEqual(h.nw, [0, 0]);
  assert.deepEqual(h.n, [50, 0]);
  assert.deepEqual(h.e, [100, 25]);
  assert.deepEqual(h.se, [100, 50]);
  assert.deepEqual(h.sw, [0, 50]);
  assert.deepEqual(h.w, [0, 25]);
});

test("handleAt finds corners before edges and nothing in the middle", () => {
  const r = [0, 0, 100, 100];
  assert.equal(g.handleAt(r, [2, 1], 4), "nw");
  assert.equal(g.handleAt(r, [50, 99], 4), "s");
  assert.equal(g.handleAt(r, [101, 50], 4), "e");
  assert.equal(g.handleAt(r, [50, 50], 4), null);
});

test("handles shrink on small rectangles so a move zone remains", () => {
  assert.equal(g.handleSize([0, 0, 300, 300], 8), 8);
  assert.equal(g.handleSize([0, 0, 12, 300], 8), 4);
});

test("resizeRect: every handle moves only its own sides", () => {
  const r = [10, 10, 50, 40];
  const cases = {
    nw: [[0, 0], [0, 0, 50, 40]],
    n: [[99, 5], [10, 5, 50, 40]],
    ne: [[60, 0], [10, 0, 60, 40]],
    e: [[70, 99], [10, 10, 70, 40]],
    se: [[60, 60], [10, 10, 60, 60]],
    s: [[-5, 45], [10, 10, 50, 45]],
    sw: [[0, 50], [0, 10, 50, 50]],
    w: [[2, -7], [2, 10, 50, 40]],
  };
  for (const [name, [p, want]] of Object.entries(cases)) assert.deepEqual(g.resizeRect(r, name, p), want, name);
});

test("resizeRect flips past the opposite side, enforces a minimum size and clamps to bounds", () => {
  assert.deepEqual(g.resizeRect([10, 10, 50, 40], "e", [0, 0]), [0, 10, 10, 40]);
  assert.deepEqual(g.resizeRect([10, 10, 50, 40], "e", [10.5, 0], { minSize: 4 }), [10, 10, 14, 40]);
  assert.deepEqual(g.resizeRect([10, 10, 50, 40], "se", [500, 500], { bounds: [100, 80] }), [10, 10, 100, 80]);
});

test("resizeRect keepAspect holds the ratio on corner drags", () => {
  const r = g.resizeRect([0, 0, 40, 20], "se", [100, 20], { keepAspect: true });
  assert.deepEqual(r, [0, 0, 100, 50]);
});

test("moveRect keeps the rectangle on the canvas without changing its size", () => {
  assert.deepEqual(g.moveRect([10, 10, 30, 30], -50, 5, [100, 100]), [0, 15, 20, 35]);
  assert.deepEqual(g.moveRect([10, 10, 30, 30], 500, 500, [100, 100]), [80, 80, 100, 100]);
  assert.deepEqual(g.moveRect([10, 10, 30, 30], 500, 0), [510, 10, 530, 30]);
});

test("snap rounds to the grid and grid 0 disables it", () => {
  assert.equal(g.snap(13, 8), 16);
  assert.equal(g.snap(11.9, 8), 8);
  assert.equal(g.snap(13, 0), 13);
  assert.deepEqual(g.snapPoint([3, 5], 4), [4, 4]);
});

test("pointInPolygon handles concave shapes and edges", () => {
  // A "U": the notch between x 4..6 above y 4 is outside.
  const u = [[0, 0], [4, 0], [4, 6], [6, 6], [6, 0], [10, 0], [10, 10], [0, 10]];
  assert.equal(g.pointInPolygon([2, 2], u), true);
  assert.equal(g.pointInPolygon([5, 2], u), false);
  assert.equal(g.pointInPolygon([5, 8], u), true);
  assert.equal(g.pointInPolygon([10, 5], u), true, "edge counts as inside");
  assert.equal(g.pointInPolygon([11, 5], u), false);
  assert.equal(g.pointInPolygon([1, 1], [[0, 0], [2, 2]]), false, "fewer than 3 points is no polygon");
});

test("distance to segments and polylines", () => {
  assert.equal(g.distToSegment([5, 3], [0, 0], [10, 0]), 3);
  assert.equal(g.distToSegment([13, 4], [0, 0], [10, 0]), 5);
  assert.equal(g.distToPolyline([10, 5], [[0, 0], [10, 0], [10, 10]]), 0);
  assert.equal(g.distToPolyline([3, 4], [[0, 0]]), 5);
  assert.equal(g.distToPolyline([3, 4], []), Infinity);
});

test("simplifyPolyline thins close points but keeps both ends", () => {
  const pts = [[0, 0], [0.5, 0], [1, 0], [5, 0], [5.2, 0], [9, 0], [9.1, 0]];
  assert.deepEqual(g.simplifyPolyline(pts, 3), [[0, 0], [5, 0], [9, 0], [9.1, 0]]);
});

test("mapPoint maps between rectangles and degenerates to the centre", () => {
  assert.deepEqual(g.mapPoint([5, 5], [0, 0, 10, 10], [100, 100, 120, 140]), [110, 120]);
  assert.deepEqual(g.mapPoint([5, 5], [5, 0, 5, 10], [0, 0, 20, 20]), [10, 10]);
});

test("boxCells follows the IFAdapter floor/ceil cell rule", () => {
  // 1024 px canvas, 128 cells: box 100..300 px -> floor(12.5)=12 .. ceil(37.5)=38
  assert.deepEqual(g.boxCells([100, 0, 300, 1024], 1024, 1024, 128, 128), [0, 128, 12, 38]);
  // exact cell edges are not widened
  assert.deepEqual(g.boxCells([0, 0, 512, 256], 1024, 1024, 4, 4), [0, 1, 0, 2]);
  // clamped to the grid
  assert.deepEqual(g.boxCells([-50, -50, 2000, 2000], 1024, 1024, 8, 8), [0, 8, 0, 8]);
  assert.deepEqual(g.latentGrid(1000, 600, 8), [125, 75]);
  assert.deepEqual(g.latentGrid(1000, 600, 64), [16, 10]);
});

test("fitCanvas preserves the aspect ratio", () => {
  const f = g.fitCanvas(1024, 512, 400, 400);
  assert.equal(f.width, 400);
  assert.equal(f.height, 200);
});
