// Drawing of the layout editor onto a 2D canvas context: underlay, instances (every region kind),
// selection frame with its eight handles, the in-progress shape, the snapping grid and the
// latent-cell overlay.  Functions only; nothing runs at import time.
//
// All functions take `view` = {scale, W, H}: layout pixels are multiplied by `scale` to get canvas
// pixels (the canvas backing store, device-pixel-ratio included).

import { handlePositions, handleSize, latentGrid, normRect } from "./geometry.js";
import { displayColor, drawOrder, instanceExtent, isEditableRegion, regionMask } from "./layout_model.js";
import { instanceCells } from "./cells.js";

const maskBitmaps = new WeakMap();

/** "#rrggbb" + alpha (0..1) as an rgba() string; unknown colours fall back to grey. */
export function rgba(hex, a) {
  const m = /^#?([0-9a-f]{6})$/i.exec(hex || "");
  const n = m ? parseInt(m[1], 16) : 0x888888;
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${a})`;
}

/** Paint the set cells of `mask` ({w, h, data}) in opaque `color` ("#rrggbb") into `canvas` (mask-sized). */
export function paintMaskInto(canvas, mask, color) {
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(mask.w, mask.h);
  const m = /^#?([0-9a-f]{6})$/i.exec(color || "");
  const n = m ? parseInt(m[1], 16) : 0x888888;
  for (let i = 0; i < mask.data.length; i++) {
    if (!mask.data[i]) continue;
    img.data[i * 4] = (n >> 16) & 255;
    img.data[i * 4 + 1] = (n >> 8) & 255;
    img.data[i * 4 + 2] = n & 255;
    img.data[i * 4 + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

/** An offscreen canvas of the mask painted in `color` (cached per decoded mask object and colour). */
function maskBitmap(mask, color) {
  let byColor = maskBitmaps.get(mask);
  if (!byColor) maskBitmaps.set(mask, (byColor = new Map()));
  let c = byColor.get(color);
  if (c) return c;
  c = document.createElement("canvas");
  c.width = mask.w;
  c.height = mask.h;
  paintMaskInto(c, mask, color);
  byColor.set(color, c);
  return c;
}

/** Fill the background and draw the underlay image (if loaded) with the given opacity. */
export function drawBackground(ctx, view, underlay, opacity) {
  const cw = view.W * view.scale;
  const ch = view.H * view.scale;
  ctx.fillStyle = "#1b1b1f";
  ctx.fillRect(0, 0, cw, ch);
  if (underlay && underlay.complete && underlay.naturalWidth > 0) {
    ctx.globalAlpha = opacity;
    ctx.drawImage(underlay, 0, 0, cw, ch);
    ctx.globalAlpha = 1;
  }
}

/** Draw the snapping grid every `grid` layout pixels (skipped when the lines would be too dense). */
export function drawGrid(ctx, view, grid) {
  if (!grid || grid * view.scale < 4) return;
  ctx.strokeStyle = "rgba(255,255,255,0.08)";
  ctx.lineWidth = 1;
  ctx.beginPath();
  for (let x = grid; x < view.W; x += grid) {
    const px = Math.round(x * view.scale) + 0.5;
    ctx.moveTo(px, 0);
    ctx.lineTo(px, view.H * view.scale);
  }
  for (let y = grid; y < view.H; y += grid) {
    const py = Math.round(y * view.scale) + 0.5;
    ctx.moveTo(0, py);
    ctx.lineTo(view.W * view.scale, py);
  }
  ctx.stroke();
}

function tracePolygon(ctx, pts, s, close) {
  ctx.beginPath();
  pts.forEach((p, k) => (k ? ctx.lineTo(p[0] * s, p[1] * s) : ctx.moveTo(p[0] * s, p[1] * s)));
  if (close) ctx.closePath();
}

/** Draw one region of an instance in its colour; `dim` for disabled instances. */
export function drawRegion(ctx, view, r, color, opts = {}) {
  if (!isEditableRegion(r)) return;
  const s = view.scale;
  const fillA = opts.dim ? 0.08 : 0.22;
  const lineA = opts.dim ? 0.45 : 0.95;
  ctx.lineWidth = opts.selected ? 2.5 : 1.5;
  ctx.setLineDash(opts.dim ? [4, 4] : []);
  switch (r.kind) {
    case "box": {
      const b = normRect(r.box);
      ctx.fillStyle = rgba(color, fillA);
      ctx.strokeStyle = rgba(color, lineA);
      ctx.fillRect(b[0] * s, b[1] * s, (b[2] - b[0]) * s, (b[3] - b[1]) * s);
      ctx.strokeRect(b[0] * s, b[1] * s, (b[2] - b[0]) * s, (b[3] - b[1]) * s);
      break;
    }
    case "polygon":
      tracePolygon(ctx, r.points, s, true);
      ctx.fillStyle = rgba(color, fillA);
      ctx.strokeStyle = rgba(color, lineA);
      ctx.fill();
      ctx.stroke();
      if (opts.selected) {
        ctx.fillStyle = "#fff";
        for (const p of r.points) ctx.fillRect(p[0] * s - 2.5, p[1] * s - 2.5, 5, 5);
      }
      break;
    case "scribble":
      tracePolygon(ctx, r.points, s, false);
      ctx.strokeStyle = rgba(color, lineA);
      ctx.lineWidth = Math.max(1.5, (r.width ?? 4) * s);
      ctx.lineCap = "round";
      ctx.lineJoin = "round";
      ctx.stroke();
      break;
    case "point": {
      const rad = Math.max(6, (r.width ?? 4) * s);
      ctx.beginPath();
      ctx.arc(r.point[0] * s, r.point[1] * s, rad, 0, Math.PI * 2);
      ctx.fillStyle = rgba(color, lineA);
      ctx.fill();
      ctx.strokeStyle = "#fff";
      ctx.lineWidth = 1.5;
      ctx.stroke();
      break;
    }
    case "mask": {
      const m = regionMask(r);
      if (!m) break;
      ctx.globalAlpha = opts.dim ? 0.2 : 0.45;
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(maskBitmap(m, color), 0, 0, view.W * s, view.H * s);
      ctx.imageSmoothingEnabled = true;
      ctx.globalAlpha = 1;
      break;
    }
  }
  ctx.setLineDash([]);
}

/** Numbered tag (1-based list index) and short description at the top-left of an instance. */
function drawTag(ctx, view, inst, index) {
  const e = instanceExtent(inst, view.W, view.H);
  if (!e) return;
  const s = view.scale;
  const label = `${index + 1}${inst.description ? " " + inst.description : ""}`;
  ctx.font = "12px sans-serif";
  const text = label.length > 28 ? label.slice(0, 27) + "…" : label;
  const w = ctx.measureText(text).width + 8;
  const x = Math.max(0, Math.min(e[0] * s, view.W * s - w));
  const y = Math.max(0, e[1] * s - 16 < 0 ? e[1] * s : e[1] * s - 16);
  ctx.fillStyle = rgba(displayColor(inst, index), 0.9);
  ctx.fillRect(x, y, w, 16);
  ctx.fillStyle = "#000";
  ctx.fillText(text, x + 4, y + 12);
}

/** Draw every visible instance bottom-to-top, then tags on top. */
export function drawInstances(ctx, view, layout, selection) {
  const sel = new Set(selection);
  const order = drawOrder(layout);
  for (const i of order) {
    const inst = layout.instances[i];
    if (inst.hidden) continue;
    for (const r of inst.regions || []) drawRegion(ctx, view, r, displayColor(inst, i), { dim: inst.enabled === false, selected: sel.has(i) });
  }
  for (const i of order) if (!layout.instances[i].hidden) drawTag(ctx, view, layout.instances[i], i);
}

/** Selection frame around `rect` (layout pixels) with its eight handles. */
export function drawSelection(ctx, view, rect, withHandles, handleBase) {
  if (!rect) return;
  const s = view.scale;
  const r = normRect(rect).map((v) => v * s);
  ctx.strokeStyle = "#fff";
  ctx.lineWidth = 1;
  ctx.setLineDash([5, 3]);
  ctx.strokeRect(r[0] - 0.5, r[1] - 0.5, r[2] - r[0] + 1, r[3] - r[1] + 1);
  ctx.setLineDash([]);
  if (!withHandles) return;
  const hs = handleSize(r, handleBase);
  for (const [x, y] of Object.values(handlePositions(r))) {
    ctx.fillStyle = "#fff";
    ctx.strokeStyle = "#000";
    ctx.fillRect(x - hs / 2, y - hs / 2, hs, hs);
    ctx.strokeRect(x - hs / 2, y - hs / 2, hs, hs);
  }
}

/** Marquee rectangle (layout pixels). */
export function drawMarquee(ctx, view, rect) {
  const s = view.scale;
  const r = normRect(rect).map((v) => v * s);
  ctx.fillStyle = "rgba(120,170,255,0.15)";
  ctx.strokeStyle = "rgba(120,170,255,0.9)";
  ctx.lineWidth = 1;
  ctx.fillRect(r[0], r[1], r[2] - r[0], r[3] - r[1]);
  ctx.strokeRect(r[0], r[1], r[2] - r[0], r[3] - r[1]);
}

/** The polygon being drawn: its vertices and a rubber band to the pointer. */
export function drawPendingPolygon(ctx, view, pts, hover) {
  if (!pts.length) return;
  const s = view.scale;
  ctx.strokeStyle = "#fff";
  ctx.lineWidth = 1.5;
  ctx.setLineDash([4, 3]);
  tracePolygon(ctx, hover ? [...pts, hover] : pts, s, false);
  ctx.stroke();
  ctx.setLineDash([]);
  ctx.fillStyle = "#fff";
  for (const p of pts) ctx.fillRect(p[0] * s - 3, p[1] * s - 3, 6, 6);
  ctx.strokeStyle = "#ff0";
  ctx.strokeRect(pts[0][0] * s - 5, pts[0][1] * s - 5, 10, 10);
}

/** Circle showing the brush/eraser footprint at layout point p. */
export function drawBrushCursor(ctx, view, p, radius, erase) {
  if (!p) return;
  ctx.beginPath();
  ctx.arc(p[0] * view.scale, p[1] * view.scale, radius * view.scale, 0, Math.PI * 2);
  ctx.strokeStyle = erase ? "rgba(255,90,90,0.9)" : "rgba(255,255,255,0.9)";
  ctx.lineWidth = 1;
  ctx.stroke();
}

/**
 * Latent-cell overlay: the grid of cells at `factor` (pixels per cell) and, per cell, the colour
 * of the instance the model sees there, rasterized by the backend's own rule (cells.js).  The
 * topmost instance (z-order) wins a shared cell; disabled instances are left out.
 */
export function drawCellOverlay(ctx, view, layout, factor) {
  const [gw, gh] = latentGrid(view.W, view.H, factor);
  const cw = (view.W * view.scale) / gw;
  const ch = (view.H * view.scale) / gh;
  const owner = new Int32Array(gw * gh).fill(-1);
  for (const i of drawOrder(layout)) {
    const inst = layout.instances[i];
    if (inst.enabled === false) continue;
    const m = instanceCells(inst, view.W, view.H, gh, gw);
    for (let k = 0; k < m.length; k++) if (m[k]) owner[k] = i;
  }
  for (let y = 0; y < gh; y++) {
    for (let x = 0; x < gw; x++) {
      const i = owner[y * gw + x];
      if (i < 0) continue;
      ctx.fillStyle = rgba(displayColor(layout.instances[i], i), 0.55);
      ctx.fillRect(x * cw, y * ch, cw, ch);
    }
  }
  if (cw >= 3 && ch >= 3) {
    ctx.strokeStyle = "rgba(255,255,255,0.25)";
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let x = 1; x < gw; x++) {
      ctx.moveTo(Math.round(x * cw) + 0.5, 0);
      ctx.lineTo(Math.round(x * cw) + 0.5, view.H * view.scale);
    }
    for (let y = 1; y < gh; y++) {
      ctx.moveTo(0, Math.round(y * ch) + 0.5);
      ctx.lineTo(view.W * view.scale, Math.round(y * ch) + 0.5);
    }
    ctx.stroke();
  }
  ctx.font = "11px sans-serif";
  ctx.fillStyle = "rgba(0,0,0,0.6)";
  ctx.fillRect(0, view.H * view.scale - 16, 120, 16);
  ctx.fillStyle = "#fff";
  ctx.fillText(`cells ${gw}×${gh} (1/${factor})`, 4, view.H * view.scale - 4);
}
