"""Accuracy report: a markdown table and a PNG plot (matplotlib, Agg backend) of the results.

``results`` is the benchmark's dict ``{protocol: {method: {metric: value}}}`` (plus "meta").
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from engines.evaluation.protocols import PROTOCOLS

__all__ = ["markdown_table", "plot", "warm_sweep"]

_COLUMNS = (
    ("mpjpe", "MPJPE", 1),
    ("pa_mpjpe", "PA-MPJPE", 1),
    ("mpjpe14", "MPJPE-14", 1),
    ("pa_mpjpe14", "PA-MPJPE-14", 1),
    ("pckh", "PCKh@0.5", 3),
    ("ms_per_frame", "ms/frame", 1),
    ("steps", "steps", 1),
)
_SWEEP = re.compile(r"^warm_fit@(\d+)$")


def _protocols(results: dict) -> list[str]:
    return [k for k in results if k in PROTOCOLS]


def _fmt(v, digits: int) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}f}"


def markdown_table(results: dict) -> str:
    """One row per (protocol, method); errors in mm, PCKh as a fraction."""
    head = "| protocol | method | " + " | ".join(c[1] for c in _COLUMNS) + " |"
    rows = [head, "|" + "---|" * (len(_COLUMNS) + 2)]
    for p in _protocols(results):
        for m, r in results[p].items():
            cells = " | ".join(_fmt(r.get(k), d) for k, _, d in _COLUMNS)
            rows.append(f"| {p} | {m} | {cells} |")
    head_rows = results.get("head") or {}
    if head_rows:  # the head on more clean frames than the protocols (engines.evaluation.head)
        label = f"clean, {head_rows['sequences']} seq."
        for m, r in head_rows.items():
            if isinstance(r, dict):
                cells = " | ".join(_fmt(r.get(k), d) for k, _, d in _COLUMNS)
                rows.append(f"| {label} | {m} | {cells} |")
        rows += ["", "| clean, more sequences | PA-MPJPE reduction against the mean pose | "
                 "95% interval | frames |", "|---|---|---|---|"]  # fmt: skip
        for m, r in head_rows.items():
            if isinstance(r, dict) and "pa_reduction" in r:
                lo, hi = (_fmt(v, 3) for v in r["pa_reduction_ci95"])
                rows.append(f"| {m} | {_fmt(r['pa_reduction'], 3)} | [{lo}, {hi}] | "
                            f"{r['frames']} |")  # fmt: skip
    paired = results.get("paired") or {}
    if paired:  # the same frames, method against method
        rows += ["", "| protocol | A - B | MPJPE A - B (mm) | 95% interval | A better | frames "
                 "| sequences |", "|---|---|---|---|---|---|---|"]  # fmt: skip
        for p, comps in paired.items():
            for name, d in comps.items():
                lo, hi = (_fmt(v, 1) for v in d["ci95_mm"])
                rows.append(f"| {p} | {name} | {_fmt(d['mean_mm'], 1)} | [{lo}, {hi}] | "
                            f"{_fmt(d['a_better'], 2)} | {d['frames']} | "
                            f"{d.get('sequences', '-')} |")  # fmt: skip
    return "\n".join(rows) + "\n"


def warm_sweep(results: dict, protocol: str, metric: str = "mpjpe") -> list[tuple[int, float]]:
    """``(steps, metric)`` of the ``warm_fit@n`` methods of a protocol, sorted by n."""
    out = []
    for m, r in results.get(protocol, {}).items():
        g = _SWEEP.match(m)
        if g:
            out.append((int(g.group(1)), float(r[metric])))
    return sorted(out)


def plot(results: dict, path: str | Path, metric: str = "mpjpe") -> Path:
    """Left: ``metric`` per protocol and method (bars); right: warm_fit error against warm-start
    steps per protocol, with cold_fit and regression as horizontal references."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    protos = _protocols(results)
    order = ("mean_pose", "regression", "regression@cold", "cold_fit", "cold_fit_plain",
             "cold_fit_no_parts", "cold_fit_oracle", "warm_fit", "warm_fit@cold")  # fmt: skip
    methods = [m for m in order if any(m in results[p] for p in protos)]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / max(1, len(methods))
    for i, m in enumerate(methods):
        xs = [j + i * width for j, p in enumerate(protos) if m in results[p]]
        ys = [results[p][m][metric] for p in protos if m in results[p]]
        ax1.bar(xs, ys, width, label=m)
    ax1.set_xticks([j + 0.4 - width / 2 for j in range(len(protos))], protos)
    ax1.set_ylabel(f"{metric} (mm)")
    ax1.set_title("error per protocol and method")
    ax1.legend(fontsize=8)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, p in enumerate(protos):
        sweep = warm_sweep(results, p, metric)
        if not sweep:
            continue
        c = colours[j % len(colours)]
        ax2.plot([s for s, _ in sweep], [v for _, v in sweep], "o-", color=c, label=p)
        if "cold_fit" in results[p]:
            ax2.axhline(results[p]["cold_fit"][metric], color=c, ls="--", lw=0.8)
        if "regression" in results[p]:
            ax2.axhline(results[p]["regression"][metric], color=c, ls=":", lw=0.8)
    ax2.set_xscale("log", base=2)
    ax2.set_xlabel("warm-start steps per frame")
    ax2.set_ylabel(f"{metric} (mm)")
    ax2.set_title("warm_fit vs steps (-- cold_fit, : regression)")
    if ax2.lines:
        ax2.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
