// The layout editor view: toolbar, canvas, layer list, pointer tools, keyboard shortcuts and the
// in-editor undo stack.  It knows nothing about ComfyUI: the host passes callbacks for saving the
// text, loading underlays and the shared clipboard (see ifadapter_layout_editor.js).  Nothing runs
// at import time.

import { clamp, fitCanvas, handleSize, normRect, rectFromDrag, resizeRect, simplifyPolyline, snap, snapPoint, unionRects } from "./geometry.js";
import { History } from "./history.js";
import { hitHandle, hitInstance, hitVertex, marqueeSelect } from "./hittest.js";
import { TimelineBar } from "./editor_timeline.js";
import * as LM from "./layout_model.js";
import { cloneMask, createMask, encodeRLE, maskArea, maskSizeFor, paintLine } from "./mask.js";
import * as R from "./editor_render.js";
import { renderLayers } from "./editor_layers.js";
import { ensureStyles } from "./editor_styles.js";
import { strokeTarget } from "./stroke_target.js";
import { HANDLE_DRAW_PX, HANDLE_HIT_PX, SHORTCUTS, VERTEX_HIT_PX, shortcutsTitle } from "./editor_shortcuts.js";

export const TOOLS = Object.freeze([
  ["select", "Select", "V"],
  ["box", "Box", "B"],
  ["polygon", "Polygon", "P"],
  ["brush", "Brush", "M"],
  ["eraser", "Eraser", "E"],
  ["scribble", "Scribble", "S"],
  ["point", "Point", "T"],
]);

const DEFAULT_SETTINGS = { tool: "box", grid: 8, snap: false, cells: 0, underlaySource: "auto", underlayOpacity: 0.6, brush: 24, attach: false };

/**
 * host: {
 *   onChange(text)                 the serialized layout changed (write it into the node's widget)
 *   onSettings(settings)           UI settings changed (persist them outside the layout)
 *   underlayUrl(source, layout)    URL of the underlay image for a source ("input" | "last" | "file" | "auto") or null
 *   uploadUnderlay(file)           Promise<{filename, subfolder, type}> (upload to the server's input folder)
 *   clipboard: {read(): string|null, write(text)}
 *   onResizeCanvas?(W, H)          the editor changed the canvas size (keep width/height widgets in sync)
 * }
 */
export class LayoutEditor {
  constructor(doc, host, settings = {}) {
    this.doc = doc;
    this.host = host;
    this.settings = { ...DEFAULT_SETTINGS, ...settings };
    this.layout = LM.emptyLayout();
    this.text = LM.serializeLayout(this.layout);
    this.selection = [];
    this.history = new History({ coalesceMs: 1200 });
    this.invalid = null;
    this.warnings = [];
    this.drag = null;
    this.pendingPoly = [];
    this.hover = null;
    this.underlay = null;
    this.underlayUrl = null;
    ensureStyles(doc);
    this.build();
    this.history.reset(this.snapshot());
  }

  // ----------------------------------------------------------------- state ------------------

  snapshot() {
    return { text: this.text, selection: [...this.selection] };
  }

  /**
   * Load layout text from the node (first load, workflow reload, an edit made elsewhere).
   * fallback: {width, height} for empty text.  resetHistory: start a fresh undo stack.
   */
  load(text, fallback, resetHistory = false) {
    try {
      const { layout, warnings } = LM.parseLayout(text, fallback);
      this.layout = this.timeline.setSource(layout); // timeline: the view of the current frame
      this.warnings = warnings;
      this.invalid = null;
      this.text = typeof text === "string" && text.trim() ? text : LM.serializeLayout(layout);
    } catch (e) {
      // Keep the node's text untouched: the editor shows the problem and edits nothing.
      this.invalid = e.message;
      this.text = text;
      this.layout = this.timeline.setSource(LM.emptyLayout(fallback?.width, fallback?.height));
    }
    this.selection = this.selection.filter((i) => i < this.layout.instances.length);
    if (resetHistory) this.history.reset(this.snapshot());
    else this.history.push(this.snapshot());
    this.refresh();
    this.refreshUnderlay();
  }

  /**
   * Record a new layout: serialize, add an undo step (coalescing by key), notify the host.
   * Timeline: `layout` is an edit of the current frame's view, merged into the full layout that is
   * stored (editor_timeline.js); opts.full: `layout` is a whole new full layout.
   */
  commit(layout, key = null, opts = {}) {
    if (this.invalid) return;
    const full = this.timeline.merge(layout, opts);
    this.layout = this.timeline.view(full);
    this.text = LM.serializeLayout(full);
    this.history.push(this.snapshot(), key);
    this.host.onChange?.(this.text);
    this.refresh(opts);
  }

  restore(snap) {
    if (!snap) return;
    this.text = snap.text;
    try {
      this.layout = this.timeline.setSource(LM.parseLayout(snap.text).layout);
      this.invalid = null;
    } catch (e) {
      this.invalid = e.message;
    }
    this.selection = snap.selection.filter((i) => i < this.layout.instances.length);
    this.host.onChange?.(this.text);
    if (this.host.onResizeCanvas) this.host.onResizeCanvas(this.layout.width, this.layout.height);
    this.refresh();
    this.refreshUnderlay();
  }

  undo() {
    this.cancelPending();
    this.restore(this.history.undo());
  }

  redo() {
    this.cancelPending();
    this.restore(this.history.redo());
  }

  setSelection(sel, opts = {}) {
    this.selection = [...new Set(sel)].filter((i) => i >= 0 && i < this.layout.instances.length);
    // A selection change is part of the current state: later undo restores it, but it is no step.
    if (this.history.current) this.history.current = { ...this.history.current, selection: [...this.selection] };
    this.refresh(opts);
  }

  /** The width/height widgets changed: scale the layout to the new canvas. */
  setCanvasSize(W, H) {
    if (this.invalid || (W === this.layout.width && H === this.layout.height) || !(W > 0 && H > 0)) return;
    this.commit(LM.resizeCanvas(this.timeline.source, W, H), "canvas-size", { full: true }); // every frame scales
  }

  setSetting(name, value) {
    this.settings[name] = value;
    this.host.onSettings?.({ ...this.settings });
    if (name === "underlaySource") this.refreshUnderlay();
    if (name === "tool") {
      this.cancelPending();
      this.lastStroke = null;
    }
    this.refresh();
  }

  // ----------------------------------------------------------------- DOM --------------------

  build() {
    const d = this.doc;
    const el = (tag, cls, props = {}) => Object.assign(d.createElement(tag), cls ? { className: cls } : {}, props);
    this.root = el("div", "ifa-editor", { tabIndex: -1 });
    this.root.dataset.ifaEditor = "1";
    // Keyboard focus sits in a hidden read-only <input>: ComfyUI's own shortcut handlers (graph undo
    // on Ctrl+Z, Delete removing nodes) listen on window in the capture phase and leave text inputs
    // alone, so this keeps the editor's shortcuts from also acting on the graph.
    this.keySink = el("input", "ifa-keysink", { type: "text", readOnly: true, tabIndex: 0, ariaLabel: "layout editor keyboard" });
    this.root.appendChild(this.keySink);
    this.root.addEventListener("mousedown", (e) => {
      if (e.target === this.root) this.focusKeys();
    });
    this.toolbar = el("div", "ifa-toolbar");
    this.toolButtons = {};
    for (const [id, label, key] of TOOLS) {
      const b = el("button", "", { type: "button", textContent: label, title: `${label} (${key})` });
      b.dataset.tool = id;
      b.addEventListener("click", () => this.setSetting("tool", id));
      this.toolButtons[id] = b;
      this.toolbar.appendChild(b);
    }
    const sep = () => this.toolbar.appendChild(el("span", "ifa-sep"));
    const labelled = (text, input, title) => {
      const l = el("label", "", { title });
      l.append(text, input);
      this.toolbar.appendChild(l);
      return input;
    };
    this.brushInput = labelled("size", el("input", "", { type: "number", min: 1, max: 512, value: this.settings.brush }), "Brush / eraser radius (px)");
    this.brushInput.addEventListener("change", () => this.setSetting("brush", clamp(+this.brushInput.value || 24, 1, 512)));
    this.attachInput = labelled("add to selected", el("input", "", { type: "checkbox", checked: this.settings.attach }), "New shapes join the selected instance (or hold Alt)");
    this.attachInput.addEventListener("change", () => this.setSetting("attach", this.attachInput.checked));
    sep();
    this.undoBtn = this.toolButton("↶", "Undo (Ctrl+Z)", () => this.undo());
    this.redoBtn = this.toolButton("↷", "Redo (Ctrl+Shift+Z)", () => this.redo());
    this.toolButton("dup", "Duplicate the selection (Ctrl+D)", () => this.duplicate());
    this.toolButton("del", "Delete the selection (Delete)", () => this.deleteSelection());
    sep();
    this.snapInput = labelled("snap", el("input", "", { type: "checkbox", checked: this.settings.snap }), "Snap to the grid");
    this.snapInput.addEventListener("change", () => this.setSetting("snap", this.snapInput.checked));
    this.gridInput = el("input", "", { type: "number", min: 1, max: 512, value: this.settings.grid, title: "Grid size (px)" });
    this.toolbar.appendChild(this.gridInput);
    this.gridInput.addEventListener("change", () => this.setSetting("grid", clamp(+this.gridInput.value || 8, 1, 512)));
    this.cellsSelect = el("select", "", { title: "Show the cells the model sees at a latent resolution" });
    for (const [v, t] of [[0, "cells: off"], [8, "cells 1/8 (latent)"], [16, "cells 1/16"], [32, "cells 1/32"], [64, "cells 1/64"]]) this.cellsSelect.appendChild(el("option", "", { value: v, textContent: t }));
    this.cellsSelect.value = String(this.settings.cells);
    this.cellsSelect.addEventListener("change", () => this.setSetting("cells", +this.cellsSelect.value));
    this.toolbar.appendChild(this.cellsSelect);
    sep();
    this.underlaySelect = el("select", "", { title: "Underlay image" });
    for (const [v, t] of [["auto", "underlay: auto"], ["none", "underlay: none"], ["input", "underlay: input image"], ["last", "underlay: last output"], ["file", "underlay: uploaded file"]]) {
      this.underlaySelect.appendChild(el("option", "", { value: v, textContent: t }));
    }
    this.underlaySelect.value = this.settings.underlaySource;
    this.underlaySelect.addEventListener("change", () => this.setSetting("underlaySource", this.underlaySelect.value));
    this.toolbar.appendChild(this.underlaySelect);
    this.fileInput = el("input", "", { type: "file", accept: "image/*" });
    this.fileInput.style.display = "none";
    this.fileInput.addEventListener("change", () => this.uploadUnderlay(this.fileInput.files?.[0]));
    this.toolbar.appendChild(this.fileInput);
    this.toolButton("upload", "Upload an underlay image (stored in the input folder, not in the workflow)", () => this.fileInput.click());
    sep();
    this.jsonInput = el("input", "", { type: "file", accept: ".json,application/json" });
    this.jsonInput.style.display = "none";
    this.jsonInput.addEventListener("change", () => this.importFile(this.jsonInput.files?.[0]));
    this.toolbar.appendChild(this.jsonInput);
    this.toolButton("import", "Import layout JSON (this format, InstanceDiffusion, bounding boxes)", () => this.jsonInput.click());
    this.toolButton("export", "Download the layout JSON", () => this.exportFile());
    this.fullBtn = this.toolButton("fullscreen", "Fullscreen editor (Esc to leave)", () => this.toggleFullscreen());
    this.helpBtn = this.toolButton("keys", `Keyboard shortcuts (click the canvas first):\n${shortcutsTitle()}`, () => {
      this.help.hidden = !this.help.hidden;
      this.helpBtn.classList.toggle("ifa-on", !this.help.hidden);
    });
    this.help = el("div", "ifa-help", { hidden: true });
    for (const [k, what] of SHORTCUTS) this.help.append(el("div", "", { textContent: `${k} — ${what}` }));

    this.body = el("div", "ifa-body");
    this.stage = el("div", "ifa-stage");
    this.canvas = el("canvas");
    this.stage.appendChild(this.canvas);
    this.layers = el("div", "ifa-layers");
    this.body.append(this.stage, this.layers);
    this.promptInput = el("input", "ifa-prompt", { type: "text", placeholder: "global prompt (optional)" });
    this.promptInput.addEventListener("input", () => this.commit({ ...LM.cloneLayout(this.layout), prompt: this.promptInput.value }, "prompt", { keepLayers: true }));
    this.status = el("div", "ifa-status");
    // Timeline (editor_timeline.js): frame count in the toolbar, slider and keyframe bar under the canvas.
    this.timeline = new TimelineBar(this);
    this.toolbar.appendChild(this.timeline.countLabel);
    this.root.append(this.toolbar, this.help, this.body, this.timeline.bar, this.promptInput, this.status);

    this.canvas.addEventListener("pointerdown", (e) => this.onPointerDown(e));
    this.canvas.addEventListener("pointermove", (e) => this.onPointerMove(e));
    this.canvas.addEventListener("pointerup", (e) => this.onPointerUp(e));
    this.canvas.addEventListener("pointercancel", () => this.cancelDrag());
    this.canvas.addEventListener("pointerleave", () => {
      this.hover = null;
      this.draw();
    });
    this.canvas.addEventListener("dblclick", (e) => this.onDoubleClick(e));
    this.canvas.addEventListener("contextmenu", (e) => e.preventDefault());
    this.root.addEventListener("keydown", (e) => this.onKeyDown(e));
    // Keep LiteGraph from treating clicks inside the editor as canvas drags or node shortcuts.
    for (const t of ["pointerdown", "mousedown", "wheel", "keyup", "paste", "copy"]) this.root.addEventListener(t, (e) => e.stopPropagation());
    if (typeof ResizeObserver !== "undefined") {
      this.resizeObserver = new ResizeObserver(() => this.fit());
      this.resizeObserver.observe(this.stage);
    }
  }

  /** Give keyboard focus to the editor (its shortcuts then work). */
  focusKeys() {
    this.keySink.focus({ preventScroll: true });
  }

  toolButton(text, title, fn) {
    const b = this.doc.createElement("button");
    b.type = "button";
    b.textContent = text;
    b.title = title;
    b.addEventListener("click", fn);
    this.toolbar.appendChild(b);
    return b;
  }

  destroy() {
    this.resizeObserver?.disconnect();
    if (this.fullscreen) this.toggleFullscreen();
    this.root.remove();
  }

  /**
   * Height (CSS px) at which the editor shows its whole canvas at `width`, for hosts that size their content
   * instead of giving it a height (Vue nodes): the canvas then keeps its place while the layer list fills, and
   * grows when the node is made wider.
   */
  naturalHeight(width) {
    const narrow = width <= 720; // the stylesheet's container query puts the layer list under the canvas
    const canvasW = Math.max(120, narrow ? width : width - 256);
    const canvasH = clamp(Math.round((canvasW * this.layout.height) / this.layout.width), 200, 1200);
    const rest = [this.toolbar, this.help, this.timeline?.bar, this.promptInput, this.status].filter(Boolean).reduce((a, el) => a + (el.hidden ? 0 : el.offsetHeight + 4), 0);
    return Math.round(rest + canvasH + (narrow ? 174 : 0) + 4);
  }

  /** Open the editor in a page-filling dialog (works wherever the node cannot show it); Esc closes it. */
  openDialog() {
    if (!this.fullscreen) this.toggleFullscreen();
  }

  toggleFullscreen() {
    this.fullscreen = !this.fullscreen;
    if (this.fullscreen) {
      this.homeParent = this.root.parentElement;
      this.doc.body.appendChild(this.root);
      this.root.classList.add("ifa-fullscreen");
    } else {
      this.root.classList.remove("ifa-fullscreen");
      if (this.homeParent) this.homeParent.appendChild(this.root);
      else this.root.remove();
    }
    this.fullBtn.classList.toggle("ifa-on", this.fullscreen);
    this.focusKeys();
    this.fit();
  }

  /** Size the canvas to the stage with the layout's aspect ratio (backing store at device pixels). */
  fit() {
    const rect = this.stage.getBoundingClientRect();
    // getBoundingClientRect includes the node's zoom transform; clientWidth is the CSS size.
    const cw = this.stage.clientWidth || rect.width;
    const ch = this.stage.clientHeight || rect.height;
    if (cw < 10 || ch < 10) return;
    const { width, height } = fitCanvas(this.layout.width, this.layout.height, cw, ch);
    const dpr = (typeof devicePixelRatio === "number" ? devicePixelRatio : 1) * (this.fullscreen ? 1 : Math.max(1, rect.width / cw));
    this.canvas.style.width = `${Math.floor(width)}px`;
    this.canvas.style.height = `${Math.floor(height)}px`;
    const bw = Math.max(1, Math.round(Math.floor(width) * dpr));
    const bh = Math.max(1, Math.round(Math.floor(height) * dpr));
    if (this.canvas.width !== bw || this.canvas.height !== bh) {
      this.canvas.width = bw;
      this.canvas.height = bh;
    }
    this.draw();
  }

  refresh(opts = {}) {
    for (const [id, b] of Object.entries(this.toolButtons)) b.classList.toggle("ifa-on", this.settings.tool === id);
    this.undoBtn.disabled = !this.history.canUndo();
    this.redoBtn.disabled = !this.history.canRedo();
    if (this.doc.activeElement !== this.promptInput) this.promptInput.value = this.layout.prompt || "";
    if (!opts.keepLayers) {
      renderLayers(this.layers, this.layout, this.selection, {
        select: (i, additive, fromText) => {
          if (fromText && this.selection.length === 1 && this.selection[0] === i) return;
          // Selecting from a description field must not rebuild the list (the field would lose focus).
          this.setSelection(additive ? (this.selection.includes(i) ? this.selection.filter((k) => k !== i) : [...this.selection, i]) : [i], { keepLayers: !!fromText });
        },
        describe: (i, text) => this.describe(i, text, true),
        toggle: (i, field) => this.commit(LM.updateInstance(this.layout, i, (inst) => {
          if (field === "enabled") inst.enabled = inst.enabled === false;
          else if (inst[field]) delete inst[field];
          else inst[field] = true;
          return inst;
        })),
        reorder: (i, op) => this.commit(LM.reorder(this.layout, [i], op)),
        remove: (i) => {
          this.selection = [];
          this.commit(LM.deleteInstances(this.layout, [i]));
        },
        recolor: (i, hex) => this.commit(LM.updateInstance(this.layout, i, (inst) => ({ ...inst, color: hex }))),
      });
    } else {
      const sel = new Set(this.selection);
      for (const row of this.layers.querySelectorAll(".ifa-layer")) row.classList.toggle("ifa-selected", sel.has(+row.dataset.index));
    }
    this.timeline.refresh();
    this.updateStatus();
    this.fit();
  }

  updateStatus(extra = "") {
    const L = this.layout;
    let msg;
    let warn = false;
    if (this.invalid) {
      msg = `Cannot edit: ${this.invalid}. The node's text is left as it is; fix it or import a layout.`;
      warn = true;
    } else {
      msg = `${L.width}×${L.height}px · ${L.instances.length} instance${L.instances.length === 1 ? "" : "s"}`;
      if (this.selection.length) msg += ` · selected ${this.selection.map((i) => i + 1).join(", ")}`;
      if (this.hover) msg += ` · ${Math.round(this.hover[0])},${Math.round(this.hover[1])} (${Math.round((100 * this.hover[0]) / L.width)}%, ${Math.round((100 * this.hover[1]) / L.height)}%)`;
      if (this.warnings.length) {
        msg += ` · ${this.warnings.length} warning(s): ${this.warnings[0]}`;
        warn = true;
      }
    }
    if (extra) msg = `${extra} · ${msg}`;
    this.status.textContent = msg;
    this.status.classList.toggle("ifa-warn", warn);
  }

  // ----------------------------------------------------------------- drawing ----------------

  view() {
    return { W: this.layout.width, H: this.layout.height, scale: this.canvas.width / this.layout.width };
  }

  draw() {
    const ctx = this.canvas.getContext("2d");
    if (!ctx || !this.canvas.width) return;
    const view = this.view();
    R.drawBackground(ctx, view, this.underlay, this.settings.underlayOpacity);
    if (this.settings.snap) R.drawGrid(ctx, view, this.settings.grid);
    if (!this.settings.cells) this.timeline.drawOnion(ctx, view);
    if (this.settings.cells) R.drawCellOverlay(ctx, view, this.layout, this.settings.cells);
    else R.drawInstances(ctx, view, this.liveLayout(), this.selection);
    const dr = this.drag;
    if (dr?.type === "draw-box" && dr.rect) R.drawRegion(ctx, view, { kind: "box", box: dr.rect }, "#ffffff", { selected: true });
    if (dr?.type === "scribble") R.drawRegion(ctx, view, { kind: "scribble", points: dr.points.length > 1 ? dr.points : [dr.points[0], dr.points[0]], width: 4 }, "#ffffff");
    if (dr?.type === "brush") this.drawLiveMask(ctx, view);
    if (dr?.type === "marquee" && dr.rect) R.drawMarquee(ctx, view, dr.rect);
    if (this.pendingPoly.length) R.drawPendingPolygon(ctx, view, this.pendingPoly, this.hover);
    if (!this.settings.cells) {
      const ext = this.selectionExtent();
      R.drawSelection(ctx, view, ext, this.selection.every((i) => !this.layout.instances[i]?.locked), HANDLE_DRAW_PX * (view.scale * this.layout.width) / Math.max(1, this.canvas.clientWidth || this.canvas.width));
    }
    if ((this.settings.tool === "brush" || this.settings.tool === "eraser") && this.hover) R.drawBrushCursor(ctx, view, this.hover, this.settings.brush, this.settings.tool === "eraser");
    if (this.invalid) {
      ctx.fillStyle = "rgba(120,0,0,0.5)";
      ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    }
  }

  /** Layout to draw: during a brush stroke the stroked instance's mask region is drawn live instead. */
  liveLayout() {
    const dr = this.drag;
    if (dr?.type !== "brush" || dr.regionIndex < 0) return this.layout;
    const L = { ...this.layout, instances: [...this.layout.instances] };
    const inst = { ...L.instances[dr.index] };
    inst.regions = inst.regions.filter((_, k) => k !== dr.regionIndex);
    L.instances[dr.index] = inst;
    return L;
  }

  drawLiveMask(ctx, view) {
    const dr = this.drag;
    const m = dr.mask;
    if (!dr.bitmap) {
      dr.bitmap = this.doc.createElement("canvas");
      dr.bitmap.width = m.w;
      dr.bitmap.height = m.h;
    }
    R.paintMaskInto(dr.bitmap, m, dr.color);
    ctx.globalAlpha = 0.5;
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(dr.bitmap, 0, 0, view.W * view.scale, view.H * view.scale);
    ctx.imageSmoothingEnabled = true;
    ctx.globalAlpha = 1;
  }

  selectionExtent() {
    const { width: W, height: H } = this.layout;
    return unionRects(this.selection.filter((i) => this.layout.instances[i] && !this.layout.instances[i].hidden).map((i) => LM.instanceExtent(this.layout.instances[i], W, H)));
  }

  // ----------------------------------------------------------------- underlay ---------------

  refreshUnderlay() {
    const url = this.host.underlayUrl?.(this.settings.underlaySource, this.layout) ?? null;
    if (url === this.underlayUrl) return;
    this.underlayUrl = url;
    if (!url) {
      this.underlay = null;
      this.draw();
      return;
    }
    const img = new Image();
    img.onload = () => {
      if (this.underlayUrl === url) {
        this.underlay = img;
        this.draw();
      }
    };
    img.onerror = () => this.updateStatus(`underlay ${url} could not be loaded`);
    img.src = url;
  }

  async uploadUnderlay(file) {
    if (!file || !this.host.uploadUnderlay) return;
    try {
      const ref = await this.host.uploadUnderlay(file);
      this.commit({ ...LM.cloneLayout(this.layout), underlay: { filename: ref.filename, subfolder: ref.subfolder || "", type: ref.type || "input" } });
      this.underlaySelect.value = "file";
      this.setSetting("underlaySource", "file");
    } catch (e) {
      this.updateStatus(`upload failed: ${e.message}`);
    } finally {
      this.fileInput.value = "";
    }
  }

  // ----------------------------------------------------------------- JSON import/export ------

  async importFile(file) {
    if (!file) return;
    const text = await file.text();
    this.jsonInput.value = "";
    this.importText(text);
  }

  /** Replace the layout by imported JSON (one undo step); the canvas size follows the import. */
  importText(text) {
    try {
      const { layout, warnings } = LM.parseLayout(text, { width: this.layout.width, height: this.layout.height });
      this.invalid = null;
      this.warnings = warnings;
      this.selection = [];
      this.commit(layout, null, { full: true });
      this.host.onResizeCanvas?.(layout.width, layout.height);
      return true;
    } catch (e) {
      this.updateStatus(`import failed: ${e.message}`);
      return false;
    }
  }

  exportFile() {
    const blob = new Blob([LM.serializeLayout(this.timeline.source, 2)], { type: "application/json" });
    const a = this.doc.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = "instance_layout.json";
    this.doc.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  }

  // ----------------------------------------------------------------- edits ------------------

  describe(i, text, keepLayers = false) {
    this.commit(LM.updateInstance(this.layout, i, (inst) => ({ ...inst, description: text })), `desc:${i}`, { keepLayers });
  }

  deleteSelection() {
    const sel = this.selection.filter((i) => !this.layout.instances[i]?.locked);
    if (!sel.length) return;
    this.selection = [];
    this.commit(LM.deleteInstances(this.layout, sel));
  }

  duplicate() {
    if (!this.selection.length) return;
    const off = this.settings.snap ? this.settings.grid * 2 : 16;
    // Timeline: duplicate the full instances (every keyframe moves with the copy).
    const { layout, indices } = LM.duplicateInstances(this.timeline.source, this.selection, off, off);
    this.selection = indices;
    this.commit(layout, null, { full: true });
  }

  copy() {
    if (!this.selection.length) return false;
    this.host.clipboard?.write(LM.copyPayload(this.timeline.source, this.selection)); // with keyframes
    return true;
  }

  paste() {
    const text = this.host.clipboard?.read();
    if (!text) return false;
    const res = LM.pastePayload(this.timeline.source, text, 0, 0); // timeline: appended to the full layout
    if (!res) return false;
    this.selection = res.indices;
    this.commit(res.layout, null, { full: true });
    return true;
  }

  nudge(dx, dy) {
    const sel = this.selection.filter((i) => !this.layout.instances[i]?.locked);
    if (!sel.length) return;
    this.commit(LM.moveInstances(this.layout, sel, dx, dy), "nudge");
  }

  /** Add a region as a new instance, or to the single selected instance in attach mode. */
  addRegion(region, attach) {
    const sel = this.selection.length === 1 ? this.selection[0] : -1;
    if (attach && sel >= 0 && !this.layout.instances[sel].locked) {
      this.commit(LM.updateInstance(this.layout, sel, (inst) => {
        const regions = region.kind === "box" ? inst.regions.filter((r) => r.kind !== "box") : inst.regions;
        return { ...inst, regions: [...regions, region] };
      }));
      return;
    }
    const { layout, index } = LM.addInstance(this.layout, [region]);
    this.selection = [index];
    this.commit(layout);
  }

  cancelPending() {
    this.pendingPoly = [];
    this.drag = null;
    this.inlineEditor?.remove();
    this.inlineEditor = null;
  }

  cancelDrag() {
    if (this.drag?.base) this.layout = this.drag.base;
    this.drag = null;
    this.refresh();
  }

  // ----------------------------------------------------------------- pointer ----------------

  /** Layout-pixel coordinates of a pointer event (handles CSS zoom transforms of the node). */
  toLayout(e) {
    const r = this.canvas.getBoundingClientRect();
    return [((e.clientX - r.left) / r.width) * this.layout.width, ((e.clientY - r.top) / r.height) * this.layout.height];
  }

  /** `px` screen pixels expressed in layout pixels. */
  screenToLayout(px) {
    const r = this.canvas.getBoundingClientRect();
    return (px * this.layout.width) / Math.max(1, r.width);
  }

  snapP(p) {
    return this.settings.snap ? snapPoint(p, this.settings.grid) : p;
  }

  onPointerDown(e) {
    if (this.invalid || this.settings.cells) return;
    this.focusKeys();
    e.preventDefault();
    const p = this.toLayout(e);
    const tool = this.settings.tool;
    const tol = this.screenToLayout(5);
    if (e.button === 2) {
      // Right-click finishes a polygon, otherwise cancels.
      if (this.pendingPoly.length >= 3) this.finishPolygon(e.altKey || this.settings.attach);
      else this.cancelPending();
      this.draw();
      return;
    }
    try {
      this.canvas.setPointerCapture(e.pointerId);
    } catch {
      /* synthetic events have no capturable pointer */
    }
    const base = this.layout;
    if (tool === "polygon") {
      const q = this.snapP(p);
      if (this.pendingPoly.length >= 3 && Math.hypot(q[0] - this.pendingPoly[0][0], q[1] - this.pendingPoly[0][1]) <= this.screenToLayout(VERTEX_HIT_PX / 2)) {
        this.finishPolygon(e.altKey || this.settings.attach);
      } else {
        this.pendingPoly.push(q.map((v) => clamp(v, 0, 1e9)));
      }
      this.draw();
      return;
    }
    if (tool === "brush" || tool === "eraser") return this.startBrush(p, tool === "eraser", e.altKey || this.settings.attach);
    if (tool === "scribble") {
      this.drag = { type: "scribble", points: [p], attach: e.altKey || this.settings.attach };
      return;
    }
    if (tool === "point") {
      const q = this.snapP(p);
      this.addRegion({ kind: "point", point: [q[0], q[1]].map((v) => Math.round(v * 100) / 100), width: 6 }, e.altKey || this.settings.attach);
      return;
    }
    // select / box: handles first, then instances (unless Ctrl starts a new box on top), then empty space.
    const handleTol = this.screenToLayout(HANDLE_HIT_PX / 2);
    const h = hitHandle(base, this.selection, p, Math.min(handleTol, handleSize(this.selectionExtent() || [0, 0, 1, 1], handleTol * 2) / 2 + 1));
    if (h && !(tool === "box" && (e.ctrlKey || e.metaKey))) {
      this.drag = { type: "resize", base, handle: h.handle, rect: h.rect, sel: [...this.selection], start: p };
      return;
    }
    const hit = tool === "box" && (e.ctrlKey || e.metaKey) ? null : hitInstance(base, p, { tol });
    if (hit) {
      if (e.shiftKey || ((e.ctrlKey || e.metaKey) && tool === "select")) {
        const sel = this.selection.includes(hit.index) ? this.selection.filter((i) => i !== hit.index) : [...this.selection, hit.index];
        this.setSelection(sel);
      } else if (!this.selection.includes(hit.index)) this.setSelection([hit.index]);
      const vertex = this.selection.length === 1 ? hitVertex(base.instances[hit.index].regions[hit.region], p, this.screenToLayout(VERTEX_HIT_PX / 2)) : -1;
      if (vertex >= 0) this.drag = { type: "vertex", base, index: hit.index, region: hit.region, vertex, start: p };
      else this.drag = { type: "move", base, sel: [...this.selection], start: p, ext: this.selectionExtent() };
      return;
    }
    if (tool === "box") this.drag = { type: "draw-box", start: this.snapP(p), rect: null, attach: e.altKey || this.settings.attach };
    else {
      this.drag = { type: "marquee", start: p, rect: null, additive: e.shiftKey, base: this.selection };
      if (!e.shiftKey) this.setSelection([]);
    }
  }

  onPointerMove(e) {
    const p = this.toLayout(e);
    this.hover = [clamp(p[0], 0, this.layout.width), clamp(p[1], 0, this.layout.height)];
    const dr = this.drag;
    const { width: W, height: H } = this.layout;
    if (!dr) {
      this.updateStatus();
      this.draw();
      return;
    }
    switch (dr.type) {
      case "move": {
        let dx = p[0] - dr.start[0];
        let dy = p[1] - dr.start[1];
        if (this.settings.snap && dr.ext) {
          dx = snap(dr.ext[0] + dx, this.settings.grid) - dr.ext[0];
          dy = snap(dr.ext[1] + dy, this.settings.grid) - dr.ext[1];
        }
        const movable = dr.sel.filter((i) => !dr.base.instances[i].locked);
        this.layout = LM.moveInstances(dr.base, movable, dx, dy);
        dr.moved = dr.moved || Math.hypot(p[0] - dr.start[0], p[1] - dr.start[1]) > this.screenToLayout(2);
        break;
      }
      case "resize": {
        const to = resizeRect(dr.rect, dr.handle, this.snapP(p), { bounds: [W, H], minSize: 2, keepAspect: e.shiftKey });
        const L = LM.cloneLayout(dr.base);
        for (const i of dr.sel) L.instances[i] = LM.transformInstance(dr.base.instances[i], dr.rect, to, W, H);
        this.layout = L;
        dr.moved = true;
        break;
      }
      case "vertex": {
        const q = this.snapP(p).map((v, k) => clamp(v, 0, k ? H : W));
        this.layout = LM.updateInstance(dr.base, dr.index, (inst) => {
          inst.regions[dr.region].points[dr.vertex] = q.map((v) => Math.round(v * 100) / 100);
          return inst;
        });
        dr.moved = true;
        break;
      }
      case "draw-box":
        dr.rect = rectFromDrag(dr.start, this.snapP(p), W, H);
        break;
      case "marquee": {
        dr.rect = normRect([dr.start[0], dr.start[1], p[0], p[1]]);
        const hits = marqueeSelect(this.layout, dr.rect);
        this.selection = dr.additive ? [...new Set([...dr.base, ...hits])] : hits;
        break;
      }
      case "scribble":
        dr.points.push([clamp(p[0], 0, W), clamp(p[1], 0, H)]);
        break;
      case "brush":
        paintLine(dr.mask, W, H, dr.last, p, this.settings.brush, dr.erase ? 0 : 1);
        dr.last = p;
        break;
    }
    this.draw();
  }

  onPointerUp(e) {
    const dr = this.drag;
    if (!dr) return;
    this.drag = null;
    const p = this.toLayout(e);
    switch (dr.type) {
      case "move":
      case "resize":
      case "vertex":
        if (dr.moved && this.layout !== dr.base) {
          const moved = this.layout;
          this.layout = dr.base;
          this.commit(moved);
        } else {
          this.layout = dr.base;
          this.refresh();
        }
        break;
      case "draw-box": {
        const r = dr.rect || rectFromDrag(dr.start, this.snapP(p), this.layout.width, this.layout.height);
        if (r[2] - r[0] >= 2 && r[3] - r[1] >= 2) this.addRegion({ kind: "box", box: r.map((v) => Math.round(v * 100) / 100) }, dr.attach);
        else this.refresh();
        break;
      }
      case "marquee":
        this.setSelection(this.selection);
        break;
      case "scribble": {
        const pts = simplifyPolyline(dr.points, this.screenToLayout(3)).map((q) => q.map((v) => Math.round(v * 100) / 100));
        if (pts.length >= 2 && Math.hypot(pts[pts.length - 1][0] - pts[0][0], pts[pts.length - 1][1] - pts[0][1]) > 1) {
          this.addRegion({ kind: "scribble", points: pts, width: 4 }, dr.attach);
        } else this.refresh();
        break;
      }
      case "brush":
        this.finishBrush(dr);
        break;
    }
  }

  onDoubleClick(e) {
    if (this.settings.tool === "polygon") {
      // The two clicks of the double-click already added the final vertex (twice).
      if (this.pendingPoly.length >= 4) this.pendingPoly.pop();
      if (this.pendingPoly.length >= 3) this.finishPolygon(e.altKey || this.settings.attach);
      return;
    }
    const hit = hitInstance(this.layout, this.toLayout(e), { tol: this.screenToLayout(5), includeLocked: true });
    if (hit) this.editInline(hit.index);
  }

  finishPolygon(attach) {
    const pts = this.pendingPoly.map((q) => q.map((v) => Math.round(v * 100) / 100));
    this.pendingPoly = [];
    if (pts.length >= 3) this.addRegion({ kind: "polygon", points: pts }, attach);
  }

  startBrush(p, erase, attach) {
    const { width: W, height: H } = this.layout;
    const index = strokeTarget({
      selection: this.selection, locked: (i) => !!this.layout.instances[i]?.locked, erase, attach, lastStroke: this.lastStroke, text: this.text,
    });
    if (index < 0 && erase) return;
    const inst = index >= 0 ? this.layout.instances[index] : null;
    const regionIndex = inst ? inst.regions.findIndex((r) => r.kind === "mask" && LM.regionMask(r)) : -1;
    if (erase && regionIndex < 0) return;
    const [mw, mh] = maskSizeFor(W, H);
    const mask = regionIndex >= 0 ? cloneMask(LM.regionMask(inst.regions[regionIndex])) : createMask(mw, mh);
    this.drag = { type: "brush", index, regionIndex, mask, erase, last: p, attach, color: inst ? LM.displayColor(inst, index) : LM.nextColor(this.layout) };
    paintLine(mask, W, H, p, p, this.settings.brush, erase ? 0 : 1);
    this.draw();
  }

  finishBrush(dr) {
    const rle = encodeRLE(dr.mask);
    const empty = maskArea(dr.mask) === 0;
    this.lastStroke = null;
    if (dr.index < 0) {
      if (!empty) {
        const { layout, index } = LM.addInstance(this.layout, [{ kind: "mask", rle }]);
        this.selection = [index];
        this.commit(layout);
        if (!dr.erase) this.lastStroke = { index, text: this.text };
      } else this.refresh();
      return;
    }
    this.commit(LM.updateInstance(this.layout, dr.index, (inst) => {
      if (dr.regionIndex >= 0) {
        if (empty) inst.regions.splice(dr.regionIndex, 1);
        else inst.regions[dr.regionIndex] = { ...inst.regions[dr.regionIndex], rle };
      } else if (!empty) inst.regions.push({ kind: "mask", rle });
      return inst;
    }));
    if (!dr.erase && !empty) this.lastStroke = { index: dr.index, text: this.text };
  }

  /** Inline text field over instance i for its description (Enter/blur saves, Esc cancels). */
  editInline(i) {
    this.inlineEditor?.remove();
    const inst = this.layout.instances[i];
    const e = LM.instanceExtent(inst, this.layout.width, this.layout.height) || [0, 0, 0, 0];
    const input = this.doc.createElement("input");
    input.type = "text";
    input.className = "ifa-inline";
    input.value = inst.description || "";
    input.placeholder = `describe instance ${i + 1}`;
    const cs = this.canvas.clientWidth / this.layout.width;
    input.style.left = `${this.canvas.offsetLeft + Math.max(0, e[0] * cs)}px`;
    input.style.top = `${this.canvas.offsetTop + Math.max(0, e[1] * cs)}px`;
    input.style.width = `${Math.max(140, Math.min(320, (e[2] - e[0]) * cs))}px`;
    const original = inst.description || "";
    let done = false;
    const finish = (save) => {
      if (done) return;
      done = true;
      if (!save) this.describe(i, original);
      this.history.seal();
      input.remove();
      this.inlineEditor = null;
      this.refresh();
      this.focusKeys();
    };
    input.addEventListener("input", () => this.describe(i, input.value, true));
    input.addEventListener("keydown", (ev) => {
      ev.stopPropagation();
      if (ev.key === "Enter") finish(true);
      else if (ev.key === "Escape") finish(false);
    });
    input.addEventListener("blur", () => finish(true));
    this.stage.appendChild(input);
    this.inlineEditor = input;
    this.setSelection([i]);
    input.focus();
    input.select();
  }

  // ----------------------------------------------------------------- keyboard ---------------

  onKeyDown(e) {
    const tag = e.target?.tagName;
    const inText = e.target !== this.keySink && (tag === "TEXTAREA" || (tag === "INPUT" && !["checkbox", "button", "file", "color"].includes(e.target.type)) || tag === "SELECT");
    const mod = e.ctrlKey || e.metaKey;
    const k = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    // a focused slider (the timeline's frame) keeps its arrow keys but has no undo of its own: Ctrl+Z is the editor's
    const history = !inText || (tag === "INPUT" && e.target.type === "range");
    let handled = true;
    if (mod && k === "z" && history) e.shiftKey ? this.redo() : this.undo();
    else if (mod && k === "y" && history) this.redo();
    else if (inText) handled = false;
    else if (mod && k === "c") handled = this.copy();
    else if (mod && k === "v") handled = this.paste();
    else if (mod && k === "d") this.duplicate();
    else if (mod && k === "a") this.setSelection(this.layout.instances.map((_, i) => i).filter((i) => !this.layout.instances[i].hidden && !this.layout.instances[i].locked));
    else if (k === "Delete" || (k === "Backspace" && !this.pendingPoly.length)) this.deleteSelection();
    else if (k === "Backspace") {
      this.pendingPoly.pop();
      this.draw();
    } else if (k === "Escape") {
      if (this.pendingPoly.length || this.drag) this.cancelPending();
      else if (this.fullscreen) this.toggleFullscreen();
      else this.setSelection([]);
      this.draw();
    } else if (k === "Enter" && this.pendingPoly.length >= 3) {
      this.finishPolygon(e.altKey || this.settings.attach);
    } else if (!mod && !e.altKey && this.timeline.onKey(k)) {
      // timeline keys: "," / "." frame, K keyframe
    } else if (k.startsWith("Arrow")) {
      const step = e.shiftKey ? (this.settings.snap ? this.settings.grid : 10) : 1;
      const [dx, dy] = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] }[k];
      this.nudge(dx, dy);
    } else if (k === "h" && !mod) {
      const allHidden = this.selection.length && this.selection.every((i) => this.layout.instances[i].hidden);
      if (this.selection.length) {
        const L = LM.cloneLayout(this.layout);
        for (const i of this.selection) if (allHidden) delete L.instances[i].hidden; else L.instances[i].hidden = true;
        this.commit(L);
      }
    } else if (!mod && !e.altKey) {
      const tool = TOOLS.find((t) => t[2].toLowerCase() === k);
      if (tool) this.setSetting("tool", tool[0]);
      else handled = false;
    } else handled = false;
    if (handled) e.preventDefault();
    // Keys typed in the editor never reach the graph (Delete would remove the node, Ctrl+Z undo the graph).
    e.stopPropagation();
  }
}
