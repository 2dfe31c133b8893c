// CSS for the layout editor, injected once into the page by ensureStyles() (only *.js files are
// served from a pack's web directory, so the stylesheet lives here).

const CSS = `
.ifa-editor { display: flex; flex-direction: column; gap: 4px; width: 100%; height: 100%; box-sizing: border-box;
  font: 13px sans-serif; color: #ddd; outline: none; min-height: 0; position: relative; container-type: inline-size; }
.ifa-editor.ifa-fullscreen { position: fixed; inset: 0; z-index: 10000; background: #202024; padding: 10px; height: 100vh; width: 100vw; }
.ifa-keysink { position: absolute; width: 1px; height: 1px; opacity: 0; pointer-events: none; border: 0; padding: 0; }
.ifa-toolbar { display: flex; flex-wrap: wrap; gap: 4px; align-items: center; }
.ifa-toolbar button, .ifa-toolbar select, .ifa-toolbar input, .ifa-toolbar label { font: 13px sans-serif; color: #ddd;
  background: #2e2e33; border: 1px solid #4a4a52; border-radius: 4px; padding: 2px 6px; min-height: 28px; min-width: 28px;
  box-sizing: border-box; }
.ifa-toolbar button { cursor: pointer; }
.ifa-toolbar label { display: inline-flex; align-items: center; gap: 4px; cursor: pointer; }
.ifa-toolbar label input { min-height: 0; min-width: 0; }
.ifa-toolbar input[type=number] { width: 56px; }
.ifa-toolbar input[type=checkbox] { width: 16px; height: 16px; margin: 0; }
.ifa-toolbar button.ifa-on { background: #3d5a99; border-color: #6d8ad9; color: #fff; }
.ifa-toolbar button:disabled { opacity: 0.45; cursor: default; }
.ifa-toolbar :focus-visible, .ifa-layer :focus-visible { outline: 2px solid #8fb0ff; outline-offset: 1px; }
.ifa-sep { width: 1px; height: 22px; background: #4a4a52; margin: 0 2px; }
.ifa-body { display: flex; gap: 6px; flex: 1; min-height: 0; }
.ifa-stage { position: relative; flex: 1; min-width: 0; min-height: 160px; overflow: hidden; display: flex; align-items: center; justify-content: center; }
.ifa-stage canvas { display: block; touch-action: none; cursor: crosshair; box-shadow: 0 0 0 1px #555; }
.ifa-inline { position: absolute; font: 13px sans-serif; padding: 4px 6px; background: #111; color: #fff; border: 1px solid #6d8ad9;
  border-radius: 3px; min-width: 160px; min-height: 28px; box-sizing: border-box; z-index: 2; }
.ifa-layers { width: 250px; flex: none; overflow-y: auto; display: flex; flex-direction: column; gap: 4px; }
.ifa-editor:not(.ifa-fullscreen) .ifa-layers { max-height: 100%; }
/* A narrow node: the layer list goes under the canvas, so the canvas gets the node's whole width. Its height is fixed,
   so that the canvas keeps its place while the list fills. */
@container (max-width: 720px) {
  .ifa-body { flex-direction: column; }
  .ifa-editor:not(.ifa-fullscreen) .ifa-layers { width: auto; height: 170px; max-height: none; flex: none; }
}
.ifa-layer { display: grid; grid-template-columns: 24px 24px 1fr; grid-template-rows: auto auto; gap: 3px 4px; align-items: center;
  background: #2a2a2f; border: 1px solid #3a3a40; border-radius: 4px; padding: 4px; }
.ifa-layer.ifa-selected { border-color: #6d8ad9; background: #30384a; }
.ifa-layer.ifa-hidden { opacity: 0.6; }
.ifa-swatch { -webkit-appearance: none; appearance: none; width: 24px; height: 24px; border-radius: 4px; border: 1px solid #000; padding: 0;
  cursor: pointer; background: none; }
.ifa-swatch::-webkit-color-swatch-wrapper { padding: 0; }
.ifa-swatch::-webkit-color-swatch { border: none; border-radius: 3px; }
.ifa-swatch::-moz-color-swatch { border: none; }
.ifa-num { font-weight: bold; text-align: center; font-size: 14px; }
.ifa-layer textarea { grid-column: 1 / 4; resize: vertical; min-height: 40px; font: 13px sans-serif; color: #eee; background: #1c1c20;
  border: 1px solid #444; border-radius: 3px; box-sizing: border-box; width: 100%; padding: 3px 4px; }
.ifa-layer-btns { display: flex; flex-wrap: wrap; gap: 3px; justify-content: flex-end; }
.ifa-layer-btns button { font: 12px sans-serif; padding: 0 4px; height: 24px; min-width: 24px; color: #ddd; background: #37373d;
  border: 1px solid #4a4a52; border-radius: 3px; cursor: pointer; box-sizing: border-box; }
.ifa-layer-btns button.ifa-on { background: #7a4a2a; }
.ifa-status { font-size: 13px; color: #b8b8b8; min-height: 18px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.ifa-status.ifa-warn { color: #f0b060; }
.ifa-prompt { width: 100%; box-sizing: border-box; font: 13px sans-serif; color: #eee; background: #1c1c20; border: 1px solid #444;
  border-radius: 3px; padding: 4px 6px; min-height: 28px; }
.ifa-help { font-size: 13px; line-height: 1.5; color: #ccc; background: #26262b; border: 1px solid #3a3a40; border-radius: 4px; padding: 4px 8px; }
.ifa-help[hidden] { display: none; }
.ifa-open-dialog { font: 14px sans-serif; min-height: 32px; }
`;

/** Insert the editor stylesheet into `doc` once. */
export function ensureStyles(doc) {
  if (doc.getElementById("ifa-layout-editor-css")) return;
  const style = doc.createElement("style");
  style.id = "ifa-layout-editor-css";
  style.textContent = CSS;
  doc.head.appendChild(style);
}
