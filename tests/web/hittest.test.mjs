import { test } from "node:test";
import assert from "node:assert/strict";
import * as H from "../../web/js/hittest.js";
import { parseLayout } from "../../web/js/layout_model.js";
import { createMask, encodeRLE, paintDisc } from "../../web/js/mask.js";

function layout() {
  const m = createMask(100, 100);
  paintDisc(m, 200, 200, [150, 150], 20, 1);
  return parseLayout({
    width: 200, height: 200,
    instances: [
      { description: "big box", z: 0, regions: [{ kind: "box", box: [0, 0, 200, 200] }] },
      { description: "triangle", z: 1, regions: [{ kind: "polygon", points: [[20, 20], [80, 20], [20, 80]] }] },
      { description: "line", z: 2, regions: [{ kind: "scribble", points: [[100, 10], [190, 10]], width: 6 }] },
      { description: "dot", z: 3, regions: [{ kind: "point", point: [100, 100], width: 5 }] },
      { description: "blob", z: 4, regions: [{ kind: "mask", rle: encodeRLE(m) }] },
    ],
  }).layout;
}

test("each region kind hits where it is drawn and not beside it", () => {
  const L = layout();
  const hit = (i, p, tol = 0) => H.hitRegion(L.instances[i].regions[0], p, 200, 200, tol);
  assert.equal(hit(1, [30, 30]), true);
  assert.equal(hit(1, [70, 70]), false, "outside the hypotenuse");
  assert.equal(hit(1, [51, 51], 2), true, "within tol of the hypotenuse");
  assert.equal(hit(2, [150, 12]), true, "within half the stroke width");
  assert.equal(hit(2, [150, 15]), false);
  assert.equal(hit(2, [150, 15], 3), true);
  assert.equal(hit(3, [103, 103]), true);
  assert.equal(hit(3, [106, 106]), false);
  assert.equal(hit(4, [150, 150]), true);
  assert.equal(hit(4, [150, 100]), false);
});

test("hitInstance returns the topmost visible, unlocked instance", () => {
  let L = layout();
  assert.deepEqual(H.hitInstance(L, [30, 30]), { index: 1, region: 0 });
  assert.deepEqual(H.hitInstance(L, [150, 150]), { index: 4, region: 0 });
  assert.deepEqual(H.hitInstance(L, [5, 190]), { index: 0, region: 0 });
  L.instances[1].hidden = true;
  assert.deepEqual(H.hitInstance(L, [30, 30]), { index: 0, region: 0 });
  L.instances[0].locked = true;
  assert.equal(H.hitInstance(L, [30, 30]), null);
  assert.deepEqual(H.hitInstance(L, [30, 30], { includeLocked: true }), { index: 0, region: 0 });
  L = layout();
  L.instances[0].z = 10; // the big box now covers everything
  assert.deepEqual(H.hitInstance(L, [150, 150]), { index: 0, region: 0 });
});

test("within one instance a point inside its own box is found first", () => {
  const L = parseLayout({ width: 100, height: 100, instances: [{ description: "a", regions: [{ kind: "box", box: [0, 0, 100, 100] }, { kind: "point", point: [50, 50] }] }] }).layout;
  assert.deepEqual(H.hitInstance(L, [50, 50]), { index: 0, region: 1 });
  assert.deepEqual(H.hitInstance(L, [10, 10]), { index: 0, region: 0 });
});

test("handles of single and multi selections", () => {
  const L = layout();
  assert.deepEqual(H.hitHandle(L, [1], [80, 80], 4), { handle: "se", rect: [20, 20, 80, 80] });
  assert.deepEqual(H.hitHandle(L, [1], [50, 20], 4).handle, "n");
  assert.equal(H.hitHandle(L, [1], [50, 50], 4), null);
  const multi = H.hitHandle(L, [1, 3], [105, 105], 2);
  assert.deepEqual(multi, { handle: "se", rect: [20, 20, 105, 105] });
  L.instances[1].locked = true;
  assert.equal(H.hitHandle(L, [1], [80, 80], 4), null, "locked instances cannot be resized");
  assert.equal(H.hitHandle(L, [], [80, 80], 4), null);
});

test("marquee selects intersecting or contained instances", () => {
  const L = layout();
  assert.deepEqual(H.marqueeSelect(L, [90, 90, 110, 110]), [0, 3]);
  assert.deepEqual(H.marqueeSelect(L, [10, 10, 120, 120], { contain: true }), [1, 3]);
  L.instances[3].hidden = true;
  assert.deepEqual(H.marqueeSelect(L, [10, 10, 120, 120], { contain: true }), [1]);
});

test("hitVertex finds polygon vertices", () => {
  const L = layout();
  assert.equal(H.hitVertex(L.instances[1].regions[0], [79, 21], 3), 1);
  assert.equal(H.hitVertex(L.instances[1].regions[0], [50, 50], 3), -1);
  assert.equal(H.hitVertex(L.instances[0].regions[0], [0, 0], 3), -1);
});
