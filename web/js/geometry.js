// Pure geometry for the instance layout editor: rectangles, the eight resize handles, snapping,
// polygon/polyline maths and the latent-cell rule.  No DOM, no ComfyUI: imported by the browser
// editor and by Node's test runner alike, so it must stay free of side effects.
//
// Coordinates are layout pixels (origin top-left, x right, y down), the same space as the stored
// JSON (see LAYOUT_API: "Pixel coordinates everywhere in the stored layout").

/** The eight handle names, clockwise from top-left. */
export const HANDLES = Object.freeze(["nw", "n", "ne", "e", "se", "s", "sw", "w"]);

/** Clamp v into [lo, hi]. */
export function clamp(v, lo, hi) {
  return v < lo ? lo : v > hi ? hi : v;
}

/** Normalise a rectangle so that x0 <= x1 and y0 <= y1. rect: [x0, y0, x1, y1]. */
export function normRect(r) {
  return [Math.min(r[0], r[2]), Math.min(r[1], r[3]), Math.max(r[0], r[2]), Math.max(r[1], r[3])];
}

export function rectWidth(r) {
  return Math.abs(r[2] - r[0]);
}

export function rectHeight(r) {
  return Math.abs(r[3] - r[1]);
}

/** Rectangle from two drag points (any order), clamped to the canvas [0,w]x[0,h]. */
export function rectFromDrag(p0, p1, w, h) {
  const r = normRect([p0[0], p0[1], p1[0], p1[1]]);
  return [clamp(r[0], 0, w), clamp(r[1], 0, h), clamp(r[2], 0, w), clamp(r[3], 0, h)];
}

/** Whether point p = [x, y] lies inside (or on the edge of) rect r. */
export function pointInRect(p, r) {
  const n = normRect(r);
  return p[0] >= n[0] && p[0] <= n[2] && p[1] >= n[1] && p[1] <= n[3];
}

/** Whether two rectangles overlap (touching edges count). */
export function rectsIntersect(a, b) {
  const A = normRect(a);
  const B = normRect(b);
  return A[0] <= B[2] && B[0] <= A[2] && A[1] <= B[3] && B[1] <= A[3];
}

/** Smallest rectangle containing every rectangle in the list, or null for an empty list. */
export function unionRects(rects) {
  let out = null;
  for (const r0 of rects) {
    if (!r0) continue;
    const r = normRect(r0);
    out = out ? [Math.min(out[0], r[0]), Math.min(out[1], r[1]), Math.max(out[2], r[2]), Math.max(out[3], r[3])] : r;
  }
  return out;
}

/** Bounding box [x0, y0, x1, y1] of a list of [x, y] points, or null if empty. */
export function pointsBBox(pts) {
  if (!pts || pts.length === 0) return null;
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (const [x, y] of pts) {
    if (x < x0) x0 = x;
    if (y < y0) y0 = y;
    if (x > x1) x1 = x;
    if (y > y1) y1 = y;
  }
  return [x0, y0, x1, y1];
}

/**
 * Positions of the eight handles of rect r, as {name: [x, y]}.
 */
export function handlePositions(r) {
  const [x0, y0, x1, y1] = normRect(r);
  const cx = (x0 + x1) / 2;
  const cy = (y0 + y1) / 2;
  return { nw: [x0, y0], n: [cx, y0], ne: [x1, y0], e: [x1, cy], se: [x1, y1], s: [cx, y1], sw: [x0, y1], w: [x0, cy] };
}

/**
 * Handle size (in the same units as r) for a rectangle: `base`, shrunk on small rectangles so that
 * a move zone of at least a third of each side remains between opposite handles.
 */
export function handleSize(r, base) {
  const m = Math.min(rectWidth(r), rectHeight(r));
  return Math.max(2, Math.min(base, m / 3));
}

/**
 * Which handle of r lies under p, or null. `tol` is the half-size of the square grab zone around
 * each handle. Corners win over edges where zones overlap.
 */
export function handleAt(r, p, tol) {
  const pos = handlePositions(r);
  for (const name of ["nw", "ne", "se", "sw", "n", "e", "s", "w"]) {
    const [hx, hy] = pos[name];
    if (Math.abs(p[0] - hx) <= tol && Math.abs(p[1] - hy) <= tol) return name;
  }
  return null;
}

/**
 * Resize rectangle r by dragging handle `name` to point p.
 * The opposite edge(s) stay fixed; edge handles change one dimension only.  Dragging past the
 * opposite side flips the rectangle (the result is normalised), never producing negative sizes.
 * opts: {minSize = 1, bounds: [w, h] | null (clamp to the canvas), keepAspect = false}.
 */
export function resizeRect(r, name, p, opts = {}) {
  const minSize = opts.minSize ?? 1;
  let [x0, y0, x1, y1] = normRect(r);
  let [px, py] = p;
  if (opts.bounds) {
    px = clamp(px, 0, opts.bounds[0]);
    py = clamp(py, 0, opts.bounds[1]);
  }
  if (name.includes("w")) x0 = px;
  if (name.includes("e")) x1 = px;
  if (name.includes("n")) y0 = py;
  if (name.includes("s")) y1 = py;
  if (opts.keepAspect && name.length === 2) {
    const ar = rectWidth(r) / Math.max(rectHeight(r), 1e-9);
    const w = Math.abs(x1 - x0);
    const h = Math.abs(y1 - y0);
    if (w / ar > h) {
      const nh = w / ar;
      if (name.includes("n")) y0 = y1 - Math.sign(y1 - y0 || 1) * nh;
      else y1 = y0 + Math.sign(y1 - y0 || 1) * nh;
    } else {
      const nw = h * ar;
      if (name.includes("w")) x0 = x1 - Math.sign(x1 - x0 || 1) * nw;
      else x1 = x0 + Math.sign(x1 - x0 || 1) * nw;
    }
  }
  let out = normRect([x0, y0, x1, y1]);
  // Enforce a minimum size by pushing the moved side away from the fixed one.
  if (out[2] - out[0] < minSize) {
    if (name.includes("w")) out[0] = out[2] - minSize;
    else out[2] = out[0] + minSize;
  }
  if (out[3] - out[1] < minSize) {
    if (name.includes("n")) out[1] = out[3] - minSize;
    else out[3] = out[1] + minSize;
  }
  return out;
}

/**
 * Translate rect r by (dx, dy); with bounds [w, h] the rectangle is kept wholly on the canvas
 * (its size never changes).
 */
export function moveRect(r, dx, dy, bounds = null) {
  const n = normRect(r);
  if (bounds) [dx, dy] = clampDelta(n, dx, dy, bounds);
  return [n[0] + dx, n[1] + dy, n[2] + dx, n[3] + dy];
}

/** The largest part of the move (dx, dy) that keeps rect r inside [0,w]x[0,h]. */
export function clampDelta(r, dx, dy, bounds) {
  const [w, h] = bounds;
  const n = normRect(r);
  const cdx = clamp(dx, -n[0], w - n[2]);
  const cdy = clamp(dy, -n[1], h - n[3]);
  // A rectangle bigger than the canvas cannot be kept inside: do not move it along that axis.
  return [n[2] - n[0] > w ? 0 : cdx, n[3] - n[1] > h ? 0 : cdy];
}

/** Snap a value to the nearest multiple of `grid` (grid <= 0 disables snapping). */
export function snap(v, grid) {
  if (!grid || grid <= 0) return v;
  return Math.round(v / grid) * grid;
}

export function snapPoint(p, grid) {
  return [snap(p[0], grid), snap(p[1], grid)];
}

/**
 * Map point p from rectangle `from` to rectangle `to` (affine, per axis). A degenerate source
 * axis maps to the centre of the target axis.
 */
export function mapPoint(p, from, to) {
  const f = normRect(from);
  const t = normRect(to);
  const fw = f[2] - f[0];
  const fh = f[3] - f[1];
  const x = fw > 0 ? t[0] + ((p[0] - f[0]) / fw) * (t[2] - t[0]) : (t[0] + t[2]) / 2;
  const y = fh > 0 ? t[1] + ((p[1] - f[1]) / fh) * (t[3] - t[1]) : (t[1] + t[3]) / 2;
  return [x, y];
}

/** Signed area of a polygon (positive when counter-clockwise in y-down coordinates is clockwise on screen). */
export function polygonArea(pts) {
  let a = 0;
  for (let i = 0, j = pts.length - 1; i < pts.length; j = i++) {
    a += (pts[j][0] + pts[i][0]) * (pts[j][1] - pts[i][1]);
  }
  return a / 2;
}

/** Even-odd point-in-polygon test (edges count as inside within `eps`). */
export function pointInPolygon(p, pts, eps = 1e-9) {
  if (!pts || pts.length < 3) return false;
  let inside = false;
  const [x, y] = p;
  for (let i = 0, j = pts.length - 1; i < pts.length; j = i++) {
    const [xi, yi] = pts[i];
    const [xj, yj] = pts[j];
    if (distToSegment(p, pts[j], pts[i]) <= eps) return true;
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/** Euclidean distance from p to the segment a-b. */
export function distToSegment(p, a, b) {
  const dx = b[0] - a[0];
  const dy = b[1] - a[1];
  const len2 = dx * dx + dy * dy;
  let t = len2 > 0 ? ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len2 : 0;
  t = clamp(t, 0, 1);
  const qx = a[0] + t * dx;
  const qy = a[1] + t * dy;
  return Math.hypot(p[0] - qx, p[1] - qy);
}

/** Shortest distance from p to an open polyline (a single point counts as a zero-length segment). */
export function distToPolyline(p, pts) {
  if (!pts || pts.length === 0) return Infinity;
  if (pts.length === 1) return Math.hypot(p[0] - pts[0][0], p[1] - pts[0][1]);
  let d = Infinity;
  for (let i = 1; i < pts.length; i++) d = Math.min(d, distToSegment(p, pts[i - 1], pts[i]));
  return d;
}

/**
 * Drop points closer than `minDist` to the previously kept one (keeps first and last): thins a
 * freehand scribble so that the stored JSON stays small.
 */
export function simplifyPolyline(pts, minDist) {
  if (pts.length <= 2) return pts.map((q) => [q[0], q[1]]);
  const out = [[pts[0][0], pts[0][1]]];
  for (let i = 1; i < pts.length - 1; i++) {
    const last = out[out.length - 1];
    if (Math.hypot(pts[i][0] - last[0], pts[i][1] - last[1]) >= minDist) out.push([pts[i][0], pts[i][1]]);
  }
  const end = pts[pts.length - 1];
  out.push([end[0], end[1]]);
  return out;
}

/** Round a coordinate for storage (two decimals keeps sub-pixel edits without noisy JSON). */
export function roundCoord(v) {
  return Math.round(v * 100) / 100;
}

/**
 * Latent cells covered by a pixel box under the IFAdapter cell rule: columns [floor(x0/W*w), ceil(x1/W*w)),
 * rows likewise, clamped to the grid.  box: [x0, y0, x1, y1] pixels on a W x H canvas; grid w x h cells.
 * Returns [y0, y1, x0, x1] (half-open), matching core/raster.py box_cells.
 */
export function boxCells(box, W, H, w, h) {
  const [x0, y0, x1, y1] = normRect(box);
  const cx0 = clamp(Math.floor((x0 / W) * w), 0, w);
  const cx1 = clamp(Math.ceil((x1 / W) * w), 0, w);
  const cy0 = clamp(Math.floor((y0 / H) * h), 0, h);
  const cy1 = clamp(Math.ceil((y1 / H) * h), 0, h);
  return [cy0, Math.max(cy0, cy1), cx0, Math.max(cx0, cx1)];
}

/**
 * Latent grid size the model sees for a W x H pixel canvas at a given downscale factor
 * (8 for the VAE latent; 8*16=128 ... for the UNet's coarsest block), rounding up as the UNet does.
 */
export function latentGrid(W, H, factor) {
  return [Math.max(1, Math.ceil(W / factor)), Math.max(1, Math.ceil(H / factor))];
}

/** Fit a W x H canvas into a box of at most maxW x maxH, returning {scale, width, height}. */
export function fitCanvas(W, H, maxW, maxH) {
  const scale = Math.max(1e-6, Math.min(maxW / W, maxH / H));
  return { scale, width: W * scale, height: H * scale };
}
