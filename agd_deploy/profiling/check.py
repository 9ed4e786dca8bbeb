"""Does a latency table predict THIS machine? (`agd profile check`, and the gate before search/measure/demo)

A table carries the whole reference nets its calibration was fitted on, with the time each took where it was
measured (`profile.reference_nets`). Re-timing those nets here (lowered the way the table's blocks were) takes
seconds and answers:

    fits           every net within tolerance of the table's time: use the table as it is
    rescaled-fits  the machine is uniformly faster/slower (one factor: a VM host's clock, another run of the same
                   CPU): every net within tolerance after that factor, so `rescaled()` predicts here
    stale          the nets changed speed by different factors (another CPU: op classes and int8 speed move
                   differently between ISAs): this table does not predict this machine; profile or transfer

tolerance = clamp(2 x (this check's noise + the table's noise), 3%, 8%): a check cannot resolve a difference
smaller than its own noise, and a table that is more than 8% off on whole nets would miss ±10% somewhere.
A check's noise is taken as a profile's is: the larger of even vs odd rounds and its first passes vs its last.
Even vs odd rounds alone miss how sessions differ in speed, and called a table that fits this machine stale
(docs/ARCHITECTURE.md, "Known pitfalls")."""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..device import DeviceIdentity, describe_device, identify, identity_of
from ..errors import AgdError
from ..space import Arch
from .lut import LUT

VERDICTS = ("fits", "rescaled-fits", "stale")
TOL_MIN, TOL_MAX = 0.03, 0.08


@dataclass
class CheckResult:
    verdict: str                  # one of VERDICTS
    speed_ratio: float            # median over nets of (here / table)
    spread: float                 # largest |ratio / speed_ratio - 1| over the nets
    max_abs_dev: float            # largest |ratio - 1| (what `fits` bounds)
    noise: float                  # this check's own noise: the larger of `noise_parts`
    tolerance: float
    seconds: float
    rounds: int
    table: str
    table_device: dict | None     # the identity the table records (None: unknown device)
    this_device: dict
    same_device: bool
    nets: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""
    noise_parts: dict[str, float] = field(default_factory=dict)  # {"interleaved": even vs odd rounds, "passes": ...}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def usable(self) -> bool:
        return self.verdict in ("fits", "rescaled-fits")


def tolerance(check_noise: float, table_noise: float) -> float:
    return float(min(TOL_MAX, max(TOL_MIN, 2 * (check_noise + table_noise))))


def judge(ratios: np.ndarray, check_noise: float, table_noise: float) -> tuple[str, float, float, float, float]:
    """(verdict, speed_ratio, spread, max_abs_dev, tolerance) from per-net time ratios here / table."""
    ratio = float(np.median(ratios))
    spread = float(np.max(np.abs(ratios / ratio - 1)))
    dev = float(np.max(np.abs(ratios - 1)))
    tol = tolerance(check_noise, table_noise)
    verdict = "fits" if dev <= tol else "rescaled-fits" if spread <= tol else "stale"
    return verdict, ratio, spread, dev, tol


def reference_archs_of(lut: LUT) -> list[tuple[Arch, float]]:
    """The table's reference nets and the time each took where the table was measured."""
    refs = lut.extra.get("profile", {}).get("reference_nets") or []
    return [(Arch(lut.space, r["arch"]["ops"], r["arch"]["widths"], list(lut.input_shape)), float(r["measured_ms"]))
            for r in refs if r.get("measured_ms")]


def check_table(lut: LUT, budget_s: float = 25.0, progress: bool = True, max_rounds: int = 12,
                identity: DeviceIdentity | None = None) -> CheckResult:
    """Re-time the table's reference nets here within about `budget_s` seconds (conversions included), in 3
    passes of fresh sessions, and judge the table (module docstring). At least 2 rounds a pass whatever the
    budget: with one sample a net, two checks of the same machine were seen 0.89x-1.17x apart (a false
    `stale`); on a slow machine the answer then takes longer than the budget."""
    from ..runtimes import targets as T
    from ..runtimes.timing import Stats, noise as rel_noise, time_passes
    from .profile import table_lowering
    from .validate import lower_archs

    t0 = time.perf_counter()
    me = identity or identify()
    theirs = identity_of(lut.device)
    base = dict(table=str(lut.path) if lut.path else "", table_device=theirs.to_dict() if theirs else None,
                this_device=me.to_dict(), same_device=bool(theirs and theirs.device_key == me.device_key))
    refs = reference_archs_of(lut)
    if len(refs) < 2:
        return CheckResult("stale", float("nan"), float("nan"), float("nan"), float("nan"), TOL_MIN,
                           time.perf_counter() - t0, 0, nets=[], reason="the table carries fewer than 2 reference "
                           "nets, so it cannot be checked; re-profile the target", **base)
    T.get_target(lut.target)  # one line if the runtime is missing here
    arts = lower_archs([a for a, _ in refs], lut.target, progress=progress, int8=table_lowering(lut))
    left = max(2.0, budget_s - (time.perf_counter() - t0))
    passes = time_passes(lut.target, {str(i): p for i, p in enumerate(arts)}, max_rounds, threads=lut.threads,
                         clock=lut.clock, passes=3, budget_s=left, min_rounds=2,
                         progress="checking" if progress else False)
    keys = [str(i) for i in range(len(refs))]
    samples = {k: [x for p in passes for x in p[k]] for k in keys}
    stat = lut.statistic
    here = np.array([Stats.from_samples(samples[k]).get(stat) for k in keys])
    table_ms = np.array([m for _, m in refs])
    noise_parts = {"interleaved": rel_noise(*[{k: Stats.from_samples(samples[k][j::2]) for k in keys} for j in (0, 1)],
                                            stat) if len(samples["0"]) >= 2 else 0.0}
    if len(passes) >= 2:  # the first passes' sessions vs the last's (as the profile's noise): sessions differ in speed
        cut = (len(passes) + 1) // 2
        noise_parts["passes"] = rel_noise(*[{k: Stats.from_samples([x for p in part for x in p[k]]) for k in keys}
                                            for part in (passes[:cut], passes[cut:])], stat)
    noise = float(max(noise_parts.values()))
    table_noise = float(lut.extra.get("profile", {}).get("noise_median_rel_diff", 0.0) or 0.0)
    ratios = here / table_ms
    verdict, ratio, spread, dev, tol = judge(ratios, noise, table_noise)
    nets = [{"table_ms": round(float(t), 3), "here_ms": round(float(h), 3), "ratio": round(float(r), 4)}
            for t, h, r in zip(table_ms, here, ratios)]
    reason = {"fits": "every reference net within tolerance of the table",
              "rescaled-fits": f"uniformly {ratio:.3f}x the table's times (within tolerance after that factor)",
              "stale": f"the reference nets changed speed by {ratios.min():.2f}x to {ratios.max():.2f}x: "
                       "not one factor"}[verdict]
    if verdict == "stale" and noise > TOL_MAX / 2:  # the check itself cannot tell: say so, stay conservative
        reason += (f"; but this check's own noise is {noise * 100:.0f}% (the machine's speed changed while it "
                   "timed): check again when the machine is quiet")
    return CheckResult(verdict, round(ratio, 4), round(spread, 4), round(dev, 4), round(noise, 4), round(tol, 4),
                       round(time.perf_counter() - t0, 2), len(samples["0"]), nets=nets, reason=reason,
                       noise_parts={k: round(float(v), 4) for k, v in noise_parts.items()}, **base)


def rescaled(lut: LUT, result: CheckResult, identity: DeviceIdentity | None = None) -> LUT:
    """A copy of `lut` that predicts this machine after a `fits`/`rescaled-fits` check: entries and overhead
    times the speed ratio (1 for `fits`), the identity of this machine, and where it came from."""
    if not result.usable:
        raise AgdError(f"table {lut.path} is {result.verdict} on this machine: it cannot be rescaled")
    f = 1.0 if result.verdict == "fits" else float(result.speed_ratio)
    return scaled(lut, f, identity or identify(), {"kind": "checked" if f == 1.0 else "rescaled",
                                                   "check": result.to_dict()})


def scaled(lut: LUT, factor: float, identity: DeviceIdentity, provenance: dict[str, Any]) -> LUT:
    """`lut` with every time (entries, overhead, reference nets) times `factor`, marked as `identity`'s."""
    d = copy.deepcopy(lut.to_dict())
    d["entries"] = {k: {s: (round(v * factor, 6) if s.endswith("_ms") else v) for s, v in e.items()}
                    for k, e in lut.entries.items()}
    d["overhead_ms"] = round(lut.overhead_ms * factor, 6)
    prof = dict(d.get("profile") or {})
    prof["reference_nets"] = [dict(r, measured_ms=round(float(r["measured_ms"]) * factor, 4))
                              for r in prof.get("reference_nets", [])]
    d["profile"] = prof
    d["device"] = identity.to_dict()
    from .profile import runtime_here

    d["runtime"] = runtime_here(lut.target)
    d["provenance"] = {"from": str(lut.path), "from_device": lut.device, "from_runtime": lut.runtime,
                       "factor": round(factor, 6), **provenance}
    return LUT.from_dict(d, "rescaled table")


def runtime_differs(lut: LUT) -> list[str]:
    """The runtime packages whose versions differ between the table and this machine (they move latency)."""
    from .profile import runtime_here

    try:
        here = runtime_here(lut.target)
    except Exception:  # an adapter that cannot report versions: nothing to compare
        return []
    return [f"{k} {lut.runtime.get(k)} -> {v}" for k, v in here.items()
            if k != "agd_deploy" and k in lut.runtime and str(lut.runtime.get(k)) != str(v)]


def gate(lut: LUT, allow_other_device: bool = False, budget_s: float = 25.0, progress: bool = True,
         log=None) -> tuple[LUT, CheckResult | None]:
    """The table to use on this machine for `lut`: itself when it describes this device (same device key and
    runtime versions); else `check_table` decides: `fits`/`rescaled-fits` give a copy that predicts here,
    cached in this device's folder of the user's tables (a later lookup finds it without a check); `stale`
    is refused with one line naming both devices, unless `allow_other_device` (then loudly used as it is)."""
    from ..log import get, warn

    loud = (lambda m: log(f"WARNING: {m}")) if log else warn  # a caller's `log` gets every line, as before
    log = log or get(__name__).info
    me = identify()
    theirs = identity_of(lut.device)
    versions = runtime_differs(lut)
    if theirs is not None and theirs.device_key == me.device_key and not versions:
        return lut, None
    why = (f"runtime versions differ ({'; '.join(versions)})" if theirs is not None and
           theirs.device_key == me.device_key else f"it was measured on {describe_device(lut.device)}")
    from ..utils import file_lock

    dest, started = adopted_path(lut, me), time.time()
    # two processes gating one table check it once: the second waits, then takes the copy the first one adopted
    with file_lock(dest, f"checking latency table {lut.path.name if lut.path else ''} on this machine"):
        if dest.is_file() and dest.stat().st_mtime >= started:
            log(f"latency table {lut.path}: using {dest}, checked and adopted by another agd process meanwhile")
            return LUT.load(dest), None
        return _gate_locked(lut, allow_other_device, budget_s, progress, log, loud, me, why)


def _gate_locked(lut: LUT, allow_other_device: bool, budget_s: float, progress: bool, log, loud, me,
                 why: str) -> tuple[LUT, CheckResult | None]:
    log(f"latency table {lut.path}: {why}; this machine is {me.describe()}. Checking it (<= {budget_s:.0f} s) ...")
    res = check_table(lut, budget_s=budget_s, progress=progress, identity=me)
    log(f"  check: {res.verdict} (speed ratio {res.speed_ratio:.3f}, spread {res.spread * 100:.1f}%, "
        f"tolerance {res.tolerance * 100:.1f}%, {res.seconds:.0f} s): {res.reason}")
    if res.usable:
        new = adopt(lut, res, me)
        log(f"  using {new.path} ({lut.path.name if lut.path else 'table'} x "
            f"{new.extra['provenance']['factor']:.4f}, now marked as this device's)")
        return new, res
    if allow_other_device:
        off = (f"its reference nets run {min(n['ratio'] for n in res.nets):.2f}x to "
               f"{max(n['ratio'] for n in res.nets):.2f}x its times here" if res.nets else res.reason)
        loud(f"using a latency table that does not predict this machine (--allow-other-device): {off}; "
             "any budget in ms is not this machine's")
        return lut, res
    raise AgdError(f"latency table {lut.path} is stale on this machine: measured on {describe_device(lut.device)}, "
                   f"this is {me.describe()} ({res.reason}). Profile here (agd profile --target {lut.target}), "
                   f"transfer it (agd profile transfer --from {lut.path} --probes 10), or pass --allow-other-device")


def adopt(lut: LUT, result: CheckResult, identity: DeviceIdentity | None = None) -> LUT:
    """`rescaled(lut, result)`, saved in this device's folder of the user's tables (so the next lookup finds it
    as this device's, without a check); returns it with its path."""
    me = identity or identify()
    new = rescaled(lut, result, me)
    new.save(adopted_path(lut, me))
    return new


def adopted_path(lut: LUT, identity: DeviceIdentity):
    """Where `adopt` keeps the checked copy of `lut` for `identity`: this device's folder of the user's tables."""
    from . import tables

    path = tables.user_path(lut.target, lut.space, lut.input_shape, lut.threads, identity)
    return path.with_name(f"{path.stem}.from-{_digest(lut)}.json")


def usable_table(table, target: str | None, space: str, shape, threads: int = 1, allow_other_device: bool = False,
                 progress: bool = True) -> LUT | None:
    """The table to predict with on this machine: `table`, else the best one `profiling.tables` finds (this
    device's first); one of another device goes through `gate`. None when there is none."""
    from . import tables

    if table:
        lut = LUT.load(table)
    else:
        found = tables.find(target, space, shape, threads) if target else None
        if found is None:
            return None
        lut = found.lut
    lut.check(space, target, shape)
    return gate(lut, allow_other_device=allow_other_device, progress=progress)[0]


def _digest(lut: LUT) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(lut.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
