// Which instance a brush or eraser stroke paints into.  Pure logic (no DOM), imported by the editor
// view and by the Node tests.

/**
 * Index of the instance a stroke paints into, or -1 for a new instance.
 *
 * Like every drawing tool, a brush stroke starts a new instance unless "add to selected" (or Alt) is
 * on, so a brush stroke right after drawing a polygon (which stays selected) never paints into that
 * polygon.  Two exceptions: the eraser edits the selected instance (erasing never creates one), and
 * consecutive brush strokes with nothing done in between keep building one mask (a mask takes
 * several strokes).  "Nothing in between" means the layout text is still the one the last stroke
 * committed and that stroke's instance is the one selected.
 *
 * @param {object} s
 * @param {number[]} s.selection      selected instance indices
 * @param {(i: number) => boolean} s.locked  whether instance i is locked
 * @param {boolean} s.erase           eraser (true) or brush
 * @param {boolean} s.attach          "add to selected" is on or Alt is held
 * @param {{index: number, text: string}|null} s.lastStroke  the previous brush stroke's instance and the
 *                                    layout text right after it
 * @param {string} s.text             the current layout text
 * @returns {number}
 */
export function strokeTarget({ selection, locked, erase, attach, lastStroke, text }) {
  let index = selection.length === 1 ? selection[0] : -1;
  if (index >= 0 && locked(index)) index = -1;
  if (erase || attach || index < 0) return index;
  return lastStroke && lastStroke.index === index && lastStroke.text === text ? index : -1;
}
