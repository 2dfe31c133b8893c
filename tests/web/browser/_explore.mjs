import { launchBrowser, startComfy } from "./harness.mjs";
import { S, openApp, newLayoutGraph, inApp } from "./session.mjs";
const roots = (process.env.ROOTS || "").split(",");
for (const root of roots) {
  S.server = await startComfy({ frontEndRoot: root });
  for (const vue of (process.env.MODES || "1").split(",").map((x) => x === "1")) {
    S.config = { label: "x", vue };
    S.browser = await launchBrowser(); S.page = S.browser.page;
    S.page.on("console", (m) => { if (/ifadapter|deprecat/i.test(m.text())) console.log("CONSOLE", m.type(), m.text().slice(0, 300)); });
    try {
      await openApp();
      const id = await inApp((app, LiteGraph) => { app.graph.clear(); const n = LiteGraph.createNode("IFAInstanceLayout"); n.pos = [60, 40]; app.graph.add(n); app.canvas.setDirty(true, true); return n.id; });
      for (let k = 0; k < 6; k++) {
        await S.page.waitForTimeout(1000);
        const info = await S.page.evaluate((id) => {
          const app = window.comfyAPI?.app?.app ?? window.app;
          const ed = document.querySelector(".ifa-editor");
          const c = ed?.querySelector("canvas");
          const r = ed?.getBoundingClientRect(); const cr = c?.getBoundingClientRect();
          const node = app.graph.getNodeById(id);
          return { ver: window.__COMFYUI_FRONTEND_VERSION__, vue: window.LiteGraph.vueNodesMode, ed: !!ed, connected: ed?.isConnected, parent: ed?.parentElement?.parentElement?.className?.slice?.(0, 80),
            edR: r && [r.width, r.height].map(Math.round), canvas: cr && [cr.width, cr.height].map(Math.round), size: node.size, widgets: node.widgets.map((w) => w.name + ":" + w.type) };
        }, id);
        console.log(root.slice(-40), vue, JSON.stringify(info));
      }
      await S.page.screenshot({ path: `/tmp/webx/${(root.match(/\d+\.\d+\.\d+/g) || ["def"]).pop()}-${vue ? "vue" : "canvas"}.png` });
    } catch (e) { console.log("ERR", e.message.slice(0, 400)); }
    await S.browser.close();
  }
  await S.server.stop();
}
