// "Saving, reloading, copying nodes and exporting API-format workflows keep the whole layout; opening
// an older workflow never loses an instance."
// - compatFlow: workflows whose layout text has an older or unexpected shape (no version, caption/bbox
//   spellings, regions without "kind"; a newer version with unknown fields and an unknown region kind;
//   a bare list of normalised boxes) are loaded through the frontend's own loadGraphData, saved again,
//   edited, undone and queued: no instance, field or region is lost.
// - nodeCopyFlow: the whole node copied and pasted with the graph's Ctrl+C / Ctrl+V (LiteGraph
//   clipboard) carries the layout, and the copy is independent of the original.

import assert from "node:assert/strict";
import { S, artifact, click, close, drag, inApp, layoutValue, newLayoutGraph, queueAndWait, tool, useEditor, workflowAndPrompt } from "./session.mjs";

const W = 1024;
const H = 768;

/** Layout texts as older versions of the pack, hand-written JSON or future versions stored them. */
const OLD_LAYOUTS = {
  "version-less, caption/bbox spellings, regions without kind": {
    text: JSON.stringify({
      width: W, height: H, prompt: "a quiet street",
      instances: [
        { caption: "a red car", bbox: [100, 420, 460, 700] },
        { description: "a dog", regions: [{ box: [520, 380, 760, 700] }] },
        { text: "a kite", regions: [{ kind: "polygon", points: [[700, 60], [900, 120], [820, 260]] }], note: "kept" },
      ],
    }),
    descriptions: ["a red car", "a dog", "a kite"],
    queue: true,
  },
  "newer version with unknown fields and an unknown region kind": {
    text: JSON.stringify({
      format: "instance-layout", version: 3, width: W, height: H, prompt: "", future_top: { palette: "warm" },
      instances: [
        { description: "a cat", regions: [{ kind: "box", box: [80, 80, 400, 380], feather: 6 }], hook: "lora:cat", z: 1 },
        { description: "a spline path", regions: [{ kind: "bezier", ctrl: [[10, 700], [500, 300], [1000, 700]] }], z: 0 },
        { description: "a moon", regions: [{ kind: "point", point: [900, 90] }, { kind: "hologram", seed: 7 }] },
      ],
    }),
    descriptions: ["a cat", "a spline path", "a moon"],
    unknown: ["future_top", "feather", "hook", "bezier", "hologram", "\"seed\":7", "\"palette\":\"warm\""],
  },
  "a bare list of normalised boxes": {
    text: JSON.stringify([
      { x: 0.1, y: 0.2, width: 0.3, height: 0.5, metadata: { text: "a tree" } },
      { x: 0.55, y: 0.1, width: 0.35, height: 0.3, metadata: { desc: "a cloud" } },
    ]),
    descriptions: ["a tree", "a cloud"],
    queue: true,
  },
};

/** An older-shaped workflow: the graph as a user saved it, with `text` in the layout widget and no editor properties. */
async function loadWorkflowWithLayout(text) {
  const id = await inApp((app, LiteGraph, { text }) => {
    const wf = app.graph.serialize();
    const node = wf.nodes.find((n) => n.type === "IFAInstanceLayout");
    node.widgets_values = [node.widgets_values[0], node.widgets_values[1], text];
    delete node.properties?.ifa_editor;
    return app.loadGraphData(wf).then(() => node.id);
  }, { text });
  useEditor(id);
  await S.page.waitForSelector(`${S.ed} canvas`);
  await S.page.waitForTimeout(700);
  return id;
}

/**
 * Let the frontend's deferred key handlers run while the editor still has focus.  The 2024 frontend's
 * graph undo (extensions/core/undoRedo.js) checks document.activeElement one animation frame after
 * the keydown; loading another workflow within that frame removes the focused editor, and the
 * graph would then undo the load.
 */
const settleKeys = () => S.page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));

const descriptionsOf = (text) => JSON.parse(text).instances.map((i) => i.description);

export async function compatFlow(t) {
  const page = S.page;
  await newLayoutGraph(W, H);
  for (const [name, c] of Object.entries(OLD_LAYOUTS)) {
    await t.test(name, async () => {
      const id = await loadWorkflowWithLayout(c.text);
      // Loading alone never rewrites the stored text.
      assert.equal(await layoutValue(id), c.text, "the layout text survives loading verbatim");
      const rows = page.locator(`${S.ed} .ifa-layer`);
      assert.equal(await rows.count(), c.descriptions.length, "every instance is listed in the editor");
      for (const [k, d] of c.descriptions.entries()) assert.equal(await page.locator(`${S.ed} .ifa-layer[data-index="${k}"] textarea`).inputValue(), d);
      // Saving (workflow JSON and API prompt) keeps it verbatim as well.
      const { workflow, prompt } = await workflowAndPrompt();
      assert.equal(workflow.nodes.find((n) => n.id === id).widgets_values[2], c.text);
      assert.equal(prompt[String(id)].inputs.layout, c.text);
      // An edit rewrites the text in the current format and keeps every instance, description and unknown field.
      await page.locator(`${S.ed} canvas`).first().click({ position: { x: 2, y: 2 } });
      await page.keyboard.press("Control+a");
      await page.keyboard.press("ArrowRight");
      const edited = await layoutValue(id);
      assert.notEqual(edited, c.text, "the nudge was recorded");
      const L = JSON.parse(edited);
      assert.equal(L.format, "instance-layout");
      assert.deepEqual(descriptionsOf(edited), c.descriptions, "no instance lost after an edit");
      for (const u of c.unknown || []) assert.ok(edited.replace(/\s/g, "").includes(u), `unknown content ${u} survives an edit`);
      await page.screenshot({ path: artifact(`compat-${Object.keys(OLD_LAYOUTS).indexOf(name)}.png`), clip: await page.locator(S.ed).first().boundingBox() });
      // Undo gives back the exact text that was loaded.
      await page.keyboard.press("Control+z");
      assert.equal(await layoutValue(id), c.text, "undo restores the loaded text");
      await page.keyboard.press("Control+Shift+z");
      await settleKeys();
      if (c.queue) {
        const entry = await queueAndWait(id);
        assert.equal(entry.prompt[2][String(id)].inputs.layout, edited, "the backend got the edited layout");
      }
    });
  }
}

export async function nodeCopyFlow() {
  const page = S.page;
  const srcId = await newLayoutGraph(W, H);
  await tool("box");
  await drag([0.1, 0.1], [0.4, 0.5]);
  await tool("point");
  await click(0.7, 0.7);
  const ta = page.locator(`${S.ed} .ifa-layer[data-index="0"] textarea`);
  await ta.click();
  await ta.pressSequentially("a copied lighthouse");
  const original = await layoutValue(srcId);

  // Select only the layout node in the graph and copy it with the graph's own shortcut.
  await inApp((app, LiteGraph, id) => {
    const node = app.graph.getNodeById(id);
    app.canvas.deselectAllNodes?.();
    app.canvas.selectNode(node);
    document.activeElement?.blur?.();
  }, srcId);
  const graphCanvas = await page.locator("canvas#graph-canvas, canvas.graph-canvas-container canvas, canvas").first().boundingBox();
  await page.mouse.move(graphCanvas.x + graphCanvas.width - 120, graphCanvas.y + graphCanvas.height - 80);
  await page.keyboard.press("Control+c");
  await page.keyboard.press("Control+v");
  const copyId = await page.waitForFunction((src) => {
    const app = window.comfyAPI?.app?.app ?? window.app;
    const copies = app.graph._nodes.filter((n) => n.type === "IFAInstanceLayout" && n.id !== src);
    return copies.length === 1 ? copies[0].id : null;
  }, srcId, { timeout: 10000 }).then((h) => h.jsonValue());
  assert.equal(await layoutValue(copyId), original, "the pasted node carries the whole layout");
  // Pan the graph to the copy (the paste lands under the mouse, right of the original; Vue nodes are tall).
  await inApp((app, LiteGraph, id) => {
    const n = app.graph.getNodeById(id);
    app.canvas.ds.scale = 1;
    app.canvas.ds.offset = [60 - n.pos[0], 60 - n.pos[1]];
    app.canvas.setDirty(true, true);
  }, copyId);
  useEditor(copyId);
  await page.waitForSelector(`${S.ed} canvas`);
  await page.waitForTimeout(500);
  await page.waitForFunction((sel) => document.querySelectorAll(`${sel} .ifa-layer`).length === 2, S.ed, { timeout: 10000 });
  assert.equal(await page.locator(`${S.ed} .ifa-layer[data-index="0"] textarea`).inputValue(), "a copied lighthouse");

  // The copy is independent: deleting an instance there leaves the original alone.
  await tool("select");
  await click(0.25, 0.3);
  await page.keyboard.press("Delete");
  assert.equal(JSON.parse(await layoutValue(copyId)).instances.length, 1);
  assert.equal(await layoutValue(srcId), original, "editing the copy does not touch the original");
  const { prompt } = await workflowAndPrompt();
  assert.equal(prompt[String(srcId)].inputs.layout, original);
  assert.equal(JSON.parse(prompt[String(copyId)].inputs.layout).instances.length, 1);
  close(JSON.parse(prompt[String(copyId)].inputs.layout).width, W, 0, "the copy keeps the canvas width");
  await page.screenshot({ path: artifact("node-copy.png") });
  useEditor(srcId);
}
