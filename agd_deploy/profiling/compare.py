"""Do two latency tables of the same target agree? (`agd profile compare A B`)

Two profiles of one target should differ only by measurement noise. The figure each table prints for its own
noise is the median relative difference of block minima between two halves of its rounds (the larger of
even-vs-odd rounds and of its two timing passes, each with fresh sessions; `profiling.profile` step 5); two
whole tables agree when their entries differ by no more than that. A machine can also run uniformly faster or slower at
another time (a shared VM's clock, other tenants), which shifts every entry by one factor: reported as
`speed_ratio` (median of B/A), with the spread left after removing it, so "the machine changed" and "the
blocks disagree" are told apart. `predictions` compares the two tables where it matters to a search: the
predicted latency of random whole nets."""

from __future__ import annotations

from typing import Any

import numpy as np

from .lut import LUT, LUTError
from ..space import sample_archs
from .predictor import predict_ms


def _rel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    m = (a + b) / 2
    return np.abs(a - b) / np.where(m > 0, m, 1.0)


def compare_tables(a: LUT, b: LUT, n_nets: int = 200, seed: int = 0) -> dict[str, Any]:
    """Entry-by-entry and prediction-level agreement of two tables (same space, target, shape)."""
    if (a.space, a.space_hash, a.target, list(a.input_shape)) != (b.space, b.space_hash, b.target,
                                                                  list(b.input_shape)):
        raise LUTError(f"cannot compare a {a.target} {a.space} table with a {b.target} {b.space} table of another "
                       "space version or input shape")
    common = sorted(a.entries.keys() & b.entries.keys())
    if not common:
        raise LUTError("the two tables share no block entries")
    x = np.array([a.ms(k) for k in common])
    y = np.array([b.ms(k) for k in common])
    keep = (x > 0) & (y > 0)
    ratio = float(np.median(y[keep] / x[keep])) if keep.any() else 1.0
    rel = _rel(x, y)
    rel_scaled = _rel(x * ratio, y)
    archs = sample_archs(a.space, n_nets, seed=seed, input_shape=a.input_shape)
    pa = np.array([predict_ms(a, arch) for arch in archs])
    pb = np.array([predict_ms(b, arch) for arch in archs])
    noise = [float(t.extra.get("profile", {}).get("noise_median_rel_diff", float("nan"))) for t in (a, b)]
    finite = [v for v in noise if v == v]
    allowed = max(finite) if finite else float("nan")
    med = float(np.median(rel))
    worst = int(np.argmax(rel))
    return {
        "tables": [str(a.path), str(b.path)], "target": a.target, "space": a.space, "entries": len(common),
        "blocks": {"median_rel_diff": round(med, 4), "p90_rel_diff": round(float(np.percentile(rel, 90)), 4),
                   "worst": {"key": common[worst], "a_ms": round(float(x[worst]), 4), "b_ms": round(float(y[worst]), 4)},
                   "median_rel_diff_after_speed_ratio": round(float(np.median(rel_scaled)), 4)},
        "speed_ratio": round(ratio, 4),
        "overhead_ms": [round(a.overhead_ms, 4), round(b.overhead_ms, 4)],
        "predictions": {"n": n_nets, "median_rel_diff": round(float(np.median(_rel(pa, pb))), 4),
                        "max_rel_diff": round(float(np.max(_rel(pa, pb))), 4),
                        "mean_ratio": round(float(np.mean(pb / pa)), 4)},
        "noise": {"a": noise[0], "b": noise[1], "allowed": allowed},
        "agree": bool(med <= allowed) if allowed == allowed else None,
        "agree_after_speed_ratio": bool(float(np.median(rel_scaled)) <= allowed) if allowed == allowed else None,
    }
