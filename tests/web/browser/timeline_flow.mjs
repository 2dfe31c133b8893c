// The editor's timeline (layouts over time, format version 2): raise the frame count, key a box at two
// frames with different positions, scrub the slider and check the interpolated box on every frame (the
// editor's frame view) and on the canvas (pixels at a middle frame), onion-skin, auto-key off, copy and
// remove keyframes with undo/redo, reload the page, and queue: the backend must receive the version-2
// layout verbatim and accept it.

import assert from "node:assert/strict";
import { S, artifact, canvasPixel, click, close, drag, layoutValue, newLayoutGraph, openApp, queueAndWait, tool } from "./session.mjs";

const W = 1024;
const H = 768;

/** The box the editor shows for instance i on its current frame (its frame view), and that frame. */
function shown(i = 0) {
  return S.page.evaluate(({ id, i }) => {
    const app = window.comfyAPI?.app?.app ?? window.app;
    const ed = app.graph.getNodeById(id).ifaEditor;
    return { frame: ed.timeline.frame, box: ed.layout.instances[i].regions[0]?.box ?? null, label: ed.timeline.frameLabel.textContent };
  }, { id: S.nodeId, i });
}

const bar = () => S.page.locator(`${S.ed} .ifa-timeline`);
const act = (name) => S.page.locator(`${S.ed} [data-action="${name}"]`).first();
const layout = async () => JSON.parse(await layoutValue());
const keyFrames = (L, i = 0) => (L.instances[i].keyframes || []).map((k) => k.frame);

/** Step the slider with the keyboard to frame f (focus it, Home, then ArrowRight f times). */
async function gotoFrame(f) {
  const slider = act("frame");
  await slider.focus();
  await S.page.keyboard.press("Home");
  for (let k = 0; k < f; k++) await S.page.keyboard.press("ArrowRight");
  assert.equal((await shown()).frame, f, `the slider shows frame ${f}`);
}

export async function timelineFlow(t) {
  const page = S.page;
  await openApp();
  await newLayoutGraph(W, H);

  await t.test("a static layout shows no timeline and stays version 1", async () => {
    await tool("box");
    await drag([0.1, 0.1], [0.3, 0.4]);
    const ta = page.locator(`${S.ed} .ifa-layer[data-index="0"] textarea`);
    await ta.click();
    await ta.pressSequentially("a red car driving", { delay: 5 });
    assert.equal(await bar().isVisible(), false, "the timeline bar is hidden for one frame");
    assert.equal(await act("frames").inputValue(), "1");
    const L = await layout();
    assert.equal(L.version, 1);
    assert.equal("frames" in L, false);
  });

  await t.test("raising the frame count shows the timeline and writes version 2", async () => {
    await act("frames").fill("16");
    await act("frames").press("Enter");
    await bar().waitFor({ state: "visible" });
    const L = await layout();
    assert.equal(L.version, 2);
    assert.equal(L.frames, 16);
    assert.equal((await shown()).label, "frame 0 / 15");
  });

  let box0;
  let box10;
  await t.test("key the box at frame 0 and, moved, at frame 10 (auto-key)", async () => {
    await tool("select");
    await click(0.2, 0.25);
    await act("key").click();
    let L = await layout();
    assert.deepEqual(keyFrames(L), [0]);
    box0 = L.instances[0].keyframes[0].regions[0].box;
    await gotoFrame(10);
    await drag([0.2, 0.25], [0.7, 0.55]); // +0.5 W, +0.3 H
    L = await layout();
    assert.deepEqual(keyFrames(L), [0, 10], "auto-key added a keyframe at frame 10");
    box10 = L.instances[0].keyframes[1].regions[0].box;
    close(box10[0] - box0[0], 0.5 * W, W * 0.01, "keyframe 10 moved right");
    close(box10[1] - box0[1], 0.3 * H, H * 0.01, "keyframe 10 moved down");
    assert.deepEqual(L.instances[0].regions[0].box, box0, "the plain regions keep the first shape");
  });

  await t.test("scrubbing shows the interpolated box on every frame", async () => {
    const slider = act("frame");
    await slider.focus();
    await page.keyboard.press("Home");
    for (let f = 0; f < 16; f++) {
      if (f) await page.keyboard.press("ArrowRight");
      const s = await shown();
      assert.equal(s.frame, f);
      assert.equal(s.label, `frame ${f} / 15`);
      const t = Math.min(f, 10) / 10;
      s.box.forEach((v, k) => close(v, box0[k] + (box10[k] - box0[k]) * t, 1e-6, `frame ${f} box[${k}]`));
    }
    // Scrub with the mouse too: dragging the thumb across changes the frame.
    const sb = await slider.boundingBox();
    await page.mouse.move(sb.x + sb.width - 4, sb.y + sb.height / 2);
    await page.mouse.down();
    await page.mouse.move(sb.x + sb.width * 0.5, sb.y + sb.height / 2, { steps: 5 });
    const mid = (await shown()).frame;
    await page.mouse.move(sb.x + 2, sb.y + sb.height / 2, { steps: 5 });
    await page.mouse.up();
    assert.ok(mid > 3 && mid < 12, `dragging to the middle shows a middle frame (${mid})`);
    assert.equal((await shown()).frame, 0, "dragging to the start shows frame 0");
  });

  await t.test("the canvas draws the box where frame 5 puts it, with the onion-skin of both keyframes", async () => {
    await gotoFrame(5);
    const s = await shown();
    const cx = (s.box[0] + s.box[2]) / 2 / W;
    const cy = (s.box[1] + s.box[3]) / 2 / H;
    const c0 = [(box0[0] + box0[2]) / 2 / W, (box0[1] + box0[3]) / 2 / H];
    // Sample beside the centre (the motion path runs through the centres).
    const inside = await canvasPixel(cx + 0.02, cy - 0.05);
    const oldPlace = await canvasPixel(c0[0] + 0.02, c0[1] - 0.05);
    assert.ok(inside[0] - oldPlace[0] > 20, `the box is drawn at its frame-5 place (red ${inside[0]} vs ${oldPlace[0]} where frame 0 had it)`);
    assert.ok(oldPlace[0] > 27 + 2, `the onion-skin shows keyframe 0 faintly (red ${oldPlace[0]} over the background's 27)`);
    await page.screenshot({ path: artifact("timeline.png"), clip: await page.locator(S.ed).first().boundingBox() });
  });

  await t.test("with auto-key off a shape edit between keyframes is refused with a hint", async () => {
    const before = await layoutValue();
    await act("autoKey").uncheck();
    const s = await shown();
    await drag([(s.box[0] + 20) / W, (s.box[1] + 20) / H], [(s.box[0] + 20) / W + 0.05, (s.box[1] + 20) / H]);
    assert.equal(await layoutValue(), before, "the layout is unchanged");
    assert.match(await page.locator(`${S.ed} .ifa-tl-hint`).textContent(), /instance 1 has keyframes but none at frame 5/);
    close((await shown()).box[0], s.box[0], 1e-6, "the box is drawn where it was");
    await act("autoKey").check();
  });

  await t.test("copy a keyframe to another frame, remove one; undo and redo cover both", async () => {
    await act("copy-target").fill("15");
    await act("copy-key").click();
    let L = await layout();
    assert.deepEqual(keyFrames(L), [0, 10, 15]);
    const mid = box0.map((v, k) => Math.round((v + (box10[k] - v) * 0.5) * 100) / 100);
    assert.deepEqual(L.instances[0].keyframes[2].regions[0].box, mid, "frame 15 holds the frame-5 shape");
    const copied = await layoutValue();
    await gotoFrame(15);
    await page.locator(`${S.ed} canvas`).first().click({ position: { x: 2, y: 2 } }); // keyboard focus to the editor
    await tool("select");
    await click(((mid[0] + mid[2]) / 2) / W, ((mid[1] + mid[3]) / 2) / H);
    await page.keyboard.press("k");
    L = await layout();
    assert.deepEqual(keyFrames(L), [0, 10], "K removed the keyframe at frame 15");
    const removed = await layoutValue();
    await page.keyboard.press("Control+z");
    assert.equal(await layoutValue(), copied, "undo brings the keyframe back");
    await page.keyboard.press("Control+z");
    assert.deepEqual(keyFrames(await layout()), [0, 10], "undo removes the copied keyframe");
    await page.keyboard.press("Control+Shift+z");
    await page.keyboard.press("Control+Shift+z");
    assert.equal(await layoutValue(), removed, "redo restores the exact text");
    await page.keyboard.press("Control+z");
    assert.equal(await layoutValue(), copied);
    // Ctrl+D duplicates the animated instance: every keyframe of the copy is offset, not only this frame's.
    await page.keyboard.press("Control+d");
    L = await layout();
    assert.equal(L.instances.length, 2);
    L.instances[0].keyframes.forEach((k, n) => assert.deepEqual(L.instances[1].keyframes[n].regions[0].box, k.regions[0].box.map((v) => v + 16), `copy of keyframe ${k.frame}`));
    await page.keyboard.press("Control+z");
    assert.equal(await layoutValue(), copied);
    // with the frame slider focused, Ctrl+Z / Ctrl+Shift+Z still reach the editor's history
    await gotoFrame(3);
    await page.keyboard.press("Control+Shift+z");
    assert.equal((await layout()).instances.length, 2, "redo with the slider focused");
    await page.keyboard.press("Control+z");
    assert.equal(await layoutValue(), copied, "undo with the slider focused");
  });

  let saved;
  await t.test("reloading the page keeps the keyframes", async () => {
    saved = await layoutValue();
    await page.waitForFunction((escaped) => {
      const all = [localStorage, sessionStorage].flatMap((st) => Object.keys(st).map((k) => st.getItem(k))).join("");
      return all.includes(escaped);
    }, JSON.stringify(saved).slice(1, -1), { timeout: 8000 }).catch(() => page.waitForTimeout(2000));
    await openApp({ reload: true });
    await page.waitForFunction(() => document.querySelectorAll(".ifa-editor .ifa-layer").length === 1, null, { timeout: 30000 });
    assert.equal(await layoutValue(), saved);
    const L = JSON.parse(saved);
    assert.equal(L.version, 2);
    assert.deepEqual(keyFrames(L), [0, 10, 15]);
    await bar().waitFor({ state: "visible" });
    await gotoFrame(5);
    close((await shown()).box[0], box0[0] + (box10[0] - box0[0]) * 0.5, 1e-6, "frame 5 after the reload");
  });

  await t.test("queueing sends the version-2 layout, and the backend accepts it", async (tt) => {
    const entry = await queueAndWait(S.nodeId, { allowError: true });
    const received = entry.prompt[2][String(S.nodeId)].inputs.layout;
    assert.equal(received, saved, "the backend received the editor's layout verbatim");
    assert.equal(JSON.parse(received).version, 2);
    // A backend built before layouts over time (core/layout/timeline.py) refuses version 2 by name; any other
    // outcome than success is a failure.
    const error = (entry.status.messages || []).find((m) => m[0] === "execution_error")?.[1]?.exception_message || "";
    if (entry.status.status_str !== "success" && /layout 'version' is 2; this build reads version 1\b/.test(error)) {
      tt.skip(`this backend predates version-2 layouts: ${error}`);
      return;
    }
    assert.equal(entry.status.status_str, "success", `execution failed: ${JSON.stringify(entry.status.messages).slice(0, 2000)}`);
  });

  assert.deepEqual(S.browser.errors, [], "no page errors from the editor");
}
