import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as M from "../../web/js/mask.js";

const fixtures = JSON.parse(readFileSync(new URL("./fixtures/rle_pycocotools.json", import.meta.url), "utf8"));

test("RLE decode matches pycocotools on every fixture", () => {
  assert.ok(fixtures.length >= 15);
  for (const c of fixtures) {
    const m = M.decodeRLE({ size: c.size, counts: c.counts });
    const [h, w] = c.size;
    assert.equal(m.h, h);
    assert.equal(m.w, w);
    if (c.ones) {
      const ones = [];
      m.data.forEach((v, i) => v && ones.push(i));
      assert.deepEqual(ones, c.ones, `${c.kind} ${h}x${w}`);
    }
    const rowSums = Array.from({ length: h }, (_, y) => m.data.slice(y * w, (y + 1) * w).reduce((a, b) => a + b, 0));
    assert.deepEqual(rowSums, c.row_sums, `${c.kind} ${h}x${w} rows`);
    const colSums = Array.from({ length: w }, (_, x) => { let s = 0; for (let y = 0; y < h; y++) s += m.data[y * w + x]; return s; });
    assert.deepEqual(colSums, c.col_sums, `${c.kind} ${h}x${w} cols`);
  }
});

test("RLE encode produces pycocotools' exact counts string", () => {
  for (const c of fixtures) {
    const m = M.decodeRLE({ size: c.size, counts: c.counts });
    assert.deepEqual(M.encodeRLE(m), { size: c.size, counts: c.counts }, `${c.kind} ${c.size}`);
  }
});

test("uncompressed counts lists decode too, and bad counts are reported", () => {
  const m = M.decodeRLE({ size: [3, 4], counts: [4, 1, 2, 1, 4] });
  assert.deepEqual(Array.from(m.data), [0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]);
  assert.throws(() => M.decodeRLE({ size: [3, 4], counts: [4, 1] }), /sum to 5, expected 12/);
  assert.throws(() => M.decodeRLE({ size: [3, 4], counts: [40] }), /overflow/);
  assert.throws(() => M.decodeRLE({ counts: "abc" }), /size/);
});

test("paintDisc paints and erases a round brush on a downscaled mask", () => {
  const m = M.createMask(50, 50);
  assert.equal(M.paintDisc(m, 100, 100, [50, 50], 10, 1), true);
  const area = M.maskArea(m);
  // radius 10 px = 5 cells -> about pi*25 cells
  assert.ok(area > 70 && area < 90, `area ${area}`);
  assert.equal(M.maskHit(m, 100, 100, [50, 50]), true);
  assert.equal(M.maskHit(m, 100, 100, [70, 50]), false);
  assert.equal(M.paintDisc(m, 100, 100, [50, 50], 10, 1), false, "repainting changes nothing");
  M.paintDisc(m, 100, 100, [50, 50], 4, 0);
  assert.equal(M.maskHit(m, 100, 100, [50, 50]), false, "eraser cleared the centre");
  assert.equal(M.maskHit(m, 100, 100, [50, 43]), true, "ring remains");
});

test("paintLine leaves no gaps and bbox is in canvas pixels", () => {
  const m = M.createMask(100, 50);
  M.paintLine(m, 200, 100, [20, 50], [180, 50], 4, 1);
  for (let x = 20; x <= 180; x += 2) assert.equal(M.maskHit(m, 200, 100, [x, 50]), true, `x=${x}`);
  const b = M.maskBBox(m, 200, 100);
  assert.ok(b[0] >= 14 && b[0] <= 18 && b[2] >= 182 && b[2] <= 186, `bbox ${b}`);
  assert.equal(M.maskBBox(M.createMask(4, 4), 10, 10), null);
});

test("transformMask moves and scales set cells with the rectangle", () => {
  const m = M.createMask(20, 20);
  M.paintDisc(m, 100, 100, [25, 25], 5, 1);
  const moved = M.transformMask(m, 100, 100, [0, 0, 1, 1], [40, 30, 41, 31]);
  assert.equal(M.maskHit(moved, 100, 100, [65, 55]), true);
  assert.equal(M.maskHit(moved, 100, 100, [25, 25]), false);
  assert.equal(M.maskArea(moved), M.maskArea(m));
  const scaled = M.transformMask(m, 100, 100, [20, 20, 30, 30], [20, 20, 40, 40]);
  assert.ok(M.maskArea(scaled) > 3 * M.maskArea(m), "doubling both sides gives ~4x the area");
  const off = M.transformMask(m, 100, 100, [0, 0, 1, 1], [500, 0, 501, 1]);
  assert.equal(M.maskArea(off), 0, "cells moved off the canvas are dropped");
});

test("maskSizeFor caps the longer side", () => {
  assert.deepEqual(M.maskSizeFor(1024, 768), [512, 384]);
  assert.deepEqual(M.maskSizeFor(300, 200), [300, 200]);
});
