// ComfyUI extension: puts the instance layout editor on the "Instance Layout" node
// (IFAInstanceLayout, and any future IFA* node with a `layout` STRING input).
//
// The node's own `layout` STRING widget stays the single source of truth: it is what the workflow
// saves, what node copy/paste carries and what an API-format prompt sends.  The editor hides that
// widget's text box and mirrors every edit into it; when the value changes from elsewhere (loading
// a workflow, ComfyUI's own undo) the editor reloads from it.  UI preferences (tool, grid, overlay)
// live in node.properties; an uploaded underlay is referenced by filename in the layout JSON
// ("underlay": {"filename", "subfolder", "type"}), never embedded as base64.

import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";
import { LayoutEditor } from "./editor_view.js";
import { inputLink, inputLinkId, outputTargets } from "./graph_links.js";

const EXTENSION_NAME = "ifadapter.InstanceLayoutEditor";
const CLIPBOARD_KEY = "ifadapter.layout.clipboard";
const EDITOR_WIDGET = "layout_editor";
const DIALOG_BUTTON = "editor"; // the name some Vue renderers print above the button
const DIALOG_LABEL = "✎ open layout editor";
/** Default size of a new Instance Layout node: a canvas large enough to draw on, labels uncut. */
export const NODE_SIZE = [640, 900];
let memoryClipboard = null;
let lastOutputImage = null; // {filename, subfolder, type} of the newest image any node produced

const isModernFrontend = () => typeof window !== "undefined" && !!window.comfyAPI;

/** Whether this node definition gets the editor. */
function wantsEditor(nodeData) {
  if (!nodeData) return false;
  if (nodeData.name === "IFAInstanceLayout") return true;
  const inputs = { ...(nodeData.input?.required || {}), ...(nodeData.input?.optional || {}) };
  const spec = inputs.layout;
  return typeof nodeData.name === "string" && nodeData.name.startsWith("IFA") && Array.isArray(spec) && spec[0] === "STRING";
}

function viewUrl(ref) {
  if (!ref?.filename) return null;
  const q = `filename=${encodeURIComponent(ref.filename)}&type=${encodeURIComponent(ref.type || "input")}&subfolder=${encodeURIComponent(ref.subfolder || "")}`;
  return api.apiURL(`/view?${q}`);
}

const clipboard = {
  read() {
    try {
      return globalThis.localStorage?.getItem(CLIPBOARD_KEY) ?? memoryClipboard;
    } catch {
      return memoryClipboard;
    }
  },
  write(text) {
    memoryClipboard = text;
    try {
      globalThis.localStorage?.setItem(CLIPBOARD_KEY, text);
    } catch {
      /* private mode: the in-memory copy still works between nodes of this page */
    }
  },
};

/** Hide the raw `layout` text box in both frontends while keeping it serialized. */
function hideWidget(node, w) {
  w.hidden = true;
  w.options = w.options || {};
  w.options.hidden = true;
  w.computeSize = () => [0, -4];
  if (!isModernFrontend()) {
    // Legacy DOM widgets hide their element when their type is "hidden"; serialization is unaffected.
    w.type = "hidden";
  }
  const el = w.element || w.inputEl;
  if (el) el.style.display = "none";
  // The layout is JSON, full of braces: ComfyUI's dynamic-prompt expansion ({a|b} picks one) would destroy it
  // when queueing. The node definition opts out ("dynamicPrompts": False); mirror it on the widget for frontends
  // that read the flag from the widget.
  w.dynamicPrompts = false;
}

/** The first image of a ComfyUI output message ({images: [{filename, subfolder, type}]}), or null. */
function firstImage(output) {
  const images = output?.images;
  return Array.isArray(images) && images.length && images[0]?.filename ? images[0] : null;
}

/** /view URL of an input-folder file named as Load Image's widget names it ("sub/name.png [input]"). */
function inputFileUrl(value) {
  const m = / \[(input|output|temp)\]$/.exec(value);
  const parts = value.replace(/ \[(input|output|temp)\]$/, "").split("/");
  const filename = parts.pop();
  return viewUrl({ filename, subfolder: parts.join("/"), type: m ? m[1] : "input" });
}

/** Output images of every node that reported some this session, by node id ("executed" events). */
const outputsByNode = new Map();

/**
 * Image URL of whatever feeds the node's `underlay` input:
 * - a Load Image node: the file its `image` widget names (no run needed);
 * - a node that shows images itself (its previews, or the images it reported when the graph ran);
 * - any other IMAGE source (VAE Decode, an image filter...): after a run, the images that a node fed
 *   by the same output (a Preview Image or Save Image beside this node) reported.
 * null when nothing can be shown yet.
 */
function upstreamUnderlayUrl(node) {
  const slot = node.inputs?.findIndex((i) => i.name === "underlay") ?? -1;
  const link = inputLink(node, slot);
  if (!link) return null;
  const src = node.graph?.getNodeById?.(link.origin_id);
  if (!src) return null;
  // What the backend itself received on `underlay` in the last run (reported as ui.ifa_underlay).
  if (node.ifaInputUnderlay && node.ifaInputUnderlayLink === link.id) return viewUrl(node.ifaInputUnderlay);
  const imageWidget = src.widgets?.find((w) => w.name === "image" && typeof w.value === "string");
  if (imageWidget?.value && src.type === "LoadImage") {
    return inputFileUrl(imageWidget.value);
  }
  const own = firstImage(outputsByNode.get(String(src.id)));
  if (own) return viewUrl(own);
  if (src.imgs?.length && src.imgs[0]?.src) return src.imgs[0].src;
  if (imageWidget?.value) {
    return inputFileUrl(imageWidget.value);
  }
  for (const target of outputTargets(src, link.origin_slot)) {
    if (String(target.id) === String(node.id)) continue;
    const seen = firstImage(outputsByNode.get(String(target.id)));
    if (seen) return viewUrl(seen);
  }
  return null;
}

/**
 * Tell the frontend's change tracker that the graph changed. Edits made inside the editor (typing a description,
 * keyboard nudges) raise none of the canvas events the modern frontend watches, so without this the workflow it
 * persists for a page reload (and its undo history) would miss them.
 */
function noteGraphChanged() {
  const tracker = app.extensionManager?.workflow?.activeWorkflow?.changeTracker
    ?? app.workflowManager?.activeWorkflow?.changeTracker;
  try {
    if (typeof tracker?.captureCanvasState === "function") tracker.captureCanvasState();
    else tracker?.checkState?.();
  } catch (e) {
    console.warn("[comfyui-ifadapter] could not notify the change tracker", e);
  }
}

function attachEditor(node) {
  const layoutWidget = node.widgets?.find((w) => w.name === "layout");
  if (!layoutWidget) return;
  const widthWidget = node.widgets.find((w) => w.name === "width");
  const heightWidget = node.widgets.find((w) => w.name === "height");
  hideWidget(node, layoutWidget);
  const dims = () => ({ width: +widthWidget?.value || 1024, height: +heightWidget?.value || 1024 });

  let lastSeen = null;
  let ownOutput = null;
  const writeDims = (W, H) => {
    if (widthWidget && widthWidget.value !== W) widthWidget.value = W;
    if (heightWidget && heightWidget.value !== H) heightWidget.value = H;
  };

  const editor = new LayoutEditor(document, {
    onChange(text) {
      lastSeen = text;
      layoutWidget.value = text;
      node.setDirtyCanvas?.(true, true);
      app.graph?.change?.();
      noteGraphChanged();
    },
    onSettings(settings) {
      node.properties = node.properties || {};
      node.properties.ifa_editor = settings;
    },
    onResizeCanvas: writeDims,
    underlayUrl(source, layout) {
      const file = viewUrl(layout.underlay);
      const input = upstreamUnderlayUrl(node);
      const last = viewUrl(lastOutputImage) || (ownOutput && viewUrl(ownOutput));
      if (source === "none") return null;
      if (source === "file") return file;
      if (source === "input") return input;
      if (source === "last") return last;
      return input || file || null;
    },
    async uploadUnderlay(file) {
      const body = new FormData();
      body.append("image", file);
      body.append("type", "input");
      body.append("subfolder", "ifadapter_underlays");
      const resp = await api.fetchApi("/upload/image", { method: "POST", body });
      if (resp.status !== 200) throw new Error(`/upload/image answered ${resp.status} ${resp.statusText}`);
      const data = await resp.json();
      return { filename: data.name, subfolder: data.subfolder || "", type: data.type || "input" };
    },
    clipboard,
  }, node.properties?.ifa_editor || {});

  const host = document.createElement("div");
  host.style.cssText = "display:flex;width:100%;height:100%;min-height:0;box-sizing:border-box;";
  host.dataset.ifaHost = "1";
  host.appendChild(editor.root);

  /** Reload the editor when the widgets changed behind its back (workflow load, graph undo, other code). */
  const sync = (reset = false) => {
    if (node.id != null) editor.root.dataset.nodeId = String(node.id);
    const value = layoutWidget.value ?? "";
    if (value !== lastSeen || reset) {
      lastSeen = value;
      editor.load(value, dims(), reset);
    }
    const { width, height } = dims();
    if (!editor.invalid && (editor.layout.width !== width || editor.layout.height !== height)) editor.setCanvasSize(width, height);
    fitVueHost();
  };

  /**
   * Frontend 1.35's Vue nodes keep a node id's DOM widget slot when the graph is cleared or another workflow is loaded
   * and a new node gets the same id: the slot then holds the removed node's (empty) host and never mounts this one.
   * Put this host in its place. Where a Vue renderer shows no DOM widgets at all (frontend 1.27) there is no slot: the
   * node's "open layout editor" button opens the editor in a dialog instead.
   */
  const remountInVueNode = () => {
    if (host.isConnected || !globalThis.LiteGraph?.vueNodesMode || node.id == null) return;
    const id = String(node.id).replace(/["\\]/g, "\\$&");
    const vueNode = document.querySelector(`.lg-node[data-node-id="${id}"]`);
    const stale = vueNode && [...vueNode.querySelectorAll("[data-ifa-host]")].find((h) => h !== host && !h.querySelector(".ifa-editor"));
    if (stale) stale.replaceWith(host);
  };

  /**
   * Vue node mode sizes the widget row to its content, so the editor gets no height of its own (frontend 1.35 started
   * it as a 150 px canvas that grew as the layer list filled, moving the drawing area under the cursor). There the host
   * gets the editor's natural height for the node's width: fixed while drawing, larger when the node is made wider.
   */
  const fitVueHost = () => {
    remountInVueNode();
    const inVueNode = !!host.parentElement?.closest?.(".lg-node-widgets, .lg-node");
    if (!inVueNode || editor.fullscreen) {
      if (host.style.height !== "100%") host.style.height = "100%";
      return;
    }
    const w = host.clientWidth;
    if (w < 50) return;
    const h = editor.naturalHeight(w);
    if (Math.abs(h - (parseFloat(host.style.height) || 0)) > 2) host.style.height = `${h}px`;
  };

  const domWidget = node.addDOMWidget(EDITOR_WIDGET, "ifa_layout_editor", host, {
    serialize: false,
    hideOnZoom: false,
    getValue: () => undefined,
    setValue: () => {},
    getMinHeight: () => 340,
    onDraw: () => sync(),
  });
  domWidget.serialize = false;
  node.ifaEditor = editor;
  node.ifaSync = sync;

  for (const w of [widthWidget, heightWidget]) {
    if (!w) continue;
    const cb = w.callback;
    w.callback = function (...args) {
      const r = cb?.apply(this, args);
      sync();
      return r;
    };
  }

  node.ifaSetOutput = (img) => {
    ownOutput = img;
    editor.refreshUnderlay();
  };
  // A button that opens the editor in a dialog: works in every frontend and node mode, including Vue node
  // renderers that do not show DOM widgets (frontend 1.27's).
  const button = node.addWidget?.("button", DIALOG_BUTTON, null, () => editor.openDialog(), { serialize: false, label: DIALOG_LABEL });
  if (button) {
    button.label = DIALOG_LABEL;
    button.serialize = false;
    button.tooltip = "Open the layout editor in a dialog (Esc closes it)";
  }
  const size = node.size || [0, 0];
  node.setSize?.([Math.max(size[0], NODE_SIZE[0]), Math.max(size[1], NODE_SIZE[1])]);
  sync(true);
  // The modern frontend does not call onDraw for every DOM widget: poll cheaply while the node lives.
  node.ifaTimer = setInterval(() => {
    if (!node.graph && node.ifaTimer) {
      clearInterval(node.ifaTimer);
      node.ifaTimer = null;
      return;
    }
    sync();
    editor.refreshUnderlay();
  }, 500);
}

/**
 * Whether another copy of this script already registered the extension: the pack installed twice (two folders in
 * custom_nodes), or a ComfyUI that serves the web folder under two names. Registering again would throw in the modern
 * frontend ("already registered") and attach two editors per node in the legacy one.
 */
function alreadyRegistered() {
  const first = globalThis.__ifadapterLayoutEditor;
  if (first && first !== import.meta.url) {
    console.warn(`[comfyui-ifadapter] the layout editor is already loaded from ${first}; ignoring the copy at ${import.meta.url} (is the pack installed twice?)`);
    return true;
  }
  let exts = [];
  try {
    exts = Array.isArray(app.extensions) ? app.extensions : [];
  } catch {
    /* some frontends expose extensions only through their store */
  }
  return exts.some((e) => e?.name === EXTENSION_NAME);
}

if (!alreadyRegistered()) {
  globalThis.__ifadapterLayoutEditor = import.meta.url;
  app.registerExtension({
    name: EXTENSION_NAME,

    setup() {
      api.addEventListener("executed", (e) => {
        const images = e.detail?.output?.images;
        if (!Array.isArray(images) || !images.length) return;
        lastOutputImage = images[images.length - 1];
        for (const id of [e.detail.node, e.detail.display_node]) if (id != null) outputsByNode.set(String(id), e.detail.output);
      });
    },

    async beforeRegisterNodeDef(nodeType, nodeData) {
      if (!wantsEditor(nodeData)) return;
      const onNodeCreated = nodeType.prototype.onNodeCreated;
      nodeType.prototype.onNodeCreated = function (...args) {
        const r = onNodeCreated?.apply(this, args);
        try {
          attachEditor(this);
        } catch (err) {
          console.error("[ifadapter] layout editor could not be attached; the raw layout text stays editable", err);
        }
        return r;
      };
      const onConfigure = nodeType.prototype.onConfigure;
      nodeType.prototype.onConfigure = function (...args) {
        const r = onConfigure?.apply(this, args);
        if (this.ifaEditor) {
          const s = this.properties?.ifa_editor;
          if (s) Object.assign(this.ifaEditor.settings, s);
          // Widget values are applied around onConfigure in either frontend; sync now and once more after.
          this.ifaSync(true);
          setTimeout(() => this.ifaSync?.(), 0);
        }
        return r;
      };
      const onExecuted = nodeType.prototype.onExecuted;
      nodeType.prototype.onExecuted = function (message) {
        const r = onExecuted?.apply(this, arguments);
        const underlay = message?.ifa_underlay;
        if (Array.isArray(underlay) && underlay.length) {
          const slot = this.inputs?.findIndex((i) => i.name === "underlay") ?? -1;
          this.ifaInputUnderlay = underlay[0];
          this.ifaInputUnderlayLink = inputLinkId(this, slot);
          this.ifaEditor?.refreshUnderlay();
        }
        const images = message?.images;
        if (Array.isArray(images) && images.length) this.ifaSetOutput?.(images[0]);
        return r;
      };
      const onRemoved = nodeType.prototype.onRemoved;
      nodeType.prototype.onRemoved = function (...args) {
        if (this.ifaTimer) clearInterval(this.ifaTimer);
        this.ifaTimer = null;
        this.ifaEditor?.destroy();
        return onRemoved?.apply(this, args);
      };
    },
  });
}
