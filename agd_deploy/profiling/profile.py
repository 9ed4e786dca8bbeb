"""Build a latency table: lower every block of a space for a target, time them all interleaved, write the LUT.

How a table is measured (docs/ARCHITECTURE.md, "Known pitfalls", explains why each step is there):

1. Every distinct block of `space.all_blocks(h, w)` is lowered alone, the way the target runs it inside a
   whole net: same precision, and for int8 targets with quantized (uint8) tensors at its boundaries, since a
   whole int8 net quantizes once at its input and dequantizes once at its output.
2. Three kinds of extra model are lowered beside the blocks: a tiny identity model (the runtime's per-call
   cost, which every separately timed block pays once but a whole net pays once in all), and a few reference
   whole nets (smallest, largest, random) of the space, lowered exactly as an exported net.
3. All of them are timed by the shared loop (`runtimes.timing.measure`), interleaved: each round visits every
   model in a fresh random order with an untimed run before each timed one, in passes (4 by default, over
   consecutive rounds) with freshly created sessions each. One round at a time, so the samples are
   checkpointed after each round.
4. entry = block statistic - identity statistic (the call cost is not part of the block); then `calibrate`
   fits measured reference nets = scale * sum of their entries + overhead_ms: the overhead is the per-call cost
   plus what a whole net does once (int8 input quantize / output dequantize, layout changes).
   Prediction = overhead_ms + sum of entries. The reference nets are not the validation nets.
5. noise = median relative difference of the block statistics between two halves of the rounds, taken two
   ways: even vs odd rounds (sampling noise: both halves see the same machine states and sessions) and the
   first vs the second half of the passes (adds the machine's drift over the run and other sessions). The
   printed figure is the larger: what a second profile of the same machine should be expected to differ by.
   How much the calibration's scale rests on any one reference net is recorded beside it
   (`scale_jackknife_rel`).

Resume: lowered artifacts and per-round samples live in a work folder beside the table
(`.<table>.work/`, with `partial.json` written atomically after each lowering and each round). A rerun with
the same settings skips what is there and continues at the next round; the folder is removed at the end."""

from __future__ import annotations

import json
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import __version__
from ..errors import AgdError
from ..space import Arch, BlockSpec, build, get_space, sample_archs
from ..utils import SPAWN_HINT, atomic_write_json
from . import tables
from .lut import LUT, now_iso

IDENTITY = "overhead:identity"
REF_PREFIX = "net:"


@dataclass
class ProfileConfig:
    target: str
    space: str = "sr"
    input_shape: list[int] = field(default_factory=lambda: [1, 3, 64, 64])
    threads: int = 1
    rounds: int = 20
    ref_nets: int = 6  # reference whole nets for the scale/overhead fit (smallest, largest, random)
    passes: int = 4  # the rounds are split into this many passes, each with fresh sessions (at most `rounds`)
    statistic: str = "min_ms"
    seed: int = 0
    only: list[str] | None = None  # restrict to these block keys (tests); the table is then partial
    clock: str = ""  # "cpu" (thread CPU time, default at 1 thread) | "wall"; see runtimes/timing.py
    int8: dict | None = None  # the ONNX int8 lowering (OrtInt8Config fields); None = chosen for this device

    def __post_init__(self) -> None:
        from ..runtimes.targets import get_target
        from ..runtimes.timing import CLOCKS, target_clock

        self.clock = self.clock or target_clock(get_target(self.target, require=False), self.threads)
        if self.int8 is None:
            self.int8 = default_lowering(self.target)
        if self.clock not in CLOCKS:
            raise AgdError(f"clock must be one of {', '.join(CLOCKS)}, got {self.clock!r}")
        if self.clock == "cpu" and self.threads != 1:
            raise AgdError("the cpu clock measures one compute thread; use --clock wall with --threads > 1")
        if self.clock == "cuda" and get_target(self.target, require=False).device != "cuda":
            raise AgdError(f"the cuda clock (CUDA events) times GPU targets; {self.target} does not run on CUDA")

    def fingerprint(self) -> dict[str, Any]:
        """What resumed timing must share with the interrupted run (not `rounds`: a rerun with more rounds
        extends the samples, one with fewer uses the first ones)."""
        from ..quant.onnx import OrtInt8Config

        d = asdict(self)
        d.pop("rounds")
        d["space_hash"] = get_space(self.space).space_hash
        if self.int8 is not None:  # artifacts of an older int8 lowering (e.g. shared biases) are not reused
            d["int8_version"] = OrtInt8Config.CACHE_VERSION
        return d

    def lowering_fingerprint(self) -> dict[str, Any]:
        """What reused artifacts must share (timing settings may differ)."""
        return {k: v for k, v in self.fingerprint().items() if k in ("target", "space", "space_hash", "input_shape",
                                                                      "ref_nets", "seed", "only", "int8",
                                                                      "int8_version")}


@dataclass
class ProfileResult:
    table: Path
    entries: int
    seconds: float
    noise: float
    resumed_rounds: int = 0
    lowered: int = 0

    def summary(self) -> dict[str, Any]:
        from ..device import identify

        ident = identify()
        return {"table": str(self.table), "entries": self.entries, "seconds": round(self.seconds, 2),
                "device": {"device_key": ident.device_key, "device_class": ident.device_class},
                "noise": {"median_rel_diff": round(self.noise, 4)}, "resumed_rounds": self.resumed_rounds,
                "lowered": self.lowered}


def default_lowering(target: str, identity=None) -> dict | None:
    """The ISA-dependent part of a target's lowering, chosen for `identity` (default: this machine, the device
    a CPU table is measured on): the ONNX int8 config of ORT int8 targets (`OrtInt8Config.for_device`), None for
    targets whose conversion does not depend on the ISA."""
    from ..runtimes.targets import get_target

    t = get_target(target, require=False)
    if not t.is_int8 or t.runtime not in ("ort", "tensorrt"):
        return None
    from ..device import identify
    from ..quant.onnx import OrtInt8Config

    if t.runtime == "tensorrt":
        return OrtInt8Config(symmetric_activations=True).to_dict()
    return OrtInt8Config.for_device(identity or identify()).to_dict()


def runtime_here(target: str) -> dict[str, str]:
    """The runtime versions a table made on this machine records."""
    from ..runtimes.targets import runtime_for

    return {"agd_deploy": __version__, **runtime_for(target).versions()}


def table_lowering(lut: LUT) -> dict | None:
    """The int8 lowering a table's blocks were made with, so that checks, validation and export make the same
    files. Tables from before ISA-aware lowering (no `lowering` key) used OrtInt8Config()'s defaults."""
    low = lut.extra.get("lowering")
    if isinstance(low, dict) and "ort_int8" in low:
        return low["ort_int8"]
    from ..runtimes.targets import get_target

    t = get_target(lut.target, require=False)
    if t.is_int8 and t.runtime in ("ort", "tensorrt"):
        from ..quant.onnx import OrtInt8Config

        return OrtInt8Config(symmetric_activations=t.runtime == "tensorrt").to_dict()
    return None


def pass_bounds(rounds: int, passes: int) -> list[int]:
    """Round indices where each timing pass starts, plus `rounds` at the end: [0, 5, 10, 15, 20] for 20 rounds
    in 4 passes (rounds spread as evenly as they go; never more passes than rounds)."""
    n = max(1, min(passes, rounds))
    return [round(i * rounds / n) for i in range(n + 1)]


def reference_archs(space: str, input_shape, n: int, seed: int) -> list[Arch]:
    """Smallest, largest, then random archs spread over width levels (seed differs from validation's)."""
    archs = [Arch.extreme(space, False, input_shape), Arch.extreme(space, True, input_shape)][:n]
    archs += sample_archs(space, max(0, n - 2), seed=10_000 + seed, input_shape=input_shape)
    return archs


def _safe(name: str) -> str:
    return name.replace(":", "_")


class _Partial:
    """The resume state: settings, lowered artifacts, per-round samples. Saved atomically."""

    def __init__(self, path: Path, config: dict[str, Any], lowering: dict[str, Any]):
        self.path = path
        self.data: dict[str, Any] = {"config": config, "lowering": lowering, "artifacts": {}, "samples": {},
                                     "rounds_done": 0}
        if path.is_file():
            try:
                old = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                old = None
            if isinstance(old, dict) and old.get("lowering") == lowering:
                self.data["artifacts"] = old.get("artifacts", {})
                if old.get("config") == config:
                    self.data = old

    def save(self) -> None:
        atomic_write_json(self.path, self.data)

    @property
    def artifacts(self) -> dict[str, str]:
        return self.data["artifacts"]

    @property
    def samples(self) -> dict[str, list[float]]:
        return self.data["samples"]


def _calib(shape, n: int = 2, seed: int = 0, value_range=(0.0, 1.0)) -> list[np.ndarray]:
    """Calibration inputs for int8 lowering. Latency does not depend on the values, only on shapes and types."""
    rng = np.random.default_rng(seed)
    lo, hi = value_range
    return [(lo + (hi - lo) * rng.random(tuple(shape), dtype=np.float32)).astype(np.float32) for _ in range(n)]


def block_example_shape(spec: BlockSpec) -> list[int]:
    """A block's input: `cin` channels at the slot's input resolution (a slot's h, w are its input's)."""
    return [1, spec.cin, spec.h, spec.w]


def lower_model(target, module, shape, out_dir: Path, name: str, quantized_io: bool, value_range=(0.0, 1.0),
                int8: dict | None = None) -> Path:
    """Lower one torch module at a fixed input shape for `target` (via runtimes.targets, the one lowering).
    `int8`: OrtInt8Config fields for ORT int8 targets (None: chosen for this machine)."""
    import torch

    from ..quant.onnx import OrtInt8Config
    from ..runtimes import targets as T

    example = torch.from_numpy(_calib(shape, 1, seed=1, value_range=value_range)[0])
    calib = _calib(shape, 2, seed=2, value_range=value_range)
    return Path(T.lower(target, module.eval(), example, out_dir, calib=calib, name=name,
                        quantized_io=quantized_io, int8_config=OrtInt8Config.from_dict(int8) if int8 else None))


@dataclass
class LowerJob:
    """One conversion, described by picklable values so that a worker process can run it."""

    key: str
    target: str
    kind: str           # "block" (payload = block key) | "net" (payload = arch JSON) | "identity"
    payload: str
    shape: list[int]
    out_dir: str
    name: str
    quantized_io: bool
    space: str = "sr"
    int8: dict | None = None  # OrtInt8Config fields (ORT int8 targets)

    def run(self) -> str:
        import zlib

        import torch

        from ..runtimes import targets as T

        sp = get_space(self.space)
        torch.manual_seed(zlib.crc32(self.key.encode()))  # weights do not change latency; keep them reproducible
        if self.kind == "block":
            module = sp.build_block(BlockSpec.from_key(self.payload))
        elif self.kind == "net":
            module = build(Arch.from_json(self.payload))
        else:
            module = _Identity()
        return str(lower_model(T.get_target(self.target), module, self.shape, Path(self.out_dir), self.name,
                               quantized_io=self.quantized_io, value_range=sp.value_range if self.kind == "net"
                               else (0.0, 1.0), int8=self.int8))


def _run_job(job: LowerJob) -> tuple[str, str]:
    import torch

    torch.set_num_threads(1)  # one conversion per core
    return job.key, job.run()


def default_jobs() -> int:
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cores))


def run_lower_jobs(todo: list[LowerJob], jobs_n: int | None, progress: bool, desc: str,
                   done: Callable[[str, str], None]) -> None:
    """Run conversions, `jobs_n` processes at a time (conversions are single-threaded: LiteRT's take ~10 s a
    block, so one per core halves a 2-core profile); `done(key, path)` is called in this process as each ends
    (the caller checkpoints there, so a killed run resumes with what finished)."""
    if not todo:
        return
    n = default_jobs() if jobs_n is None else max(1, int(jobs_n))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc=desc, unit="model")
    try:
        if n == 1 or len(todo) == 1:
            for job in todo:
                done(job.key, job.run())
                if bar is not None:
                    bar.update(1)
            return
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed
        from concurrent.futures.process import BrokenProcessPool

        with ProcessPoolExecutor(max_workers=min(n, len(todo)), mp_context=mp.get_context("spawn")) as pool:
            futures = [pool.submit(_run_job, job) for job in todo]
            try:
                for f in as_completed(futures):
                    done(*f.result())
                    if bar is not None:
                        bar.update(1)
            except BrokenProcessPool:
                raise AgdError(f"a conversion worker died before finishing: killed for memory, or (called from a "
                               f"Python script) {SPAWN_HINT}. --jobs 1 converts in this process") from None
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    finally:
        if bar is not None:
            bar.close()


def profile(cfg: ProfileConfig, out: str | Path | None = None, progress: bool = True,
            on_round: Callable[[int], None] | None = None, lower_only: bool = False,
            jobs_n: int | None = None) -> ProfileResult:
    """Measure the LUT of `cfg` and write it to `out` (default: this device's folder of the user's tables,
    `profiling.tables.user_path`). `lower_only`: stop after lowering (the artifacts wait in the work folder; a
    later run only times them), so conversions can run while other jobs use the CPU and the timing alone under
    an exclusive lock. `jobs_n`: conversion processes (default: one per usable core, at most 4); timing is
    always one process."""
    from ..runtimes import targets as T

    t0 = time.perf_counter()
    T.get_target(cfg.target)  # AgdError: unknown target / runtime not installed
    sp = get_space(cfg.space)
    try:
        shape = list(sp.check_input(cfg.input_shape))
    except ValueError as e:
        raise AgdError(str(e)) from None
    if cfg.rounds < 2:
        raise AgdError("--rounds must be at least 2 (the noise figure compares two halves of the rounds)")
    out = Path(out) if out else tables.user_path(cfg.target, sp.name, shape, cfg.threads)
    blocks = _blocks(cfg, sp, shape)
    work = out.parent / f".{out.stem}.work"
    from ..utils import file_lock

    started = time.time()
    # one process per work folder (two would interleave partial.json); a second one waits, then reuses the table
    # the first one finished meanwhile instead of measuring it again
    with file_lock(work, f"profiling {cfg.target} into {out.name}"):
        done = _finished_meanwhile(out, cfg, shape, started)
        if done is not None:
            return ProfileResult(out, len(done.entries), time.perf_counter() - t0,
                                 float((done.extra.get("profile") or {}).get("noise_median_rel_diff", float("nan"))))
        return _profile_locked(cfg, sp, shape, blocks, out, work, t0, progress, on_round, lower_only, jobs_n)


def _finished_meanwhile(out: Path, cfg: ProfileConfig, shape, started: float):
    """The table another process wrote to `out` while this one waited for the lock (None if there is none)."""
    from .lut import LUT

    try:
        if not out.is_file() or out.stat().st_mtime < started:
            return None
        lut = LUT.load(out)
    except Exception:  # noqa: BLE001 -- unreadable: measure it again
        return None
    same = (lut.target == cfg.target and lut.space == cfg.space and list(lut.input_shape) == list(shape)
            and lut.threads == cfg.threads)
    if same:
        from ..log import get

        get(__name__).info(f"reusing {out}, finished by another agd process while this one waited")
    return lut if same else None


def _profile_locked(cfg, sp, shape, blocks, out: Path, work: Path, t0: float, progress, on_round, lower_only,
                    jobs_n) -> ProfileResult:
    work.mkdir(parents=True, exist_ok=True)
    part = _Partial(work / "partial.json", cfg.fingerprint(), cfg.lowering_fingerprint())
    resumed_rounds = int(part.data["rounds_done"])
    refs = reference_archs(sp.name, shape, cfg.ref_nets, cfg.seed) if not cfg.only else []
    jobs = _lower_jobs(cfg, sp.name, shape, blocks, refs, work)
    lowered = _lower_all(jobs, part, jobs_n, progress, cfg.target)
    if lower_only:
        return ProfileResult(out, 0, time.perf_counter() - t0, float("nan"), resumed_rounds, lowered)
    _time_all(cfg, [j.key for j in jobs], part, progress, on_round)
    lut, noise_rel = _table(cfg, sp, shape, blocks, refs, part)
    calibrate(lut)
    lut.save(out)
    shutil.rmtree(work, ignore_errors=True)
    return ProfileResult(out, len(lut.entries), time.perf_counter() - t0, noise_rel, resumed_rounds, lowered)


def _blocks(cfg: ProfileConfig, sp, shape) -> list[BlockSpec]:
    """Every distinct block of the space at this input (or the `only` subset, each checked)."""
    h, w = shape[2], shape[3]
    blocks = sp.all_blocks(h, w)
    if cfg.only:
        wanted = set(cfg.only)
        unknown = wanted - {b.key for b in blocks}
        if unknown:
            raise AgdError(f"no block {sorted(unknown)[0]} in the {sp.name} space at {h}x{w}")
        blocks = [b for b in blocks if b.key in wanted]
    return blocks


def _lower_jobs(cfg: ProfileConfig, space: str, shape, blocks, refs, work: Path) -> list[LowerJob]:
    """1+2 of the module docstring: the blocks (quantized boundaries for int8), the identity model, the
    reference nets."""
    from ..runtimes.targets import get_target

    q = get_target(cfg.target, require=False).is_int8
    jobs = [LowerJob(b.key, cfg.target, "block", b.key, block_example_shape(b), str(work), _safe(b.key), q,
                     space=space, int8=cfg.int8) for b in blocks]
    jobs.append(LowerJob(IDENTITY, cfg.target, "identity", "", [1, 3, 8, 8], str(work), "identity", q,
                         int8=cfg.int8))
    jobs += [LowerJob(f"{REF_PREFIX}{i}", cfg.target, "net", a.to_json(), shape, str(work), f"net{i}", False,
                      space=space, int8=cfg.int8) for i, a in enumerate(refs)]
    return jobs


def _lower_all(jobs: list[LowerJob], part: "_Partial", jobs_n, progress: bool, target: str) -> int:
    """Run the conversions not already in the work folder; each finished one is checkpointed."""
    todo = [j for j in jobs if j.key not in part.artifacts or not Path(part.artifacts[j.key]).exists()]

    def done(key: str, path: str) -> None:
        part.artifacts[key] = path
        part.save()

    run_lower_jobs(todo, jobs_n, progress, f"lowering {target}", done)
    return len(todo)


def _time_all(cfg: ProfileConfig, names: list[str], part: "_Partial", progress: bool, on_round) -> None:
    """3: every model timed interleaved, round by round (each round checkpointed), in passes with freshly
    created sessions: a session can land in a slow state for its whole life (seen: 256x256 int8 blocks at
    1.3-2x their usual time in every round of one session, at their usual time in another session of the
    same file), which one set of sessions cannot tell apart from the block's true cost. The statistic over
    all passes drops it; whole nets did not show it."""
    from ..runtimes.quiet import Guard
    from ..runtimes.timing import time_artifacts

    def record(r: int, sample: dict[str, float]) -> None:
        for k, ms in sample.items():
            part.samples.setdefault(k, []).append(ms)
        part.data["rounds_done"] = r + 1
        part.save()
        if on_round:
            on_round(r + 1)

    bounds = pass_bounds(cfg.rounds, cfg.passes)
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        rounds = range(max(lo, int(part.data["rounds_done"])), hi)
        if rounds:
            guard = Guard.from_env(f"the profile of {cfg.target}", check_load=cfg.clock != "cuda")
            time_artifacts(cfg.target, {k: part.artifacts[k] for k in names}, rounds, threads=cfg.threads,
                           clock=cfg.clock, seed=cfg.seed, on_round=record, budget_s=None, guard=guard,
                           progress=f"timing {len(names)} models, pass {i + 1}/{len(bounds) - 1}" if progress
                           else False)
            part.data["quiet"] = merge_quiet(part.data.get("quiet"), guard.report())
            part.save()


def merge_quiet(before: dict | None, now: dict) -> dict:
    """The quiet-machine record of a profile's passes (and its resumed runs) added up: the table says how many
    rounds other processes disturbed and how long it waited for quiet."""
    if not before:
        return dict(now)
    out = {k: round(before.get(k, 0) + now[k], 1) for k in ("rounds", "disturbed_rounds", "retried_rounds",
                                                               "waited_lock_s", "waited_quiet_s")}
    out["max_other_cores"] = max(before.get("max_other_cores", 0.0), now["max_other_cores"])
    out["busy_cores_limit"] = now["busy_cores_limit"]
    return out


def _table(cfg: ProfileConfig, sp, shape, blocks, refs, part: "_Partial") -> tuple[LUT, float]:
    """4+5: entries (block statistic - the identity model's), the reference nets, the noise; uncalibrated."""
    from ..device import identify
    from ..runtimes.base import device_fingerprint
    from ..runtimes.timing import Stats, noise

    names = [b.key for b in blocks] + [IDENTITY] + [f"{REF_PREFIX}{i}" for i in range(len(refs))]
    samples = {k: part.samples[k][:cfg.rounds] for k in names}
    full = {k: Stats.from_samples(samples[k]) for k in names}
    call_ms = full[IDENTITY].get(cfg.statistic)  # one constant, so every statistic keeps its order
    entries = {}
    for b in blocks:
        st = full[b.key]
        entries[b.key] = {f: round(max(0.0, st.get(f) - call_ms), 6) for f in ("min_ms", "p10_ms", "p50_ms", "p90_ms")}
        entries[b.key]["n"] = st.n
    keys = [b.key for b in blocks]
    bounds = pass_bounds(cfg.rounds, cfg.passes)
    half = bounds[len(bounds) // 2]
    interleaved = [{k: Stats.from_samples(samples[k][j::2]) for k in keys} for j in (0, 1)]
    in_time = [{k: Stats.from_samples(samples[k][:half]) for k in keys},
               {k: Stats.from_samples(samples[k][half:]) for k in keys}]  # the first half of the passes vs the second
    noise_parts = {"interleaved": noise(*interleaved, cfg.statistic), "passes": noise(*in_time, cfg.statistic)}
    noise_rel = max(noise_parts.values())
    runtime = runtime_here(cfg.target)
    refs_out = [{"arch": {"ops": a.ops, "widths": a.widths},
                 "measured_ms": round(full[f"{REF_PREFIX}{i}"].get(cfg.statistic), 4)} for i, a in enumerate(refs)]
    extra: dict[str, Any] = {"clock": cfg.clock, "profile": {
        "rounds": cfg.rounds, "call_ms": round(call_ms, 6), "reference_nets": refs_out,
        "noise_median_rel_diff": round(noise_rel, 4), "noise_parts": {k: round(v, 4) for k, v in noise_parts.items()},
        "complete": not cfg.only, "quiet": part.data.get("quiet")}}
    if cfg.int8:
        extra["lowering"] = {"ort_int8": dict(cfg.int8), "chosen_for": identify().device_class}
    lut = LUT(target=cfg.target, space=sp.name, space_hash=sp.space_hash, input_shape=shape, threads=cfg.threads,
              entries=entries, overhead_ms=call_ms, statistic=cfg.statistic, device=device_fingerprint(),
              runtime=runtime, created=now_iso(), extra=extra)
    return lut, noise_rel


def fit_scale(sums: list[float], measured: list[float], call_ms: float,
              robust: bool = True) -> tuple[float, float, int | None]:
    """(scale, overhead, dropped) with measured ~= scale * sum + overhead over the reference nets (see
    `calibrate`). `robust` (5+ nets): the worst-fitting net is left out (its index returned) when, seen from
    the line fitted to the others, it is off by over 3x their median residual and over 2% of its time: a net
    holding one block mis-timed in every pass (seen: 17 ms of a 500 ms net) would otherwise tilt every entry."""
    def fit(xs, ys):
        if len(xs) >= 3:
            a, b = np.polyfit(np.array(xs), np.array(ys), 1)
            if 0.7 <= a <= 1.3:
                return float(a), float(b)
        if xs:
            return 1.0, float(statistics.median(m - s for m, s in zip(ys, xs)))
        return 1.0, call_ms

    scale, overhead = fit(sums, measured)
    if robust and len(sums) >= 5:
        x, y = np.array(sums), np.array(measured)
        worst = int(np.argmax(np.abs(y - (scale * x + overhead))))
        keep = [i for i in range(len(sums)) if i != worst]
        # the line of the others, and how far the worst net is from it
        a, b = fit([float(v) for v in x[keep]], [float(v) for v in y[keep]])
        res = np.abs(y - (a * x + b))
        if res[worst] > 3 * float(np.median(res[keep])) and res[worst] > 0.02 * y[worst]:
            return a, b, worst
    return scale, overhead, None


def calibrate(lut: LUT) -> LUT:
    """Fit measured whole nets = scale * (sum of raw entries) + overhead on the table's reference nets, then
    store entries * scale and the overhead, so that prediction stays overhead + sum of entries.

    Why a scale: a block timed alone pays conversions at its boundaries that a net pays once (ORT reorders
    fp32 activations to its blocked NCHWc layout and int8 ones to NHWC around each conv chain; a net keeps
    them in that layout). That cost grows with the block's work, so on this machine nets ran ~3-4% faster
    than their blocks' sum plus a few ms; an additive overhead alone under-predicted small nets by ~10%.
    With fewer than 3 reference nets, or a fit outside [0.7, 1.3], only the overhead (median residual) is
    fitted; one net far off the line of the others is left out of the fit (`fit_scale`).
    Idempotent: it starts from the raw entries (entries / previous scale)."""
    prof = lut.extra.setdefault("profile", {})
    old = float(prof.get("scale", 1.0))
    refs = prof.get("reference_nets", [])
    stat = lut.statistic
    if old != 1.0:
        for e in lut.entries.values():
            for f in ("min_ms", "p10_ms", "p50_ms", "p90_ms"):
                e[f] = e[f] / old
    sums = []
    for r in refs:
        arch = Arch(lut.space, r["arch"]["ops"], r["arch"]["widths"], list(lut.input_shape))
        sums.append(sum(lut.entries[b.key][stat] for b in arch.blocks(lut.input_shape)))
    meas = [r["measured_ms"] for r in refs]
    scale, overhead, dropped = fit_scale(sums, meas, float(prof.get("call_ms", lut.overhead_ms)))
    fitted = [i for i in range(len(refs)) if i != dropped]
    if len(fitted) >= 4:  # how much the scale rests on any one fitted net: the largest leave-one-out change
        loo = [fit_scale([sums[j] for j in fitted if j != i], [meas[j] for j in fitted if j != i], 0.0,
                         robust=False)[0] for i in fitted]
        prof["scale_jackknife_rel"] = round(max(abs(x / scale - 1) for x in loo), 4)
    for e in lut.entries.values():
        for f in ("min_ms", "p10_ms", "p50_ms", "p90_ms"):
            e[f] = round(e[f] * scale, 6)
    lut.overhead_ms = round(overhead, 6)
    prof["scale"] = round(scale, 6)
    for i, (r, s_raw) in enumerate(zip(refs, sums)):
        r["residual_ms"] = round(r["measured_ms"] - (overhead + scale * s_raw), 4)
        r["fitted"] = i != dropped
    return lut


class _Identity:
    """A module that returns its input (the runtime's per-call cost); a torch Module subclass made lazily."""

    def __new__(cls):
        import torch

        class Identity(torch.nn.Module):
            def forward(self, x):
                return x + 0  # a real op: some exporters drop a pure identity graph

        return Identity()
