import { test } from "node:test";
import assert from "node:assert/strict";
import { strokeTarget } from "../../web/js/stroke_target.js";

const base = { selection: [], locked: () => false, erase: false, attach: false, lastStroke: null, text: "T0" };
const target = (over) => strokeTarget({ ...base, ...over });

test("a brush stroke with nothing selected starts a new instance", () => {
  assert.equal(target({}), -1);
});

test("a brush stroke right after a polygon (still selected) starts a new instance", () => {
  assert.equal(target({ selection: [2] }), -1);
});

test("add to selected (or Alt) paints into the single selected instance, unless it is locked", () => {
  assert.equal(target({ selection: [2], attach: true }), 2);
  assert.equal(target({ selection: [2], attach: true, locked: (i) => i === 2 }), -1);
  assert.equal(target({ selection: [1, 2], attach: true }), -1, "several selected: no single target");
});

test("consecutive brush strokes keep building one mask; any edit in between ends that", () => {
  const lastStroke = { index: 4, text: "T1" };
  assert.equal(target({ selection: [4], lastStroke, text: "T1" }), 4);
  assert.equal(target({ selection: [4], lastStroke, text: "T2" }), -1, "the layout changed since the stroke");
  assert.equal(target({ selection: [3], lastStroke, text: "T1" }), -1, "another instance is selected");
});

test("the eraser works on the selected instance and never starts one", () => {
  assert.equal(target({ selection: [0], erase: true }), 0);
  assert.equal(target({ selection: [], erase: true }), -1);
  assert.equal(target({ selection: [0], erase: true, locked: () => true }), -1);
});
