// "The shipped workflows appear in the template browser with their titles and thumbnails, and load."
// ComfyUI (v0.3.31+) lists workflows/<name>.json of the pack at /workflow_templates; the frontend shows
// <name> as the card title and /api/workflow_templates/<pack>/<name>.jpg as its thumbnail (docs/workflows.md).
// The 2024 build has no template endpoint and its legacy frontend no template browser: skipped there.

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { REPO } from "./harness.mjs";
import { S, artifact, inApp, openApp } from "./session.mjs";

const PACK = process.env.IFA_PACK_DIRNAME || "comfyui-ifadapter"; // the folder name tests/comfy_env.py installs the pack under
const WORKFLOWS = path.join(REPO, "workflows");

export async function templatesFlow(t) {
  const { page } = S;
  const res = await fetch(`${S.server.url}/workflow_templates`);
  if (res.status === 404) {
    t.skip("this ComfyUI has no /workflow_templates (the 2024 build); tests/integration/test_templates.py checks the files");
    return;
  }
  const stems = readdirSync(WORKFLOWS).filter((f) => f.endsWith(".json")).map((f) => f.slice(0, -5)).sort();
  const listed = (await res.json())[PACK] ?? [];
  assert.deepEqual([...listed].sort(), stems, "the server lists every shipped workflow");

  await openApp();
  await inApp((app) => app.extensionManager.command.execute("Comfy.BrowseTemplates"));
  // The pack's entry in the template dialog (Vue nodes of the restored workflow show the pack name in their badges).
  await page.locator('[role="dialog"]').getByText(PACK, { exact: true }).first().click({ timeout: 30000 });
  for (const stem of stems) {
    const card = page.locator(`[data-testid="template-workflow-${stem}"]`);
    await card.waitFor({ state: "visible", timeout: 30000 });
    assert.equal((await card.locator("h3").textContent()).trim(), stem, "the card's title is the workflow's title");
    await card.scrollIntoViewIfNeeded(); // thumbnails load lazily, when their card is in view
    const img = card.locator("img").first();
    await page.waitForFunction((el) => el.complete && el.naturalWidth > 0, await img.elementHandle(), { timeout: 30000 });
    const size = await img.evaluate((el) => [el.naturalWidth, el.naturalHeight]);
    assert.deepEqual(size, [512, 512], `the thumbnail of ${stem} is shown (not a 404)`);
  }
  // The screenshot (docs/images/template_browser.png) shows every card: the page grows until the last card is in view.
  const viewport = page.viewportSize();
  await page.locator('[data-testid^="template-workflow-"]').first().scrollIntoViewIfNeeded();
  for (let tries = 0; tries < 6; tries++) {
    const hidden = [];
    for (const stem of stems) {
      const box = await page.locator(`[data-testid="template-workflow-${stem}"]`).boundingBox();
      if (!box || box.y < 0 || box.y + box.height > page.viewportSize().height) hidden.push(stem);
    }
    if (!hidden.length) break;
    await page.setViewportSize({ width: viewport.width, height: page.viewportSize().height + 260 });
    await page.locator('[data-testid^="template-workflow-"]').first().scrollIntoViewIfNeeded();
  }
  await page.mouse.move(5, 5); // no card hovered (zoomed) in the screenshot
  await page.waitForTimeout(500); // card hover/fade transitions
  for (const stem of stems) {
    const box = await page.locator(`[data-testid="template-workflow-${stem}"]`).boundingBox();
    assert.ok(box && box.y >= 0 && box.y + box.height <= page.viewportSize().height, `the card of ${stem} is in the screenshot`);
  }
  await page.screenshot({ path: artifact("templates.png") });
  await page.locator('[role="dialog"]').first().screenshot({ path: artifact("templates-dialog.png") }); // the docs' picture
  await page.setViewportSize(viewport);

  // Opening a card loads that workflow: its Instance Layout node carries the file's layout.
  const stem = stems.find((s) => s.startsWith("Instance layout")) ?? stems[0];
  const file = JSON.parse(readFileSync(path.join(WORKFLOWS, `${stem}.json`), "utf8"));
  const want = file.nodes.find((n) => n.type === "IFAInstanceLayout").widgets_values.find((v) => typeof v === "string" && v.includes("instance-layout"));
  await page.locator(`[data-testid="template-workflow-${stem}"]`).click();
  await page.waitForFunction((n) => (window.comfyAPI?.app?.app ?? window.app).graph._nodes.length === n, file.nodes.length, { timeout: 30000 });
  const got = await inApp((app) => {
    const node = app.graph._nodes.find((n) => n.type === "IFAInstanceLayout");
    return node?.widgets.find((w) => w.name === "layout").value;
  });
  assert.deepEqual(JSON.parse(got).instances, JSON.parse(want).instances, "the template loads with its layout");
}
