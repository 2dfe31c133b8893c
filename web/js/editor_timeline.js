// The timeline of the layout editor: the frame-count field in the toolbar and, below the canvas, a
// frame slider with keyframe marks, keyframe buttons (add/remove on the selected instances, jump to
// the previous/next keyframe, copy the current shape to another frame), auto-key, onion-skin and
// the visible range of the selected instances.  It owns the full (time-aware) layout; the editor
// draws and edits the frame view of the current frame (timeline.js frameView) and hands every edit
// back through merge().  For a layout that uses no timeline the view is the layout itself and the
// bar stays hidden, so static layouts edit exactly as before.  Nothing runs at import time.

import * as TL from "./timeline.js";
import { displayColor, instanceExtent } from "./layout_model.js";
import { drawRegion, rgba } from "./editor_render.js";

const CSS = `
.ifa-timeline { display: flex; flex-wrap: wrap; gap: 3px 4px; align-items: center; font: 11px sans-serif; color: #ddd; }
.ifa-timeline button, .ifa-timeline input, .ifa-timeline label { font: 11px sans-serif; color: #ddd; background: #2e2e33;
  border: 1px solid #4a4a52; border-radius: 4px; padding: 1px 5px; height: 22px; box-sizing: border-box; }
.ifa-timeline label { display: inline-flex; align-items: center; gap: 3px; }
.ifa-timeline input[type=number] { width: 48px; }
.ifa-timeline input[type=checkbox] { height: auto; margin: 0; }
.ifa-timeline button:disabled { opacity: 0.4; }
.ifa-timeline button.ifa-on { background: #3d5a99; border-color: #6d8ad9; color: #fff; }
.ifa-tl-track { position: relative; flex: 1 1 220px; min-width: 160px; height: 22px; }
.ifa-tl-track input[type=range] { position: absolute; inset: 0; width: 100%; margin: 0; padding: 0; border: 0; background: none; height: 22px; }
.ifa-tl-ticks { position: absolute; left: 8px; right: 8px; top: 0; height: 7px; pointer-events: none; }
.ifa-tl-ticks span { position: absolute; top: 0; width: 7px; height: 7px; margin-left: -3.5px; background: #f0c040; transform: rotate(45deg) scale(0.8); }
.ifa-tl-frame { min-width: 92px; font-variant-numeric: tabular-nums; }
.ifa-tl-info { color: #aaa; }
.ifa-tl-hint { color: #f0b060; flex-basis: 100%; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.ifa-tl-hint:empty { display: none; }
`;

function ensureTimelineStyles(doc) {
  if (doc.getElementById("ifa-timeline-css")) return;
  const style = doc.createElement("style");
  style.id = "ifa-timeline-css";
  style.textContent = CSS;
  doc.head.appendChild(style);
}

const clampInt = (v, lo, hi) => Math.max(lo, Math.min(hi, Math.round(v)));
const list = (idx) => idx.map((i) => i + 1).join(", ");

/** The timeline controls of one LayoutEditor (see the editor's hooks marked "timeline"). */
export class TimelineBar {
  constructor(editor) {
    this.ed = editor;
    this.source = editor.layout;
    ensureTimelineStyles(editor.doc);
    this.build();
  }

  get settings() {
    return this.ed.settings;
  }

  /** The frame shown (0-based, as in the layout's "keyframes"), kept in the editor's settings. */
  get frame() {
    return clampInt(+this.settings.frame || 0, 0, this.count() - 1);
  }

  get autoKey() {
    return this.settings.autoKey !== false;
  }

  count() {
    return TL.frameCount(this.source);
  }

  // ------------------------------------------------------------------ editor hooks ------------

  /** A full layout was loaded or restored: keep it; returns the view of the current frame. */
  setSource(layout) {
    this.source = layout;
    return this.view(layout);
  }

  /** The frame view of a full layout at the current frame (the layout itself when it is static). */
  view(full) {
    return TL.frameView(full, this.frame);
  }

  /**
   * The editor committed `layout`: an edit of the frame view (merged into the full layout at the
   * current frame), or with opts.full a whole new full layout.  Returns the full layout to store.
   */
  merge(layout, opts = {}) {
    if (opts.full) {
      this.source = layout;
      return layout;
    }
    const { layout: full, refused, keyed } = TL.mergeFrameEdit(this.source, layout, this.frame, { autoKey: this.autoKey });
    if (refused.length) {
      this.hint(`instance ${list(refused)} has keyframes but none at frame ${this.frame} (or is not visible there): its shape was kept. Add a keyframe here (K) or turn on auto-key.`);
    } else if (keyed.length) this.hint(`auto-key: keyframe added at frame ${this.frame} for instance ${list(keyed)}`);
    this.source = full;
    return full;
  }

  /** Keys while the editor has focus: "," / "." previous / next frame, K add or remove a keyframe. */
  onKey(k) {
    if (!this.visible()) return false;
    if (k === ",") this.setFrame(this.frame - 1);
    else if (k === ".") this.setFrame(this.frame + 1);
    else if (k === "k") this.toggleKey();
    else return false;
    return true;
  }

  /** Onion-skin under the instances: the selected instances' neighbouring keyframes and motion path. */
  drawOnion(ctx, view) {
    if (this.settings.onion === false || !TL.usesTimeline(this.source)) return;
    const f = this.frame;
    for (const i of this.ed.selection) {
      const inst = this.source.instances[i];
      if (!inst || inst.hidden || !TL.hasKeyframes(inst)) continue;
      const color = displayColor(inst, i);
      const ks = TL.keyframes(inst);
      // Motion path: the centre of the instance's extent at every keyframe.
      const centres = ks.map((k) => instanceExtent({ regions: k.regions }, view.W, view.H)).filter(Boolean).map((e) => [((e[0] + e[2]) / 2) * view.scale, ((e[1] + e[3]) / 2) * view.scale]);
      if (centres.length > 1) {
        ctx.strokeStyle = rgba(color, 0.6);
        ctx.lineWidth = 1;
        ctx.setLineDash([2, 3]);
        ctx.beginPath();
        centres.forEach((p, n) => (n ? ctx.lineTo(p[0], p[1]) : ctx.moveTo(p[0], p[1])));
        ctx.stroke();
        ctx.setLineDash([]);
      }
      for (const p of centres) {
        ctx.fillStyle = rgba(color, 0.8);
        ctx.fillRect(p[0] - 2.5, p[1] - 2.5, 5, 5);
      }
      const { prev, next } = TL.neighbourKeyframes(inst, f);
      for (const [k, alpha] of [[prev, 0.5], [next, 0.3]]) {
        if (!k) continue;
        ctx.globalAlpha = alpha;
        for (const r of k.regions) drawRegion(ctx, view, r, color, { dim: true });
        const e = instanceExtent({ regions: k.regions }, view.W, view.H);
        if (e) {
          ctx.font = "11px sans-serif";
          ctx.fillStyle = "#fff";
          ctx.fillText(`◆${k.frame}`, e[0] * view.scale + 3, e[3] * view.scale - 4);
        }
        ctx.globalAlpha = 1;
      }
    }
  }

  // ------------------------------------------------------------------ DOM ---------------------

  build() {
    const d = this.ed.doc;
    const el = (tag, cls, props = {}) => Object.assign(d.createElement(tag), cls ? { className: cls } : {}, props);
    const button = (text, title, fn, action) => {
      const b = el("button", "", { type: "button", textContent: text, title });
      b.dataset.action = action;
      b.addEventListener("click", fn);
      return b;
    };
    // Toolbar: the frame count (always there, so a static layout can become an animated one).
    this.countLabel = el("label", "ifa-tl-count", { title: `Frame count of the layout (1 = static; up to ${TL.MAX_FRAMES})` });
    this.countInput = el("input", "", { type: "number", min: 1, max: TL.MAX_FRAMES, step: 1, value: 1, ariaLabel: "frame count" });
    this.countInput.dataset.action = "frames";
    this.countInput.addEventListener("change", () => this.setCount(+this.countInput.value));
    this.countLabel.append("frames", this.countInput);

    this.bar = el("div", "ifa-timeline");
    this.prevBtn = button("◀", "Previous frame (,)", () => this.setFrame(this.frame - 1), "prev-frame");
    this.track = el("div", "ifa-tl-track");
    this.slider = el("input", "", { type: "range", min: 0, max: 0, step: 1, value: 0, title: "Frame", ariaLabel: "frame" });
    this.slider.dataset.action = "frame";
    this.slider.addEventListener("input", () => this.setFrame(+this.slider.value));
    this.ticks = el("div", "ifa-tl-ticks");
    this.track.append(this.slider, this.ticks);
    this.nextBtn = button("▶", "Next frame (.)", () => this.setFrame(this.frame + 1), "next-frame");
    this.frameLabel = el("span", "ifa-tl-frame");
    this.keyBtn = button("+ key", "Add or remove a keyframe of the selected instances at this frame (K)", () => this.toggleKey(), "key");
    this.prevKeyBtn = button("◆◀", "Previous keyframe of the selection", () => this.jumpKey(-1), "prev-key");
    this.nextKeyBtn = button("▶◆", "Next keyframe of the selection", () => this.jumpKey(1), "next-key");
    this.copyInput = el("input", "", { type: "number", min: 0, step: 1, value: 0, title: "Target frame", ariaLabel: "target frame" });
    this.copyInput.dataset.action = "copy-target";
    this.copyBtn = button("copy key to", "Copy the selected instances' shape at this frame to a keyframe at the target frame", () => this.copyTo(+this.copyInput.value), "copy-key");
    const check = (text, title, name, fallback) => {
      const input = el("input", "", { type: "checkbox", checked: this.settings[name] ?? fallback });
      input.dataset.action = name;
      input.addEventListener("change", () => {
        this.settings[name] = input.checked;
        this.ed.host.onSettings?.({ ...this.settings });
        this.ed.draw();
      });
      const l = el("label", "", { title });
      l.append(input, text);
      return [l, input];
    };
    const [autoLabel, autoInput] = check("auto-key", "Editing the shape of an instance that has keyframes adds a keyframe at this frame", "autoKey", true);
    const [onionLabel, onionInput] = check("onion", "Show the neighbouring keyframes and the motion path of the selected instances", "onion", true);
    this.autoInput = autoInput;
    this.onionInput = onionInput;
    this.startBtn = button("start here", "The selected instances appear from this frame on", () => this.setRange("start"), "range-start");
    this.endBtn = button("end here", "The selected instances disappear after this frame", () => this.setRange("end"), "range-end");
    this.allBtn = button("all frames", "The selected instances are visible on every frame", () => this.setRange("all"), "range-all");
    this.info = el("span", "ifa-tl-info");
    this.hintEl = el("div", "ifa-tl-hint");
    this.bar.append(this.prevBtn, this.track, this.nextBtn, this.frameLabel, this.keyBtn, this.prevKeyBtn, this.nextKeyBtn, this.copyBtn, this.copyInput,
      autoLabel, onionLabel, this.startBtn, this.endBtn, this.allBtn, this.info, this.hintEl);
  }

  hint(text) {
    this.hintEl.textContent = text;
  }

  /** Whether the timeline bar is shown: more than one frame, or a layout already using the timeline. */
  visible() {
    return this.count() > 1 || TL.usesTimeline(this.source);
  }

  /** Instances the keyframe buttons act on: the selection (the editor keeps it to valid indices). */
  targets() {
    return this.ed.selection.filter((i) => this.source.instances[i] && !this.source.instances[i].locked);
  }

  refresh() {
    const n = this.count();
    const f = this.frame;
    const shown = this.visible();
    this.bar.style.display = shown ? "" : "none";
    if (this.ed.doc.activeElement !== this.countInput) this.countInput.value = String(n);
    if (!shown) return;
    this.slider.max = String(n - 1);
    this.slider.value = String(f);
    this.copyInput.max = String(n - 1);
    this.frameLabel.textContent = `frame ${f} / ${n - 1}`;
    this.prevBtn.disabled = f <= 0;
    this.nextBtn.disabled = f >= n - 1;
    this.autoInput.checked = this.autoKey;
    this.onionInput.checked = this.settings.onion !== false;
    const sel = this.targets();
    const insts = sel.map((i) => this.source.instances[i]);
    const allKeyed = insts.length > 0 && insts.every((inst) => TL.keyframeAt(inst, f));
    this.keyBtn.textContent = allKeyed ? "− key" : "+ key";
    this.keyBtn.classList.toggle("ifa-on", allKeyed);
    for (const b of [this.keyBtn, this.copyBtn, this.startBtn, this.endBtn, this.allBtn, this.prevKeyBtn, this.nextKeyBtn]) b.disabled = !sel.length;
    // Keyframe marks: of the selection, or of every instance when nothing is selected.
    const frames = new Set();
    for (const inst of insts.length ? insts : this.source.instances) for (const k of TL.keyframes(inst)) frames.add(k.frame);
    this.ticks.textContent = "";
    for (const k of [...frames].sort((a, b) => a - b)) {
      if (k > n - 1) continue;
      const s = this.ed.doc.createElement("span");
      s.style.left = `${n > 1 ? (100 * k) / (n - 1) : 0}%`;
      s.title = `keyframe at frame ${k}`;
      s.dataset.frame = String(k);
      this.ticks.appendChild(s);
    }
    if (sel.length === 1) {
      const inst = insts[0];
      const ks = TL.keyframes(inst).map((k) => k.frame);
      const [first, last] = TL.visibleRange(inst);
      const present = TL.visibleAt(inst, f) ? "" : " · not on this frame";
      this.info.textContent = `instance ${sel[0] + 1}: ${ks.length ? `keyframes ${ks.join(", ")}` : "no keyframes (same on every frame)"} · visible ${first}–${last ?? "end"}${present}`;
    } else this.info.textContent = sel.length ? `${sel.length} instances selected` : "select an instance to key it";
  }

  // ------------------------------------------------------------------ actions -----------------

  /** Show frame f (clamped): the editor then draws and edits the view of that frame; no undo step. */
  setFrame(f) {
    const g = clampInt(f, 0, this.count() - 1);
    if (g !== this.frame) this.hint(""); // a hint is about the frame it was given on
    this.settings.frame = g;
    this.ed.host.onSettings?.({ ...this.settings });
    this.ed.cancelPending?.();
    this.ed.layout = this.view(this.source);
    this.ed.refresh({ keepLayers: true });
  }

  /** A whole-layout edit (keyframes, frame count, ranges): one undo step; a RangeError becomes a hint. */
  edit(fn, message) {
    if (this.ed.invalid) return;
    let next;
    try {
      next = fn(this.source);
    } catch (e) {
      if (!(e instanceof RangeError)) throw e;
      this.hint(e.message);
      this.refresh();
      return;
    }
    this.hint(message ?? "");
    this.ed.commit(next, null, { full: true });
  }

  setCount(n) {
    if (!Number.isInteger(n)) {
      this.hint(`frame count must be an integer from 1 to ${TL.MAX_FRAMES}`);
      this.refresh();
      return;
    }
    this.edit((L) => TL.setFrameCount(L, n));
  }

  toggleKey() {
    const sel = this.targets();
    if (!sel.length) return this.hint("select an instance first, then add a keyframe (K)");
    const f = this.frame;
    const allKeyed = sel.every((i) => TL.keyframeAt(this.source.instances[i], f));
    if (allKeyed) {
      this.edit((L) => TL.removeKeyframes(L, sel, f).layout, `keyframe at frame ${f} removed from instance ${list(sel)}`);
    } else {
      const missing = sel.filter((i) => !TL.keyframeAt(this.source.instances[i], f));
      this.edit((L) => TL.addKeyframes(L, missing, f).layout, `keyframe added at frame ${f} for instance ${list(missing)}`);
    }
  }

  jumpKey(dir) {
    const f = this.frame;
    const frames = this.targets().flatMap((i) => TL.keyframes(this.source.instances[i]).map((k) => k.frame));
    const cand = frames.filter((k) => (dir < 0 ? k < f : k > f));
    if (!cand.length) return this.hint(`no keyframe ${dir < 0 ? "before" : "after"} frame ${f}`);
    this.setFrame(dir < 0 ? Math.max(...cand) : Math.min(...cand));
  }

  copyTo(to) {
    const sel = this.targets();
    if (!sel.length) return this.hint("select an instance first");
    const n = this.count();
    if (!Number.isInteger(to) || to < 0 || to >= n) return this.hint(`target frame must be from 0 to ${n - 1}`);
    const f = this.frame;
    if (to === f) return this.hint("the target frame is the current frame");
    this.edit((L) => TL.copyKeyframes(L, sel, f, to).layout, `shape at frame ${f} copied to a keyframe at frame ${to} for instance ${list(sel)}`);
  }

  setRange(which) {
    const sel = this.targets();
    if (!sel.length) return this.hint("select an instance first");
    const f = this.frame;
    this.edit((L) => {
      let out = L;
      for (const i of sel) {
        const [first, last] = TL.visibleRange(L.instances[i]);
        if (which === "start") out = TL.setVisibleRange(out, [i], f, last !== null && last < f ? null : last);
        else if (which === "end") out = TL.setVisibleRange(out, [i], first > f ? 0 : first, f);
        else out = TL.setVisibleRange(out, [i], 0, null);
      }
      return out;
    });
  }
}
