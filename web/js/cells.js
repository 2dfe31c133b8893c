// Which latent cells each region covers: a port of the backend's rule (core/layout/model.py
// Layout.rasterize) so that the editor's cell overlay shows exactly what the model sees.
//   box       IFAdapter cell rule: [floor(x0/W*w), ceil(x1/W*w)) (edges within 1e-6 of a cell count as on
//             it), at least one cell for a non-empty box;
//   mask      nearest resize (cell centre sampled);
//   polygon   cells whose centre is inside (even-odd);
//   scribble  cells whose centre is within width/2 of the stroke, plus every cell the stroke passes through;
//   point     cells whose centre is within width of the point, plus the cell it lies in;
//   a non-empty region that covers no cell sets the cell holding its bbox centre.
// Pure: no DOM.

import { regionBBox, regionMask, isEditableRegion } from "./layout_model.js";

const EPS = 1e-6;

function cellRange(a, b, n) {
  a *= n;
  b *= n;
  let lo = Math.min(Math.max(Math.floor(a + EPS), 0), n);
  let hi = Math.min(Math.max(Math.ceil(b - EPS), 0), n);
  if (b > a && hi <= lo) {
    hi = Math.min(lo + 1, n);
    lo = Math.max(hi - 1, 0);
  }
  return [lo, hi];
}

function segDist2(x, y, pts) {
  const P = pts.length === 1 ? [pts[0], pts[0]] : pts;
  let best = Infinity;
  for (let k = 1; k < P.length; k++) {
    const [ax, ay] = P[k - 1];
    const [bx, by] = P[k];
    const dx = bx - ax;
    const dy = by - ay;
    const ll = dx * dx + dy * dy;
    const t = ll > 0 ? Math.min(Math.max(((x - ax) * dx + (y - ay) * dy) / ll, 0), 1) : 0;
    const px = ax + t * dx - x;
    const py = ay + t * dy - y;
    best = Math.min(best, px * px + py * py);
  }
  return best;
}

function touched(m, pts, W, H, h, w) {
  const step = 0.5 * Math.min(W / w, H / h);
  const mark = (x, y) => {
    const c = Math.min(Math.max(Math.floor((x / W) * w), 0), w - 1);
    const r = Math.min(Math.max(Math.floor((y / H) * h), 0), h - 1);
    m[r * w + c] = 1;
  };
  mark(pts[0][0], pts[0][1]);
  for (let k = 1; k < pts.length; k++) {
    const [ax, ay] = pts[k - 1];
    const [bx, by] = pts[k];
    const n = Math.ceil(Math.hypot(bx - ax, by - ay) / step) + 1;
    for (let i = 0; i < n; i++) {
      const t = n > 1 ? i / (n - 1) : 0;
      mark(ax + t * (bx - ax), ay + t * (by - ay));
    }
  }
}

/** Uint8Array(h*w), row-major: the cells of an h x w grid that region r of a W x H canvas covers. */
export function regionCells(r, W, H, h, w) {
  const m = new Uint8Array(h * w);
  if (!isEditableRegion(r)) return m;
  if (r.kind === "box") {
    const [y0, y1] = cellRange(Math.min(r.box[1], r.box[3]) / H, Math.max(r.box[1], r.box[3]) / H, h);
    const [x0, x1] = cellRange(Math.min(r.box[0], r.box[2]) / W, Math.max(r.box[0], r.box[2]) / W, w);
    for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) m[y * w + x] = 1;
    return m;
  }
  if (r.kind === "mask") {
    const mk = regionMask(r);
    if (!mk) return m;
    let any = false;
    for (let y = 0; y < h; y++) {
      const ry = Math.min(Math.floor((y + 0.5) * (mk.h / h)), mk.h - 1);
      for (let x = 0; x < w; x++) {
        const cx = Math.min(Math.floor((x + 0.5) * (mk.w / w)), mk.w - 1);
        if (mk.data[ry * mk.w + cx]) m[y * w + x] = 1;
      }
    }
    for (let i = 0; i < mk.data.length && !any; i++) any = mk.data[i] === 1;
    if (any && !m.some((v) => v)) markCentre(m, regionBBox(r, W, H), W, H, h, w);
    return m;
  }
  const pts = r.kind === "point" ? [r.point] : r.points;
  for (let y = 0; y < h; y++) {
    const cy = (y + 0.5) * (H / h);
    for (let x = 0; x < w; x++) {
      const cx = (x + 0.5) * (W / w);
      if (r.kind === "polygon") {
        let inside = false;
        for (let k = 0; k < pts.length; k++) {
          const [ax, ay] = pts[k];
          const [bx, by] = pts[(k + 1) % pts.length];
          if (ay === by) continue;
          if (ay > cy !== by > cy && cx < ax + ((cy - ay) * (bx - ax)) / (by - ay)) inside = !inside;
        }
        if (inside) m[y * w + x] = 1;
      } else {
        const radius = r.kind === "scribble" ? (r.width ?? 4) / 2 : r.width ?? 4;
        if (segDist2(cx, cy, pts) <= radius * radius) m[y * w + x] = 1;
      }
    }
  }
  if (r.kind !== "polygon") touched(m, pts, W, H, h, w);
  if (!m.some((v) => v)) {
    const b = r.kind === "polygon" ? boundsOf(pts) : regionBBox(r, W, H);
    markCentre(m, b, W, H, h, w);
  }
  return m;
}

function boundsOf(pts) {
  const xs = pts.map((p) => p[0]);
  const ys = pts.map((p) => p[1]);
  return [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
}

function markCentre(m, b, W, H, h, w) {
  if (!b) return;
  const cx = (b[0] + b[2]) / 2;
  const cy = (b[1] + b[3]) / 2;
  const r = Math.min(Math.max(Math.trunc((cy / H) * h), 0), h - 1);
  const c = Math.min(Math.max(Math.trunc((cx / W) * w), 0), w - 1);
  m[r * w + c] = 1;
}

/** Uint8Array(h*w): the union of an instance's regions on an h x w grid. */
export function instanceCells(inst, W, H, h, w) {
  const m = new Uint8Array(h * w);
  for (const r of inst.regions || []) {
    const c = regionCells(r, W, H, h, w);
    for (let i = 0; i < m.length; i++) m[i] |= c[i];
  }
  return m;
}
