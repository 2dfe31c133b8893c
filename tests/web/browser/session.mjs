// Shared state and page helpers of the browser tests.  One configuration (a ComfyUI server with one
// frontend build, Vue node mode on or off) runs at a time; `S` holds its server, browser and page,
// and the helpers act on S.page.  Every helper works in both the 2024 legacy frontend (window.app)
// and the modern comfyui-frontend-package (window.comfyAPI.app.app).

import assert from "node:assert/strict";
import { artifact as artifactPath } from "./harness.mjs";

export const S = {
  server: null, // {url, version, stop}
  browser: null, // {context, page, errors, close}
  page: null,
  config: null, // {label, frontEndRoot, vue}
  ed: ".ifa-editor", // CSS scope of the editor under test (narrowed to one node with useEditor)
  nodeId: null, // id of the layout node under test
};

/** Screenshot path for this configuration: test-artifacts/web/<config slug>/<name>. */
export function artifact(name) {
  const slug = (S.config?.label || "default").replace(/[^A-Za-z0-9._-]+/g, "_");
  return artifactPath(`${slug}/${name}`);
}

/** Settings written before the page opens: skip first-run dialogs; Vue node mode on or off. */
async function writeSettings() {
  const settings = { "Comfy.TutorialCompleted": true, "Comfy.VueNodes.Enabled": !!S.config?.vue };
  await fetch(`${S.server.url}/settings`, { method: "POST", body: JSON.stringify(settings) }).catch(() => {});
}

/** Open (or reload) ComfyUI and wait until the graph exists and this pack's node type is registered. */
export async function openApp({ reload = false } = {}) {
  const { page } = S;
  if (!reload) await writeSettings();
  if (reload) await page.reload();
  else await page.goto(S.server.url + "/");
  await page.waitForFunction(() => (window.comfyAPI?.app?.app ?? window.app)?.graph && window.LiteGraph, null, { timeout: 90000 });
  // Extensions register asynchronously after the graph exists.
  await page.waitForFunction(() => !!window.LiteGraph.registered_node_types?.IFAInstanceLayout, null, { timeout: 60000 });
  await page.waitForTimeout(500);
  await page.keyboard.press("Escape"); // any dialog left open
  if (S.config?.vue) {
    const on = await page.evaluate(() => window.LiteGraph.vueNodesMode === true);
    assert.ok(on, "Vue node mode (Comfy.VueNodes.Enabled) is on in this frontend");
  }
}

/** Facts about the running frontend, for the test log. */
export function frontendInfo() {
  return S.page.evaluate(() => ({
    modern: !!window.comfyAPI,
    version: window.__COMFYUI_FRONTEND_VERSION__ ?? (window.comfyAPI ? "unknown" : "legacy"),
    vueNodesMode: window.LiteGraph?.vueNodesMode === true,
  }));
}

/** Point the helpers at the editor of layout node `id`. */
export function useEditor(id) {
  S.nodeId = id;
  S.ed = `.ifa-editor[data-node-id="${id}"]`;
}

/** Serialized layout text of layout node `id` (default: the node under test), from its widget. */
export function layoutValue(id = S.nodeId) {
  return S.page.evaluate((id) => {
    const app = window.comfyAPI?.app?.app ?? window.app;
    const node = id != null ? app.graph.getNodeById(id) : app.graph._nodes.find((n) => n.type === "IFAInstanceLayout");
    return node.widgets.find((w) => w.name === "layout").value;
  }, id);
}

/** The editor canvas's box once it has stopped moving (Vue node mode re-lays the node out after a frame change or a
 * selection; a point taken mid-layout lands off target). */
async function stableCanvasBox() {
  const canvas = S.page.locator(`${S.ed} canvas`).first();
  let prev = await canvas.boundingBox();
  for (let i = 0; i < 40; i++) {
    await S.page.waitForTimeout(25);
    const box = await canvas.boundingBox();
    if (box && prev && ["x", "y", "width", "height"].every((k) => box[k] === prev[k])) return box;
    prev = box;
  }
  return prev;
}

export async function canvasPoint(fx, fy) {
  const box = await stableCanvasBox();
  return [box.x + fx * box.width, box.y + fy * box.height];
}

export async function drag(from, to) {
  const { page } = S;
  const a = await canvasPoint(...from);
  await page.mouse.move(a[0], a[1]);
  await page.mouse.down();
  // Each step aims at its canvas point through the canvas's current box (a press may re-lay the node out), and the
  // last one is repeated once the canvas has settled, so the release lands on the target whatever moved meanwhile.
  for (const t of [0.25, 0.5, 0.75, 1, 1]) {
    const p = await canvasPoint(from[0] + t * (to[0] - from[0]), from[1] + t * (to[1] - from[1]));
    await page.mouse.move(p[0], p[1], { steps: 2 });
  }
  await page.mouse.up();
}

export async function click(fx, fy) {
  const p = await canvasPoint(fx, fy);
  await S.page.mouse.click(p[0], p[1]);
}

export async function tool(name) {
  await S.page.locator(`${S.ed} .ifa-toolbar button[data-tool="${name}"]`).first().click();
}

/** RGBA of the editor canvas at fractions (fx, fy) of its size. */
export function canvasPixel(fx, fy) {
  return S.page.evaluate(({ sel, fx, fy }) => {
    const c = document.querySelector(`${sel} canvas`);
    const ctx = c.getContext("2d");
    return [...ctx.getImageData(Math.floor(fx * c.width), Math.floor(fy * c.height), 1, 1).data];
  }, { sel: S.ed, fx, fy });
}

/** Run `fn(app, LiteGraph, arg)` in the page with the app object of either frontend. */
export function inApp(fn, arg) {
  return S.page.evaluate(
    ({ src, arg }) => {
      const app = window.comfyAPI?.app?.app ?? window.app;
      return new Function("app", "LiteGraph", "arg", `return (${src})(app, LiteGraph, arg);`)(app, window.LiteGraph, arg);
    },
    { src: fn.toString(), arg },
  );
}

/**
 * Queue the graph from the page and wait for its /history entry; returns that entry (asserts success
 * unless opts.allowError).
 */
export async function queueAndWait(nodeId = S.nodeId, opts = {}) {
  const url = S.server.url;
  await fetch(`${url}/history`, { method: "POST", body: JSON.stringify({ clear: true }) });
  await S.page.evaluate(() => (window.comfyAPI?.app?.app ?? window.app).queuePrompt(0, 1));
  let entry = null;
  for (let k = 0; k < 240 && !entry; k++) {
    const hist = await (await fetch(`${url}/history`)).json();
    entry = Object.values(hist).find((h) => h.prompt?.[2]?.[String(nodeId)] && h.status?.completed !== undefined);
    if (!entry) await new Promise((r) => setTimeout(r, 500));
  }
  assert.ok(entry, "the prompt reached /history");
  if (opts.allowError) return entry;
  assert.equal(entry.status.status_str, "success", `execution failed: ${JSON.stringify(entry.status.messages).slice(0, 2000)}`);
  return entry;
}

/** Queue the graph; return the layout text the backend received for node `nodeId`. */
export async function queueAndGetLayout(nodeId = S.nodeId) {
  const entry = await queueAndWait(nodeId);
  return entry.prompt[2][String(nodeId)].inputs.layout;
}

/** The saved workflow (graph JSON) and the API-format prompt, as the frontend produces them. */
export function workflowAndPrompt() {
  return S.page.evaluate(async () => {
    const app = window.comfyAPI?.app?.app ?? window.app;
    const p = await app.graphToPrompt();
    return { workflow: app.graph.serialize(), prompt: p.output };
  });
}

/**
 * Close what an earlier flow may have left open over the graph: the legacy frontend's error dialog (a queued run
 * that failed on purpose), the modern frontend's dialogs (Escape).
 */
export async function dismissDialogs() {
  await S.page.evaluate(() => {
    const app = window.comfyAPI?.app?.app ?? window.app;
    try {
      app?.ui?.dialog?.close?.();
    } catch {
      /* no legacy dialog */
    }
    // Modern frontends: PrimeVue dialogs (template browser, error reports) have a close button.
    for (const b of document.querySelectorAll('[role="dialog"] .p-dialog-close-button, [role="dialog"] button[aria-label="Close"]')) b.click();
    document.activeElement?.blur?.();
  });
  await S.page.keyboard.press("Escape");
}

/** A fresh graph holding one Instance Layout node (W x H) feeding a Preview Image; returns its id. */
export async function newLayoutGraph(W, H, pos = [60, 40]) {
  await dismissDialogs();
  const id = await inApp((app, LiteGraph, { W, H, pos }) => {
    app.graph.clear();
    app.canvas.ds.scale = 1; // a previous flow may have zoomed or panned
    app.canvas.ds.offset = [0, 0];
    const node = LiteGraph.createNode("IFAInstanceLayout");
    node.pos = pos;
    app.graph.add(node);
    node.widgets.find((w) => w.name === "width").value = W;
    node.widgets.find((w) => w.name === "height").value = H;
    node.widgets.find((w) => w.name === "width").callback?.(W);
    node.setSize([760, 720]);
    // An output node downstream so that queueing runs the layout node in every ComfyUI version.
    const preview = LiteGraph.createNode("PreviewImage");
    preview.pos = [pos[0] + 820, pos[1]];
    app.graph.add(preview);
    node.connect(node.outputs.findIndex((o) => o.type === "IMAGE"), preview, 0);
    app.canvas.setDirty(true, true);
    return node.id;
  }, { W, H, pos });
  useEditor(id);
  await S.page.waitForSelector(`${S.ed} canvas`);
  await S.page.waitForTimeout(700);
  return id;
}

export const close = (a, b, tol, what) => assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} is not within ${tol} of ${b}`);
