// Browser test of the evaluation report page (python -m evaluate report): a real scored run folder built by
// eval_report_fixture.py (real run folder, scoring and report code; a colour detector on drawn images, so the
// failures are known), opened from disk in Debian's Chromium. The page must load with no network request, show
// every image with its layout and detections drawn over it, and sort by failures and back.
//
// Run: cd tests/web && node --test browser/eval_report.mjs   (needs no ComfyUI server)

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { REPO, artifact, launchBrowser } from "./harness.mjs";

const PYTHON = process.env.PYTHON || (existsSync(path.join(REPO, ".venv/bin/python")) ? path.join(REPO, ".venv/bin/python") : "python3");
let work, page, browser, requests;

before(async () => {
  work = mkdtempSync(path.join(tmpdir(), "ifa-eval-report-"));
  const html = execFileSync(PYTHON, [path.join(REPO, "tests/web/browser/eval_report_fixture.py"), path.join(work, "run")],
    { cwd: REPO, encoding: "utf8" }).trim().split("\n").pop();
  browser = await launchBrowser();
  page = browser.page;
  requests = [];
  page.on("request", (r) => requests.push(r.url()));
  await page.goto(pathToFileURL(html).href);
});

after(async () => {
  await browser?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

const order = () => page.$$eval("#cards .card", (cs) => cs.map((c) => c.dataset.id));

test("every image loads with its layout and detections drawn over it, and nothing is fetched", async () => {
  assert.deepEqual(await order(), ["item-1", "item-2", "item-3", "item-4"]);
  const cards = await page.$$eval("#cards .card", (cs) => cs.map((c) => ({
    loaded: c.querySelector("img").complete && c.querySelector("img").naturalWidth === 128,
    pass: c.querySelectorAll("rect.inst.pass").length,
    fail: c.querySelectorAll("rect.inst.fail").length,
    dets: c.querySelectorAll("rect.det").length,
    title: c.querySelector("h3").textContent,
  })));
  assert.deepEqual(cards.map((c) => [c.loaded, c.pass, c.fail, c.dets]),
    [[true, 3, 0, 3], [true, 0, 3, 0], [true, 2, 1, 2], [true, 1, 2, 1]]);
  assert.equal(cards[1].title, "item 2 · item-2 · 3/3 failed");
  // the SVG overlay covers the image exactly
  const [img, svg] = await page.$$eval("#cards .card:first-child .frame > *", (els) => els.map((e) => {
    const r = e.getBoundingClientRect();
    return [r.x, r.y, r.width, r.height];
  }));
  assert.deepEqual(svg, img);
  const metrics = await page.$$eval("table.metrics tr td:first-child", (tds) => tds.map((t) => t.textContent));
  assert.ok(metrics.includes("box AP") && metrics.includes("localised (IoU >= 0.5)"), metrics.join(", "));
  const external = requests.filter((u) => !u.startsWith("file:") && !u.startsWith("data:"));
  assert.deepEqual(external, []);
  // benchmark text is escaped, not markup
  assert.equal(await page.$$eval("b", (bs) => bs.length), 0);
});

test("the cards sort by failures, by failure share, and back to benchmark order", async () => {
  await page.click("button[data-sort=failed]");
  assert.deepEqual(await order(), ["item-2", "item-4", "item-3", "item-1"]);
  const failed = await page.$$eval("#cards .card", (cs) => cs.map((c) => Number(c.dataset.failed)));
  assert.deepEqual(failed, [3, 2, 1, 0]);
  await page.screenshot({ path: artifact("eval_report_sorted.png"), fullPage: true });
  await page.click("button[data-sort=order]");
  assert.deepEqual(await order(), ["item-1", "item-2", "item-3", "item-4"]);
  await page.click("button[data-sort=share]");
  assert.deepEqual(await order(), ["item-2", "item-4", "item-3", "item-1"]);
  assert.equal(await page.evaluate(() => document.body.dataset.sorted), "share");
});
