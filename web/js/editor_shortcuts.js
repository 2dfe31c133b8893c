// The editor's keyboard shortcuts, as shown in its "keys" help panel and in the tooltips of the
// controls they act like.  Data only; nothing runs at import time.

/** Pixel sizes of the pointer targets drawn on the canvas (CSS pixels, WCAG 2.2 2.5.8 asks >= 24). */
export const HANDLE_DRAW_PX = 12; // the visible square of a resize handle
export const HANDLE_HIT_PX = 24; // the square around a handle that grabs it
export const VERTEX_HIT_PX = 20; // a polygon vertex

/** [keys, what they do] rows of the help panel. */
export const SHORTCUTS = Object.freeze([
  ["V B P M E S T", "tools: select, box, polygon, brush, eraser, scribble, point"],
  ["Ctrl+Z / Ctrl+Shift+Z, Ctrl+Y", "undo / redo"],
  ["Delete, Backspace", "delete the selection (Backspace: last polygon vertex while drawing one)"],
  ["Ctrl+C / Ctrl+V", "copy / paste instances (also between nodes)"],
  ["Ctrl+D", "duplicate"],
  ["Ctrl+A", "select all"],
  ["Arrows (Shift: ×10 or one grid step)", "nudge the selection"],
  ["H", "hide / show the selection in the editor"],
  ["Enter, double-click, right-click", "finish a polygon"],
  ["Esc", "cancel a polygon, clear the selection, leave the dialog / fullscreen"],
  ["Alt while drawing", "add the shape to the selected instance"],
  ["Ctrl+drag (box tool)", "start a new box on top of others"],
  ["Double-click an instance", "describe it"],
]);

/** The whole list as one tooltip text. */
export function shortcutsTitle() {
  return SHORTCUTS.map(([k, what]) => `${k}: ${what}`).join("\n");
}
