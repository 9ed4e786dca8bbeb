"""Plots of a run folder (matplotlib, Agg backend): each returns PNG bytes, ready to inline in the report.

Each function takes plain data (dicts/lists read from the run folder's JSON), not runtime objects, so the
report can be rebuilt from files alone."""

from __future__ import annotations

import io
import math
from typing import Any


def _plt():
    """pyplot on the Agg backend (no display needed), imported only when a plot is drawn."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def _fmt(x: Any, spec: str = ".3f") -> str:
    return format(x, spec) if isinstance(x, (int, float)) and not isinstance(x, bool) else "n/a"


def validation_scatter(validation: dict[str, Any]) -> bytes | None:
    """Two panels: LUT-predicted vs measured ms, and GMACs (the FLOPs proxy) vs measured ms, per random arch."""
    points = [p for p in validation.get("points") or [] if isinstance(p, dict)
              and isinstance(p.get("measured_ms"), (int, float))]
    if not points:
        return None
    plt = _plt()
    meas = [float(p["measured_ms"]) for p in points]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    lut = validation.get("lut") or {}
    pred = [float(p["predicted_ms"]) for p in points if isinstance(p.get("predicted_ms"), (int, float))]
    ax = axes[0]
    if len(pred) == len(meas):
        ax.scatter(pred, meas, s=18, color="#1f77b4")
        lo, hi = min(pred + meas), max(pred + meas)
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="y = x")
        ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="grey", alpha=0.15,
                        label="±10%")
        ax.legend(loc="upper left", fontsize=8)
    ax.set_xlabel("LUT prediction (ms)")
    ax.set_ylabel("measured (ms)")
    ax.set_title(f"LUT: MAPE {_fmt(lut.get('mape'), '.1%')}, Spearman {_fmt(lut.get('spearman'), '.2f')}",
                 fontsize=10)
    ax = axes[1]
    flops = validation.get("flops") or {}
    gm = [float(p["gmacs"]) for p in points if isinstance(p.get("gmacs"), (int, float))]
    if len(gm) == len(meas):
        ax.scatter(gm, meas, s=18, color="#ff7f0e")
    ax.set_xlabel("GMACs (FLOPs proxy)")
    ax.set_ylabel("measured (ms)")
    ax.set_title(f"FLOPs proxy: MAPE {_fmt(flops.get('mape'), '.1%')}, "
                 f"Spearman {_fmt(flops.get('spearman'), '.2f')}", fontsize=10)
    fig.suptitle(f"Latency table validation on {len(points)} random archs", fontsize=11)
    return _png(fig)


def search_trajectory(log: list[dict[str, Any]], budget_ms: float | None) -> bytes | None:
    """Expected latency per step against the budget (left axis) and the lambda controller (right axis, log)."""
    rows = [r for r in log if isinstance(r.get("step"), (int, float)) and isinstance(r.get("expected_ms"), (int, float))]
    if not rows:
        return None
    plt = _plt()
    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(steps, [r["expected_ms"] for r in rows], color="#1f77b4", label="E[latency] (ms)")
    if isinstance(budget_ms, (int, float)):
        ax.axhline(budget_ms, color="#d62728", ls="--", label=f"budget {budget_ms:.1f} ms")
    ax.set_xlabel("search step")
    ax.set_ylabel("expected latency (ms)")
    lam = [(r["step"], r["lambda"]) for r in rows if isinstance(r.get("lambda"), (int, float))]
    handles, labels = ax.get_legend_handles_labels()
    if lam:
        ax2 = ax.twinx()
        ax2.plot([s for s, _ in lam], [v for _, v in lam], color="#2ca02c", alpha=0.8, label="lambda")
        if all(v > 0 for _, v in lam):
            ax2.set_yscale("log")
        ax2.set_ylabel("lambda")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, loc="upper right", fontsize=8)
    ax.set_title("Search trajectory", fontsize=11)
    return _png(fig)


def block_latency(parts: list[tuple[str, float]]) -> bytes | None:
    """Horizontal bars: the LUT's estimate for each part of the derived arch, in forward order (where time goes)."""
    if not parts:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(parts) + 1.2))
    names = [p[0] for p in parts][::-1]
    vals = [p[1] for p in parts][::-1]
    colors = ["#1f77b4" if n.startswith(("cell", "pos")) else "#ff7f0e" for n in names]
    ax.barh(range(len(vals)), vals, color=colors)
    ax.set_yticks(range(len(vals)))
    ax.set_yticklabels(names, fontsize=8)
    for i, v in enumerate(vals):
        ax.text(v, i, f" {v:.1f}", va="center", fontsize=7)
    ax.set_xlabel("LUT estimate (ms)")
    ax.set_title(f"Predicted latency per part (sum {sum(vals):.1f} ms + overhead; blue: searched, orange: fixed)",
                 fontsize=10)
    return _png(fig)


def quality_bars(quality: dict[str, dict[str, Any]]) -> bytes | None:
    """PSNR (to ground truth and to the teacher) of bicubic / student / student int8 / teacher."""
    names = [n for n in ("bicubic", "student", "student_int8", "teacher") if isinstance(quality.get(n), dict)]
    if not names:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.5))
    width = 0.38
    for i, key, label, color in ((0, "psnr", "PSNR vs HR (dB)", "#1f77b4"),
                                 (1, "psnr_vs_teacher", "PSNR vs teacher (dB)", "#9467bd")):
        xs, ys = [], []
        for j, n in enumerate(names):
            v = quality[n].get(key)
            if isinstance(v, (int, float)) and math.isfinite(v):
                xs.append(j + (i - 0.5) * width)
                ys.append(v)
        bars = ax.bar(xs, ys, width, label=label, color=color)
        for b, v in zip(bars, ys):
            ax.text(b.get_x() + b.get_width() / 2, v, f"{v:.2f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names)
    lo = min((quality[n].get(k) for n in names for k in ("psnr", "psnr_vs_teacher")
              if isinstance(quality[n].get(k), (int, float))), default=0)
    ax.set_ylim(max(0, lo - 3), None)
    ax.legend(fontsize=8)
    ax.set_title("Fidelity on held-out images", fontsize=11)
    return _png(fig)
