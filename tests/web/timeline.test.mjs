// Layouts over time (web/js/timeline.js): version rule, frame count, visibility, interpolation
// (hand-computed values here; timeline_crosscheck.test.mjs compares with the Python side), the
// frame view and merging edits back, keyframe edits, and the layout_model hooks (parse, serialize,
// canvas resize, duplicate, paste).
import { test } from "node:test";
import assert from "node:assert/strict";
import * as T from "../../web/js/timeline.js";
import * as L from "../../web/js/layout_model.js";

const box = (x0, y0, x1, y1) => ({ kind: "box", box: [x0, y0, x1, y1] });
const inst = (extra = {}) => ({ description: "car", enabled: true, weight: 1, z: 0, color: "#e6194b", regions: [box(0, 0, 10, 10)], ...extra });
const layout = (instances, extra = {}) => ({ format: "instance-layout", version: 1, width: 100, height: 100, prompt: "", instances, ...extra });
const closeArr = (a, b, tol = 1e-9) => {
  assert.equal(a.length, b.length, `${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
  a.forEach((v, k) => (Array.isArray(v) ? closeArr(v, b[k], tol) : assert.ok(Math.abs(v - b[k]) <= tol, `${JSON.stringify(a)} vs ${JSON.stringify(b)}`)));
};

const moving = () => inst({ keyframes: [{ frame: 0, regions: [box(0, 0, 10, 10)] }, { frame: 10, regions: [box(50, 20, 70, 40)] }] });

test("version: 1 for static layouts, 2 with any timeline field, newer versions kept", () => {
  assert.equal(T.layoutVersion(layout([inst()])), 1);
  assert.equal(T.layoutVersion(layout([inst()], { frames: 16 })), 2);
  assert.equal(T.layoutVersion(layout([inst({ frames: [2, null] })])), 2);
  assert.equal(T.layoutVersion(layout([moving()])), 2);
  assert.equal(T.layoutVersion({ ...layout([moving()]), version: 3 }), 3);
  // serializeLayout writes the version by that rule, whatever the object says.
  assert.equal(JSON.parse(L.serializeLayout({ ...layout([moving()]), version: 1 })).version, 2);
  assert.equal(JSON.parse(L.serializeLayout({ ...layout([inst()]), version: 2 })).version, 1);
});

test("a static layout parses and serializes byte for byte as before", () => {
  const text = JSON.stringify(layout([inst(), inst({ description: "cat", z: 1, regions: [{ kind: "point", point: [5, 6], width: 6 }] })]));
  const { layout: parsed, warnings } = L.parseLayout(text);
  assert.deepEqual(warnings, []);
  assert.equal(L.serializeLayout(parsed), text);
  assert.equal(T.frameView(parsed, 5), parsed, "the frame view of a static layout is the layout itself");
});

test("frame count: the layout's field, else derived from keyframes and ranges", () => {
  assert.equal(T.frameCount(layout([inst()])), 1);
  assert.equal(T.frameCount(layout([inst()], { frames: 24 })), 24);
  assert.equal(T.frameCount(layout([moving()])), 11);
  assert.equal(T.frameCount(layout([inst({ frames: [3, 7] })])), 9, "up to the first frame after the range");
  assert.equal(T.frameCount(layout([inst({ frames: [3, null] })])), 4);
  assert.equal(T.frameCount(layout([moving()], { frames: 0 })), 11, "an invalid count is ignored");
});

test("visible range: inclusive, null = to the end, absent outside", () => {
  const a = inst({ frames: [2, 4] });
  assert.deepEqual([0, 1, 2, 3, 4, 5].map((f) => T.visibleAt(a, f)), [false, false, true, true, true, false]);
  const b = inst({ frames: [3, null] });
  assert.deepEqual([2, 3, 1000].map((f) => T.visibleAt(b, f)), [false, true, true]);
  assert.equal(T.regionsAt(a, 1), null);
  assert.deepEqual(T.regionsAt(a, 2), [box(0, 0, 10, 10)]);
  assert.ok(T.visibleAt(inst(), 99), "no range: every frame");
});

test("boxes interpolate linearly; the first holds before, the last after", () => {
  const a = moving();
  assert.deepEqual(T.regionsAt(a, 0), [box(0, 0, 10, 10)]);
  assert.deepEqual(T.regionsAt(a, 10), [box(50, 20, 70, 40)]);
  closeArr(T.regionsAt(a, 5)[0].box, [25, 10, 40, 25]);
  closeArr(T.regionsAt(a, 3)[0].box, [15, 6, 28, 19]);
  const late = inst({ keyframes: [{ frame: 4, regions: [box(0, 0, 10, 10)] }, { frame: 8, regions: [box(40, 0, 50, 10)] }] });
  assert.deepEqual(T.regionsAt(late, 0), [box(0, 0, 10, 10)]);
  assert.deepEqual(T.regionsAt(late, 100), [box(40, 0, 50, 10)]);
  closeArr(T.regionsAt(late, 7)[0].box, [30, 0, 40, 10]);
});

test("points, polygon/scribble vertices, point radius and stroke width interpolate; other fields come from the earlier keyframe", () => {
  const a = inst({
    keyframes: [
      { frame: 0, regions: [{ kind: "point", point: [0, 0], width: 6 }, { kind: "polygon", points: [[0, 0], [10, 0], [0, 10]], note: "a" }, { kind: "scribble", points: [[0, 0], [4, 4]] }] },
      { frame: 4, regions: [{ kind: "point", point: [8, 4], width: 10 }, { kind: "polygon", points: [[4, 4], [14, 4], [4, 14]], note: "b" }, { kind: "scribble", points: [[8, 0], [12, 8]], width: 8 }] },
    ],
  });
  const r = T.regionsAt(a, 1);
  closeArr(r[0].point, [2, 1]);
  assert.equal(r[0].width, 7);
  closeArr(r[1].points, [[1, 1], [11, 1], [1, 11]]);
  assert.equal(r[1].note, "a");
  closeArr(r[2].points, [[2, 0], [6, 5]]);
  assert.equal(r[2].width, 5, "scribble width: the default 4 moves towards 8");
});

test("what cannot interpolate holds the nearest keyframe (ties: the earlier)", () => {
  const tri = { kind: "polygon", points: [[0, 0], [10, 0], [0, 10]] };
  const quad = { kind: "polygon", points: [[0, 0], [10, 0], [10, 10], [0, 10]] };
  const maskA = { kind: "mask", rle: { size: [2, 2], counts: [0, 4] } };
  const maskB = { kind: "mask", rle: { size: [2, 2], counts: [4] } };
  const a = inst({ keyframes: [{ frame: 0, regions: [tri, maskA, box(0, 0, 10, 10)] }, { frame: 4, regions: [quad, maskB, { kind: "point", point: [1, 1] }] }] });
  assert.deepEqual(T.regionsAt(a, 1), [tri, maskA, box(0, 0, 10, 10)]);
  assert.deepEqual(T.regionsAt(a, 2), [tri, maskA, box(0, 0, 10, 10)], "midpoint: the earlier keyframe");
  assert.deepEqual(T.regionsAt(a, 3), [quad, maskB, { kind: "point", point: [1, 1] }]);
  // Different region counts: every region holds the nearest keyframe.
  const b = inst({ keyframes: [{ frame: 0, regions: [box(0, 0, 10, 10)] }, { frame: 3, regions: [box(30, 0, 40, 10), { kind: "point", point: [1, 1] }] }] });
  assert.deepEqual(T.regionsAt(b, 1), [box(0, 0, 10, 10)]);
  assert.deepEqual(T.regionsAt(b, 2), [box(30, 0, 40, 10), { kind: "point", point: [1, 1] }]);
});

test("keyframes are read in frame order; plain regions are used without keyframes", () => {
  const a = inst({ keyframes: [{ frame: 10, regions: [box(50, 20, 70, 40)] }, { frame: 0, regions: [box(0, 0, 10, 10)] }] });
  closeArr(T.regionsAt(a, 5)[0].box, [25, 10, 40, 25]);
  assert.deepEqual(T.regionsAt(inst({ keyframes: [] }), 3), [box(0, 0, 10, 10)]);
});

test("layoutAtFrame: one frame as a static version-1 layout, absent instances kept disabled", () => {
  const src = layout([moving(), inst({ description: "late", frames: [6, null] })], { frames: 11 });
  const f5 = T.layoutAtFrame(src, 5);
  assert.equal(f5.version, 1);
  assert.equal("frames" in f5, false);
  assert.deepEqual(f5.instances.map((i) => [i.description, i.enabled]), [["car", true], ["late", false]]);
  assert.equal("keyframes" in f5.instances[0], false);
  assert.equal("frames" in f5.instances[1], false);
  closeArr(f5.instances[0].regions[0].box, [25, 10, 40, 25]);
  assert.deepEqual(T.layoutAtFrame(src, 6).instances.map((i) => i.enabled), [true, true]);
  const still = layout([inst()]);
  assert.deepEqual(T.layoutAtFrame(still, 3), still);
});

test("frame view: interpolated regions, indices kept, absent instances empty", () => {
  const src = layout([moving(), inst({ description: "late", frames: [6, null] })], { frames: 11 });
  const v = T.frameView(src, 5);
  closeArr(v.instances[0].regions[0].box, [25, 10, 40, 25]);
  assert.deepEqual(v.instances[1].regions, []);
  assert.deepEqual(v.instances[0].keyframes, src.instances[0].keyframes);
  assert.deepEqual(src.instances[1].regions, [box(0, 0, 10, 10)], "the source is not changed");
});

test("merge: a shape edit on a keyframe changes that keyframe only", () => {
  const src = layout([moving()], { frames: 11 });
  const v = L.moveInstances(T.frameView(src, 10), [0], 5, 5);
  const { layout: out, refused, keyed } = T.mergeFrameEdit(src, v, 10, { autoKey: false });
  assert.deepEqual([refused, keyed], [[], []]);
  assert.deepEqual(out.instances[0].keyframes, [{ frame: 0, regions: [box(0, 0, 10, 10)] }, { frame: 10, regions: [box(55, 25, 75, 45)] }]);
  assert.deepEqual(out.instances[0].regions, [box(0, 0, 10, 10)], "plain regions are kept");
});

test("merge: between keyframes auto-key adds a keyframe, otherwise the edit is refused", () => {
  const src = layout([moving()], { frames: 11 });
  const v = L.moveInstances(T.frameView(src, 5), [0], 0, 10);
  const on = T.mergeFrameEdit(src, v, 5, { autoKey: true });
  assert.deepEqual(on.keyed, [0]);
  assert.deepEqual(on.refused, []);
  assert.deepEqual(on.layout.instances[0].keyframes.map((k) => k.frame), [0, 5, 10]);
  assert.deepEqual(on.layout.instances[0].keyframes[1].regions, [box(25, 20, 40, 35)]);
  const off = T.mergeFrameEdit(src, v, 5, { autoKey: false });
  assert.deepEqual(off.refused, [0]);
  assert.deepEqual(off.layout.instances[0], src.instances[0], "the shape is kept");
});

test("merge: non-shape fields edit on any frame; static instances edit their plain regions", () => {
  const src = layout([moving(), inst({ description: "static" })], { frames: 11 });
  let v = L.updateInstance(T.frameView(src, 5), 0, (i) => ({ ...i, description: "red car" }));
  let r = T.mergeFrameEdit(src, v, 5, { autoKey: false });
  assert.deepEqual(r.refused, []);
  assert.equal(r.layout.instances[0].description, "red car");
  assert.deepEqual(r.layout.instances[0].keyframes, src.instances[0].keyframes);
  v = L.moveInstances(T.frameView(src, 5), [1], 3, 0);
  r = T.mergeFrameEdit(src, v, 5, { autoKey: true });
  assert.deepEqual(r.layout.instances[1].regions, [box(3, 0, 13, 10)]);
  assert.equal("keyframes" in r.layout.instances[1], false, "auto-key never keys a static instance");
});

test("merge: an instance absent on the frame keeps its shape", () => {
  const src = layout([inst({ frames: [6, null] })], { frames: 11 });
  const v = L.updateInstance(T.frameView(src, 2), 0, (i) => ({ ...i, regions: [box(1, 1, 5, 5)] }));
  const r = T.mergeFrameEdit(src, v, 2, { autoKey: true });
  assert.deepEqual(r.refused, [0]);
  assert.deepEqual(r.layout.instances[0].regions, [box(0, 0, 10, 10)]);
  // An unrelated edit (delete another instance) keeps the absent instance's regions too.
  const src2 = layout([inst({ description: "a" }), inst({ description: "b", frames: [6, null] })], { frames: 11 });
  const r2 = T.mergeFrameEdit(src2, L.deleteInstances(T.frameView(src2, 2), [0]), 2);
  assert.deepEqual(r2.layout.instances, [src2.instances[1]]);
});

test("merge: deletes pair the remaining instances, appended ones are taken as they are", () => {
  const src = layout([moving(), inst({ description: "b" }), { ...moving(), description: "c" }], { frames: 11 });
  const del = T.mergeFrameEdit(src, L.deleteInstances(T.frameView(src, 5), [1]), 5);
  assert.deepEqual(del.layout.instances, [src.instances[0], src.instances[2]]);
  const { layout: added } = L.addInstance(T.frameView(src, 5), [box(1, 2, 3, 4)], "new");
  const add = T.mergeFrameEdit(src, added, 5);
  assert.deepEqual(add.layout.instances.slice(0, 3), src.instances);
  assert.deepEqual(add.layout.instances[3].regions, [box(1, 2, 3, 4)]);
  assert.equal(T.layoutVersion(add.layout), 2);
});

test("add, remove and copy keyframes", () => {
  const src = layout([inst()], { frames: 11 });
  let { layout: a, added } = T.addKeyframes(src, [0], 0);
  assert.deepEqual(added, [0]);
  assert.deepEqual(a.instances[0].keyframes, [{ frame: 0, regions: [box(0, 0, 10, 10)] }]);
  assert.deepEqual(T.addKeyframes(a, [0], 0).added, [], "no second keyframe on the same frame");
  a = T.copyKeyframes(a, [0], 0, 10).layout;
  a = T.mergeFrameEdit(a, L.moveInstances(T.frameView(a, 10), [0], 30, 0), 10).layout;
  // A keyframe between holds the interpolated shape (0 + 30 * 3/10 = 9), rounded to 1/100 px (9 + 22 * 4/7 = 21.571...).
  a = T.addKeyframes(a, [0], 3).layout;
  assert.deepEqual(a.instances[0].keyframes.map((k) => k.frame), [0, 3, 10]);
  assert.deepEqual(a.instances[0].keyframes[1].regions, [box(9, 0, 19, 10)]);
  const odd = T.addKeyframes(T.mergeFrameEdit(a, L.moveInstances(T.frameView(a, 10), [0], 1, 0), 10).layout, [0], 7).layout;
  assert.deepEqual(odd.instances[0].keyframes[2].regions[0].box, [21.57, 0, 31.57, 10]);
  // Copy the shape of frame 0 to frame 10 (replacing the keyframe there).
  const c = T.copyKeyframes(a, [0], 0, 10).layout;
  assert.deepEqual(c.instances[0].keyframes[2], { frame: 10, regions: [box(0, 0, 10, 10)] });
  // Removing keyframes; removing the last one leaves a static instance with that shape.
  let r = T.removeKeyframes(a, [0], 3).layout;
  assert.deepEqual(r.instances[0].keyframes.map((k) => k.frame), [0, 10]);
  r = T.removeKeyframes(T.removeKeyframes(r, [0], 0).layout, [0], 10).layout;
  assert.equal("keyframes" in r.instances[0], false);
  assert.deepEqual(r.instances[0].regions, [box(30, 0, 40, 10)]);
  assert.throws(() => T.addKeyframes(src, [0], -1), /frame must be an integer from 0 to 1023/);
});

test("frame count and visible range edits", () => {
  const src = layout([moving()]);
  assert.equal(T.setFrameCount(src, 16).frames, 16);
  assert.throws(() => T.setFrameCount(src, 8), /instance 1 has a keyframe at frame 10; the frame count must be at least 11/);
  assert.throws(() => T.setFrameCount(src, 1025), /from 1 to 1024/);
  const s = layout([inst()], { frames: 4 });
  const back = T.setFrameCount(s, 1);
  assert.equal("frames" in back, false);
  assert.equal(L.serializeLayout(back), JSON.stringify(layout([inst()])), "back to a static version-1 layout");
  assert.deepEqual(T.setVisibleRange(s, [0], 2, null).instances[0].frames, [2, null]);
  assert.deepEqual(T.setVisibleRange(s, [0], 1, 3).instances[0].frames, [1, 3]);
  assert.equal("frames" in T.setVisibleRange(T.setVisibleRange(s, [0], 1, 3), [0], 0, null).instances[0], false);
  assert.throws(() => T.setVisibleRange(s, [0], 3, 1), /must not come before/);
  assert.throws(() => T.setFrameCount(T.setVisibleRange(s, [0], 1, 3), 3), /visible range up to frame 3/);
});

test("neighbouring keyframes for the onion-skin", () => {
  const a = inst({ keyframes: [0, 4, 9].map((frame) => ({ frame, regions: [box(frame, 0, frame + 1, 1)] })) });
  const n = (f) => {
    const { prev, next } = T.neighbourKeyframes(a, f);
    return [prev?.frame ?? null, next?.frame ?? null];
  };
  assert.deepEqual([n(0), n(2), n(4), n(9), n(12)], [[null, 4], [0, 4], [0, 9], [4, null], [9, null]]);
});

test("parse: keyframes are upgraded and sorted, bad entries kept and reported; version 2 reads without warning", () => {
  const text = JSON.stringify({
    format: "instance-layout", version: 2, width: 100, height: 100, frames: 12,
    instances: [
      { description: "a", regions: [box(0, 0, 1, 1)], frames: [1, null], keyframes: [{ frame: 5, regions: [{ bbox: [1, 2, 3, 4] }] }, { frame: 1, regions: [box(0, 0, 1, 1)] }, { frame: "x" }] },
      { description: "b", regions: [], frames: [4, 2] },
    ],
  });
  const { layout: p, warnings } = L.parseLayout(text);
  assert.deepEqual(p.instances[0].keyframes.map((k) => k.frame), [1, 5, "x"]);
  assert.deepEqual(p.instances[0].keyframes[1].regions, [{ kind: "box", box: [1, 2, 3, 4] }]);
  assert.equal(warnings.length, 2, warnings.join(" | "));
  assert.match(warnings[0], /instance 1, keyframe 3: needs \{"frame"/);
  assert.match(warnings[1], /instance 2: "frames" must be \[first, last\]/);
  assert.equal(L.parseLayout(JSON.stringify({ ...JSON.parse(text), frames: 5000 })).warnings.some((w) => /layout "frames" must be an integer from 1 to 1024/.test(w)), true);
});

test("canvas resize, duplicate and paste move every keyframe with the instance", () => {
  const src = layout([moving()], { frames: 11 });
  const big = L.resizeCanvas(src, 200, 50);
  assert.deepEqual(big.instances[0].keyframes.map((k) => k.regions[0].box), [[0, 0, 20, 5], [100, 10, 140, 20]]);
  const { layout: d, indices } = L.duplicateInstances(src, [0], 16, 16);
  assert.deepEqual(d.instances[indices[0]].keyframes.map((k) => k.regions[0].box), [[16, 16, 26, 26], [66, 36, 86, 56]]);
  const pasted = L.pastePayload(layout([], { width: 50, height: 50 }), L.copyPayload(src, [0]));
  assert.deepEqual(pasted.layout.instances[0].keyframes.map((k) => k.regions[0].box), [[0, 0, 5, 5], [25, 10, 35, 20]]);
});
