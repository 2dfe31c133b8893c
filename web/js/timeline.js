// Layouts over time (format version 2): an instance may carry keyframes (frame index -> its regions
// at that frame) and a visible frame range; the layout may carry a frame count.  This module holds
// the pure logic the editor needs: which version a layout is written as, the frame count, which
// instances are visible on a frame, the regions of an instance on a frame (linear interpolation
// between keyframes, mirroring core/layout/timeline.py), the frame view the editor draws and edits, the
// merge of an edit made on a frame view back into the full layout, and the keyframe edits.  No DOM,
// no import of layout_model.js (which imports this module).
//
// Format (docs/layout-format.md):
//   layout   "frames": N                  frame count, 1..1024 (optional)
//   instance "keyframes": [{"frame": f, "regions": [...]}, ...]  sorted by frame, unique frames
//            "frames": [first, last]      visible range, inclusive; last null = to the end
// The instance's plain "regions" are used when it has no keyframes.  A layout using any of these
// fields is written with "version": 2, otherwise "version": 1.

import { roundCoord } from "./geometry.js";

/** The format version that adds keyframes, visible ranges and the frame count. */
export const TIMELINE_VERSION = 2;
/** The largest frame count a layout may declare. */
export const MAX_FRAMES = 1024;

const deepCopy = (o) => (o === undefined ? undefined : JSON.parse(JSON.stringify(o)));
const isFrame = (v) => Number.isInteger(v) && v >= 0;
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

// ---------------------------------------------------------------------------------------------
// Reading

/** Whether an instance uses the timeline fields ("keyframes" or "frames"). */
export function instanceUsesTimeline(inst) {
  return !!inst && typeof inst === "object" && ("keyframes" in inst || "frames" in inst);
}

/** Whether a layout uses any timeline field (its frame count, or an instance's keyframes/range). */
export function usesTimeline(layout) {
  return !!layout && ("frames" in layout || (Array.isArray(layout.instances) && layout.instances.some(instanceUsesTimeline)));
}

/**
 * The "version" a layout is written with: 2 when it uses the timeline, else 1, so that a static
 * layout is written exactly as before.  A version newer than this editor knows is kept.
 */
export function layoutVersion(layout) {
  const v = layout?.version;
  if (typeof v === "number" && v > TIMELINE_VERSION) return v;
  return usesTimeline(layout) ? TIMELINE_VERSION : 1;
}

/** The instance's valid keyframes ({frame, regions}) in frame order (entries that are not are ignored). */
export function keyframes(inst) {
  const k = inst?.keyframes;
  if (!Array.isArray(k)) return [];
  return k.filter((e) => e && isFrame(e.frame) && Array.isArray(e.regions)).sort((a, b) => a.frame - b.frame);
}

/** Whether the instance has at least one valid keyframe (then its plain "regions" are not used). */
export function hasKeyframes(inst) {
  return keyframes(inst).length > 0;
}

/** The keyframe of `inst` at frame f, or null. */
export function keyframeAt(inst, f) {
  return keyframes(inst).find((k) => k.frame === f) || null;
}

/** The instance's visible range [first, last] (last null = to the end); [0, null] when it has none. */
export function visibleRange(inst) {
  const r = inst?.frames;
  if (!Array.isArray(r) || r.length !== 2 || !isFrame(r[0]) || !(r[1] === null || (isFrame(r[1]) && r[1] >= r[0]))) return [0, null];
  return [r[0], r[1]];
}

/** Whether the instance is present on frame f (inside its visible range, inclusive). */
export function visibleAt(inst, f) {
  const [first, last] = visibleRange(inst);
  return f >= first && (last === null || f <= last);
}

/**
 * Frames up to which anything changes (core/layout/timeline.py frame_span): the latest of the last
 * keyframe, the first visible frame and the first frame after a visible range ends, plus one; 1
 * for a static layout.
 */
export function frameSpan(layout) {
  let last = 0;
  for (const inst of layout?.instances || []) {
    const ks = keyframes(inst);
    if (ks.length) last = Math.max(last, ks[ks.length - 1].frame);
    if ("frames" in inst) {
      const [first, end] = visibleRange(inst);
      last = Math.max(last, first, end === null ? 0 : end + 1);
    }
  }
  return Math.min(MAX_FRAMES, last + 1);
}

/** The frame count (core/layout/timeline.py frame_count): the layout's "frames" when valid, else frameSpan. */
export function frameCount(layout) {
  const n = layout?.frames;
  if (Number.isInteger(n) && n >= 1 && n <= MAX_FRAMES) return n;
  return frameSpan(layout);
}

// ---------------------------------------------------------------------------------------------
// Interpolation

/** a + (b - a) t, kept inside [min(a, b), max(a, b)] so that canvas bounds survive float rounding (as in Python). */
const lerp = (a, b, t) => Math.min(Math.max(a + (b - a) * t, Math.min(a, b)), Math.max(a, b));
const lerpPt = (p, q, t) => [lerp(+p[0], +q[0], t), lerp(+p[1], +q[1], t)];
const DEFAULT_WIDTH = 4;

/**
 * Region `a` (of the earlier keyframe) moved a fraction t (0..1) of the way to region `b` (of the
 * later one): boxes, points and polygon/scribble vertices linearly, and the radius of points and
 * the stroke width of scribbles when they differ; the other fields come from `a`.
 * Returns null when the pair cannot be interpolated (kinds differ, vertex counts differ, masks or
 * kinds this editor does not know): then the nearest keyframe holds.
 */
export function lerpRegion(a, b, t) {
  if (!a || !b || a.kind !== b.kind) return null;
  const out = deepCopy(a);
  switch (a.kind) {
    case "box":
      if (!Array.isArray(a.box) || !Array.isArray(b.box) || a.box.length !== 4 || b.box.length !== 4) return null;
      out.box = a.box.map((v, k) => lerp(+v, +b.box[k], t));
      return out;
    case "point":
      if (!Array.isArray(a.point) || !Array.isArray(b.point)) return null;
      out.point = lerpPt(a.point, b.point, t);
      lerpWidth(out, a, b, t);
      return out;
    case "polygon":
    case "scribble":
      if (!Array.isArray(a.points) || !Array.isArray(b.points) || a.points.length !== b.points.length) return null;
      out.points = a.points.map((p, k) => lerpPt(p, b.points[k], t));
      if (a.kind === "scribble") lerpWidth(out, a, b, t);
      return out;
    default:
      return null; // masks (and unknown kinds) hold the nearest keyframe
  }
}

function lerpWidth(out, a, b, t) {
  const wa = a.width ?? DEFAULT_WIDTH;
  const wb = b.width ?? DEFAULT_WIDTH;
  if (wa !== wb) out.width = lerp(+wa, +wb, t);
}

/**
 * The regions of keyframed instance `inst` on frame f, ignoring its visible range: before the
 * first keyframe the first holds, after the last the last holds, on a keyframe its regions; between
 * keyframes A (frame fa) and B (frame fb) region i of A pairs with region i of B and moves
 * t = (f - fa) / (fb - fa) of the way (lerpRegion); a pair that cannot move, and every region when
 * A and B have different region counts, holds the nearest keyframe (ties: the earlier, A).
 * Returns fresh copies; null when the instance has no keyframes.
 */
export function keyedRegionsAt(inst, f) {
  const ks = keyframes(inst);
  if (!ks.length) return null;
  if (f <= ks[0].frame) return deepCopy(ks[0].regions);
  const last = ks[ks.length - 1];
  if (f >= last.frame) return deepCopy(last.regions);
  let j = 0;
  while (ks[j + 1].frame <= f) j++;
  const A = ks[j];
  const B = ks[j + 1];
  if (A.frame === f) return deepCopy(A.regions);
  const t = (f - A.frame) / (B.frame - A.frame);
  const nearest = f - A.frame <= B.frame - f ? A : B;
  if (A.regions.length !== B.regions.length) return deepCopy(nearest.regions);
  return A.regions.map((r, i) => lerpRegion(r, B.regions[i], t) ?? deepCopy(nearest.regions[i]));
}

/**
 * The regions of `inst` on frame f: null when the instance is absent (outside its visible range),
 * else its keyframed regions (keyedRegionsAt) or, without keyframes, copies of its plain regions.
 */
export function regionsAt(inst, f) {
  if (!visibleAt(inst, f)) return null;
  return keyedRegionsAt(inst, f) ?? deepCopy(Array.isArray(inst.regions) ? inst.regions : []);
}

/**
 * The static layout of frame f (core/layout/timeline.py at_frame, the backend's "Layout at Frame"): every
 * instance with its regions on f and no timeline fields, written as version 1; an instance outside
 * its visible range is kept but disabled, so instance numbers stay the same on every frame.  A
 * static layout comes back as a copy of itself.
 */
export function layoutAtFrame(layout, f) {
  if (!usesTimeline(layout)) return deepCopy(layout);
  const out = deepCopy(layout);
  delete out.frames;
  out.version = 1;
  out.instances = layout.instances.map((inst) => {
    const copy = deepCopy(inst);
    delete copy.keyframes;
    delete copy.frames;
    copy.regions = keyedRegionsAt(inst, f) ?? deepCopy(Array.isArray(inst.regions) ? inst.regions : []);
    copy.enabled = inst.enabled !== false && visibleAt(inst, f);
    return copy;
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// The editor's frame view and merging edits made on it

/**
 * The layout as the editor draws and edits it on frame f: the same object when the layout uses no
 * timeline (static layouts behave exactly as before); otherwise a copy in which every instance's
 * "regions" are its regions at f ([] when absent there), indices unchanged, every other field
 * (keyframes and range included) kept.  Never serialized: mergeFrameEdit turns an edited view back
 * into the full layout.
 */
export function frameView(layout, f) {
  if (!usesTimeline(layout)) return layout;
  const out = deepCopy(layout);
  out.instances.forEach((inst, i) => {
    if (instanceUsesTimeline(inst)) inst.regions = regionsAt(layout.instances[i], f) ?? [];
  });
  return out;
}

/**
 * Pair the instances of an edited frame view with those of the view before the edit.  Editor edits
 * keep indices (changes in place, z-order), append (new shapes, duplicates, pastes) or delete
 * (the rest keep their order and content), so: the same or a larger count pairs by index; a
 * smaller count pairs each remaining instance with the next equal one of `before`.  Returns, per
 * edited instance, the index in `before` or -1 (new).
 */
function pairInstances(before, after) {
  if (after.length >= before.length) return after.map((_, i) => (i < before.length ? i : -1));
  const keys = before.map((inst) => JSON.stringify(inst));
  let j = 0;
  return after.map((inst) => {
    const key = JSON.stringify(inst);
    while (j < keys.length && keys[j] !== key) j++;
    return j < keys.length ? j++ : -1;
  });
}

/**
 * Merge an edit made on the frame view of `source` at frame f back into the full layout.
 * - An instance without keyframes takes the edited regions as its plain regions (as for static
 *   layouts), unless it is absent on f: then its regions are kept and the edit is refused.
 * - An instance with keyframes whose regions did not change keeps its keyframes and plain regions.
 *   Changed regions go to its keyframe at f; without one, a keyframe is created when opts.autoKey,
 *   else (and when the instance is absent on f) the change is refused and its shape kept.
 * - Every other field (description, colour, z, ...) and the layout's own fields come from the edit;
 *   new instances are taken as they are.
 * Returns {layout, refused: [instance indices whose shape change was refused], keyed: [instance
 * indices that got a new keyframe at f]}.
 */
export function mergeFrameEdit(source, edited, f, opts = {}) {
  if (!usesTimeline(source) && !usesTimeline(edited)) return { layout: edited, refused: [], keyed: [] };
  const before = frameView(source, f);
  const pairs = pairInstances(before.instances, edited.instances);
  const refused = [];
  const keyed = [];
  const out = deepCopy(edited);
  out.instances = edited.instances.map((e, i) => {
    const j = pairs[i];
    const inst = deepCopy(e);
    if (j < 0) return inst;
    const src = source.instances[j];
    if (!instanceUsesTimeline(src) && !instanceUsesTimeline(e)) return inst;
    const changed = !same(e.regions, before.instances[j].regions);
    const restore = () => {
      inst.regions = deepCopy(src.regions);
      if ("keyframes" in src) inst.keyframes = deepCopy(src.keyframes);
      else delete inst.keyframes;
    };
    if (!changed) {
      restore();
      return inst;
    }
    if (!visibleAt(src, f)) {
      restore();
      refused.push(i);
      return inst;
    }
    if (!hasKeyframes(src)) return inst; // a static instance with only a visible range
    const regions = inst.regions;
    restore();
    const ks = inst.keyframes;
    const at = ks.findIndex((k) => k && k.frame === f);
    if (at >= 0) ks[at] = { ...ks[at], regions };
    else if (opts.autoKey) {
      ks.push({ frame: f, regions });
      sortKeyframes(ks);
      keyed.push(i);
    } else refused.push(i);
    return inst;
  });
  return { layout: out, refused, keyed };
}

function sortKeyframes(ks) {
  ks.sort((a, b) => (isFrame(a?.frame) ? a.frame : Infinity) - (isFrame(b?.frame) ? b.frame : Infinity));
}

// ---------------------------------------------------------------------------------------------
// Edits on the full layout.  Each returns a NEW layout; unknown fields travel along.

/** Regions with every coordinate rounded to 1/100 px (interpolated values are written like drawn ones). */
export function roundRegions(regions) {
  return regions.map((r) => {
    const out = deepCopy(r);
    if (!out || typeof out !== "object") return out;
    if (Array.isArray(out.box)) out.box = out.box.map((v) => (typeof v === "number" ? roundCoord(v) : v));
    if (Array.isArray(out.point)) out.point = out.point.map((v) => (typeof v === "number" ? roundCoord(v) : v));
    if (Array.isArray(out.points)) out.points = out.points.map((p) => (Array.isArray(p) ? p.map((v) => (typeof v === "number" ? roundCoord(v) : v)) : p));
    return out;
  });
}

function checkFrame(f, what = "frame") {
  if (!isFrame(f) || f >= MAX_FRAMES) throw new RangeError(`${what} must be an integer from 0 to ${MAX_FRAMES - 1}, got ${JSON.stringify(f)}`);
}

/**
 * Add a keyframe at frame f to each instance in `indices` that has none there, holding the shape
 * the instance shows at f (interpolated, rounded to 1/100 px; outside its visible range the shape
 * it would have).  An instance without keyframes gets its first one from its plain regions.
 * Returns {layout, added: [indices]}.
 */
export function addKeyframes(layout, indices, f) {
  checkFrame(f);
  const out = deepCopy(layout);
  const added = [];
  for (const i of indices) {
    const inst = out.instances[i];
    if (!inst || keyframeAt(inst, f)) continue;
    const regions = keyedRegionsAt(inst, f) ?? deepCopy(Array.isArray(inst.regions) ? inst.regions : []);
    if (!Array.isArray(inst.keyframes)) inst.keyframes = [];
    inst.keyframes.push({ frame: f, regions: roundRegions(regions) });
    sortKeyframes(inst.keyframes);
    added.push(i);
  }
  return { layout: out, added };
}

/**
 * Remove the keyframe at frame f of each instance in `indices`.  An instance whose last keyframe
 * goes becomes static with that keyframe's regions (it keeps the shape it had).
 * Returns {layout, removed: [indices]}.
 */
export function removeKeyframes(layout, indices, f) {
  checkFrame(f);
  const out = deepCopy(layout);
  const removed = [];
  for (const i of indices) {
    const inst = out.instances[i];
    if (!inst || !Array.isArray(inst.keyframes)) continue;
    const at = inst.keyframes.findIndex((k) => k && k.frame === f);
    if (at < 0) continue;
    const [gone] = inst.keyframes.splice(at, 1);
    if (!inst.keyframes.length) {
      delete inst.keyframes;
      inst.regions = deepCopy(gone.regions);
    }
    removed.push(i);
  }
  return { layout: out, removed };
}

/**
 * Copy the shape of each instance in `indices` on frame `from` (its keyframe there, else its
 * interpolated shape) to a keyframe at frame `to`, replacing a keyframe already there.
 * Returns {layout, copied: [indices]}.
 */
export function copyKeyframes(layout, indices, from, to) {
  checkFrame(from, "source frame");
  checkFrame(to, "target frame");
  const out = deepCopy(layout);
  const copied = [];
  for (const i of indices) {
    const inst = out.instances[i];
    if (!inst) continue;
    const regions = roundRegions(keyedRegionsAt(inst, from) ?? deepCopy(Array.isArray(inst.regions) ? inst.regions : []));
    if (!Array.isArray(inst.keyframes)) inst.keyframes = [];
    const at = inst.keyframes.findIndex((k) => k && k.frame === to);
    if (at >= 0) inst.keyframes[at] = { ...inst.keyframes[at], regions };
    else inst.keyframes.push({ frame: to, regions });
    sortKeyframes(inst.keyframes);
    copied.push(i);
  }
  return { layout: out, copied };
}

/**
 * Set the layout's frame count to n (1..1024).  n = 1 removes the field (a layout without other
 * timeline fields is static again, version 1).  Refused (RangeError) below a keyframe or a range
 * end: those frames would be cut off.
 */
export function setFrameCount(layout, n) {
  if (!Number.isInteger(n) || n < 1 || n > MAX_FRAMES) throw new RangeError(`frame count must be an integer from 1 to ${MAX_FRAMES}, got ${JSON.stringify(n)}`);
  layout.instances.forEach((inst, i) => {
    const ks = keyframes(inst);
    const lastKey = ks.length ? ks[ks.length - 1].frame : -1;
    const [first, end] = visibleRange(inst);
    const need = Math.max(lastKey, first, end ?? 0);
    if (need >= n) {
      const what = lastKey === need ? `a keyframe at frame ${need}` : `a visible range up to frame ${need}`;
      throw new RangeError(`instance ${i + 1} has ${what}; the frame count must be at least ${need + 1} (remove or move it first)`);
    }
  });
  const out = deepCopy(layout);
  if (n === 1) delete out.frames;
  else out.frames = n;
  return out;
}

/**
 * Set the visible range of each instance in `indices` to [first, last] (inclusive, last null = to
 * the end); [0, null] removes the field (always visible).
 */
export function setVisibleRange(layout, indices, first, last) {
  checkFrame(first, "first visible frame");
  if (last !== null) {
    checkFrame(last, "last visible frame");
    if (last < first) throw new RangeError(`the last visible frame (${last}) must not come before the first (${first})`);
  }
  const out = deepCopy(layout);
  for (const i of indices) {
    const inst = out.instances[i];
    if (!inst) continue;
    if (first === 0 && last === null) delete inst.frames;
    else inst.frames = [first, last];
  }
  return out;
}

/** The keyframes of `inst` just before and just after frame f (not at f): {prev, next}, each or null. */
export function neighbourKeyframes(inst, f) {
  const ks = keyframes(inst);
  let prev = null;
  let next = null;
  for (const k of ks) {
    if (k.frame < f) prev = k;
    else if (k.frame > f && !next) next = k;
  }
  return { prev, next };
}

// ---------------------------------------------------------------------------------------------
// Reading older or hand-written text (called by layout_model.parseLayout)

/**
 * Check the layout's "frames" (frame count) on load; an invalid value is kept verbatim and
 * reported (the editor then derives the count from the keyframes).
 */
export function normaliseLayoutTimeline(d, warnings) {
  if (!("frames" in d)) return;
  const n = d.frames;
  if (!Number.isInteger(n) || n < 1 || n > MAX_FRAMES) warnings.push(`layout "frames" must be an integer from 1 to ${MAX_FRAMES}, got ${JSON.stringify(n)}; it is ignored`);
}

/**
 * Bring an instance's keyframes to the documented shape on load: each keyframe's regions go
 * through the same upgrade as plain regions (`normaliseRegion` from layout_model.js); keyframes are
 * sorted by frame.  Entries that cannot be read are kept verbatim and reported, never dropped.
 */
export function normaliseInstanceTimeline(inst, i, warnings, normaliseRegion) {
  if ("keyframes" in inst) {
    if (!Array.isArray(inst.keyframes)) warnings.push(`instance ${i + 1}: "keyframes" must be a list of {"frame", "regions"}; it is ignored`);
    else {
      const seen = new Set();
      inst.keyframes.forEach((k, n) => {
        if (!k || typeof k !== "object" || !isFrame(k.frame) || !Array.isArray(k.regions)) {
          warnings.push(`instance ${i + 1}, keyframe ${n + 1}: needs {"frame": integer >= 0, "regions": [...]}; it is ignored`);
          return;
        }
        if (seen.has(k.frame)) warnings.push(`instance ${i + 1}: two keyframes at frame ${k.frame}; the first is used`);
        seen.add(k.frame);
        k.regions.forEach((r, m) => {
          const problem = normaliseRegion(r);
          if (problem) warnings.push(`instance ${i + 1}, keyframe at frame ${k.frame}, region ${m + 1}: ${problem}; kept as it is`);
        });
      });
      sortKeyframes(inst.keyframes);
    }
  }
  if ("frames" in inst) {
    const r = inst.frames;
    const ok = Array.isArray(r) && r.length === 2 && isFrame(r[0]) && (r[1] === null || (isFrame(r[1]) && r[1] >= r[0]));
    if (!ok) warnings.push(`instance ${i + 1}: "frames" must be [first, last] (integers, last >= first, or null = to the end), got ${JSON.stringify(r)}; it is ignored`);
  }
}
