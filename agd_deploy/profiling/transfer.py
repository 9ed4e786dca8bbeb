"""Few-shot transfer of a latency table to this device (`agd profile transfer --from TABLE --probes K`).

Profiling block by block takes minutes on a desktop and tens of minutes on a phone over adb; timing K whole
nets takes one. Between two CPUs the blocks do not all change speed by one factor: op classes (dense 3x3
convs, residual pairs, depthwise blocks, 1x1 skips) and the high-resolution head move differently (int8 dot
products speed up dense convs far more than depthwise ones or data movement). So the transferred table keeps
the source's per-block entries and fits one scale per op class:

    measured_net ~= a + sum_c s_c * X_c(net)        X_c = the source table's ms of the net's blocks of class c

a = the nets' constant part here (the fixed stem/trunk/skip blocks and the per-call overhead, which every net
of the space has). The fit minimises relative error (a ±10% goal is relative) over the probe nets plus the
source table's own reference nets, with a ridge pull of every s_c toward the one global factor so that a class
the probes barely exercise keeps the global factor instead of a noisy one. Probes are chosen from a pool of
random and single-op nets to make the fit well determined (greedy D-optimal design on the rows above).

Classes are few on purpose: with K = 10 probes + 6 reference nets, 5 scales + 1 constant are well determined;
a per-width or per-resolution split would not be."""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..device import identify
from ..errors import AgdError
from ..space import Arch, get_space, sample_archs
from .check import reference_archs_of
from .lut import LUT, now_iso
from .predictor import predict_ms

CLASSES = ("conv3x3", "residual", "dwsblock", "skip", "head")
RIDGE = 1.0    # pull of each class scale toward the global factor (relative; see `fit`)


def block_class(key: str) -> str | None:
    """The class of a block key; None for the fixed blocks every net has (stem, trunk conv, sums, skip)."""
    part, op = key.split(":")[:2]
    if part == "cell":
        return op if op in CLASSES else None
    if part in ("up1", "up2", "hr", "last"):
        return "head"
    return None


def design_row(lut: LUT, arch: Arch) -> np.ndarray:
    """[1, X_conv3x3, X_residual, X_dwsblock, X_skip, X_head] of one net on the source table (ms)."""
    row = np.zeros(1 + len(CLASSES))
    row[0] = 1.0
    for b in arch.blocks(lut.input_shape):
        c = block_class(b.key)
        if c is not None:
            row[1 + CLASSES.index(c)] += lut.ms(b.key)
    return row


def probe_pool(space: str, input_shape, n: int = 300, seed: int = 0) -> list[Arch]:
    """Random nets spread over the latency range, plus nets of one op at random widths (they isolate a class)."""
    sp = get_space(space)
    pool = sample_archs(space, n, seed=50_000 + seed, input_shape=input_shape)
    rng = random.Random(seed)
    for op in sp.ops:
        for _ in range(6):
            widths = {k: rng.choice(v) for k, v in sp.width_vars.items()}
            pool.append(Arch(sp.name, [op] * sp.n_positions, widths, list(input_shape)))
    return pool


def choose_probes(lut: LUT, k: int, seed: int = 0, fixed: list[Arch] = ()) -> list[Arch]:
    """K nets that, with `fixed` (the reference nets), make the relative-error fit best determined: greedy
    maximisation of log det of the information matrix of the rows scaled by 1 / predicted ms."""
    pool = probe_pool(lut.space, lut.input_shape, seed=seed)
    rows = np.array([design_row(lut, a) / predict_ms(lut, a) for a in pool])
    info = np.eye(rows.shape[1]) * 1e-3
    for a in fixed:
        r = design_row(lut, a) / predict_ms(lut, a)
        info += np.outer(r, r)
    chosen: list[int] = []
    for _ in range(min(k, len(pool))):
        gains = np.einsum("ij,jk,ik->i", rows, np.linalg.inv(info), rows)  # det(M + rr') = det(M)(1 + r M^-1 r')
        gains[chosen] = -np.inf
        best = int(np.argmax(gains))
        chosen.append(best)
        info += np.outer(rows[best], rows[best])
    return [pool[i] for i in chosen]


def fit(rows: np.ndarray, measured: np.ndarray, ridge: float = RIDGE) -> tuple[np.ndarray, float]:
    """(coefficients [a, s_c...], global factor g): relative least squares, each s_c pulled toward g (the
    relative least-squares fit of measured ~= a + g * sum_c X_c). The pull is relative too: a class whose
    scale is off g by x costs `ridge` times what one net mispredicted by (its share of the net's time) * x
    costs, so a class the probes barely separate keeps g instead of absorbing their noise."""
    w = 1.0 / measured
    x_all = rows[:, 1:].sum(axis=1)
    g_design = np.stack([np.ones_like(x_all), x_all], axis=1) * w[:, None]
    (_, g), *_ = np.linalg.lstsq(g_design, np.ones_like(measured), rcond=None)
    n_c = rows.shape[1] - 1
    share = np.maximum((rows[:, 1:] * w[:, None]).mean(axis=0) * g, 1e-3)  # each class's mean share of a net
    reg = np.zeros((n_c, n_c + 1))
    reg[:, 1:] = np.diag(np.sqrt(ridge) * share / g)
    design = np.vstack([rows * w[:, None], reg])
    target = np.r_[np.ones_like(measured), np.sqrt(ridge) * share]
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    return coef, float(g)


@dataclass
class TransferResult:
    table: LUT
    seconds: float
    probes: int
    residuals: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        rel = [abs(r["rel_error"]) for r in self.residuals]
        return {"table": str(self.table.path) if self.table.path else None, "probes": self.probes,
                "seconds": round(self.seconds, 2), "scales": self.table.extra["provenance"]["scales"],
                "fit": {"max_abs_rel_error": round(max(rel), 4) if rel else None,
                        "median_abs_rel_error": round(float(np.median(rel)), 4) if rel else None}}


def plan(source: LUT, probes: int, seed: int = 0) -> tuple[list[Arch], int]:
    """(nets to time here, how many of them are the source's reference nets: they come first)."""
    if probes < 0:
        raise AgdError("--probes must be 0 or more")
    source.check(source.space)
    refs = [a for a, _ in reference_archs_of(source)]
    nets = refs + choose_probes(source, probes, seed=seed, fixed=refs)
    if len(nets) < 3:
        raise AgdError(f"{source.path}: too few nets to fit ({len(nets)}); give --probes 3 or more")
    return nets, len(refs)


def transfer(source: LUT, probes: int = 10, rounds: int = 6, seed: int = 0, progress: bool = True,
             jobs_n: int | None = None) -> TransferResult:
    """Measure `probes` chosen nets (plus the source's reference nets) here, in 3 passes of fresh sessions,
    and return the transferred table (not saved: the caller decides where). Lowered with this device's int8
    lowering, recorded in the table."""
    from ..runtimes import targets as T
    from ..runtimes.timing import time_artifacts
    from .profile import default_lowering
    from .validate import lower_archs

    t0 = time.perf_counter()
    T.get_target(source.target)
    nets, n_refs = plan(source, probes, seed)
    arts = lower_archs(nets, source.target, progress=progress, jobs_n=jobs_n, int8=default_lowering(source.target))
    samples = time_artifacts(source.target, {str(i): p for i, p in enumerate(arts)}, rounds, passes=3,
                             threads=source.threads, clock=source.clock, seed=seed,
                             progress=f"timing {len(arts)} probe nets" if progress else False)
    table, residuals = fit_table(source, nets, n_refs, [samples[str(i)] for i in range(len(nets))], probes)
    return TransferResult(table, time.perf_counter() - t0, probes, residuals)


def fit_table(source: LUT, nets: list[Arch], n_refs: int, samples: list[list[float]], probes: int
              ) -> tuple[LUT, list[dict[str, Any]]]:
    """The transferred table from the nets' timing samples here (module docstring), and its fit residuals."""
    from ..runtimes.timing import Stats
    from .profile import default_lowering, runtime_here

    stat = source.statistic
    measured = np.array([Stats.from_samples(s).get(stat) for s in samples])
    halves = [np.array([Stats.from_samples(s[j::2]).get(stat) for s in samples]) for j in (0, 1)] \
        if min(len(s) for s in samples) >= 2 else [measured, measured]
    noise = float(np.median(np.abs(halves[0] - halves[1]) / ((halves[0] + halves[1]) / 2)))
    rows = np.array([design_row(source, a) for a in nets])
    coef, g = fit(rows, measured)
    new = _apply(source, coef, g)
    residuals = [{"net": "reference" if i < n_refs else "probe", "measured_ms": round(float(m), 4),
                  "predicted_ms": round(float(p), 4), "rel_error": round(float(p / m - 1), 4)}
                 for i, (m, p) in enumerate(zip(measured, rows @ coef))]
    me = identify()
    new.device, new.created, new.runtime = me.to_dict(), now_iso(), runtime_here(source.target)
    int8 = default_lowering(source.target)
    new.extra.pop("lowering", None)
    if int8:
        new.extra["lowering"] = {"ort_int8": int8, "chosen_for": me.device_class}
    prof = new.extra.setdefault("profile", {})
    prof["reference_nets"] = [{"arch": {"ops": a.ops, "widths": a.widths}, "measured_ms": round(float(m), 4)}
                              for a, m in zip(nets[:n_refs], measured[:n_refs])]
    prof["noise_median_rel_diff"] = round(noise, 4)
    prof["rounds"] = min(len(s) for s in samples)
    new.extra["provenance"] = {
        "kind": "transferred", "from": str(source.path), "from_device": source.device, "probes": probes,
        "rounds": prof["rounds"], "scales": {c: round(float(s), 4) for c, s in zip(CLASSES, coef[1:])},
        "constant_ms": round(float(coef[0]), 4), "global_factor": round(g, 4), "ridge": RIDGE,
        "probe_archs": [{"ops": a.ops, "widths": a.widths} for a in nets[n_refs:]], "residuals": residuals}
    return new, residuals


def _apply(source: LUT, coef: np.ndarray, g: float) -> LUT:
    """Entries of class c times s_c; the fixed blocks times the global factor, and the overhead set so that
    overhead + their sum = the fitted constant (prediction = a + sum_c s_c X_c exactly)."""
    d = copy.deepcopy(source.to_dict())  # the source table stays as it was (its reference nets are its own)
    scales = dict(zip(CLASSES, coef[1:]))
    entries = {}
    for k, e in source.entries.items():
        c = block_class(k)
        f = float(scales[c]) if c is not None else g
        entries[k] = {s: (round(v * f, 6) if s.endswith("_ms") else v) for s, v in e.items()}
    any_net = Arch.extreme(source.space, False, source.input_shape)  # the fixed blocks are the same in every net
    fixed_sum = sum(entries[b.key][source.statistic] for b in any_net.blocks(source.input_shape)
                    if block_class(b.key) is None)
    d["entries"] = entries
    d["overhead_ms"] = round(float(coef[0]) - fixed_sum, 6)
    return LUT.from_dict(d, "transferred table")
