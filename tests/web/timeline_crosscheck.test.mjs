// The editor's timeline (web/js/timeline.js) against the backend's (core/layout/timeline.py): the fixture
// fixtures/timeline_python.json holds a time-aware layout and, for frames 0..16, what core/layout/timeline.py
// gives (frame count, visibility, every instance's regions, Layout at Frame's enabled flags).
// Regenerate it with tests/web/fixtures/make_timeline_fixture.py.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as T from "../../web/js/timeline.js";
import { parseLayout } from "../../web/js/layout_model.js";
import { decodeRLE } from "../../web/js/mask.js";

const fx = JSON.parse(readFileSync(new URL("./fixtures/timeline_python.json", import.meta.url), "utf8"));
const { layout, warnings } = parseLayout(JSON.stringify(fx.layout));
const E = fx.expected;

const near = (a, b, what) => assert.ok(Math.abs(+a - +b) <= 1e-9 * Math.max(1, Math.abs(+b)), `${what}: ${a} != ${b}`);

/** Compare one JS region with the Python one: kind, coordinates, width (default 4), decoded mask, other fields. */
function sameRegion(js, py, what) {
  assert.equal(js.kind, py.kind, `${what} kind`);
  if (py.box) py.box.forEach((v, k) => near(js.box[k], v, `${what} box[${k}]`));
  if (py.point) py.point.forEach((v, k) => near(js.point[k], v, `${what} point[${k}]`));
  if (py.points) {
    assert.equal(js.points.length, py.points.length, `${what} vertex count`);
    py.points.forEach((p, k) => p.forEach((v, c) => near(js.points[k][c], v, `${what} points[${k}][${c}]`)));
  }
  if (py.kind === "point" || py.kind === "scribble") near(js.width ?? 4, py.width ?? 4, `${what} width`);
  if (py.rle) assert.deepEqual(Array.from(decodeRLE(js.rle).data), Array.from(decodeRLE(py.rle).data), `${what} mask`);
}

test("the fixture layout reads without warnings in the editor", () => {
  assert.deepEqual(warnings, []);
  assert.equal(layout.instances.length, E.regions[0].length);
});

test("frame count and span equal core/layout/timeline.py", () => {
  assert.equal(T.frameCount(layout), E.frame_count);
  assert.equal(T.frameSpan(layout), E.frame_span);
  const bare = { ...layout };
  delete bare.frames;
  assert.equal(T.frameCount(bare), E.frame_count_without_frames);
});

test("visibility on every frame equals core/layout/timeline.py", () => {
  E.frames.forEach((f, n) => assert.deepEqual(layout.instances.map((inst) => T.visibleAt(inst, f)), E.visible[n], `frame ${f}`));
});

test("every instance's regions on every frame equal core/layout/timeline.py regions_at", () => {
  let compared = 0;
  E.frames.forEach((f, n) => {
    layout.instances.forEach((inst, i) => {
      const js = T.keyedRegionsAt(inst, f) ?? inst.regions;
      const py = E.regions[n][i];
      assert.equal(js.length, py.length, `frame ${f}, instance ${i + 1}: region count`);
      py.forEach((r, k) => sameRegion(js[k], r, `frame ${f}, instance ${i + 1}, region ${k + 1}`));
      compared += py.length;
    });
  });
  assert.ok(compared >= 190, `${compared} regions compared`);
});

test("Layout at Frame: regions and enabled flags equal core/layout/timeline.py at_frame", () => {
  E.frames.forEach((f, n) => {
    const at = T.layoutAtFrame(layout, f);
    assert.equal(at.version, 1);
    assert.deepEqual(at.instances.map((i) => i.enabled), E.at_frame_enabled[n], `frame ${f}`);
    at.instances.forEach((inst, i) => E.regions[n][i].forEach((r, k) => sameRegion(inst.regions[k], r, `frame ${f}, instance ${i + 1}`)));
  });
});

test("the editor's frame view shows the same shapes, and nothing where an instance is absent", () => {
  E.frames.forEach((f, n) => {
    const v = T.frameView(layout, f);
    v.instances.forEach((inst, i) => {
      if (!E.visible[n][i]) assert.deepEqual(inst.regions, [], `frame ${f}, instance ${i + 1} absent`);
      else E.regions[n][i].forEach((r, k) => sameRegion(inst.regions[k], r, `frame ${f}, instance ${i + 1}`));
    });
  });
});
