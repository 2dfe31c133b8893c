"""The run's metrics as rows: one table for Markdown and JSON (``report.md``, ``report.json``)."""
from __future__ import annotations

import json
import math

# summary key -> (row name, how the value is shown); values in 0..1 are shown in percent as the papers do
ROWS = (
    ("box.AP", "box AP", "pct"), ("box.AP50", "box AP50", "pct"), ("box.AP75", "box AP75", "pct"),
    ("mask.AP", "mask AP", "pct"), ("mask.AP50", "mask AP50", "pct"),
    ("localised", "localised (IoU >= 0.5)", "pct"),
    ("ifs.mean", "IFS rate (mean over VLMs)", "pct"),
    ("miou", "mask mIoU", "pct"), ("pim_point", "PiM (points)", "pct"), ("pim_scribble", "PiM (scribbles)", "pct"),
    ("clip", "instance CLIP score", "num"), ("clip_image", "image CLIP score", "num"),
    ("attr_colour", "colour binding accuracy", "pct"), ("attr_texture", "texture binding accuracy", "pct"),
    ("fid", "FID", "num"), ("kid.mean", "KID", "num"),
)


def _get(summary: dict, key: str):
    v = summary
    for part in key.split("."):
        if not isinstance(v, dict) or part not in v:
            return None
        v = v[part]
    return v


def metric_rows(summary: dict) -> list[dict]:
    """``[{"metric", "key", "value", "shown"}]`` for every metric the summary holds (IFS per VLM included)."""
    rows = []
    for key, name, how in ROWS:
        v = _get(summary, key)
        if isinstance(v, (int, float)):
            rows.append({"metric": name, "key": key, "value": v, "shown": _show(v, how)})
        if key == "ifs.mean":
            for vlm, rate in (summary.get("ifs") or {}).items():
                if vlm != "mean" and isinstance(rate, (int, float)):
                    rows.append({"metric": f"IFS rate ({vlm})", "key": f"ifs.{vlm}", "value": rate,
                                 "shown": _show(rate, "pct")})
    return rows


def _show(v: float, how: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{100 * v:.1f}" if how == "pct" else f"{v:.4g}"


def markdown(summary: dict, run_info: dict) -> str:
    """The report as Markdown: what was run, the table, the counts."""
    overrides = ", ".join(f"{o['target']}.{o['input']}={json.dumps(o['value'])}"
                          for o in run_info.get("overrides", [])) or "none"
    lines = [f"# Evaluation of `{run_info.get('run', '')}`", "",
             f"- workflow hash `{run_info.get('workflow_hash', '?')}`, overrides: {overrides}",
             f"- models: {', '.join(summary.get('models', [])) or 'none'}",
             f"- {summary.get('images', 0)} images, {summary.get('instances', 0)} instances, "
             f"{summary.get('failed_instances', 0)} failed (not localised, or a VLM did not say yes)"]
    if "ifs_versions" in summary:
        iv = summary["ifs_versions"]
        lines.append(f"- IFS prompt {iv['prompt']}, parser {iv['parser']}, localisation IoU >= {iv['localisation_iou']}")
    lines += ["", "| metric | value |", "| --- | --- |"]
    lines += [f"| {r['metric']} | {r['shown']} |" for r in metric_rows(summary)]
    lines.append("")
    lines.append("Percentages for AP, rates and accuracies (as the papers print them); CLIP scores as defined in "
                 "docs/evaluation.md.")
    return "\n".join(lines) + "\n"
