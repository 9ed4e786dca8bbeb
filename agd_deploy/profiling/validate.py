"""Check a LUT against reality: random whole nets of its space, lowered and timed on its target, compared with
the LUT's prediction and with a FLOPs proxy (least-squares ms = a * GMACs + b).

The whole nets are timed like LUT blocks (shared interleaved loop, the LUT's statistic), in two passes with
different orders; the Spearman correlation between the passes is the repeatability of the measurement itself:
no predictor can rank the nets better than the measurement agrees with itself."""

from __future__ import annotations

import contextlib
import functools
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AgdError
from ..space import Arch, build, count, get_space, sample_archs
from ..utils import file_lock
from .lut import LUT
from .predictor import predict_ms


WITHIN = 0.10  # the ±10% on whole nets a validated table promises (`within_10pct`)


def within(pred: np.ndarray, meas: np.ndarray) -> float:
    """The share of nets whose prediction is within ±WITHIN of the measurement."""
    return float((np.abs(pred - meas) / meas <= WITHIN).mean())


def metrics(pred: np.ndarray, meas: np.ndarray) -> dict[str, float]:
    from scipy import stats

    rel = np.abs(pred - meas) / meas
    return {"mape": float(rel.mean()), "within_10pct": within(pred, meas),
            "spearman": float(stats.spearmanr(pred, meas).statistic),
            "kendall": float(stats.kendalltau(pred, meas).statistic)}


def one_factor(pred: np.ndarray, meas: np.ndarray) -> dict[str, float]:
    """How the table does up to one factor: the median measured/predicted, and the share within ±10% after it.
    A table that fits here only up to that factor is one measured while the machine ran at another speed."""
    f = float(np.median(meas / pred))
    return {"speed_factor": f, "within_10pct_rescaled": within(pred * f, meas)}


def lut_metrics(pred: np.ndarray, meas: np.ndarray) -> dict[str, float]:
    """A table's validation figures: `metrics` and `one_factor`."""
    return {**metrics(pred, meas), **one_factor(pred, meas)}


def flops_fit(gmacs: np.ndarray, meas: np.ndarray) -> np.ndarray:
    """Least-squares ms = a * GMACs + b on the same nets (the best a FLOPs proxy can do here)."""
    a, b = np.polyfit(gmacs, meas, 1)
    return a * gmacs + b


def _artifact_dir(target_name: str, arch: Arch, int8: dict | None) -> Path:
    """Lowered validation nets are cached (a rerun, or `--lower-only` ahead of timing, skips conversions)."""
    from ..quant.onnx import OrtInt8Config
    from ..utils import cache_dir

    sp = arch.space_obj
    how = OrtInt8Config.from_dict(int8).cache_key() if int8 else None  # one key however the dict was recorded
    tag = _lowering_tag(target_name, json.dumps(how, sort_keys=True))
    return cache_dir("validate", target_name, f"{sp.name}-{sp.space_hash}-{tag}")


@functools.lru_cache(maxsize=None)
def _lowering_tag(target_name: str, int8_json: str) -> str:
    """A change of converter versions or int8 settings must not reuse old artifacts. Computed once per target
    and lowering (asking a runtime for its versions imports it), not once per net."""
    import hashlib

    import torch

    from ..runtimes import targets as T

    how = {"versions": T.runtime_for(target_name).versions(), "ort_int8": json.loads(int8_json),
           "torch": torch.__version__}
    return hashlib.sha1(json.dumps(how, sort_keys=True).encode()).hexdigest()[:8]


def _arch_id(arch: Arch) -> str:
    import hashlib

    return hashlib.sha1(arch.to_json().encode()).hexdigest()[:16]


def lower_archs(archs: list[Arch], target_name: str, progress: bool = True, jobs_n: int | None = None,
                int8: dict | None = None) -> list[Path]:
    """Lower each arch's whole net for the target (float in/out, as exported), reusing cached artifacts;
    conversions run `jobs_n` processes at a time (default: one per usable core, at most 4). `int8`: the ONNX
    int8 lowering (a table's, `profile.table_lowering`); None = the one chosen for this machine."""
    from ..runtimes import targets as T
    from .profile import LowerJob, default_lowering, run_lower_jobs

    target = T.get_target(target_name)
    int8 = int8 if int8 is not None else default_lowering(target_name)
    arts: dict[str, Path] = {}
    todo = []
    with contextlib.ExitStack() as locks:  # the cache is shared: a second process waits, then reuses the files
        for folder in sorted({_artifact_dir(target_name, a, int8) for a in archs}):
            locks.enter_context(file_lock(folder, f"lowering validation nets for {target_name}"))
        for a in archs:
            folder, name = _artifact_dir(target_name, a, int8), f"net-{_arch_id(a)}"
            done = folder / f"{name}{target.suffix}"
            if done.exists():
                arts[name] = done
            else:
                todo.append(LowerJob(name, target_name, "net", a.to_json(), list(a.input_shape), str(folder), name,
                                     False, space=a.space, int8=int8))
        run_lower_jobs(todo, jobs_n, progress, f"lowering {target_name}", lambda k, p: arts.__setitem__(k, Path(p)))
    return [arts[f"net-{_arch_id(a)}"] for a in archs]


def measure_archs(archs: list[Arch], target_name: str, threads: int, rounds: int, statistic: str = "min_ms",
                  seed: int = 0, progress: bool = True, clock: str = "", int8: dict | None = None,
                  ) -> list[tuple[float, float, float]]:
    """Lower each arch's whole net for the target and time them all interleaved in two passes of `rounds`
    rounds, each pass with fresh sessions. Returns per arch (statistic over both passes, pass 1, pass 2) in ms."""
    from ..runtimes.timing import Stats, time_artifacts

    arts = lower_archs(archs, target_name, progress, int8=int8)
    samples = time_artifacts(target_name, {str(i): p for i, p in enumerate(arts)}, 2 * rounds, threads=threads,
                             clock=clock, seed=seed * 7919 + 1, passes=2,
                             progress=f"timing {len(arts)} nets x2" if progress else False)
    out = []
    for i in range(len(arts)):
        xs = samples[str(i)]
        out.append(tuple(Stats.from_samples(v).get(statistic) for v in (xs, xs[:rounds], xs[rounds:])))
    return out


def validate(lut: LUT, n: int = 50, seed: int = 0, rounds: int = 10, progress: bool = True,
             plot: str | Path | None = None, lower_only: bool = False) -> dict[str, Any]:
    """The validation report (docs/ARCHITECTURE.md, "Contracts"; fractions, not percent). `lower_only`: convert the
    nets into the cache and return {"lowered": n} (time them later, e.g. under an exclusive lock)."""
    from scipy import stats

    if n < 3:
        raise AgdError("--n must be at least 3 to compute rank correlations")
    sp = get_space(lut.space)
    lut.check(sp)
    from .profile import table_lowering

    int8 = table_lowering(lut)
    archs = sample_archs(sp.name, n, seed=seed, input_shape=lut.input_shape)
    if lower_only:
        lower_archs(archs, lut.target, progress, int8=int8)
        return {"lowered": len(archs)}
    pred = np.array([predict_ms(lut, a) for a in archs])
    gmacs = np.array([count(build(a), a.input_shape).gmacs for a in archs])
    timings = measure_archs(archs, lut.target, lut.threads, rounds, lut.statistic, seed=seed, progress=progress,
                            clock=lut.clock, int8=int8)
    meas = np.array([t[0] for t in timings])
    p1, p2 = np.array([t[1] for t in timings]), np.array([t[2] for t in timings])
    flops_pred = flops_fit(gmacs, meas)
    from ..device import describe_device
    from ..runtimes.base import device_fingerprint

    report = {"n": n, "seed": seed, "target": lut.target, "table": str(lut.path) if lut.path else None,
              "clock": lut.clock, "table_device": lut.device, "this_device": device_fingerprint(),
              "devices": {"table": describe_device(lut.device), "here": describe_device(device_fingerprint())},
              "lut": lut_metrics(pred, meas), "flops": metrics(flops_pred, meas),
              "repeatability": {"spearman": float(stats.spearmanr(p1, p2).statistic),
                                "median_rel_diff": float(np.median(np.abs(p1 - p2) / ((p1 + p2) / 2)))},
              "points": [{"predicted_ms": round(float(p), 4), "measured_ms": round(float(m), 4),
                          "gmacs": round(float(g), 4)} for p, m, g in zip(pred, meas, gmacs)]}
    if plot:
        scatter_plot(report, flops_pred, plot)
        report["plot"] = str(plot)
    return report


def pool(reports: list[dict[str, Any]], plot: str | Path | None = None) -> dict[str, Any]:
    """One report over the nets of several validations of the same table (e.g. a brief check extended by more
    nets): metrics and the FLOPs fit recomputed over all points; repeatability is the n-weighted mean of the
    parts' (each measured its own nets twice)."""
    pts = [p for r in reports for p in r["points"]]
    pred = np.array([p["predicted_ms"] for p in pts])
    meas = np.array([p["measured_ms"] for p in pts])
    gmacs = np.array([p["gmacs"] for p in pts])
    flops_pred = flops_fit(gmacs, meas)
    n = [r["n"] for r in reports]
    rep = {**reports[0], "n": len(pts), "seed": [r["seed"] for r in reports],
           "lut": lut_metrics(pred, meas), "flops": metrics(flops_pred, meas),
           "points": pts, "pooled_from": n,
           "repeatability": {k: float(np.average([r["repeatability"][k] for r in reports], weights=n))
                             for k in ("spearman", "median_rel_diff")}}
    rep.pop("plot", None)
    if plot:
        scatter_plot(rep, flops_pred, plot)
        rep["plot"] = str(plot)
    return rep


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
                progress: bool = False, clock: str = "", int8: dict | None = None) -> float:
    """One whole net measured as LUT blocks are (the timing service: untimed run before each, same clock,
    statistic); `int8` as in `lower_archs` (a table's lowering, so the net is the file the table predicts)."""
    from ..runtimes.timing import Stats, time_artifacts
    from .profile import lower_model

    with tempfile.TemporaryDirectory(prefix="agd-measure-") as tmp:
        art = lower_model(target_name, build(arch), arch.input_shape, Path(tmp), "net", quantized_io=False,
                          value_range=arch.space_obj.value_range, int8=int8)
        samples = time_artifacts(target_name, {"net": art}, rounds, threads=threads, clock=clock, passes=2,
                                 progress="timing" if progress else False)["net"]
    return Stats.from_samples(samples).get(statistic)


def measurer(lut: LUT, rounds: int = 20, progress: bool = False):
    """`arch -> ms` on this machine, measured as `lut` was (its target, threads, clock, statistic and int8
    lowering): the device check of a searched arch (search.derive.fit_measured)."""
    from ..log import get
    from ..runtimes.targets import get_target
    from .predictor import predict_ms
    from .profile import table_lowering

    get_target(lut.target)  # a target that cannot run here is refused now, not after the search
    int8, clock = table_lowering(lut), lut.clock

    def measure(arch: Arch) -> float:
        ms = measure_one(arch, lut.target, threads=lut.threads, rounds=rounds, statistic=lut.statistic,
                         clock=clock, int8=int8)
        if progress:
            get(__name__).info(f"budget check on {lut.target}: measured {ms:.2f} ms, table {predict_ms(lut, arch):.2f} ms")
        return ms

    return measure
