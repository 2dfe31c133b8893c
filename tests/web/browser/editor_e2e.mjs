// Browser tests of the layout editor: a real ComfyUI server running the pack (tests/comfy_env.py),
// Debian's Chromium driven headless by playwright-core.  Screenshots go to test-artifacts/web/
// (git-ignored), one folder per configuration.
//
// Configurations (see docs/editor.md):
//   FRONT_END_ROOT  comma-separated list of frontend static builds (--front-end-root, newer ComfyUI only);
//                   unset or an empty entry = the frontend the server ships (the 2024 legacy one by default)
//   VUE_NODES       0 (default) | 1 | both: run with the modern frontend's Vue node mode
//                   ("Nodes 2.0", setting Comfy.VueNodes.Enabled) off, on, or once each
// One server runs per frontend build; each mode gets a fresh browser profile.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { frontendConfigs, launchBrowser, startComfy } from "./harness.mjs";
import { S, frontendInfo, openApp } from "./session.mjs";
import { editorFlow } from "./editor_flow.mjs";
import { underlayFlow } from "./underlay_flow.mjs";
import { compatFlow, nodeCopyFlow } from "./compat_flow.mjs";
import { timelineFlow } from "./timeline_flow.mjs";
import { templatesFlow } from "./templates_flow.mjs";
import { accessibilityFlow, brushFlow, deprecationFlow, dialogFlow, packLoadFlow, sizeFlow } from "./usability_flow.mjs";

// BROWSER_FLOWS: comma-separated groups to run (default all): "editor" (the flows every configuration
// needs: drawing, underlay, older workflows, node copy, timeline, templates), "usability" (issue 10's
// checks) and "dialog" (only the dialog: for Vue renderers that cannot show the editor in the node).
const FLOWS = new Set((process.env.BROWSER_FLOWS || "editor,usability,dialog").split(",").map((s) => s.trim()));
const when = (group, name, fn) => (FLOWS.has(group) ? test(name, fn) : null);

for (const fe of frontendConfigs()) {
  describe(`frontend ${fe.label}`, () => {
    before(async () => {
      S.server = await startComfy({ frontEndRoot: fe.frontEndRoot });
    });
    after(async () => {
      await S.server?.stop();
      S.server = null;
    });

    for (const vue of fe.vueModes) {
      describe(vue ? "Vue node mode" : "canvas node mode", () => {
        before(async () => {
          S.config = { label: `${fe.label}${vue ? "-vue" : ""}`, frontEndRoot: fe.frontEndRoot, vue };
          S.browser = await launchBrowser();
          S.page = S.browser.page;
        });
        after(async () => {
          await S.browser?.close();
          S.browser = null;
        });

        test("the frontend loads with the pack", async (t) => {
          await openApp();
          const info = await frontendInfo();
          t.diagnostic(`ComfyUI ${S.server.version}, frontend ${info.version}, vueNodesMode=${info.vueNodesMode}`);
          assert.equal(info.vueNodesMode, vue);
        });
        test("the pack's scripts load once and the extension registers once, under any folder name", packLoadFlow);
        when("editor", "draw, describe, undo/redo, reload, export and queue a layout", editorFlow);
        when("editor", "underlay: upstream image, last output, uploaded file; no base64 in the workflow", underlayFlow);
        when("editor", "older workflows load without losing an instance", compatFlow);
        when("editor", "copying and pasting the whole node keeps the layout", nodeCopyFlow);
        when("editor", "timeline: frame count, keyframes, scrubbing, reload and queue (version 2)", timelineFlow);
        when("editor", "the shipped workflows are templates with titles and thumbnails, and load", templatesFlow);
        if (FLOWS.has("dialog") || FLOWS.has("usability")) test("the open-layout-editor button opens the editor in a dialog", dialogFlow);
        when("usability", "a brush stroke after a polygon starts a new instance; add to selected adds", brushFlow);
        when("usability", "a comfortable canvas that stays put and grows with the node; shipped workflows too", sizeFlow);
        when("usability", "text >= 12 px, targets >= 24 px, handles grabbable, shortcuts in tooltips", accessibilityFlow);
        when("usability", "no deprecated LiteGraph API (input.link, output.links)", deprecationFlow);
        test("no page errors from the editor", () => {
          assert.deepEqual(S.browser.errors, []);
        });
      });
    }
  });
}
