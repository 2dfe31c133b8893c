import { test } from "node:test";
import assert from "node:assert/strict";
import { History } from "../../web/js/history.js";

function clock() {
  let t = 0;
  const now = () => t;
  now.advance = (ms) => (t += ms);
  return now;
}

test("undo and redo walk the snapshots; a new edit clears redo", () => {
  const h = new History();
  h.reset("a");
  h.push("b");
  h.push("c");
  assert.equal(h.undo(), "b");
  assert.equal(h.undo(), "a");
  assert.equal(h.undo(), null);
  assert.equal(h.redo(), "b");
  h.push("d");
  assert.equal(h.canRedo(), false);
  assert.equal(h.undo(), "b");
  assert.equal(h.undo(), "a");
});

test("pushes with the same key inside the window coalesce into one step", () => {
  const now = clock();
  const h = new History({ now, coalesceMs: 500 });
  h.reset("");
  for (const s of ["a", "ab", "abc"]) {
    now.advance(100);
    h.push(s, "desc:0");
  }
  now.advance(2000);
  h.push("abcd", "desc:0");
  assert.equal(h.undo(), "abc", "a pause starts a new step");
  assert.equal(h.undo(), "", "the typing burst undoes at once");
});

test("different keys or a seal break coalescing", () => {
  const now = clock();
  const h = new History({ now });
  h.reset(0);
  h.push(1, "nudge");
  h.push(2, "nudge");
  h.push(3, "desc");
  h.seal();
  h.push(4, "desc");
  assert.deepEqual([h.undo(), h.undo(), h.undo(), h.undo()], [3, 2, 0, null]);
});

test("an undo seals, so edits after undo do not merge into the undone step", () => {
  const now = clock();
  const h = new History({ now });
  h.reset("x");
  h.push("x1", "k");
  h.undo();
  h.push("x2", "k");
  assert.equal(h.undo(), "x");
  assert.equal(h.redo(), "x2");
});

test("unchanged states are not recorded and the stack is bounded", () => {
  const h = new History({ limit: 3 });
  h.reset({ text: "a" });
  assert.equal(h.push({ text: "a", selection: [1] }), false);
  for (const t of ["b", "c", "d", "e", "f"]) h.push({ text: t });
  const seen = [];
  let s;
  while ((s = h.undo())) seen.push(s.text);
  assert.deepEqual(seen, ["e", "d", "c"]);
});
