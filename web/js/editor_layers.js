// The layer list beside the canvas: one row per instance, top of the stack first, with colour
// swatch, number, inline description, z-order, enable, lock, hide and delete.  It only builds DOM
// and reports intents to the editor through `actions`; nothing runs at import time.

import { displayColor, drawOrder } from "./layout_model.js";

function button(doc, text, title, onClick, on = false) {
  const b = doc.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.title = title;
  if (on) b.classList.add("ifa-on");
  b.addEventListener("click", (e) => {
    e.stopPropagation();
    onClick(e);
  });
  return b;
}

/**
 * Rebuild the list in `container` for `layout`.
 * actions: {select(i, additive), describe(i, text), toggle(i, field), reorder(i, op), remove(i), recolor(i, hex)}
 */
export function renderLayers(container, layout, selection, actions) {
  const doc = container.ownerDocument;
  const sel = new Set(selection);
  container.textContent = "";
  const order = drawOrder(layout).reverse();
  if (!order.length) {
    const empty = doc.createElement("div");
    empty.className = "ifa-status";
    empty.textContent = "No instances yet: draw on the canvas.";
    container.appendChild(empty);
  }
  for (const i of order) {
    const inst = layout.instances[i];
    const row = doc.createElement("div");
    row.className = "ifa-layer";
    row.dataset.index = String(i);
    if (sel.has(i)) row.classList.add("ifa-selected");
    if (inst.hidden) row.classList.add("ifa-hidden");
    row.addEventListener("mousedown", (e) => {
      if (e.target.tagName !== "TEXTAREA" && e.target.tagName !== "BUTTON" && e.target.tagName !== "INPUT") actions.select(i, e.shiftKey || e.ctrlKey || e.metaKey);
    });

    const swatch = doc.createElement("input");
    swatch.type = "color";
    swatch.className = "ifa-swatch";
    swatch.value = displayColor(inst, i);
    swatch.title = "Instance colour";
    swatch.addEventListener("change", () => actions.recolor(i, swatch.value));
    const num = doc.createElement("span");
    num.className = "ifa-num";
    num.textContent = String(i + 1);
    num.title = `instance ${i + 1}, z ${inst.z ?? i}`;
    const btns = doc.createElement("div");
    btns.className = "ifa-layer-btns";
    btns.append(
      button(doc, "▲", "Bring forward (z-order)", () => actions.reorder(i, "up")),
      button(doc, "▼", "Send backward (z-order)", () => actions.reorder(i, "down")),
      button(doc, inst.enabled === false ? "off" : "on", "Use this instance for generation", () => actions.toggle(i, "enabled"), inst.enabled === false),
      button(doc, inst.locked ? "locked" : "lock", "Lock (no canvas edits)", () => actions.toggle(i, "locked"), !!inst.locked),
      button(doc, inst.hidden ? "hidden" : "hide", "Hide in the editor", () => actions.toggle(i, "hidden"), !!inst.hidden),
      button(doc, "×", "Delete instance", () => actions.remove(i)),
    );
    const text = doc.createElement("textarea");
    text.value = inst.description || "";
    text.placeholder = `describe instance ${i + 1}…`;
    text.rows = 2;
    text.addEventListener("input", () => actions.describe(i, text.value));
    text.addEventListener("focus", () => actions.select(i, false, true));
    row.append(swatch, num, btns, text);
    container.appendChild(row);
  }
}
