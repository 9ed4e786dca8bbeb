"""Check a LUT against reality: random whole nets of its space, lowered and timed on its target, compared with
the LUT's prediction and with a FLOPs proxy (least-squares ms = a * GMACs + b).

The whole nets are timed like LUT blocks (shared interleaved loop, the LUT's statistic), in two passes with
different orders; the Spearman correlation between the passes is the repeatability of the measurement itself:
no predictor can rank the nets better than the measurement agrees with itself."""

from __future__ import annotations

import functools

import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AgdError
from ..space import Arch, build, count, get_space
from .lut import LUT
from .predictor import predict_ms


def sample_archs(space: str, n: int, seed: int = 0, input_shape=None) -> list[Arch]:
    """n random archs spanning the latency range: each arch draws a "width level" and a "skip share", then
    widths near that level and ops with that share of `skip`, so narrow/cheap and wide/heavy nets both appear
    (uniform sampling alone concentrates around the middle)."""
    sp = get_space(space)
    rng = random.Random(seed)
    archs = []
    for _ in range(n):
        level = rng.uniform(0, 4)
        skip_share = rng.uniform(0, 0.6)
        widths = {}
        for name, ch in sp.width_vars.items():
            i = int(round(min(len(ch) - 1, max(0, level + rng.uniform(-1.5, 1.5)))))
            widths[name] = ch[i]
        others = [o for o in sp.ops if o != "skip"]
        ops = ["skip" if rng.random() < skip_share else rng.choice(others) for _ in range(sp.n_positions)]
        archs.append(Arch(sp.name, ops, widths, list(input_shape or sp.default_input)))
    return archs


def metrics(pred: np.ndarray, meas: np.ndarray) -> dict[str, float]:
    from scipy import stats

    rel = np.abs(pred - meas) / meas
    return {"mape": float(rel.mean()), "within_10pct": float((rel <= 0.10).mean()),
            "spearman": float(stats.spearmanr(pred, meas).statistic),
            "kendall": float(stats.kendalltau(pred, meas).statistic)}


def flops_fit(gmacs: np.ndarray, meas: np.ndarray) -> np.ndarray:
    """Least-squares ms = a * GMACs + b on the same nets (the best a FLOPs proxy can do here)."""
    a, b = np.polyfit(gmacs, meas, 1)
    return a * gmacs + b


@dataclass
class NetTiming:
    predicted_ms: float
    measured_ms: float
    gmacs: float
    pass_ms: tuple[float, float]


def _artifact_dir(target_name: str, arch: Arch) -> Path:
    """Lowered validation nets are cached (a rerun, or `--lower-only` ahead of timing, skips conversions)."""
    from ..utils import cache_dir

    sp = arch.space_obj
    return cache_dir("validate", target_name, f"{sp.name}-{sp.space_hash}-{_lowering_tag(target_name)}")


@functools.lru_cache(maxsize=None)
def _lowering_tag(target_name: str) -> str:
    """A change of converter versions or int8 settings must not reuse old artifacts. Computed once per target
    (asking a runtime for its versions imports it), not once per net."""
    import hashlib
    import json

    from ..quant.onnx import OrtInt8Config
    from ..runtimes import targets as T

    how = {"versions": T.runtime_for(target_name).versions(), "ort_int8": OrtInt8Config().to_dict()}
    try:
        import torch

        how["torch"] = torch.__version__
    except ImportError:  # pragma: no cover
        pass
    return hashlib.sha1(json.dumps(how, sort_keys=True).encode()).hexdigest()[:8]


def _arch_id(arch: Arch) -> str:
    import hashlib

    return hashlib.sha1(arch.to_json().encode()).hexdigest()[:16]


def lower_archs(archs: list[Arch], target_name: str, progress: bool = True, jobs_n: int | None = None) -> list[Path]:
    """Lower each arch's whole net for the target (float in/out, as exported), reusing cached artifacts;
    conversions run `jobs_n` processes at a time (default: one per usable core, at most 4)."""
    from ..runtimes import targets as T
    from .profile import LowerJob, run_lower_jobs

    target = T.get_target(target_name)
    arts: dict[str, Path] = {}
    todo = []
    for a in archs:
        folder, name = _artifact_dir(target_name, a), f"net-{_arch_id(a)}"
        done = folder / f"{name}{target.suffix}"
        if done.exists():
            arts[name] = done
        else:
            todo.append(LowerJob(name, target_name, "net", a.to_json(), list(a.input_shape), str(folder), name,
                                 False, space=a.space))
    run_lower_jobs(todo, jobs_n, progress, f"lowering {target_name}", lambda k, p: arts.__setitem__(k, Path(p)))
    return [arts[f"net-{_arch_id(a)}"] for a in archs]


def measure_archs(archs: list[Arch], target_name: str, threads: int, rounds: int, statistic: str = "min_ms",
                  seed: int = 0, progress: bool = True, clock: str = "cpu") -> list[tuple[float, float, float]]:
    """Lower each arch's whole net for the target and time them all interleaved in two passes of `rounds`
    rounds (alternating rounds). Returns per arch (statistic over both passes, pass 1, pass 2) in ms."""
    from ..runtimes import targets as T
    from ..runtimes.timing import Stats, pinned
    from .profile import _bar
    from ..runtimes.timing import timed_rounds

    target = T.get_target(target_name)
    arts = lower_archs(archs, target_name, progress)
    with pinned(threads):
        sessions = [T.load_session(target, p, threads=threads) for p in arts]
        runs = {str(i): s.timer() for i, s in enumerate(sessions)}
        samples: list[dict[str, list[float]]] = [{k: [] for k in runs}, {k: [] for k in runs}]
        total = 2 * rounds
        it = timed_rounds(runs, range(total), clock, seed=seed * 7919 + 1)
        for r, sample in _bar(it, progress, f"timing {len(runs)} nets x2", total_rounds=total):
            for k, ms in sample.items():
                samples[r % 2][k].append(ms)
        for s in sessions:
            s.close()
    out = []
    for k in runs:
        both = Stats.from_samples(samples[0][k] + samples[1][k]).get(statistic)
        out.append((both, Stats.from_samples(samples[0][k]).get(statistic),
                    Stats.from_samples(samples[1][k]).get(statistic)))
    return out


def validate(lut: LUT, n: int = 50, seed: int = 0, rounds: int = 10, progress: bool = True,
             plot: str | Path | None = None, lower_only: bool = False) -> dict[str, Any]:
    """The validation report of DESIGN.md's Contracts (fractions, not percent). `lower_only`: convert the
    nets into the cache and return {"lowered": n} (time them later, e.g. under an exclusive lock)."""
    from scipy import stats

    if n < 3:
        raise AgdError("--n must be at least 3 to compute rank correlations")
    sp = get_space(lut.space)
    lut.check(sp)
    lut.warn_if_other_device()
    archs = sample_archs(sp.name, n, seed=seed, input_shape=lut.input_shape)
    if lower_only:
        lower_archs(archs, lut.target, progress)
        return {"lowered": len(archs)}
    pred = np.array([predict_ms(lut, a) for a in archs])
    gmacs = np.array([count(build(a), a.input_shape).gmacs for a in archs])
    timings = measure_archs(archs, lut.target, lut.threads, rounds, lut.statistic, seed=seed, progress=progress,
                            clock=lut.clock)
    meas = np.array([t[0] for t in timings])
    p1, p2 = np.array([t[1] for t in timings]), np.array([t[2] for t in timings])
    flops_pred = flops_fit(gmacs, meas)
    report = {"n": n, "seed": seed, "target": lut.target, "table": str(lut.path) if lut.path else None,
              "clock": lut.clock,
              "lut": metrics(pred, meas), "flops": metrics(flops_pred, meas),
              "repeatability": {"spearman": float(stats.spearmanr(p1, p2).statistic),
                                "median_rel_diff": float(np.median(np.abs(p1 - p2) / ((p1 + p2) / 2)))},
              "points": [{"predicted_ms": round(float(p), 4), "measured_ms": round(float(m), 4),
                          "gmacs": round(float(g), 4)} for p, m, g in zip(pred, meas, gmacs)]}
    if plot:
        scatter_plot(report, flops_pred, plot)
        report["plot"] = str(plot)
    return report


def rescore(report: dict[str, Any], lut: LUT, plot: str | Path | None = None) -> dict[str, Any]:
    """The same measured nets scored against another table of the same target (e.g. after recalibration):
    the archs are re-drawn from the report's seed, the measurements are reused."""
    archs = sample_archs(lut.space, report["n"], seed=report.get("seed", 0), input_shape=lut.input_shape)
    meas = np.array([p["measured_ms"] for p in report["points"]])
    gmacs = np.array([p["gmacs"] for p in report["points"]])
    pred = np.array([predict_ms(lut, a) for a in archs])
    out = dict(report, table=str(lut.path) if lut.path else None, lut=metrics(pred, meas),
               points=[dict(p, predicted_ms=round(float(x), 4)) for p, x in zip(report["points"], pred)])
    if plot:
        scatter_plot(out, flops_fit(gmacs, meas), plot)
        out["plot"] = str(plot)
    return out


def scatter_plot(report: dict[str, Any], flops_pred: np.ndarray, path: str | Path) -> Path:
    """Two panels: LUT prediction vs measured, FLOPs fit vs measured, with the y=x line and ±10% band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..utils import atomic_path

    meas = np.array([p["measured_ms"] for p in report["points"]])
    pred = np.array([p["predicted_ms"] for p in report["points"]])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    for ax, y, name, key in ((axes[0], pred, "LUT prediction", "lut"), (axes[1], flops_pred, "FLOPs fit", "flops")):
        m = report[key]
        lo, hi = min(meas.min(), y.min()) * 0.95, max(meas.max(), y.max()) * 1.05
        xs = np.array([lo, hi])
        ax.plot(xs, xs, "k-", lw=1)
        ax.fill_between(xs, xs * 0.9, xs * 1.1, color="0.85", label="±10%")
        ax.scatter(meas, y, s=16, alpha=0.8)
        ax.set_xlabel("measured ms")
        ax.set_ylabel(f"{name} ms")
        ax.set_title(f"{name}: MAPE {m['mape']*100:.1f}%, ±10% {m['within_10pct']*100:.0f}%, "
                     f"ρ {m['spearman']:.3f}", fontsize=9)
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(f"{report.get('target', '')}: {report['n']} random nets "
                 f"(repeatability ρ {report['repeatability']['spearman']:.3f})", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path, suffix=path.suffix or ".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def measure_one(arch: Arch, target_name: str, threads: int = 1, rounds: int = 20, statistic: str = "min_ms",
                progress: bool = False, clock: str = "cpu") -> float:
    """One whole net measured as LUT blocks are (shared loop, untimed run before each, same clock, statistic)."""
    from ..runtimes import targets as T
    from ..runtimes.timing import Stats, pinned
    from .profile import _bar, lower_model
    from ..runtimes.timing import timed_rounds

    target = T.get_target(target_name)
    with tempfile.TemporaryDirectory(prefix="agd-measure-") as tmp:
        art = lower_model(target, build(arch), arch.input_shape, Path(tmp), "net", quantized_io=False,
                          value_range=arch.space_obj.value_range)
        with pinned(threads):
            s = T.load_session(target, art, threads=threads)
            it = timed_rounds({"net": s.timer()}, range(rounds), clock)
            samples = [x["net"] for _, x in _bar(it, progress, "timing", total_rounds=rounds)]
            s.close()
    return Stats.from_samples(samples).get(statistic)
