import { launchBrowser, startComfy } from "./harness.mjs";
import { S, openApp, inApp } from "./session.mjs";
S.server = await startComfy({ frontEndRoot: process.env.ROOT });
S.config = { label: "x", vue: true };
S.browser = await launchBrowser(); S.page = S.browser.page;
await openApp();
for (let k = 0; k < 3; k++) {
  const id = await inApp((app, LiteGraph, k) => { if (k !== 1) app.graph.clear(); const n = LiteGraph.createNode("IFAInstanceLayout"); n.pos = [60 + 300 * k, 40]; app.graph.add(n); app.canvas.setDirty(true, true); return n.id; }, k);
  await S.page.waitForTimeout(2500);
  const info = await S.page.evaluate((id) => {
    const vn = document.querySelector(`.lg-node[data-node-id="${id}"]`) || document.querySelector(`[data-node-id="${id}"]`);
    const w = vn?.querySelector(".lg-node-widgets");
    return { id, vn: vn?.className?.slice(0, 60), eds: [...document.querySelectorAll(".ifa-editor")].map((e) => e.dataset.nodeId + ":" + e.isConnected), widgetsHtml: w ? [...w.children].map((c) => c.className.slice(0, 50) + " > " + [...c.querySelectorAll("*")].slice(0, 4).map((x) => x.tagName + "." + String(x.className).slice(0, 30)).join(" | ")) : null };
  }, id);
  console.log(JSON.stringify(info, null, 1));
}
await S.browser.close(); await S.server.stop();
