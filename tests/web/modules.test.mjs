// Every *.js under web/ is imported by the ComfyUI frontend, so each module other than the
// extension entry must load without a browser and without side effects; and the entry must only
// reach ComfyUI through the relative /scripts routes that both frontends serve.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const WEB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../web/js");
const ENTRY = "ifadapter_layout_editor.js";
const files = readdirSync(WEB).filter((f) => f.endsWith(".js"));

test("pure and view modules import in Node without touching globals", async () => {
  const before = new Set(Object.keys(globalThis));
  for (const f of files.filter((f) => f !== ENTRY)) await import(path.join(WEB, f));
  assert.deepEqual(Object.keys(globalThis).filter((k) => !before.has(k)), []);
  assert.ok(files.length >= 8);
});

test("imports are relative with .js extensions; only the entry imports ComfyUI", () => {
  for (const f of files) {
    const src = readFileSync(path.join(WEB, f), "utf8");
    const specs = [...src.matchAll(/^\s*import\s[^;]*?from\s+"([^"]+)"/gm)].map((m) => m[1]);
    for (const s of specs) {
      assert.match(s, /^\.\.?\/.*\.js$/, `${f}: import "${s}" must be relative and end in .js`);
      if (s.includes("scripts/")) {
        assert.equal(f, ENTRY, `${f} must not import ComfyUI (${s})`);
        // web/js/<file> is served at /extensions/<pack>/js/<file>: three levels up is the site root.
        assert.match(s, /^\.\.\/\.\.\/\.\.\/scripts\/(app|api)\.js$/, `${f}: ${s}`);
      }
    }
  }
});
