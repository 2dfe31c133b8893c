// Hit-testing for the instance layout editor: which instance, region or handle lies under a
// pointer, topmost first, and which instances a marquee selects.  Pure: no DOM.

import { distToPolyline, handleAt, normRect, pointInPolygon, pointInRect, rectsIntersect } from "./geometry.js";
import { drawOrder, instanceExtent, isEditableRegion, regionMask } from "./layout_model.js";
import { maskHit } from "./mask.js";

/**
 * Whether canvas point p hits region r on a W x H canvas.  `tol` (pixels) widens thin shapes:
 * box edges are not special (the inside counts), scribbles count within width/2 + tol, points
 * within their radius + tol, polygons inside or within tol of an edge, masks on a set cell.
 */
export function hitRegion(r, p, W, H, tol = 0) {
  if (!isEditableRegion(r)) return false;
  switch (r.kind) {
    case "box": {
      const b = normRect(r.box);
      return pointInRect(p, [b[0] - tol, b[1] - tol, b[2] + tol, b[3] + tol]);
    }
    case "polygon":
      return pointInPolygon(p, r.points) || distToPolyline(p, [...r.points, r.points[0]]) <= tol;
    case "scribble":
      return distToPolyline(p, r.points) <= (r.width ?? 4) / 2 + tol;
    case "point":
      return Math.hypot(p[0] - r.point[0], p[1] - r.point[1]) <= (r.width ?? 4) + tol;
    case "mask": {
      const m = regionMask(r);
      return !!m && maskHit(m, W, H, p);
    }
  }
  return false;
}

/**
 * Topmost instance under p: {index, region} or null.  Hidden instances are skipped, and locked
 * ones too unless opts.includeLocked.  Within an instance the smallest-area shapes (points,
 * scribbles) are tried first so that a point inside a big box stays reachable.
 */
export function hitInstance(layout, p, opts = {}) {
  const tol = opts.tol ?? 0;
  const { width: W, height: H } = layout;
  const order = drawOrder(layout).reverse();
  const rank = { point: 0, scribble: 1, polygon: 2, mask: 3, box: 4 };
  for (const i of order) {
    const inst = layout.instances[i];
    if (inst.hidden || (inst.locked && !opts.includeLocked)) continue;
    const regions = (inst.regions || []).map((r, k) => [r, k]).filter(([r]) => isEditableRegion(r));
    regions.sort((a, b) => rank[a[0].kind] - rank[b[0].kind]);
    for (const [r, k] of regions) if (hitRegion(r, p, W, H, tol)) return { index: i, region: k };
  }
  return null;
}

/**
 * Resize handle under p for the current selection: {handle, rect} or null.  A single selected
 * instance resizes around its extent; a multi-selection around the union of extents.
 * handleTol: grab half-size in canvas pixels.
 */
export function hitHandle(layout, selection, p, handleTol) {
  if (!selection.length) return null;
  const { width: W, height: H } = layout;
  const rects = selection
    .filter((i) => layout.instances[i] && !layout.instances[i].locked && !layout.instances[i].hidden)
    .map((i) => instanceExtent(layout.instances[i], W, H))
    .filter(Boolean);
  if (rects.length !== selection.length || !rects.length) return null;
  const rect = rects.reduce((a, b) => [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[2], b[2]), Math.max(a[3], b[3])]);
  const handle = handleAt(rect, p, handleTol);
  return handle ? { handle, rect } : null;
}

/**
 * Indices of the visible, unlocked instances whose extent intersects the marquee rectangle
 * (or lies fully inside it when opts.contain).
 */
export function marqueeSelect(layout, rect, opts = {}) {
  const { width: W, height: H } = layout;
  const m = normRect(rect);
  const out = [];
  layout.instances.forEach((inst, i) => {
    if (inst.hidden || inst.locked) return;
    const e = instanceExtent(inst, W, H);
    if (!e) return;
    const ok = opts.contain ? e[0] >= m[0] && e[1] >= m[1] && e[2] <= m[2] && e[3] <= m[3] : rectsIntersect(e, m);
    if (ok) out.push(i);
  });
  return out;
}

/** Index of the polygon vertex within tol of p in region r, or -1 (for vertex dragging). */
export function hitVertex(r, p, tol) {
  const pts = r && (r.kind === "polygon" || r.kind === "scribble") ? r.points : null;
  if (!pts) return -1;
  for (let k = 0; k < pts.length; k++) if (Math.hypot(p[0] - pts[k][0], p[1] - pts[k][1]) <= tol) return k;
  return -1;
}
