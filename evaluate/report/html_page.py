"""The report's HTML page: one card per image, its layout and detections drawn over it, sortable by failure.

Self-contained: images are inlined as ``data:`` URLs, the style and the sorting script are inline, nothing is
fetched. Over each image an SVG (in image pixels) draws every instance's box (solid green when it passed, dashed red
when it failed: not localised, or a VLM did not say yes; grey when nothing was checked), labelled with its number
from 1 and category, and every detection (thin yellow, with its category and score). A table above lists the run's
metrics. Buttons sort the cards by failed instances (most first), by failure share, or back to benchmark order.
All text from the benchmark is HTML-escaped.
"""
from __future__ import annotations

import base64
import html
import json

STYLE = """
body{font-family:system-ui,sans-serif;margin:16px;background:#fafafa;color:#222}
table.metrics{border-collapse:collapse;margin:8px 0 16px}
table.metrics td,table.metrics th{border:1px solid #ccc;padding:3px 8px;text-align:left}
.controls button{margin-right:6px}
#cards{display:flex;flex-wrap:wrap;gap:12px;margin-top:12px}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px;width:340px}
.card.failed{border-color:#d33}
.frame{position:relative;width:100%}
.frame img{display:block;width:100%;height:auto}
.frame svg{position:absolute;left:0;top:0;width:100%;height:100%}
.card h3{font-size:14px;margin:4px 0}
.card ul{font-size:12px;margin:4px 0;padding-left:18px}
.pass{color:#080}.fail{color:#c00}
"""

SCRIPT = """
(function(){
  const box = document.getElementById('cards');
  const cards = () => Array.from(box.querySelectorAll('.card'));
  const num = (c, k) => parseFloat(c.dataset[k]);
  function sortBy(key){
    const order = cards().sort((a, b) => {
      if (key === 'order') return num(a, 'order') - num(b, 'order');
      const d = num(b, key) - num(a, key);
      return d !== 0 ? d : num(a, 'order') - num(b, 'order');
    });
    order.forEach(c => box.appendChild(c));
    document.body.dataset.sorted = key;
  }
  document.querySelectorAll('button[data-sort]').forEach(b => b.addEventListener('click', () => sortBy(b.dataset.sort)));
  window.sortCards = sortBy;
})();
"""


def _e(s) -> str:
    return html.escape(str(s), quote=True)


def _svg(width: int, height: int, instances: list[dict], detections: list[dict]) -> str:
    parts = [f'<svg viewBox="0 0 {width} {height}" preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg">']
    stroke = max(1.0, width / 256)
    for d in detections:
        x0, y0, x1, y1 = d["box"]
        parts.append(f'<rect class="det" x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" fill="none" '
                     f'stroke="#e6c200" stroke-width="{stroke}"/>'
                     f'<text x="{x0 + 2}" y="{y1 - 3}" fill="#e6c200" font-size="{8 * stroke}">'
                     f'{_e(d["category"])} {d["score"]:.2f}</text>')
    for r in instances:
        x0, y0, x1, y1 = r["box"]
        state = "unchecked" if "localised" not in r and "vlm" not in r else ("fail" if r["failed"] else "pass")
        color = {"pass": "#0a0", "fail": "#d00", "unchecked": "#888"}[state]
        dash = ' stroke-dasharray="6 4"' if state == "fail" else ""
        parts.append(f'<rect class="inst {state}" x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" '
                     f'fill="none" stroke="{color}" stroke-width="{2 * stroke}"{dash}/>'
                     f'<text x="{x0 + 2}" y="{y0 + 10 * stroke}" fill="{color}" font-size="{9 * stroke}">'
                     f'{r["instance"]} {_e(r["category"])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _instance_line(r: dict) -> str:
    bits = [f"{r['instance']}. {_e(r['description'] or r['category'])}"]
    if "iou" in r:
        bits.append(f"IoU {r['iou']:.2f}")
    for name, v in (r.get("vlm") or {}).items():
        bits.append(f"{_e(name)}: {'yes' if v is True else 'no' if v is False else 'unclear'}")
    for k in ("clip", "attr_colour", "attr_texture", "mask_iou", "pim_point", "pim_scribble"):
        if r.get(k) is not None:
            bits.append(f"{k} {r[k]:.3g}" if isinstance(r[k], float) else f"{k} {r[k]}")
    cls = "fail" if r["failed"] else "pass"
    return f'<li class="{cls}">{" · ".join(bits)}</li>'


def render(title: str, rows: list[dict], images: list[dict], png_bytes: dict[str, bytes]) -> str:
    """The page. ``images``: the score file's per-image records (``id``, ``number``, ``image``, ``instances``,
    ``detections``, ``failed``, ``instances`` count); ``png_bytes``: image path -> file bytes."""
    table = "".join(f"<tr><td>{_e(r['metric'])}</td><td>{_e(r['shown'])}</td></tr>" for r in rows)
    cards = []
    for order, im in enumerate(images):
        data = base64.b64encode(png_bytes[im["image"]]).decode("ascii")
        w, h = im["width"], im["height"]
        n = len(im["instances"])
        share = im["failed"] / n if n else 0.0
        cards.append(
            f'<div class="card{" failed" if im["failed"] else ""}" data-order="{order}" data-failed="{im["failed"]}" '
            f'data-share="{share:.6f}" data-id="{_e(im["id"])}">'
            f'<h3>item {im["number"]} · {_e(im["id"])} · {im["failed"]}/{n} failed</h3>'
            f'<div class="frame"><img alt="item {im["number"]}" width="{w}" height="{h}" '
            f'src="data:image/png;base64,{data}">{_svg(w, h, im["instances"], im["detections"])}</div>'
            f'<ul>{"".join(_instance_line(r) for r in im["instances"])}</ul></div>')
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
            f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>"
            f"<h1>{_e(title)}</h1><table class=\"metrics\"><tr><th>metric</th><th>value</th></tr>{table}</table>"
            '<div class="controls">Sort: <button data-sort="failed">most failed instances</button>'
            '<button data-sort="share">highest failure share</button>'
            '<button data-sort="order">benchmark order</button></div>'
            f'<div id="cards">{"".join(cards)}</div>'
            f"<script>{SCRIPT}</script>"
            f"<script type=\"application/json\" id=\"summary\">{_e(json.dumps(rows))}</script>"
            "</body></html>")
