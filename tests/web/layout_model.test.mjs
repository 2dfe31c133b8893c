import { test } from "node:test";
import assert from "node:assert/strict";
import * as L from "../../web/js/layout_model.js";
import { createMask, encodeRLE, paintDisc, maskArea } from "../../web/js/mask.js";

const doc = {
  format: "instance-layout",
  version: 1,
  width: 1024,
  height: 768,
  prompt: "a street at dusk",
  future_top: { keep: [1, 2] },
  instances: [
    {
      description: "a red vintage car", label: "car", enabled: true, weight: 1.0, z: 0, color: "#e6194b", locked: true, custom: "x",
      regions: [
        { kind: "box", box: [10, 20, 300, 200], note: "kept" },
        { kind: "point", point: [100, 100], width: 6 },
      ],
    },
    {
      description: "a cat", z: 1,
      regions: [
        { kind: "polygon", points: [[400, 400], [500, 400], [450, 500]] },
        { kind: "scribble", points: [[600, 600], [700, 650]], width: 8 },
        { kind: "hologram", payload: 7 },
      ],
    },
  ],
};

test("round trip keeps every field, known and unknown, in the documented key order", () => {
  const { layout, warnings } = L.parseLayout(JSON.stringify(doc));
  assert.deepEqual(JSON.parse(L.serializeLayout(layout)), doc);
  assert.deepEqual(Object.keys(JSON.parse(L.serializeLayout(layout))).slice(0, 6), ["format", "version", "width", "height", "prompt", "instances"]);
  assert.equal(warnings.length, 1, "the unknown region kind is reported");
  assert.match(warnings[0], /instance 2 \("a cat"\) region 3: unknown region kind "hologram"/);
});

test("empty text gives an empty layout of the node's size", () => {
  const { layout } = L.parseLayout("  ", { width: 640, height: 480 });
  assert.deepEqual(layout, { format: "instance-layout", version: 1, width: 640, height: 480, prompt: "", instances: [] });
});

test("invalid JSON and foreign formats raise errors that say what was expected", () => {
  assert.throws(() => L.parseLayout("{oops"), (e) => e instanceof L.LayoutParseError && /not valid JSON.*instance-layout/.test(e.message));
  assert.throws(() => L.parseLayout('{"format": "svg"}'), /"format" is "svg"; expected "instance-layout"/);
});

test("older shapes are upgraded and no instance is ever dropped", () => {
  const old = {
    width: 512, height: 512,
    instances: [
      { caption: "a dog", bbox: [1, 2, 30, 40] },
      "just a description",
      { description: "no geometry" },
      { prompt: "bad box", regions: [{ box: [1, 2] }] },
      null,
      { text: "legacy point", regions: [{ point: [5, 6] }, { points: [[0, 0], [9, 9]] }, { rle: { size: [2, 2], counts: [4] } }] },
    ],
  };
  const { layout, warnings } = L.parseLayout(JSON.stringify(old));
  assert.equal(layout.format, "instance-layout");
  assert.equal(layout.version, 1);
  assert.equal(layout.instances.length, old.instances.length);
  assert.deepEqual(layout.instances[0].regions, [{ kind: "box", box: [1, 2, 30, 40] }]);
  assert.equal(layout.instances[0].description, "a dog");
  assert.equal(layout.instances[1].description, "just a description");
  assert.deepEqual(layout.instances[3].regions, [{ kind: "box", box: [1, 2] }], "unreadable region kept verbatim");
  assert.ok(warnings.some((w) => /instance 4 \("bad box"\) region 1: box region needs/.test(w)));
  assert.equal(layout.instances[4].description, "");
  assert.deepEqual(layout.instances[5].regions.map((r) => r.kind), ["point", "scribble", "mask"]);
});

test("a newer version is read with a warning and its fields are kept", () => {
  const { layout, warnings } = L.parseLayout({ format: "instance-layout", version: 3, width: 64, height: 64, instances: [{ description: "a", regions: [], v3: true }] });
  assert.equal(layout.version, 3);
  assert.equal(layout.instances[0].v3, true);
  assert.match(warnings[0], /version 3 is newer/);
});

test("InstanceDiffusion JSON is imported (xywh boxes, RLE masks, points, scribbles)", () => {
  const id = {
    caption: "a park", width: 512, height: 512, seed: 3,
    annos: [
      { bbox: [10, 20, 100, 50], caption: "a bench", mask: { size: [2, 2], counts: [1, 2, 1] }, point: [60, 45], scribble: [[10, 20], [110, 70]], category: "bench" },
      { bbox: [0, 0, 5, 5], caption: "a bird", mask: [[0, 0, 5, 0, 5, 5]] },
    ],
  };
  const { layout } = L.parseLayout(JSON.stringify(id));
  assert.equal(layout.prompt, "a park");
  assert.equal(layout.seed, 3);
  assert.equal(layout.instances.length, 2);
  assert.deepEqual(layout.instances[0].regions.map((r) => r.kind), ["box", "mask", "point", "scribble"]);
  assert.deepEqual(layout.instances[0].regions[0].box, [10, 20, 110, 70]);
  assert.equal(layout.instances[0].category, "bench");
  assert.deepEqual(layout.instances[1].regions[1], { kind: "polygon", points: [[0, 0], [5, 0], [5, 5]], fill: "coco" }); // COCO polygons keep their fill rule
});

test("normalised bounding-box lists (native BOUNDING_BOXES) are imported in pixels", () => {
  const { layout } = L.parseLayout(JSON.stringify([{ x: 0.5, y: 0.25, width: 0.25, height: 0.5, metadata: { text: "a lamp" } }]), { width: 800, height: 400 });
  assert.deepEqual(layout.instances[0].regions[0].box, [400, 100, 600, 300]);
  assert.equal(layout.instances[0].description, "a lamp");
});

test("instance bbox: explicit box wins, else union of regions", () => {
  const { layout } = L.parseLayout(JSON.stringify(doc));
  assert.deepEqual(L.instanceBBox(layout.instances[0], 1024, 768), [10, 20, 300, 200]);
  assert.deepEqual(L.instanceBBox(layout.instances[1], 1024, 768), [400, 400, 704, 654]);
});

test("add, duplicate, delete and z-order", () => {
  let { layout } = L.parseLayout(JSON.stringify(doc));
  const added = L.addInstance(layout, [{ kind: "box", box: [0, 0, 10, 10] }], "new");
  assert.equal(added.index, 2);
  assert.equal(added.layout.instances[2].z, 2);
  assert.notEqual(added.layout.instances[2].color, "#e6194b", "new colour differs from existing ones");
  assert.equal(layout.instances.length, 2, "edits never mutate their input");
  const dup = L.duplicateInstances(added.layout, [0], 5, 5);
  const copy = dup.layout.instances[dup.indices[0]];
  assert.deepEqual(copy.regions[0], { kind: "box", box: [15, 25, 305, 205], note: "kept" });
  assert.equal(copy.custom, "x");
  const del = L.deleteInstances(dup.layout, [1]);
  assert.deepEqual(del.instances.map((i) => i.description), ["a red vintage car", "new", "a red vintage car"]);
  const top = L.reorder(del, [0], "top");
  assert.deepEqual(L.drawOrder(top), [1, 2, 0]);
  const down = L.reorder(top, [0], "down");
  assert.deepEqual(L.drawOrder(down), [1, 0, 2]);
  const bottom = L.reorder(down, [2], "bottom");
  assert.deepEqual(L.drawOrder(bottom), [2, 1, 0]);
  assert.throws(() => L.reorder(bottom, [0], "sideways"), /up, down, top or bottom/);
});

test("moving instances moves every region kind and stays on the canvas", () => {
  const m = createMask(64, 48);
  paintDisc(m, 1024, 768, [512, 384], 40, 1);
  let { layout } = L.parseLayout(JSON.stringify(doc));
  layout = L.updateInstance(layout, 1, (inst) => ({ ...inst, regions: [...inst.regions, { kind: "mask", rle: encodeRLE(m) }] }));
  const moved = L.moveInstances(layout, [1], 64, 32);
  const r = moved.instances[1].regions;
  assert.deepEqual(r[0].points[0], [464, 432]);
  assert.deepEqual(r[1].points[1], [764, 682]);
  assert.deepEqual(r[2], { kind: "hologram", payload: 7 }, "unknown regions ride along untouched");
  const before = L.regionBBox(layout.instances[1].regions[3], 1024, 768);
  const after = L.regionBBox(r[3], 1024, 768);
  assert.deepEqual(after, [before[0] + 64, before[1] + 32, before[2] + 64, before[3] + 32]);
  const clamped = L.moveInstances(layout, [0], -500, 0);
  assert.deepEqual(clamped.instances[0].regions[0].box, [0, 20, 290, 200]);
});

test("transformInstance scales all regions from one rectangle to another", () => {
  const inst = { description: "x", regions: [{ kind: "box", box: [0, 0, 10, 10] }, { kind: "point", point: [5, 5] }, { kind: "polygon", points: [[0, 0], [10, 0], [10, 10]] }] };
  const t = L.transformInstance(inst, [0, 0, 10, 10], [100, 100, 120, 140], 200, 200);
  assert.deepEqual(t.regions[0].box, [100, 100, 120, 140]);
  assert.deepEqual(t.regions[1].point, [110, 120]);
  assert.deepEqual(t.regions[2].points[2], [120, 140]);
});

test("resizeCanvas scales geometry, keeps masks, and copy/paste crosses canvas sizes", () => {
  const m = createMask(8, 8);
  paintDisc(m, 8, 8, [4, 4], 2, 1);
  let { layout } = L.parseLayout(JSON.stringify(doc));
  layout = L.updateInstance(layout, 0, (inst) => ({ ...inst, regions: [...inst.regions, { kind: "mask", rle: encodeRLE(m) }] }));
  const half = L.resizeCanvas(layout, 512, 384);
  assert.deepEqual(half.instances[0].regions[0].box, [5, 10, 150, 100]);
  assert.deepEqual(half.instances[0].regions[2], layout.instances[0].regions[2]);
  const clip = L.copyPayload(layout, [0]);
  const target = L.emptyLayout(512, 384);
  const pasted = L.pastePayload(target, clip, 10, 0);
  assert.deepEqual(pasted.indices, [0]);
  assert.deepEqual(pasted.layout.instances[0].regions[0].box, [15, 10, 160, 100]);
  assert.equal(pasted.layout.instances[0].custom, "x");
  assert.equal(maskArea(L.regionMask(pasted.layout.instances[0].regions[2])), maskArea(m));
  assert.equal(L.pastePayload(target, "not json"), null);
  assert.equal(L.pastePayload(target, '{"format":"other"}'), null);
});

test("displayColor: an instance's own colour, else the palette colour of its index", async () => {
  const LM = await import("../../web/js/layout_model.js");
  assert.equal(LM.displayColor({ color: "#12abEF" }, 3), "#12abEF");
  assert.equal(LM.displayColor({}, 0), LM.PALETTE[0]);
  assert.equal(LM.displayColor({ color: "red" }, 1), LM.PALETTE[1]);
  assert.equal(LM.displayColor({ color: null }, LM.PALETTE.length + 2), LM.PALETTE[2]);
});
