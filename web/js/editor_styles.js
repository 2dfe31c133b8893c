// CSS for the layout editor, injected once into the page by ensureStyles() (only *.js files are
// served from a pack's web directory, so the stylesheet lives here).

const CSS = `
.ifa-editor { display: flex; flex-direction: column; gap: 4px; width: 100%; height: 100%; box-sizing: border-box;
  font: 12px sans-serif; color: #ddd; outline: none; min-height: 0; }
.ifa-editor.ifa-fullscreen { position: fixed; inset: 0; z-index: 10000; background: #202024; padding: 10px; height: 100vh; width: 100vw; }
.ifa-keysink { position: absolute; width: 1px; height: 1px; opacity: 0; pointer-events: none; border: 0; padding: 0; }
.ifa-editor { position: relative; }
.ifa-toolbar { display: flex; flex-wrap: wrap; gap: 3px; align-items: center; }
.ifa-toolbar button, .ifa-toolbar select, .ifa-toolbar input, .ifa-toolbar label { font: 11px sans-serif; color: #ddd;
  background: #2e2e33; border: 1px solid #4a4a52; border-radius: 4px; padding: 2px 5px; height: 22px; box-sizing: border-box; }
.ifa-toolbar label { display: inline-flex; align-items: center; gap: 3px; }
.ifa-toolbar input[type=number] { width: 44px; }
.ifa-toolbar input[type=checkbox] { height: auto; margin: 0; }
.ifa-toolbar button.ifa-on { background: #3d5a99; border-color: #6d8ad9; color: #fff; }
.ifa-toolbar button:disabled { opacity: 0.4; }
.ifa-sep { width: 1px; height: 18px; background: #4a4a52; margin: 0 2px; }
.ifa-body { display: flex; gap: 6px; flex: 1; min-height: 0; }
.ifa-stage { position: relative; flex: 1; min-width: 0; min-height: 80px; overflow: hidden; display: flex; align-items: center; justify-content: center; }
.ifa-stage canvas { display: block; touch-action: none; cursor: crosshair; box-shadow: 0 0 0 1px #555; }
.ifa-inline { position: absolute; font: 12px sans-serif; padding: 2px 4px; background: #111; color: #fff; border: 1px solid #6d8ad9;
  border-radius: 3px; min-width: 140px; z-index: 2; }
.ifa-layers { width: 190px; flex: none; overflow-y: auto; display: flex; flex-direction: column; gap: 3px; }
.ifa-editor:not(.ifa-fullscreen) .ifa-layers { max-height: 100%; }
.ifa-layer { display: grid; grid-template-columns: 14px 18px 1fr; grid-template-rows: auto auto; gap: 2px 4px; align-items: center;
  background: #2a2a2f; border: 1px solid #3a3a40; border-radius: 4px; padding: 3px; }
.ifa-layer.ifa-selected { border-color: #6d8ad9; background: #30384a; }
.ifa-layer.ifa-hidden { opacity: 0.55; }
.ifa-swatch { -webkit-appearance: none; appearance: none; width: 14px; height: 14px; border-radius: 3px; border: 1px solid #000; padding: 0;
  cursor: pointer; background: none; }
.ifa-swatch::-webkit-color-swatch-wrapper { padding: 0; }
.ifa-swatch::-webkit-color-swatch { border: none; border-radius: 2px; }
.ifa-swatch::-moz-color-swatch { border: none; }
.ifa-num { font-weight: bold; text-align: center; }
.ifa-layer textarea { grid-column: 1 / 4; resize: vertical; min-height: 30px; font: 11px sans-serif; color: #eee; background: #1c1c20;
  border: 1px solid #444; border-radius: 3px; box-sizing: border-box; width: 100%; }
.ifa-layer-btns { display: flex; gap: 2px; justify-content: flex-end; }
.ifa-layer-btns button { font: 10px sans-serif; padding: 0 3px; height: 18px; min-width: 18px; color: #ddd; background: #37373d;
  border: 1px solid #4a4a52; border-radius: 3px; cursor: pointer; }
.ifa-layer-btns button.ifa-on { background: #7a4a2a; }
.ifa-status { font-size: 11px; color: #aaa; min-height: 14px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.ifa-status.ifa-warn { color: #f0b060; }
.ifa-prompt { width: 100%; box-sizing: border-box; font: 11px sans-serif; color: #eee; background: #1c1c20; border: 1px solid #444;
  border-radius: 3px; padding: 2px 4px; }
`;

/** Insert the editor stylesheet into `doc` once. */
export function ensureStyles(doc) {
  if (doc.getElementById("ifa-layout-editor-css")) return;
  const style = doc.createElement("style");
  style.id = "ifa-layout-editor-css";
  style.textContent = CSS;
  doc.head.appendChild(style);
}
