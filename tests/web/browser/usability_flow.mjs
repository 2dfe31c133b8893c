// Checks from issue 10 ("the editor as a new user meets it"), run in every configuration:
// - packLoadFlow: the pack's scripts load once and the extension registers once, under whatever
//   folder name the pack is installed (CI installs it as comfyui-ifadapter-main on ComfyUI 0.8.0);
// - dialogFlow: the "open layout editor" button opens the editor in a dialog, also where the node
//   cannot show it (Vue nodes of frontend 1.27); drawing there reaches the node; Esc closes it;
// - brushFlow: a brush stroke right after a polygon starts a new instance; "add to selected" adds;
// - sizeFlow: a new node and the shipped workflows give a canvas large enough to draw on; the canvas
//   stays put while the layer list fills, and grows with the node;
// - accessibilityFlow: text >= 12 px, pointer targets >= 24 px (WCAG 2.2 2.5.8), resize handles
//   grabbable 10 px off the corner, every tool's key in its tooltip and in the keys panel;
// - deprecationFlow: connections are read without the deprecated input.link / output.links.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { REPO } from "./harness.mjs";
import { S, artifact, canvasPoint, click, dismissDialogs, drag, inApp, layoutValue, newLayoutGraph, tool, useEditor } from "./session.mjs";

const instances = async (id) => JSON.parse(await layoutValue(id)).instances;

export async function packLoadFlow(t) {
  const r = await S.page.evaluate(() => {
    const app = window.comfyAPI?.app?.app ?? window.app;
    let exts = null;
    try {
      if (Array.isArray(app.extensions)) exts = app.extensions.filter((e) => e?.name === "ifadapter.InstanceLayoutEditor").length;
    } catch {
      /* the store is not reachable here */
    }
    const scripts = performance.getEntriesByType("resource").map((e) => new URL(e.name).pathname).filter((p) => /\/js\/[a-z_]+\.js$/.test(p) && /ifadapter/.test(p));
    return { exts, scripts, owner: globalThis.__ifadapterLayoutEditor ?? null };
  });
  t.diagnostic(`editor loaded from ${r.owner}; ${r.scripts.length} pack scripts fetched`);
  assert.ok(r.owner, "the extension script ran");
  if (r.exts !== null) assert.equal(r.exts, 1, "the extension is registered exactly once");
  const byName = new Map();
  for (const p of r.scripts) byName.set(path.basename(p), [...(byName.get(path.basename(p)) || []), p]);
  assert.ok(byName.has("ifadapter_layout_editor.js") && byName.has("editor_view.js"), `pack scripts seen: ${r.scripts.join(", ")}`);
  for (const [name, urls] of byName) assert.equal(urls.length, 1, `${name} loaded once, not from ${urls.join(" and ")}`);
  const folder = process.env.IFA_PACK_DIRNAME;
  if (folder) assert.ok(r.owner.includes(`/extensions/${folder}/js/`), `served under the install folder ${folder}: ${r.owner}`);
}

/** Open the node's editor dialog the way a user does: the Vue node's button, or the canvas-drawn button. */
async function openDialog(id) {
  const domButton = S.page.locator(`[data-node-id="${id}"] button`).filter({ hasText: /open layout editor/ });
  // The Vue node can be taller than the page, and the graph canvas does not scroll: click the element itself.
  if (S.config?.vue && (await domButton.count())) await domButton.first().evaluate((b) => b.click());
  else {
    await inApp((app, LiteGraph, id) => {
      const w = app.graph.getNodeById(id).widgets.find((x) => x.type === "button" && x.name === "editor");
      w.callback(w.value, app.canvas, app.graph.getNodeById(id));
    }, id);
  }
  await S.page.waitForSelector(`.ifa-editor.ifa-fullscreen[data-node-id="${id}"]`, { timeout: 10000 });
}

export async function dialogFlow() {
  const page = S.page;
  await dismissDialogs();
  const id = await inApp((app, LiteGraph) => {
    app.graph.clear();
    const node = LiteGraph.createNode("IFAInstanceLayout");
    node.pos = [60, 40];
    app.graph.add(node);
    app.canvas.setDirty(true, true);
    return node.id;
  });
  await page.waitForTimeout(1500);
  const mounted = await page.evaluate((id) => !!document.querySelector(`.ifa-editor[data-node-id="${id}"]`)?.isConnected, id);
  await openDialog(id);
  useEditor(id);
  S.ed = `.ifa-editor.ifa-fullscreen[data-node-id="${id}"]`;
  const box = await page.locator(`${S.ed} canvas`).boundingBox();
  assert.ok(box.width >= 500 && box.height >= 500, `the dialog's canvas is large: ${box.width}x${box.height}`);
  await tool("box");
  await drag([0.2, 0.2], [0.6, 0.7]);
  assert.equal((await instances(id)).length, 1, "drawing in the dialog writes the node's layout");
  await page.screenshot({ path: artifact("dialog.png") });
  await page.keyboard.press("Escape"); // clear the selection
  await page.keyboard.press("Escape"); // close the dialog
  await page.waitForFunction(() => !document.querySelector(".ifa-editor.ifa-fullscreen"), null, { timeout: 5000 });
  const back = await page.evaluate((id) => !!document.querySelector(`.ifa-editor[data-node-id="${id}"]`)?.isConnected, id);
  assert.equal(back, mounted, "after closing, the editor is back where it was (in the node, or nowhere if the node cannot show it)");
  useEditor(id);
}

export async function brushFlow() {
  const page = S.page;
  const id = await newLayoutGraph(1024, 1024);
  await tool("polygon");
  await click(0.1, 0.1);
  await click(0.4, 0.1);
  await click(0.25, 0.4);
  await page.keyboard.press("Enter");
  const poly = JSON.stringify((await instances(id))[0]);
  await tool("brush");
  await drag([0.6, 0.6], [0.8, 0.8]); // the polygon is still selected
  let L = await instances(id);
  assert.equal(L.length, 2, "the stroke made a new instance");
  assert.equal(JSON.stringify(L[0]), poly, "the polygon is untouched");
  assert.deepEqual(L[1].regions.map((r) => r.kind), ["mask"]);
  await drag([0.6, 0.8], [0.8, 0.6]); // the next stroke continues the same mask
  L = await instances(id);
  assert.equal(L.length, 2, "consecutive strokes build one mask");
  // With "add to selected", a stroke joins the selected instance (the polygon, selected from the list).
  await tool("select");
  await click(0.25, 0.2);
  await tool("brush");
  await page.locator(`${S.ed} .ifa-toolbar label`).filter({ hasText: "add to selected" }).locator("input").check();
  await drag([0.15, 0.15], [0.3, 0.2]);
  L = await instances(id);
  assert.equal(L.length, 2, "no new instance in add-to-selected mode");
  assert.deepEqual(L[0].regions.map((r) => r.kind), ["polygon", "mask"]);
  await page.locator(`${S.ed} .ifa-toolbar label`).filter({ hasText: "add to selected" }).locator("input").uncheck();
}

/** CSS size of the editor canvas (unaffected by the graph's zoom). */
const canvasCss = () => S.page.evaluate((sel) => {
  const c = document.querySelector(`${sel} canvas`);
  return { w: c.offsetWidth, h: c.offsetHeight };
}, S.ed);

export async function sizeFlow(t) {
  const page = S.page;
  await dismissDialogs();
  // A node as the user adds it (default size).
  const id = await inApp((app, LiteGraph) => {
    app.graph.clear();
    const node = LiteGraph.createNode("IFAInstanceLayout");
    node.pos = [60, 40];
    app.graph.add(node);
    node.widgets.find((w) => w.name === "height").value = 768;
    app.canvas.ds.scale = 1;
    app.canvas.ds.offset = [0, 0];
    app.canvas.setDirty(true, true);
    return node.id;
  });
  useEditor(id);
  await page.waitForSelector(`${S.ed} canvas`);
  await page.waitForTimeout(1200);
  let c = await canvasCss();
  t.diagnostic(`new node: canvas ${c.w}x${c.h} CSS px`);
  assert.ok(c.w >= 480 && c.h >= 340, `a new node's canvas is comfortable to draw on: ${c.w}x${c.h}`);
  // The canvas stays where it is while the layer list fills (it used to grow under the cursor in Vue nodes).
  const before = await page.locator(`${S.ed} canvas`).boundingBox();
  await tool("box");
  for (let k = 0; k < 6; k++) await drag([0.05 + 0.15 * k, 0.1], [0.15 + 0.15 * k, 0.3]);
  await page.waitForTimeout(1200);
  const after = await page.locator(`${S.ed} canvas`).boundingBox();
  assert.equal((await instances(id)).length, 6);
  for (const k of ["x", "y", "width", "height"]) assert.ok(Math.abs(after[k] - before[k]) <= 2, `canvas ${k} stays put: ${before[k]} -> ${after[k]}`);
  await page.screenshot({ path: artifact("size-new-node.png") });
  // The canvas grows with the node: drag the Vue node's resize corner (zoomed out so that it is on screen), or
  // resize the canvas-drawn node.
  if (S.config?.vue) {
    await inApp((app) => {
      app.canvas.ds.scale = 0.5;
      app.canvas.setDirty(true, true);
    });
    await page.waitForTimeout(800);
    const corner = page.locator(`.lg-node[data-node-id="${id}"] .cursor-se-resize`).first();
    const cb = await corner.boundingBox();
    assert.ok(cb, "the Vue node has a resize corner");
    await page.mouse.move(cb.x + cb.width / 2, cb.y + cb.height / 2);
    await page.mouse.down();
    await page.mouse.move(cb.x + cb.width / 2 + 100, cb.y + cb.height / 2 + 50, { steps: 5 });
    await page.mouse.move(cb.x + cb.width / 2 + 200, cb.y + cb.height / 2 + 100, { steps: 5 });
    await page.mouse.up();
  } else {
    await inApp((app, LiteGraph, id) => {
      const n = app.graph.getNodeById(id);
      n.setSize([n.size[0] + 400, n.size[1] + 300]);
      app.canvas.setDirty(true, true);
    }, id);
  }
  await page.waitForTimeout(1500);
  const grown = await canvasCss();
  assert.ok(grown.w > c.w + 100 || grown.h > c.h + 100, `a larger node gives a larger canvas: ${c.w}x${c.h} -> ${grown.w}x${grown.h}`);
  // The shipped workflows open with a usable editor.
  for (const file of ["InstanceDiffusion boxes.json", "IFAdapter layout to image.json"]) {
    const wf = JSON.parse(readFileSync(path.join(REPO, "workflows", file), "utf8"));
    const layoutId = wf.nodes.find((n) => n.type === "IFAInstanceLayout").id;
    await inApp((app, LiteGraph, wf) => app.loadGraphData(wf), wf);
    useEditor(layoutId);
    await inApp((app, LiteGraph, id) => {
      const n = app.graph.getNodeById(id);
      app.canvas.ds.scale = 1;
      app.canvas.ds.offset = [-n.pos[0] + 20, -n.pos[1] + 40];
      app.canvas.setDirty(true, true);
    }, layoutId);
    await page.waitForSelector(`${S.ed} canvas`);
    await page.waitForTimeout(1200);
    c = await canvasCss();
    t.diagnostic(`${file}: canvas ${c.w}x${c.h} CSS px`);
    assert.ok(c.w >= 440 && c.h >= 330, `${file}: the editor's canvas is comfortable: ${c.w}x${c.h}`);
    await page.screenshot({ path: artifact(`size-${file.replace(".json", "").replace(/[^A-Za-z0-9]+/g, "_")}.png`) });
  }
}

export async function accessibilityFlow() {
  const page = S.page;
  const id = await newLayoutGraph(1024, 768);
  await tool("box");
  await drag([0.3, 0.3], [0.6, 0.6]);
  const report = await page.evaluate((sel) => {
    const root = document.querySelector(sel);
    const small = [];
    const tinyText = [];
    for (const el of root.querySelectorAll(".ifa-toolbar > button, .ifa-toolbar > select, .ifa-toolbar > input:not([type=file]), .ifa-toolbar > label, .ifa-layer button, .ifa-layer input, .ifa-layer textarea")) {
      if (el.offsetParent === null) continue;
      if (el.offsetWidth < 24 || el.offsetHeight < 24) small.push(`${el.tagName}.${el.className}[${el.textContent || el.title}] ${el.offsetWidth}x${el.offsetHeight}`);
    }
    for (const el of root.querySelectorAll(".ifa-toolbar button, .ifa-toolbar select, .ifa-toolbar label, .ifa-status, .ifa-layer textarea, .ifa-layer button, .ifa-prompt")) {
      const px = parseFloat(getComputedStyle(el).fontSize);
      if (px < 12) tinyText.push(`${el.className || el.tagName} ${px}px`);
    }
    return { small, tinyText, titles: [...root.querySelectorAll(".ifa-toolbar button[data-tool]")].map((b) => b.title) };
  }, S.ed);
  assert.deepEqual(report.small, [], "every control is at least 24x24 CSS px");
  assert.deepEqual(report.tinyText, [], "no text under 12 px");
  for (const [name, key] of [["Select", "V"], ["Box", "B"], ["Polygon", "P"], ["Brush", "M"], ["Eraser", "E"], ["Scribble", "S"], ["Point", "T"]]) {
    assert.ok(report.titles.includes(`${name} (${key})`), `the ${name} button's tooltip names its key ${key}`);
  }
  const keys = page.locator(`${S.ed} .ifa-toolbar button`).filter({ hasText: /^keys$/ });
  assert.match(await keys.getAttribute("title"), /Ctrl\+Z.*undo/s, "the keys button's tooltip lists the shortcuts");
  await keys.click();
  const help = await page.locator(`${S.ed} .ifa-help`).innerText();
  for (const k of ["Ctrl+Z", "Ctrl+D", "Delete", "Esc", "Arrows"]) assert.ok(help.includes(k), `the keys panel lists ${k}`);
  await keys.click();
  // A resize handle grabs 10 screen px diagonally off the box corner (a 24 px target).
  await tool("select");
  await click(0.45, 0.45);
  const [x1, y1] = await canvasPoint(0.6, 0.6);
  const zoom = await page.evaluate((sel) => {
    const c = document.querySelector(`${sel} canvas`);
    return c.getBoundingClientRect().width / c.offsetWidth;
  }, S.ed);
  const off = 10 * zoom;
  await page.mouse.move(x1 + off, y1 + off);
  await page.mouse.down();
  await page.mouse.move(x1 + off + 40, y1 + off + 30, { steps: 4 });
  await page.mouse.up();
  const b = (await instances(id))[0].regions[0].box;
  assert.ok(b[2] > 0.6 * 1024 + 20 && b[3] > 0.6 * 768 + 15, `the corner handle was grabbed 10 px off: box ${b}`);
  assert.ok(Math.abs(b[0] - 0.3 * 1024) < 8, `the opposite corner stayed: ${b}`);
}

export async function deprecationFlow(t) {
  const page = S.page;
  const has = await page.evaluate(() => Array.isArray(window.LiteGraph?.onDeprecationWarning));
  if (!has) {
    t.diagnostic("this frontend reports no deprecations (no LiteGraph.onDeprecationWarning)");
    return;
  }
  await dismissDialogs();
  await page.evaluate(() => {
    window.LiteGraph.alwaysRepeatWarnings = true;
    window.__ifaDeprecations = [];
    window.LiteGraph.onDeprecationWarning.push((msg) => {
      const stack = new Error().stack || "";
      if (/ifadapter/.test(stack)) window.__ifaDeprecations.push(`${msg}\n${stack}`);
    });
  });
  // The underlay lookup walks the graph's connections every poll: Load Image -> underlay, Load Image -> Preview.
  const id = await inApp((app, LiteGraph) => {
    app.graph.clear();
    const node = LiteGraph.createNode("IFAInstanceLayout");
    node.pos = [420, 40];
    app.graph.add(node);
    const load = LiteGraph.createNode("LoadImage");
    load.pos = [20, 40];
    app.graph.add(load);
    const inv = LiteGraph.createNode("ImageInvert");
    inv.pos = [20, 460];
    app.graph.add(inv);
    load.connect(0, inv, 0);
    inv.connect(0, node, node.inputs.findIndex((i) => i.name === "underlay"));
    const prev = LiteGraph.createNode("PreviewImage");
    prev.pos = [20, 620];
    app.graph.add(prev);
    inv.connect(0, prev, 0);
    app.canvas.setDirty(true, true);
    return node.id;
  });
  useEditor(id);
  await page.waitForTimeout(2000);
  const n = await page.evaluate((id) => {
    const app = window.comfyAPI?.app?.app ?? window.app;
    app.graph.getNodeById(id).ifaEditor.refreshUnderlay();
    return window.__ifaDeprecations;
  }, id);
  assert.deepEqual(n, [], "the editor uses no deprecated LiteGraph API");
}
