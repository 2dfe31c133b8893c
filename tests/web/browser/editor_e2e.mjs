// End-to-end test of the layout editor in a real browser against a real ComfyUI server running the
// pack: draw two boxes, a polygon and a point, describe them, undo/redo, reload the page, check the
// serialized widget value, export the API prompt, queue the graph and check what the backend got.
// Screenshots go to test-artifacts/web/ (git-ignored).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { artifact, launchBrowser, startComfy } from "./harness.mjs";

let server;
let browser;
let page;
let ed = ".ifa-editor"; // CSS scope of the editor under test (narrowed to its node once created)

const W = 1024;
const H = 768;

before(async () => {
  server = await startComfy({ frontEndRoot: process.env.FRONT_END_ROOT });
  browser = await launchBrowser();
  page = browser.page;
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Wait until the ComfyUI app (either frontend) has its graph. */
async function openApp() {
  // A fresh user directory makes the modern frontend open its template browser over the graph.
  await fetch(`${server.url}/settings`, { method: "POST", body: JSON.stringify({ "Comfy.TutorialCompleted": true }) }).catch(() => {});
  await page.goto(server.url + "/");
  await page.waitForFunction(() => (window.comfyAPI?.app?.app ?? window.app)?.graph && window.LiteGraph, null, { timeout: 90000 });
  // Extensions register asynchronously after the graph exists.
  await page.waitForFunction(() => !!window.LiteGraph.registered_node_types?.IFAInstanceLayout, null, { timeout: 60000 });
  await page.waitForTimeout(500);
  await page.keyboard.press("Escape"); // any dialog left open
}

/** Serialized layout text of the first Instance Layout node, straight from its widget. */
let layoutNodeId = null;
function layoutValue() {
  return page.evaluate((id) => {
    const app = window.comfyAPI?.app?.app ?? window.app;
    const node = id != null ? app.graph.getNodeById(id) : app.graph._nodes.find((n) => n.type === "IFAInstanceLayout");
    return node.widgets.find((w) => w.name === "layout").value;
  }, layoutNodeId);
}

async function canvasPoint(fx, fy) {
  const box = await page.locator(`${ed} canvas`).first().boundingBox();
  return [box.x + fx * box.width, box.y + fy * box.height];
}

async function drag(from, to) {
  const a = await canvasPoint(...from);
  const b = await canvasPoint(...to);
  await page.mouse.move(a[0], a[1]);
  await page.mouse.down();
  await page.mouse.move((a[0] + b[0]) / 2, (a[1] + b[1]) / 2, { steps: 4 });
  await page.mouse.move(b[0], b[1], { steps: 4 });
  await page.mouse.up();
}

async function click(fx, fy) {
  const p = await canvasPoint(fx, fy);
  await page.mouse.click(p[0], p[1]);
}

async function tool(name) {
  await page.locator(`${ed} .ifa-toolbar button[data-tool="${name}"]`).first().click();
}

/** Queue the graph from the page, wait for /history, return the layout text the backend received. */
async function queueAndGetLayout(nodeId) {
  await fetch(`${server.url}/history`, { method: "POST", body: JSON.stringify({ clear: true }) });
  await page.evaluate(() => (window.comfyAPI?.app?.app ?? window.app).queuePrompt(0, 1));
  let entry = null;
  for (let k = 0; k < 240 && !entry; k++) {
    const hist = await (await fetch(`${server.url}/history`)).json();
    entry = Object.values(hist).find((h) => h.prompt?.[2]?.[String(nodeId)] && h.status?.completed !== undefined);
    if (!entry) await new Promise((r) => setTimeout(r, 500));
  }
  assert.ok(entry, "the prompt reached /history");
  assert.equal(entry.status.status_str, "success", `execution failed: ${JSON.stringify(entry.status.messages).slice(0, 2000)}`);
  return entry.prompt[2][String(nodeId)].inputs.layout;
}

const close = (a, b, tol, what) => assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} is not within ${tol} of ${b}`);

test("draw, describe, undo/redo, reload, export and queue a layout", async (t) => {
  await openApp();
  const nodeId = await page.evaluate(({ W, H }) => {
    const app = window.comfyAPI?.app?.app ?? window.app;
    app.graph.clear();
    const node = window.LiteGraph.createNode("IFAInstanceLayout");
    node.pos = [60, 40];
    app.graph.add(node);
    node.widgets.find((w) => w.name === "width").value = W;
    node.widgets.find((w) => w.name === "height").value = H;
    node.widgets.find((w) => w.name === "width").callback?.(W);
    node.setSize([760, 720]);
    // An output node downstream so that queueing runs the layout node in every ComfyUI version.
    const preview = window.LiteGraph.createNode("PreviewImage");
    preview.pos = [880, 40];
    app.graph.add(preview);
    const imageSlot = node.outputs.findIndex((o) => o.type === "IMAGE");
    node.connect(imageSlot, preview, 0);
    app.canvas.setDirty(true, true);
    return node.id;
  }, { W, H });
  ed = `.ifa-editor[data-node-id="${nodeId}"]`;
  layoutNodeId = nodeId;
  await page.waitForSelector(`${ed} canvas`);
  await page.waitForTimeout(700);

  // The canvas takes the layout's aspect ratio.
  const cb = await page.locator(`${ed} canvas`).first().boundingBox();
  close(cb.width / cb.height, W / H, 0.02, "canvas aspect");

  await t.test("draw two boxes, a polygon and a point", async () => {
    await tool("box");
    await drag([0.1, 0.1], [0.4, 0.5]);
    await drag([0.55, 0.15], [0.9, 0.45]);
    await tool("polygon");
    await click(0.2, 0.65);
    await click(0.45, 0.6);
    await click(0.35, 0.9);
    await page.keyboard.press("Enter");
    await tool("point");
    await click(0.75, 0.75);
    const L = JSON.parse(await layoutValue());
    assert.equal(L.format, "instance-layout");
    assert.equal(L.version, 1);
    assert.equal(L.width, W);
    assert.equal(L.height, H);
    assert.deepEqual(L.instances.map((i) => i.regions.map((r) => r.kind).join("+")), ["box", "box", "polygon", "point"]);
    const [b0, b1] = [L.instances[0].regions[0].box, L.instances[1].regions[0].box];
    const tol = W * 0.01;
    close(b0[0], 0.1 * W, tol, "box 1 x0");
    close(b0[1], 0.1 * H, tol, "box 1 y0");
    close(b0[2], 0.4 * W, tol, "box 1 x1");
    close(b0[3], 0.5 * H, tol, "box 1 y1");
    close(b1[0], 0.55 * W, tol, "box 2 x0");
    close(b1[3], 0.45 * H, tol, "box 2 y1");
    const poly = L.instances[2].regions[0].points;
    assert.equal(poly.length, 3);
    close(poly[2][0], 0.35 * W, tol, "polygon vertex 3 x");
    close(poly[2][1], 0.9 * H, tol, "polygon vertex 3 y");
    const pt = L.instances[3].regions[0].point;
    close(pt[0], 0.75 * W, tol, "point x");
    close(pt[1], 0.75 * H, tol, "point y");
    assert.equal(new Set(L.instances.map((i) => i.color)).size, 4, "each instance has its own colour");
    await page.screenshot({ path: artifact("01-drawn.png") });
  });

  await t.test("describe instances inline and in the layer list", async () => {
    // Inline: double-click the first box (select tool).
    await tool("select");
    const p = await canvasPoint(0.25, 0.3);
    await page.mouse.dblclick(p[0], p[1]);
    const inline = page.locator(`${ed} .ifa-inline`);
    await inline.waitFor();
    await inline.pressSequentially("a red vintage car");
    await inline.press("Enter");
    // Layer list rows are keyed by instance index.
    const descs = { 1: "a tabby cat sleeping", 2: "a green pond", 3: "a small yellow bird" };
    for (const [i, text] of Object.entries(descs)) {
      const ta = page.locator(`${ed} .ifa-layer[data-index="${i}"] textarea`);
      await ta.click();
      await ta.pressSequentially(text, { delay: 5 });
    }
    const L = JSON.parse(await layoutValue());
    assert.deepEqual(L.instances.map((i) => i.description), ["a red vintage car", ...Object.values(descs)]);
    await page.screenshot({ path: artifact("02-described.png") });
  });

  await t.test("undo and redo inside the editor", async () => {
    const before = await layoutValue();
    await page.locator(`${ed} canvas`).first().click({ position: { x: 2, y: 2 } }); // focus the editor (empty spot)
    await page.keyboard.press("Control+z"); // the last description typing burst
    let L = JSON.parse(await layoutValue());
    assert.equal(L.instances[3].description, "", "typing a description undoes as one step");
    assert.equal(L.instances[2].description, "a green pond");
    for (let k = 0; k < 4; k++) await page.keyboard.press("Control+z"); // three more descriptions, then the point
    L = JSON.parse(await layoutValue());
    assert.deepEqual(L.instances.map((i) => i.description), ["", "", ""]);
    assert.equal(L.instances.length, 3, "the point is undone");
    await page.screenshot({ path: artifact("03-undone.png") });
    await page.keyboard.press("Control+Shift+z");
    assert.equal(JSON.parse(await layoutValue()).instances.length, 4, "redo brings the point back");
    for (let k = 0; k < 4; k++) await page.keyboard.press("Control+Shift+z");
    assert.equal(await layoutValue(), before, "redo restores the exact text");
    // Arrow-key nudge on a selected instance, then undo it.
    await tool("select");
    await click(0.7, 0.3);
    await page.keyboard.press("ArrowRight");
    await page.keyboard.press("ArrowRight");
    L = JSON.parse(await layoutValue());
    close(L.instances[1].regions[0].box[0], JSON.parse(before).instances[1].regions[0].box[0] + 2, 1e-6, "nudged x0");
    await page.keyboard.press("Control+z");
    assert.equal(await layoutValue(), before, "both nudges undo as one step");
  });

  const saved = await layoutValue();

  await t.test("the API-format prompt carries the whole layout", async () => {
    const apiLayout = await page.evaluate(async (id) => {
      const app = window.comfyAPI?.app?.app ?? window.app;
      const p = await app.graphToPrompt();
      return { layout: p.output[id].inputs.layout, keys: Object.keys(p.output[id].inputs) };
    }, nodeId);
    assert.equal(apiLayout.layout, saved);
    assert.ok(!apiLayout.keys.includes("layout_editor"), "the editor widget itself is not serialized");
  });

  await t.test("reloading the page keeps the layout", async () => {
    // Both frontends persist the open workflow in web storage (on a timer or on change): wait for it.
    await page.waitForFunction(() => {
      const all = [localStorage, sessionStorage].flatMap((st) => Object.keys(st).map((k) => st.getItem(k))).join("");
      return all.includes("a small yellow bird");
    }, null, { timeout: 20000 });
    await page.reload();
    await openApp();
    await page.waitForFunction(() => document.querySelectorAll(".ifa-editor .ifa-layer").length === 4, null, { timeout: 30000 });
    assert.equal(await layoutValue(), saved);
    assert.equal(await page.locator(`${ed} .ifa-layer`).count(), 4);
    await page.screenshot({ path: artifact("04-reloaded.png") });
  });

  await t.test("queueing sends the layout to the backend", async () => {
    const received = await queueAndGetLayout(nodeId);
    assert.equal(received, saved, "the backend received the editor's layout verbatim");
    assert.deepEqual(JSON.parse(received).instances.map((i) => i.description), ["a red vintage car", "a tabby cat sleeping", "a green pond", "a small yellow bird"]);
    await page.waitForTimeout(800);
    await page.screenshot({ path: artifact("05-queued.png") });
  });

  await t.test("copy and paste instances between two nodes", async () => {
    const target = await page.evaluate(() => {
      const app = window.comfyAPI?.app?.app ?? window.app;
      const node = window.LiteGraph.createNode("IFAInstanceLayout");
      node.pos = [60, 820];
      app.graph.add(node);
      app.canvas.setDirty(true, true);
      return node.id;
    });
    await page.waitForFunction(() => document.querySelectorAll(".ifa-editor canvas").length === 2);
    await tool("select");
    await click(0.25, 0.3); // first box in the first editor
    await page.keyboard.press("Control+c");
    await page.evaluate((id) => (window.comfyAPI?.app?.app ?? window.app).graph.getNodeById(id).ifaEditor.focusKeys(), target);
    await page.keyboard.press("Control+v");
    const pasted = await page.evaluate((id) => {
      const app = window.comfyAPI?.app?.app ?? window.app;
      return app.graph.getNodeById(id).widgets.find((w) => w.name === "layout").value;
    }, target);
    const P = JSON.parse(pasted);
    assert.equal(P.instances.length, 1);
    assert.equal(P.instances[0].description, "a red vintage car");
    // The second node is 1024x1024: the box is rescaled from the 1024x768 source.
    const src = JSON.parse(saved).instances[0].regions[0].box;
    close(P.instances[0].regions[0].box[3], (src[3] * P.height) / H, 0.5, "pasted box y1 rescaled");
  });

  await t.test("scribble, brush mask and eraser; cells overlay", async () => {
    await page.evaluate(() => (window.comfyAPI?.app?.app ?? window.app).canvas.setDirty(true, true));
    await tool("select");
    await page.keyboard.press("Escape");
    await tool("scribble");
    await drag([0.5, 0.6], [0.65, 0.95]);
    await tool("brush");
    await page.keyboard.press("Escape"); // nothing selected: the brush starts a new instance
    await page.locator(`${ed} .ifa-toolbar input[type=number]`).first().fill("40");
    await page.locator(`${ed} .ifa-toolbar input[type=number]`).first().press("Enter");
    await drag([0.8, 0.55], [0.95, 0.9]);
    let L = JSON.parse(await layoutValue());
    const n = L.instances.length;
    assert.equal(L.instances[n - 2].regions[0].kind, "scribble");
    const mask = L.instances[n - 1].regions[0];
    assert.equal(mask.kind, "mask");
    assert.equal(typeof mask.rle.counts, "string");
    const area = (rle) => page.evaluate(async (r) => {
      const M = await import("/extensions/comfyui-ifadapter/js/mask.js");
      return M.maskArea(M.decodeRLE(r));
    }, rle);
    const before = await area(mask.rle);
    assert.ok(before > 500, `brush painted ${before} cells`);
    await tool("eraser");
    await drag([0.85, 0.6], [0.9, 0.85]);
    L = JSON.parse(await layoutValue());
    const after = await area(L.instances[n - 1].regions[0].rle);
    assert.ok(after < before && after > 0, `eraser removed cells: ${before} -> ${after}`);
    const described = ["a long dirt path", "a patch of tall grass"];
    for (const [k, text] of described.entries()) {
      const ta = page.locator(`${ed} .ifa-layer[data-index="${n - 2 + k}"] textarea`).first();
      await ta.click();
      await ta.pressSequentially(text);
    }
    await tool("select");
    await page.keyboard.press("Escape");
    await page.screenshot({ path: artifact("editor.png"), clip: await page.locator(`${ed}`).first().boundingBox() });
    const received = await queueAndGetLayout(nodeId);
    assert.equal(received, await layoutValue(), "masks and scribbles reach the backend, which accepts them");
    await page.locator(`${ed} .ifa-toolbar select`).first().selectOption("32");
    await page.waitForTimeout(300);
    await page.screenshot({ path: artifact("editor-cells.png"), clip: await page.locator(`${ed}`).first().boundingBox() });
    await page.locator(`${ed} .ifa-toolbar select`).first().selectOption("0");
  });

  assert.deepEqual(browser.errors, [], "no page errors from the editor");
});
