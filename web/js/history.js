// Undo/redo history for the layout editor.  It stores immutable snapshots (the serialized layout
// text plus the selection), so an undo restores exactly what was there, unknown fields included.
// Consecutive pushes with the same coalesce key inside a time window merge into one step, so that
// typing a description or nudging with the arrow keys undoes as a single action.  Pure: no DOM.

export class History {
  /**
   * @param {object} opts {limit = 200 steps, coalesceMs = 1000, now = Date.now}
   */
  constructor(opts = {}) {
    this.limit = opts.limit ?? 200;
    this.coalesceMs = opts.coalesceMs ?? 1000;
    this.now = opts.now ?? (() => Date.now());
    this.undoStack = [];
    this.redoStack = [];
    this.current = null;
    this.lastKey = null;
    this.lastTime = -Infinity;
  }

  /** Start over from `state` (no undo steps). */
  reset(state) {
    this.undoStack = [];
    this.redoStack = [];
    this.current = state;
    this.lastKey = null;
    this.lastTime = -Infinity;
  }

  /**
   * Record that the editor moved from the current state to `state`.  With a `coalesceKey` equal to
   * the previous push's key, within coalesceMs of it, the previous step is extended instead of a
   * new one being added.  A state equal to the current one (by `equals`) records nothing.
   * Returns whether a new undo step was created.
   */
  push(state, coalesceKey = null, equals = defaultEquals) {
    if (this.current !== null && equals(this.current, state)) return false;
    const t = this.now();
    const merge = coalesceKey !== null && coalesceKey === this.lastKey && t - this.lastTime <= this.coalesceMs && this.undoStack.length > 0;
    if (!merge) {
      if (this.current !== null) this.undoStack.push(this.current);
      if (this.undoStack.length > this.limit) this.undoStack.splice(0, this.undoStack.length - this.limit);
    }
    this.current = state;
    this.redoStack = [];
    this.lastKey = coalesceKey;
    this.lastTime = t;
    return !merge;
  }

  /** End coalescing: the next push starts a new step even with the same key. */
  seal() {
    this.lastKey = null;
  }

  canUndo() {
    return this.undoStack.length > 0;
  }

  canRedo() {
    return this.redoStack.length > 0;
  }

  /** Step back; returns the state to show, or null when there is nothing to undo. */
  undo() {
    if (!this.undoStack.length) return null;
    this.redoStack.push(this.current);
    this.current = this.undoStack.pop();
    this.seal();
    return this.current;
  }

  /** Step forward; returns the state to show, or null when there is nothing to redo. */
  redo() {
    if (!this.redoStack.length) return null;
    this.undoStack.push(this.current);
    this.current = this.redoStack.pop();
    this.seal();
    return this.current;
  }
}

function defaultEquals(a, b) {
  if (a && b && typeof a === "object" && "text" in a && "text" in b) return a.text === b.text;
  return a === b;
}
