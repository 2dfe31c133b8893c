// Pure bitmap masks for the brush tool, and COCO run-length encoding (the "rle" field of a "mask"
// region in the layout JSON).  No DOM: importable from Node tests and the browser.
//
// In memory a mask is {w, h, data: Uint8Array(w*h)} stored row-major (data[y*w + x] is 0 or 1).
// The mask covers the whole layout canvas at its own resolution (w x h cells), so cell (cx, cy)
// maps to the canvas pixel rectangle [cx*W/w, (cx+1)*W/w) x [cy*H/h, (cy+1)*H/h).
// COCO RLE is column-major: counts alternate runs of 0 and 1, starting with 0, walking down each
// column; "size" is [h, w].

/** New empty mask of w x h cells. */
export function createMask(w, h) {
  if (!(w > 0 && h > 0)) throw new RangeError(`mask size must be positive, got ${w}x${h}`);
  return { w, h, data: new Uint8Array(w * h) };
}

/** Mask resolution for a canvas of W x H pixels: the canvas itself, scaled so the longer side is at most maxSide. */
export function maskSizeFor(W, H, maxSide = 512) {
  const s = Math.min(1, maxSide / Math.max(W, H));
  return [Math.max(1, Math.round(W * s)), Math.max(1, Math.round(H * s))];
}

export function cloneMask(m) {
  return { w: m.w, h: m.h, data: new Uint8Array(m.data) };
}

/** Number of set cells. */
export function maskArea(m) {
  let n = 0;
  for (let i = 0; i < m.data.length; i++) n += m.data[i];
  return n;
}

/** Uncompressed COCO counts (column-major runs, starting with a run of zeros) of a mask. */
export function maskToCounts(m) {
  const counts = [];
  let cur = 0;
  let run = 0;
  for (let x = 0; x < m.w; x++) {
    for (let y = 0; y < m.h; y++) {
      const v = m.data[y * m.w + x] ? 1 : 0;
      if (v !== cur) {
        counts.push(run);
        run = 0;
        cur = v;
      }
      run++;
    }
  }
  counts.push(run);
  return counts;
}

/** Mask of w x h cells from uncompressed COCO counts; throws when the counts do not add up to w*h. */
export function countsToMask(counts, h, w) {
  const m = createMask(w, h);
  let idx = 0;
  let v = 0;
  for (const c of counts) {
    if (c < 0 || idx + c > w * h) throw new RangeError(`RLE counts overflow a ${h}x${w} mask`);
    if (v) {
      for (let k = idx; k < idx + c; k++) {
        const x = Math.floor(k / h);
        const y = k - x * h;
        m.data[y * w + x] = 1;
      }
    }
    idx += c;
    v ^= 1;
  }
  if (idx !== w * h) throw new RangeError(`RLE counts sum to ${idx}, expected ${w * h} for a ${h}x${w} mask`);
  return m;
}

/** COCO compressed-string form of uncompressed counts (pycocotools' LEB128-like, delta-coded from i-2). */
export function countsToString(counts) {
  let s = "";
  for (let i = 0; i < counts.length; i++) {
    let x = counts[i];
    if (i > 2) x -= counts[i - 2];
    let more = true;
    while (more) {
      let c = x & 0x1f;
      x >>= 5;
      more = c & 0x10 ? x !== -1 : x !== 0;
      if (more) c |= 0x20;
      s += String.fromCharCode(c + 48);
    }
  }
  return s;
}

/** Uncompressed counts from the COCO compressed string. */
export function stringToCounts(s) {
  const counts = [];
  let p = 0;
  while (p < s.length) {
    let x = 0;
    let k = 0;
    let more = true;
    while (more) {
      if (p >= s.length) throw new SyntaxError("truncated RLE counts string");
      const c = s.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = (c & 0x20) !== 0;
      p++;
      k++;
      if (!more && c & 0x10) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

/** Encode a mask as a COCO RLE object {size: [h, w], counts: string}. */
export function encodeRLE(m) {
  return { size: [m.h, m.w], counts: countsToString(maskToCounts(m)) };
}

/** Decode a COCO RLE object ({size: [h, w], counts: string | number[]}) into a mask. */
export function decodeRLE(rle) {
  if (!rle || !Array.isArray(rle.size) || rle.size.length !== 2) {
    throw new TypeError('mask region: "rle" must be {"size": [h, w], "counts": ...}');
  }
  const [h, w] = rle.size;
  const counts = typeof rle.counts === "string" ? stringToCounts(rle.counts) : rle.counts;
  if (!Array.isArray(counts)) throw new TypeError('mask region: "rle.counts" must be a string or a list of ints');
  return countsToMask(counts, h, w);
}

/**
 * Paint (value 1) or erase (value 0) a filled disc of radius r (canvas pixels) centred at canvas
 * point c = [x, y] on mask m that covers a W x H canvas.  Mutates m; returns whether any cell changed.
 */
export function paintDisc(m, W, H, c, r, value) {
  const sx = m.w / W;
  const sy = m.h / H;
  const cx = c[0] * sx;
  const cy = c[1] * sy;
  const rx = Math.max(r * sx, 0.5);
  const ry = Math.max(r * sy, 0.5);
  const x0 = Math.max(0, Math.floor(cx - rx));
  const x1 = Math.min(m.w - 1, Math.ceil(cx + rx));
  const y0 = Math.max(0, Math.floor(cy - ry));
  const y1 = Math.min(m.h - 1, Math.ceil(cy + ry));
  let changed = false;
  for (let y = y0; y <= y1; y++) {
    const dy = (y + 0.5 - cy) / ry;
    for (let x = x0; x <= x1; x++) {
      const dx = (x + 0.5 - cx) / rx;
      if (dx * dx + dy * dy <= 1) {
        const i = y * m.w + x;
        if (m.data[i] !== value) {
          m.data[i] = value;
          changed = true;
        }
      }
    }
  }
  return changed;
}

/** Paint or erase a stroke of discs from canvas point a to b (spacing a quarter of the radius). */
export function paintLine(m, W, H, a, b, r, value) {
  const d = Math.hypot(b[0] - a[0], b[1] - a[1]);
  const steps = Math.max(1, Math.ceil(d / Math.max(r / 4, 0.5)));
  let changed = false;
  for (let i = 0; i <= steps; i++) {
    const t = i / steps;
    changed = paintDisc(m, W, H, [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t], r, value) || changed;
  }
  return changed;
}

/** Whether the mask cell under canvas point p (W x H canvas) is set. */
export function maskHit(m, W, H, p) {
  const x = Math.floor((p[0] / W) * m.w);
  const y = Math.floor((p[1] / H) * m.h);
  if (x < 0 || y < 0 || x >= m.w || y >= m.h) return false;
  return m.data[y * m.w + x] === 1;
}

/** Canvas-pixel bounding box [x0, y0, x1, y1] of the set cells, or null for an empty mask. */
export function maskBBox(m, W, H) {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (let y = 0; y < m.h; y++) {
    for (let x = 0; x < m.w; x++) {
      if (m.data[y * m.w + x]) {
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
      }
    }
  }
  if (x0 === Infinity) return null;
  return [(x0 * W) / m.w, (y0 * H) / m.h, ((x1 + 1) * W) / m.w, ((y1 + 1) * H) / m.h];
}

/**
 * Transform a mask so that canvas rectangle `from` lands on canvas rectangle `to` (move and/or
 * scale; nearest-neighbour resampling).  Cells outside `from` are carried along by the same affine
 * map; cells mapped off the canvas are dropped.  Returns a new mask of the same size.
 */
export function transformMask(m, W, H, from, to) {
  const out = createMask(m.w, m.h);
  const fw = from[2] - from[0] || 1;
  const fh = from[3] - from[1] || 1;
  const ax = (to[2] - to[0]) / fw;
  const ay = (to[3] - to[1]) / fh;
  if (Math.abs(ax) < 1e-9 || Math.abs(ay) < 1e-9) return out;
  // Inverse-map each destination cell centre to a source cell.
  for (let y = 0; y < m.h; y++) {
    const py = ((y + 0.5) * H) / m.h;
    const sy = from[1] + (py - to[1]) / ay;
    const my = Math.floor((sy / H) * m.h);
    if (my < 0 || my >= m.h) continue;
    for (let x = 0; x < m.w; x++) {
      const px = ((x + 0.5) * W) / m.w;
      const sx = from[0] + (px - to[0]) / ax;
      const mx = Math.floor((sx / W) * m.w);
      if (mx < 0 || mx >= m.w) continue;
      out.data[y * m.w + x] = m.data[my * m.w + mx];
    }
  }
  return out;
}
