// Underlay images in a real browser with real images: (a) an upstream IMAGE on the node's `underlay`
// input (a Load Image directly, and an image filter whose pixels exist only after a run), (b) the
// graph's last output, (c) a file uploaded through the editor (/upload/image).  Each time the canvas
// pixels are sampled to see the image under the regions; the saved workflow and the API prompt must
// hold only a filename reference, never base64.

import assert from "node:assert/strict";
import { S, artifact, drag, inApp, layoutValue, newLayoutGraph, queueAndWait, tool, canvasPixel, workflowAndPrompt } from "./session.mjs";

const W = 1024;
const H = 768;
const BG = [27, 27, 31]; // the editor's empty-canvas colour (#1b1b1f)
const TEST_IMAGE = "ifa_e2e_quadrants.png";

/** A 256x192 PNG with red / green / blue / yellow quadrants (TL, TR, BL, BR), drawn by the browser. */
async function quadrantsPng() {
  const dataUrl = await S.page.evaluate(() => {
    const c = document.createElement("canvas");
    c.width = 256;
    c.height = 192;
    const ctx = c.getContext("2d");
    for (const [x, y, col] of [[0, 0, "#ff0000"], [128, 0, "#00ff00"], [0, 96, "#0000ff"], [128, 96, "#ffff00"]]) {
      ctx.fillStyle = col;
      ctx.fillRect(x, y, 128, 96);
    }
    return c.toDataURL("image/png");
  });
  return Buffer.from(dataUrl.split(",")[1], "base64");
}

/** Classify a sampled pixel: which pure colour (blended over the dark background) it shows. */
function hue([r, g, b]) {
  const hi = (v) => v > 110;
  const lo = (v) => v < 70;
  if (hi(r) && lo(g) && lo(b)) return "red";
  if (lo(r) && hi(g) && lo(b)) return "green";
  if (lo(r) && lo(g) && hi(b)) return "blue";
  if (hi(r) && hi(g) && lo(b)) return "yellow";
  if (lo(r) && hi(g) && hi(b)) return "cyan";
  if (hi(r) && lo(g) && hi(b)) return "magenta";
  if (Math.abs(r - BG[0]) < 6 && Math.abs(g - BG[1]) < 6 && Math.abs(b - BG[2]) < 6) return "background";
  return `other(${r},${g},${b})`;
}

/** Wait (the editor polls every 500 ms) until the four quadrant samples show the expected colours. */
async function expectQuadrants(expected, what) {
  const spots = [[0.3, 0.35], [0.75, 0.3], [0.3, 0.75], [0.75, 0.75]]; // outside the drawn box
  let seen = [];
  for (let k = 0; k < 30; k++) {
    seen = [];
    for (const [fx, fy] of spots) seen.push(hue(await canvasPixel(fx, fy)));
    if (seen.join() === expected.join()) return;
    await S.page.waitForTimeout(200);
  }
  assert.deepEqual(seen, expected, `${what}: canvas samples (TL, TR, BL, BR)`);
}

function setUnderlaySource(value) {
  return S.page.locator(`${S.ed} .ifa-toolbar select`).nth(1).selectOption(value);
}

/** No embedded image data anywhere in the saved workflow or the API prompt, and both stay small. */
async function assertNoEmbeddedImages(ref) {
  const { workflow, prompt } = await workflowAndPrompt();
  for (const [what, obj, limit] of [["workflow", workflow, 64000], ["API prompt", prompt, 32000]]) {
    const text = JSON.stringify(obj);
    assert.ok(!text.includes("data:image"), `the ${what} embeds a data: URL`);
    assert.ok(!/[A-Za-z0-9+/]{1500,}/.test(text), `the ${what} holds a long base64-like run`);
    assert.ok(text.length < limit, `the ${what} is ${text.length} characters (limit ${limit})`);
  }
  const layout = JSON.parse(prompt[String(S.nodeId)].inputs.layout);
  if (ref) assert.deepEqual(layout.underlay, ref, "the layout references the uploaded file by name");
  return { workflow, prompt };
}

export async function underlayFlow() {
  const page = S.page;
  // The test image goes to the input folder, as a user's own upload would.
  const form = new FormData();
  form.append("image", new Blob([await quadrantsPng()], { type: "image/png" }), TEST_IMAGE);
  form.append("overwrite", "true");
  const up = await fetch(`${S.server.url}/upload/image`, { method: "POST", body: form });
  assert.equal(up.status, 200, "/upload/image accepted the test image");
  const uploaded = (await up.json()).name;

  const nodeId = await newLayoutGraph(W, H);
  await tool("box");
  await drag([0.05, 0.05], [0.2, 0.2]);
  const inBox = [0.12, 0.12];
  const ta = page.locator(`${S.ed} .ifa-layer[data-index="0"] textarea`);
  await ta.click();
  await ta.pressSequentially("a lantern");
  await tool("select");
  await page.keyboard.press("Escape");

  // Load Image -> Invert Image -> {Preview Image, layout.underlay}; the Load Image is also kept for (a1).
  const ids = await inApp((app, LiteGraph, { nodeId, file }) => {
    const layout = app.graph.getNodeById(nodeId);
    const load = LiteGraph.createNode("LoadImage");
    load.pos = [60, 800];
    app.graph.add(load);
    const w = load.widgets.find((x) => x.name === "image");
    if (!w.options.values.includes(file)) w.options.values.push(file);
    w.value = file;
    const invert = LiteGraph.createNode("ImageInvert");
    invert.pos = [420, 800];
    app.graph.add(invert);
    load.connect(0, invert, 0);
    const preview = LiteGraph.createNode("PreviewImage");
    preview.pos = [700, 800];
    app.graph.add(preview);
    invert.connect(0, preview, 0);
    const slot = layout.inputs.findIndex((i) => i.name === "underlay");
    invert.connect(0, layout, slot);
    app.canvas.setDirty(true, true);
    return { load: load.id, invert: invert.id, preview: preview.id, slot };
  }, { nodeId, file: uploaded });

  await setUnderlaySource("input");
  // (a2) Before a run nothing holds the inverted pixels: the canvas stays empty.
  await expectQuadrants(["background", "background", "background", "background"], "input image before any run");
  const before = await canvasPixel(...inBox);

  // Record which images the graph reports, as the editor does.
  await page.evaluate(async () => {
    const { api } = await import("/scripts/api.js");
    window.__ifaExecuted = [];
    api.addEventListener("executed", (e) => {
      const imgs = e.detail?.output?.images;
      if (imgs?.length) window.__ifaExecuted.push(imgs[imgs.length - 1]);
    });
  });
  await queueAndWait(nodeId);
  // (a2) After the run: the inverted image (red -> cyan, green -> magenta, blue -> yellow, yellow -> blue).
  await expectQuadrants(["cyan", "magenta", "yellow", "blue"], "input image (inverted) after a run");
  const under = await canvasPixel(...inBox);
  assert.ok(under.some((v, k) => Math.abs(v - before[k]) > 25), `the box is drawn over the image: ${before} -> ${under}`);
  const bare = await canvasPixel(0.3, 0.1); // same quadrant, outside the box
  assert.ok(under.some((v, k) => Math.abs(v - bare[k]) > 15), `the region is painted over the underlay: ${bare} vs ${under}`);
  await page.screenshot({ path: artifact("underlay-input-after-run.png"), clip: await page.locator(S.ed).first().boundingBox() });

  // (a1) Load Image straight into the underlay input: its file, no run needed.
  await inApp((app, LiteGraph, { nodeId, ids }) => {
    const load = app.graph.getNodeById(ids.load);
    load.connect(0, app.graph.getNodeById(nodeId), ids.slot);
  }, { nodeId, ids });
  await expectQuadrants(["red", "green", "blue", "yellow"], "input image from Load Image");

  // (b) The graph's last output: the newest image any node reported.
  await setUnderlaySource("last");
  const executed = await page.evaluate(() => window.__ifaExecuted);
  assert.ok(executed.length >= 1, "the run reported images");
  const last = executed[executed.length - 1];
  await page.waitForFunction(
    ({ id, name }) => (window.comfyAPI?.app?.app ?? window.app).graph.getNodeById(id).ifaEditor.underlayUrl?.includes(encodeURIComponent(name)),
    { id: nodeId, name: last.filename }, { timeout: 10000 },
  );
  await page.waitForFunction((sel) => {
    const c = document.querySelector(`${sel} canvas`);
    const d = c.getContext("2d").getImageData(Math.floor(0.75 * c.width), Math.floor(0.75 * c.height), 1, 1).data;
    return Math.abs(d[0] - 27) + Math.abs(d[1] - 27) + Math.abs(d[2] - 31) > 30;
  }, S.ed, { timeout: 10000 });
  await page.screenshot({ path: artifact("underlay-last-output.png"), clip: await page.locator(S.ed).first().boundingBox() });

  // (c) Upload through the editor's button: stored in input/ifadapter_underlays/, referenced by name.
  const withoutUnderlay = await layoutValue();
  await page.locator(`${S.ed} input[type=file][accept="image/*"]`).setInputFiles({ name: "my_sketch.png", mimeType: "image/png", buffer: await quadrantsPng() });
  await page.waitForFunction((id) => JSON.parse((window.comfyAPI?.app?.app ?? window.app).graph.getNodeById(id).widgets.find((w) => w.name === "layout").value).underlay, nodeId, { timeout: 15000 });
  const L = JSON.parse(await layoutValue());
  assert.equal(L.underlay.subfolder, "ifadapter_underlays");
  assert.equal(L.underlay.type, "input");
  assert.match(L.underlay.filename, /\.png$/);
  assert.deepEqual(L.instances, JSON.parse(withoutUnderlay).instances, "uploading changes no instance");
  assert.equal(await page.locator(`${S.ed} .ifa-toolbar select`).nth(1).inputValue(), "file");
  // Disconnect the input so that only the uploaded file can be what is shown.
  await inApp((app, LiteGraph, { nodeId, slot }) => app.graph.getNodeById(nodeId).disconnectInput(slot), { nodeId, slot: ids.slot });
  await expectQuadrants(["red", "green", "blue", "yellow"], "uploaded file");
  const view = await fetch(`${S.server.url}/view?filename=${encodeURIComponent(L.underlay.filename)}&subfolder=ifadapter_underlays&type=input`);
  assert.equal(view.status, 200, "the uploaded underlay is served by /view");
  await page.screenshot({ path: artifact("underlay-uploaded.png"), clip: await page.locator(S.ed).first().boundingBox() });

  await assertNoEmbeddedImages(L.underlay);
  // The backend accepts a layout that references an underlay file.
  const entry = await queueAndWait(nodeId);
  assert.deepEqual(JSON.parse(entry.prompt[2][String(nodeId)].inputs.layout).underlay, L.underlay);
  await setUnderlaySource("auto");
}
