// Which latent cells each region covers: a port of the backend's rule (core/layout/model.py
// Layout.rasterize) so that the editor's cell overlay shows exactly what the model sees.
//   box       IFAdapter cell rule: [floor(x0/W*w), ceil(x1/W*w)) (edges within 1e-6 of a cell count as on
//             it), at least one cell for a non-empty box;
//   mask      nearest resize (cell centre sampled);
//   polygon   cells whose centre is inside (even-odd); a polygon imported from COCO ("fill": "coco") by
//             pycocotools' annToMask rule instead (core/coco_polygon.py), its points scaled by (w/W, h/H);
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

/**
 * pycocotools' polygon rule (rleFrPoly; core/coco_polygon.py): vertices upsampled by 5 and cast to int, each
 * edge walked on that grid along its major axis, every x step whose smaller x is a pixel column's (5c + 2)
 * toggles that column from row ceil(clip((smaller y + 0.5) / 5 - 0.5, 0, h)) down. Sets the cells in m.
 */
function cocoPolygon(m, pts, h, w) {
  const k = pts.length;
  const X = pts.map((p) => Math.trunc(5 * p[0] + 0.5));
  const Y = pts.map((p) => Math.trunc(5 * p[1] + 0.5));
  const toggles = new Uint8Array((h + 1) * w);
  const step = (u0, u1, v0, v1) => {
    if (u0 === u1) return;
    const xd = (Math.min(u0, u1) + 0.5) / 5 - 0.5;
    if (Math.floor(xd) !== xd || xd < 0 || xd > w - 1) return;
    const yd = Math.ceil(Math.min(Math.max((Math.min(v0, v1) + 0.5) / 5 - 0.5, 0), h));
    toggles[yd * w + xd] ^= 1;
  };
  for (let j = 0; j < k; j++) {
    let xs = X[j], xe = X[(j + 1) % k], ys = Y[j], ye = Y[(j + 1) % k];
    const dx = Math.abs(xe - xs);
    const dy = Math.abs(ye - ys);
    if ((dx >= dy && xs > xe) || (dx < dy && ys > ye)) [xs, xe, ys, ye] = [xe, xs, ye, ys];
    if (dx >= dy) {
      const s = (ye - ys) / dx;
      for (let t = 0; t < dx; t++) step(xs + t, xs + t + 1, Math.trunc(ys + s * t + 0.5), Math.trunc(ys + s * (t + 1) + 0.5));
    } else {
      const s = (xe - xs) / dy;
      for (let t = 0; t < dy; t++) step(Math.trunc(xs + s * t + 0.5), Math.trunc(xs + s * (t + 1) + 0.5), ys + t, ys + t + 1);
    }
  }
  for (let x = 0; x < w; x++) {
    let inside = 0;
    for (let y = 0; y < h; y++) {
      inside ^= toggles[y * w + x];
      if (inside) m[y * w + x] = 1;
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
  if (r.kind === "polygon" && r.fill === "coco") {
    const same = w === W && h === H;
    cocoPolygon(m, same ? pts : pts.map(([x, y]) => [x * (w / W), y * (h / H)]), h, w);
    if (!m.some((v) => v)) markCentre(m, boundsOf(pts), W, H, h, w);
    return m;
  }
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
