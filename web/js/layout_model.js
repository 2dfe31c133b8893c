// The instance layout as the editor holds it: the documented JSON object itself (format
// "instance-layout", version 1, pixel coordinates), so that every field the editor does not know is
// kept verbatim.  This module parses text into that object (upgrading older shapes and importing
// InstanceDiffusion / bounding-box JSON without ever dropping an instance), writes it back, and
// implements the pure edits (add, delete, duplicate, move, resize, z-order, clipboard, canvas
// resize).  No DOM: importable from Node tests and the browser.

import { mapPoint, normRect, pointsBBox, roundCoord, unionRects } from "./geometry.js";
import { decodeRLE, encodeRLE, maskBBox, transformMask } from "./mask.js";
import { layoutVersion, normaliseInstanceTimeline, normaliseLayoutTimeline, TIMELINE_VERSION } from "./timeline.js";

export const FORMAT = "instance-layout";
export const VERSION = 1;
export const CLIPBOARD_FORMAT = "instance-layout-clipboard";
export const REGION_KINDS = Object.freeze(["box", "polygon", "mask", "scribble", "point"]);

/** Distinct colours for instance swatches (cycled; an instance keeps the one it was given). */
export const PALETTE = Object.freeze([
  "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
  "#fabed4", "#469990", "#dcbeff", "#9a6324", "#fffac8", "#800000", "#aaffc3", "#808000",
]);

/**
 * The colour to show instance `index` in: its own `color` when that is a #rrggbb string, else the
 * palette colour of its index (older or hand-written layouts carry no colours).  Display only: the
 * layout text is not changed.
 */
export function displayColor(inst, index) {
  const c = inst?.color;
  return typeof c === "string" && /^#[0-9a-f]{6}$/i.test(c) ? c : PALETTE[((index % PALETTE.length) + PALETTE.length) % PALETTE.length];
}

/** Raised for text that is not a layout; the message says what was expected. */
export class LayoutParseError extends Error {}

const deepCopy = (o) => (o === undefined ? undefined : JSON.parse(JSON.stringify(o)));

/** A new empty layout for a W x H canvas. */
export function emptyLayout(width = 1024, height = 1024, prompt = "") {
  return { format: FORMAT, version: VERSION, width, height, prompt, instances: [] };
}

const isNum = (v) => typeof v === "number" && Number.isFinite(v);
const isPt = (p) => Array.isArray(p) && p.length >= 2 && isNum(+p[0]) && isNum(+p[1]);

/**
 * Bring one region object to the version-1 shape in place: infer a missing "kind" from its fields
 * and accept the legacy spellings ("bbox" for "box", "xy"/"points" for a point).  A region that
 * cannot be understood is kept untouched (the backend or a newer editor may know it); the
 * returned string describes the problem, or "" when the region is usable.
 */
function normaliseRegion(r) {
  if (!r || typeof r !== "object") return "not an object";
  if (!r.kind) {
    if (r.box || r.bbox) r.kind = "box";
    else if (r.rle) r.kind = "mask";
    else if (r.point) r.kind = "point";
    else if (Array.isArray(r.points)) r.kind = r.points.length >= 3 && r.closed !== false ? "polygon" : "scribble";
  }
  switch (r.kind) {
    case "box":
      if (!r.box && Array.isArray(r.bbox)) {
        r.box = r.bbox;
        delete r.bbox;
      }
      if (!Array.isArray(r.box) || r.box.length !== 4 || !r.box.every((v) => isNum(+v))) return 'box region needs "box": [x0, y0, x1, y1]';
      r.box = normRect(r.box.map(Number));
      return "";
    case "polygon":
      if (!Array.isArray(r.points) || r.points.length < 3 || !r.points.every(isPt)) return 'polygon region needs "points" with at least 3 [x, y]';
      return "";
    case "scribble":
      if (!Array.isArray(r.points) || r.points.length < 2 || !r.points.every(isPt)) return 'scribble region needs "points" with at least 2 [x, y]';
      return "";
    case "point":
      if (!r.point && Array.isArray(r.points) && r.points.length === 1) {
        r.point = r.points[0];
        delete r.points;
      }
      if (!isPt(r.point)) return 'point region needs "point": [x, y]';
      return "";
    case "mask":
      if (!r.rle || !Array.isArray(r.rle.size)) return 'mask region needs "rle": {"size": [h, w], "counts": ...}';
      return "";
    default:
      return `unknown region kind ${JSON.stringify(r.kind)} (known: ${REGION_KINDS.join(", ")})`;
  }
}

/** Whether a region is one the editor can draw and edit (valid version-1 shape). */
export function isEditableRegion(r) {
  return !!r && REGION_KINDS.includes(r.kind) && normaliseRegion({ ...r }) === "";
}

function normaliseInstance(inst, i, warnings) {
  if (typeof inst === "string") inst = { description: inst };
  if (!inst || typeof inst !== "object") {
    warnings.push(`instance ${i + 1}: not an object; kept as an empty instance`);
    return { description: "", regions: [], extra_invalid: inst };
  }
  if (typeof inst.description !== "string") {
    const alt = ["caption", "prompt", "text", "desc"].find((k) => typeof inst[k] === "string");
    inst.description = alt ? inst[alt] : inst.description == null ? "" : String(inst.description);
    if (alt) delete inst[alt];
  }
  if (!Array.isArray(inst.regions)) {
    // Older shapes put the geometry straight on the instance.
    const regions = [];
    for (const key of ["box", "bbox"]) {
      if (Array.isArray(inst[key]) && inst[key].length === 4) {
        regions.push({ kind: "box", box: inst[key] });
        delete inst[key];
        break;
      }
    }
    if (inst.regions && typeof inst.regions === "object") regions.push(inst.regions);
    inst.regions = regions;
  }
  inst.regions.forEach((r, k) => {
    const msg = normaliseRegion(r);
    if (msg) warnings.push(`instance ${i + 1} (${JSON.stringify(inst.description)}) region ${k + 1}: ${msg}; kept as is`);
  });
  normaliseInstanceTimeline(inst, i, warnings, normaliseRegion); // keyframes and visible range (timeline.js)
  if (!isNum(inst.z)) inst.z = i;
  return inst;
}

/** Convert an InstanceDiffusion demo JSON ({caption, width, height, annos: [...]}) to a layout. */
export function fromInstanceDiffusion(d) {
  const W = +d.width || 512;
  const H = +d.height || 512;
  const out = emptyLayout(W, H, d.caption || "");
  for (const [k, v] of Object.entries(d)) if (!["caption", "width", "height", "annos"].includes(k)) out[k] = deepCopy(v);
  d.annos.forEach((a, i) => {
    const inst = { description: a.caption || "", regions: [], z: i };
    if (Array.isArray(a.bbox) && a.bbox.length === 4) {
      const [x, y, w, h] = a.bbox.map(Number);
      inst.regions.push({ kind: "box", box: [x, y, x + w, y + h] });
    }
    if (a.mask && typeof a.mask === "object" && a.mask.size) inst.regions.push({ kind: "mask", rle: deepCopy(a.mask) });
    else if (Array.isArray(a.mask) && a.mask.length && Array.isArray(a.mask[0]) && a.mask[0].length >= 6) {
      // COCO polygon: flat [x0, y0, x1, y1, ...] lists.
      for (const flat of a.mask) {
        const pts = [];
        for (let k = 0; k + 1 < flat.length; k += 2) pts.push([+flat[k], +flat[k + 1]]);
        inst.regions.push({ kind: "polygon", points: pts, fill: "coco" }); // filled as pycocotools does
      }
    }
    if (isPt(a.point)) inst.regions.push({ kind: "point", point: [+a.point[0], +a.point[1]] });
    if (Array.isArray(a.scribble) && a.scribble.length >= 2) inst.regions.push({ kind: "scribble", points: a.scribble.map((p) => [+p[0], +p[1]]), width: 4 });
    for (const [k, v] of Object.entries(a)) if (!["caption", "bbox", "mask", "point", "scribble"].includes(k)) inst[k] = deepCopy(v);
    out.instances.push(inst);
  });
  return out;
}

/**
 * Convert a list of normalised bounding boxes ({x, y, width, height, metadata: {text|desc}}, as
 * the native frontend's BOUNDING_BOXES and KJ's builders write) to a layout of W x H pixels.
 */
export function fromBoundingBoxes(list, W, H) {
  const out = emptyLayout(W, H);
  list.forEach((b, i) => {
    const md = b.metadata || {};
    const norm = [b.x, b.y, b.width, b.height].every((v) => +v <= 1.0001);
    const sx = norm ? W : 1;
    const sy = norm ? H : 1;
    const x0 = +b.x * sx;
    const y0 = +b.y * sy;
    out.instances.push({
      description: md.desc || md.text || md.description || b.label || "",
      regions: [{ kind: "box", box: [x0, y0, x0 + +b.width * sx, y0 + +b.height * sy].map(roundCoord) }],
      z: i,
      ...(Object.keys(md).length ? { metadata: deepCopy(md) } : {}),
    });
  });
  return out;
}

/**
 * Parse layout text (or an already-parsed object) into a version-1 layout object.
 * - "" / whitespace / null: an empty layout of fallback.width x fallback.height.
 * - our format: instances and regions are brought to the version-1 shape; unknown fields are kept;
 *   a region that cannot be read is kept verbatim (and reported) rather than dropped, and an
 *   instance is never dropped.  A version newer than 1 is accepted with a warning.
 * - InstanceDiffusion demo JSON (has "annos") and bounding-box lists are imported.
 * Returns {layout, warnings: string[]}.  Throws LayoutParseError for text that is not JSON or not
 * a layout, naming what was expected.
 */
export function parseLayout(text, fallback = {}) {
  const W0 = fallback.width || 1024;
  const H0 = fallback.height || 1024;
  const warnings = [];
  if (text == null || (typeof text === "string" && text.trim() === "")) return { layout: emptyLayout(W0, H0), warnings };
  let d = text;
  if (typeof text === "string") {
    try {
      d = JSON.parse(text);
    } catch (e) {
      throw new LayoutParseError(`layout is not valid JSON (${e.message}); expected {"format": "${FORMAT}", "version": 1, ...}`);
    }
  } else {
    d = deepCopy(text);
  }
  if (Array.isArray(d)) {
    if (d.every((b) => b && typeof b === "object" && "x" in b && "width" in b)) return { layout: fromBoundingBoxes(d, W0, H0), warnings };
    d = { instances: d };
    warnings.push("a bare list was read as the instances of a layout");
  }
  if (!d || typeof d !== "object") throw new LayoutParseError(`layout must be a JSON object, got ${typeof d}`);
  if (Array.isArray(d.annos) && !Array.isArray(d.instances)) return { layout: fromInstanceDiffusion(d), warnings };
  if (d.format !== undefined && d.format !== FORMAT) {
    throw new LayoutParseError(`layout "format" is ${JSON.stringify(d.format)}; expected "${FORMAT}"`);
  }
  d.format = FORMAT;
  if (d.version === undefined) d.version = VERSION;
  else if (!(d.version <= TIMELINE_VERSION)) warnings.push(`layout version ${d.version} is newer than this editor (${TIMELINE_VERSION}); unknown fields are kept`);
  if (!isNum(+d.width) || +d.width <= 0) {
    if (d.width !== undefined) warnings.push(`layout width ${JSON.stringify(d.width)} is not a positive number; using ${W0}`);
    d.width = W0;
  } else d.width = +d.width;
  if (!isNum(+d.height) || +d.height <= 0) {
    if (d.height !== undefined) warnings.push(`layout height ${JSON.stringify(d.height)} is not a positive number; using ${H0}`);
    d.height = H0;
  } else d.height = +d.height;
  if (typeof d.prompt !== "string") d.prompt = d.prompt == null ? "" : String(d.prompt);
  if (!Array.isArray(d.instances)) {
    if (d.instances !== undefined) warnings.push('layout "instances" is not a list; it was wrapped in one');
    d.instances = d.instances === undefined ? [] : [d.instances];
  }
  d.instances = d.instances.map((inst, i) => normaliseInstance(inst, i, warnings));
  normaliseLayoutTimeline(d, warnings);
  return { layout: d, warnings };
}

/**
 * The layout as JSON text: known keys first in the documented order, then every other field.
 * "version" is 2 when the layout uses keyframes, visible ranges or a frame count, else 1
 * (timeline.js layoutVersion), so static layouts are written exactly as before.
 */
export function serializeLayout(layout, indent = 0) {
  const ordered = {};
  for (const k of ["format", "version", "width", "height", "prompt", "instances"]) if (k in layout) ordered[k] = layout[k];
  if ("version" in ordered) ordered.version = layoutVersion(layout);
  for (const [k, v] of Object.entries(layout)) if (!(k in ordered)) ordered[k] = v;
  return JSON.stringify(ordered, null, indent || undefined);
}

// ---------------------------------------------------------------------------------------------
// Geometry of instances

/** Decoded masks, cached by RLE counts so that redraws and hit tests do not decode again. */
const maskCache = new Map();

/** The in-memory mask of a mask region (decoded once and cached), or null if it cannot be read. */
export function regionMask(r) {
  if (!r || r.kind !== "mask" || !r.rle) return null;
  const key = `${r.rle.size}|${typeof r.rle.counts === "string" ? r.rle.counts : JSON.stringify(r.rle.counts)}`;
  let m = maskCache.get(key);
  if (m === undefined) {
    try {
      m = decodeRLE(r.rle);
    } catch {
      m = null;
    }
    if (maskCache.size > 64) maskCache.delete(maskCache.keys().next().value);
    maskCache.set(key, m);
  }
  return m;
}

/** Pixel bbox [x0, y0, x1, y1] of one region on a W x H canvas, or null if it has no extent. */
export function regionBBox(r, W, H) {
  if (!isEditableRegion(r)) return null;
  switch (r.kind) {
    case "box":
      return normRect(r.box);
    case "polygon":
      return pointsBBox(r.points);
    case "scribble": {
      const b = pointsBBox(r.points);
      const hw = (r.width ?? 4) / 2;
      return [b[0] - hw, b[1] - hw, b[2] + hw, b[3] + hw];
    }
    case "point": {
      const rad = r.width ?? 4;
      return [r.point[0] - rad, r.point[1] - rad, r.point[0] + rad, r.point[1] + rad];
    }
    case "mask": {
      const m = regionMask(r);
      return m ? maskBBox(m, W, H) : null;
    }
  }
  return null;
}

/** Pixel bbox of an instance: its explicit box if it has one, else the union of its regions. */
export function instanceBBox(inst, W, H) {
  const box = (inst.regions || []).find((r) => r && r.kind === "box" && isEditableRegion(r));
  if (box) return normRect(box.box);
  return unionRects((inst.regions || []).map((r) => regionBBox(r, W, H)));
}

/** Bbox used for the selection frame and handles: the union of every region (box included). */
export function instanceExtent(inst, W, H) {
  return unionRects((inst.regions || []).map((r) => regionBBox(r, W, H)));
}

/** A copy of region r mapped so that canvas rectangle `from` lands on `to`; unknown fields are kept. */
export function transformRegion(r, from, to, W, H) {
  if (!isEditableRegion(r)) return deepCopy(r);
  const out = deepCopy(r);
  const mp = (p) => mapPoint(p, from, to).map(roundCoord);
  switch (r.kind) {
    case "box": {
      const a = mp([r.box[0], r.box[1]]);
      const b = mp([r.box[2], r.box[3]]);
      out.box = normRect([a[0], a[1], b[0], b[1]]);
      break;
    }
    case "polygon":
    case "scribble":
      out.points = r.points.map((p) => mp(p));
      break;
    case "point":
      out.point = mp(r.point);
      break;
    case "mask": {
      const m = regionMask(r);
      if (m) out.rle = encodeRLE(transformMask(m, W, H, normRect(from), normRect(to)));
      break;
    }
  }
  return out;
}

/** Copy of an instance with every region mapped from rectangle `from` to `to`. */
export function transformInstance(inst, from, to, W, H) {
  const out = deepCopy(inst);
  out.regions = (inst.regions || []).map((r) => transformRegion(r, from, to, W, H));
  return out;
}

/**
 * Copy of an instance with every region mapped from `from` to `to`, its keyframes' regions too
 * (timeline.js): for edits that apply to the instance on every frame (canvas resize, duplicate,
 * paste).  Mask regions are kept when keepMasks (they cover the whole canvas at their own size).
 */
export function transformInstanceAllFrames(inst, from, to, W, H, keepMasks = false) {
  const mapRegions = (regions) => regions.map((r) => (keepMasks && r && r.kind === "mask" ? deepCopy(r) : transformRegion(r, from, to, W, H)));
  const out = deepCopy(inst);
  out.regions = mapRegions(inst.regions || []);
  if (Array.isArray(inst.keyframes)) out.keyframes = inst.keyframes.map((k) => (k && Array.isArray(k.regions) ? { ...deepCopy(k), regions: mapRegions(k.regions) } : deepCopy(k)));
  return out;
}

/** Copy of an instance moved by (dx, dy) pixels. */
export function translateInstance(inst, dx, dy, W, H) {
  return transformInstance(inst, [0, 0, 1, 1], [dx, dy, dx + 1, dy + 1], W, H);
}

// ---------------------------------------------------------------------------------------------
// Edits.  Each returns a NEW layout object (the editor keeps the old one for undo); unknown fields
// of the layout, instances and regions travel along.

export function cloneLayout(layout) {
  return deepCopy(layout);
}

/** Indices of instances sorted bottom-to-top for drawing (z ascending, then list order). */
export function drawOrder(layout) {
  return layout.instances.map((_, i) => i).sort((a, b) => (layout.instances[a].z ?? a) - (layout.instances[b].z ?? b) || a - b);
}

/** First palette colour not used by another instance (cycling when all are taken). */
export function nextColor(layout) {
  const used = new Set(layout.instances.map((i) => (i.color || "").toLowerCase()));
  return PALETTE.find((c) => !used.has(c)) || PALETTE[layout.instances.length % PALETTE.length];
}

/** Add an instance (on top of all others) with the given regions; returns {layout, index}. */
export function addInstance(layout, regions, description = "") {
  const out = cloneLayout(layout);
  const z = out.instances.reduce((m, i) => Math.max(m, i.z ?? 0), -1) + 1;
  out.instances.push({ description, enabled: true, weight: 1.0, z, color: nextColor(out), regions: deepCopy(regions) });
  return { layout: out, index: out.instances.length - 1 };
}

/** Delete the instances at the given indices. */
export function deleteInstances(layout, indices) {
  const drop = new Set(indices);
  const out = cloneLayout(layout);
  out.instances = out.instances.filter((_, i) => !drop.has(i));
  return out;
}

/** Replace instance i by fn(copy of instance i). */
export function updateInstance(layout, i, fn) {
  const out = cloneLayout(layout);
  const next = fn(out.instances[i]);
  if (next) out.instances[i] = next;
  return out;
}

/** Move the instances at `indices` by (dx, dy), clamped so their joint extent stays on the canvas. */
export function moveInstances(layout, indices, dx, dy) {
  const { width: W, height: H } = layout;
  const ext = unionRects(indices.map((i) => instanceExtent(layout.instances[i], W, H)));
  if (ext) {
    // Keep the group on the canvas, but never pull back a group that already sticks out.
    dx = Math.max(Math.min(dx, Math.max(0, W - ext[2])), Math.min(0, -ext[0]));
    dy = Math.max(Math.min(dy, Math.max(0, H - ext[3])), Math.min(0, -ext[1]));
  }
  const out = cloneLayout(layout);
  for (const i of indices) out.instances[i] = translateInstance(layout.instances[i], dx, dy, W, H);
  return out;
}

/**
 * Duplicate the instances at `indices`, offset by (dx, dy), each placed on top; the copies get
 * new colours.  Returns {layout, indices} of the copies.
 */
export function duplicateInstances(layout, indices, dx = 16, dy = 16) {
  let out = cloneLayout(layout);
  const added = [];
  for (const i of indices) {
    const moved = transformInstanceAllFrames(layout.instances[i], [0, 0, 1, 1], [dx, dy, dx + 1, dy + 1], layout.width, layout.height);
    const z = out.instances.reduce((m, it) => Math.max(m, it.z ?? 0), -1) + 1;
    moved.z = z;
    moved.color = nextColor(out);
    out.instances.push(moved);
    added.push(out.instances.length - 1);
  }
  return { layout: out, indices: added };
}

/**
 * Change z-order.  op: "up" | "down" | "top" | "bottom", applied to the instances at `indices`.
 * z values are renumbered 0..n-1 in the new stacking order.
 */
export function reorder(layout, indices, op) {
  const out = cloneLayout(layout);
  let order = drawOrder(out);
  const sel = new Set(indices);
  if (op === "top") order = [...order.filter((i) => !sel.has(i)), ...order.filter((i) => sel.has(i))];
  else if (op === "bottom") order = [...order.filter((i) => sel.has(i)), ...order.filter((i) => !sel.has(i))];
  else if (op === "up") {
    for (let k = order.length - 2; k >= 0; k--) {
      if (sel.has(order[k]) && !sel.has(order[k + 1])) [order[k], order[k + 1]] = [order[k + 1], order[k]];
    }
  } else if (op === "down") {
    for (let k = 1; k < order.length; k++) {
      if (sel.has(order[k]) && !sel.has(order[k - 1])) [order[k], order[k - 1]] = [order[k - 1], order[k]];
    }
  } else throw new RangeError(`z-order op must be up, down, top or bottom, got ${JSON.stringify(op)}`);
  order.forEach((i, z) => (out.instances[i].z = z));
  return out;
}

/**
 * Scale every instance to a new canvas size (so instances keep their relative place when the
 * node's width/height change).
 */
export function resizeCanvas(layout, W, H) {
  if (W === layout.width && H === layout.height) return layout;
  const out = cloneLayout(layout);
  const from = [0, 0, layout.width, layout.height];
  const to = [0, 0, W, H];
  // Masks cover the whole canvas at their own resolution, so their cells need no remapping.
  out.instances = layout.instances.map((inst) => transformInstanceAllFrames(inst, from, to, layout.width, layout.height, true));
  out.width = W;
  out.height = H;
  return out;
}

/** Clipboard text for the instances at `indices` (keeps the source canvas size for rescaling). */
export function copyPayload(layout, indices) {
  return JSON.stringify({
    format: CLIPBOARD_FORMAT,
    width: layout.width,
    height: layout.height,
    instances: indices.map((i) => deepCopy(layout.instances[i])),
  });
}

/**
 * Paste clipboard text into a layout: instances from another canvas size are scaled to this one,
 * then offset by (dx, dy) and stacked on top.  Returns {layout, indices} or null when the text is
 * not a clipboard payload.
 */
export function pastePayload(layout, text, dx = 0, dy = 0) {
  let d;
  try {
    d = typeof text === "string" ? JSON.parse(text) : text;
  } catch {
    return null;
  }
  if (!d || d.format !== CLIPBOARD_FORMAT || !Array.isArray(d.instances)) return null;
  const src = { ...emptyLayout(d.width || layout.width, d.height || layout.height), instances: d.instances };
  const scaled = resizeCanvas(src, layout.width, layout.height);
  let out = cloneLayout(layout);
  const added = [];
  for (const inst of scaled.instances) {
    const moved = dx || dy ? transformInstanceAllFrames(inst, [0, 0, 1, 1], [dx, dy, dx + 1, dy + 1], layout.width, layout.height) : deepCopy(inst);
    moved.z = out.instances.reduce((m, it) => Math.max(m, it.z ?? 0), -1) + 1;
    if (!moved.color || out.instances.some((it) => it.color === moved.color)) moved.color = nextColor(out);
    out.instances.push(moved);
    added.push(out.instances.length - 1);
  }
  return { layout: out, indices: added };
}
