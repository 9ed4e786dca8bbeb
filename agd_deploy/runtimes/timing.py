"""THE timing loop of agd-deploy: profiling, validation, verify and benchmarks all measure through `measure`.

Why this shape (measured on a shared 2-core box; docs/ARCHITECTURE.md, "Known pitfalls"): timing each model in its own
back-to-back run let machine noise (other jobs, frequency changes) land on some models and not others, so
block medians moved ~30% between passes. Interleaving all models over many rounds, in a fresh random order each
round, with an untimed run right before each timed one (to warm caches and the runtime's thread pool for *that*
model), and keeping a robust low statistic (min / p10) made per-block sums predict whole nets within a few %."""

from __future__ import annotations

import contextlib
import os
import random
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator, Mapping

import numpy as np


@dataclass
class Stats:
    """Latency statistics of one model, in milliseconds."""

    min_ms: float
    p10_ms: float
    p50_ms: float
    p90_ms: float
    n: int

    def to_dict(self) -> dict[str, float | int]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Stats":
        return cls(float(d["min_ms"]), float(d["p10_ms"]), float(d["p50_ms"]), float(d["p90_ms"]), int(d["n"]))

    @classmethod
    def from_samples(cls, samples_ms: list[float] | np.ndarray) -> "Stats":
        a = np.asarray(samples_ms, dtype=np.float64)
        if a.size == 0:
            raise ValueError("no timing samples")
        p10, p50, p90 = np.percentile(a, [10, 50, 90])
        return cls(float(a.min()), float(p10), float(p50), float(p90), int(a.size))

    def get(self, statistic: str = "min_ms") -> float:
        return float(getattr(self, statistic))


def measure(runs: Mapping[str, Callable[[], Any]], rounds: int = 20, warmup: int = 2,
            untimed_before_each: bool = True, seed: int = 0, progress: bool | str = False) -> dict[str, Stats]:
    """Time every zero-argument callable in `runs` `rounds` times, interleaved.

    Each callable first runs `warmup` times; then each round visits all of them in a new random order (seeded),
    and with `untimed_before_each` every timed call is preceded by one untimed call of the same callable.
    `progress`: False, True, or a description string for a tqdm bar on stderr. Returns name -> Stats."""
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    names = list(runs)
    rng = random.Random(seed)
    samples: dict[str, list[float]] = {n: [] for n in names}
    bar = None
    if progress:
        from tqdm import tqdm

        desc = progress if isinstance(progress, str) else "timing"
        bar = tqdm(total=rounds * len(names), desc=desc, unit="run", leave=False)
    try:
        for name in names:
            for _ in range(warmup):
                runs[name]()
        clock = time.perf_counter_ns
        for _ in range(rounds):
            order = names[:]
            rng.shuffle(order)
            for name in order:
                fn = runs[name]
                if untimed_before_each:
                    fn()
                t0 = clock()
                fn()
                samples[name].append((clock() - t0) / 1e6)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return {n: Stats.from_samples(samples[n]) for n in names}


def noise(a: Mapping[str, Stats | float], b: Mapping[str, Stats | float], statistic: str = "min_ms") -> float:
    """How much two measurement passes of the same models disagree: the median over common keys of
    |a-b| / mean(a, b). 0.0 = identical; reported beside every LUT."""

    def val(v: Stats | float) -> float:
        return v.get(statistic) if isinstance(v, Stats) else float(v)

    rel = []
    for k in a.keys() & b.keys():
        x, y = val(a[k]), val(b[k])
        m = (x + y) / 2
        if m > 0:
            rel.append(abs(x - y) / m)
    return float(np.median(rel)) if rel else 0.0


def pin_threads(threads: int) -> list[int] | None:
    """Make this process use `threads` compute threads: torch's intra-op pool, OMP/MKL env for runtimes
    created afterwards, and (Linux) CPU affinity to `threads` cores of the ones we may use. Returns the previous
    affinity (for `unpin`), or None where affinity cannot be set. Runtimes' own thread counts are set by their
    adapters from the same number."""
    if threads < 1:
        raise ValueError("threads must be >= 1")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    try:
        import torch

        torch.set_num_threads(threads)
    except Exception:  # torch absent or its pool already started with another size
        pass
    if not hasattr(os, "sched_setaffinity"):
        return None
    before = sorted(os.sched_getaffinity(0))
    # The last cores are usually the least busy with interrupts and the shell; keep it deterministic.
    cores = before[-threads:] if threads <= len(before) else before
    os.sched_setaffinity(0, cores)
    return before


def unpin(previous: list[int] | None) -> None:
    if previous is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, previous)


@contextlib.contextmanager
def pinned(threads: int) -> Iterator[None]:
    """`with pinned(1): measure(...)` — pin for the block, restore the CPU affinity afterwards."""
    prev = pin_threads(threads)
    try:
        yield
    finally:
        unpin(prev)


# --- round by round, with a choice of clock ---------------------------------------------------------------
# Round by round: a table's samples are checkpointed after every round (resume after SIGKILL), and validation
# splits rounds into two passes. Each round is `measure(runs, rounds=1)`, so the random order, the untimed run
# before each timed one and the warm-up stay the shared loop's.
#
# CPU clock: on a shared machine a whole net (hundreds of ms) is preempted by other processes far more often
# than a block (a few ms), so wall-clock minima inflate long models: under load ~10 on 2 cores a whole net's
# wall minimum was 2.1x its thread CPU time, while the CPU time varied by 1%. With one compute thread (ORT
# intra-op 1 and XNNPACK at 1 thread run in the calling thread) the calling thread's CPU time is the latency
# the model would have on a core of its own: memory stalls count, preemption does not. `clock="wall"` keeps
# wall time (several threads, GPUs). Profiling, validation, `agd profile measure`, verify and the demo all
# time through `timed_rounds`, so "measured" means the same thing everywhere.
#
# CUDA clock (GPU targets, `Target.clock = "cuda"`): a GPU runs the queued work after the call returns, so
# each timed call is bracketed by CUDA events on the current stream, with the device synchronised before the
# start event (the GPU is idle: the interval is this call's launches and kernels, not the tail of the untimed
# run before it) and the end event waited for. ms = start.elapsed_time(end), the GPU's own clock; the host
# thread being preempted after the end event is recorded no longer counts. Same loop, other stopwatch.

CLOCKS = ("cpu", "wall", "cuda")


class ThreadCpuWatch:
    """The calling thread's CPU time."""

    def start(self) -> None:
        self.t0 = time.thread_time_ns()

    def stop(self) -> float:
        return (time.thread_time_ns() - self.t0) / 1e6


class CudaEventWatch:
    """CUDA events on the current stream (see the comment above); needs CUDA PyTorch and a GPU."""

    def __init__(self) -> None:
        from ..errors import MissingRuntimeError

        try:
            import torch
        except ImportError:
            raise MissingRuntimeError("the cuda clock needs PyTorch") from None
        if not torch.cuda.is_available():
            raise MissingRuntimeError("the cuda clock needs CUDA PyTorch and a CUDA GPU (none is visible to PyTorch)")
        self.torch = torch
        self.begin = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def start(self) -> None:
        self.torch.cuda.synchronize()
        self.begin.record()

    def stop(self) -> float:
        self.end.record()
        self.end.synchronize()
        return float(self.begin.elapsed_time(self.end))


WATCHES: dict[str, Callable[[], Any]] = {"cpu": ThreadCpuWatch, "cuda": CudaEventWatch}  # "wall": measure's own


def timed_rounds(runs: Mapping[str, Callable[[], Any]], rounds: range, clock: str = "cpu",
                 seed: int = 0, guard=None) -> Iterator[tuple[int, dict[str, float]]]:
    """Yield (round index, {name: ms}) for each round of `rounds`; one sample per model per round.
    guard: a `quiet.Guard` (time_runs passes one): each round holds the machine's timing lock, and a round
    that other processes disturbed is timed again once the machine is quiet."""
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {CLOCKS}")
    last: dict[str, float] = {}

    def wrap(name: str, fn: Callable[[], Any], watch) -> Callable[[], Any]:
        def call() -> Any:
            watch.start()
            out = fn()
            last[name] = watch.stop()  # the last call of a round is its timed one
            return out
        return call

    own = clock in WATCHES
    wrapped = {k: wrap(k, fn, WATCHES[clock]()) for k, fn in runs.items()} if own else dict(runs)
    first = True
    for r in rounds:
        while True:
            with (guard.round() if guard is not None else contextlib.nullcontext(None)) as res:
                stats = measure(wrapped, rounds=1, warmup=2 if first else 0, seed=seed * 100_003 + r)
            first = False
            if res is None or not res.redo:
                break
        if own:
            yield r, {k: last[k] for k in runs}
        else:
            yield r, {k: s.min_ms for k, s in stats.items()}


# --- the timing service: artifacts of a target, sessions opened and closed here ---------------------------

def target_clock(target, threads: int) -> str:
    """The clock a target is timed with: the record's own (`clock`: "cuda" for the torch CUDA targets), else
    the calling thread's CPU time where the runtime computes in that thread (the record's `in_caller`: ORT,
    LiteRT on the CPU at 1 thread), else wall time (own thread pools, TensorRT's synchronous runner, phones)."""
    from .targets import Target, get_target

    t = target if isinstance(target, Target) else get_target(target, require=False)
    if t.clock:
        return t.clock
    return "cpu" if threads == 1 and t.in_caller else "wall"


def time_runs(runs: Mapping[str, Callable[[], Any]], rounds: int | range, *, threads: int = 1, clock: str = "cpu",
              seed: int = 0, progress: bool | str = False, budget_s: float | None = None, min_rounds: int = 2,
              on_round: Callable[[int, dict[str, float]], None] | None = None,
              guard=None, span_s: float | None = None) -> dict[str, list[float]]:
    """THE timing call: prepared callables timed interleaved (`timed_rounds`) with `threads` pinned; returns
    {name: samples in ms}, one sample per round. `rounds`: a count, or the range of round indices (a resumed
    profile continues its seeds). budget_s: stop once the next round would end past it (never before
    `min_rounds`; waits for a quiet machine do not count). on_round(index, {name: ms}) after each round
    (checkpoints). Every round goes through a `quiet.Guard`: the machine's timing lock, and rounds that other
    processes disturbed are timed again (`AGD_BUSY_CORES`, `AGD_QUIET_WAIT_S`; runtimes/quiet.py); pass your
    own `guard` to read its `report()` afterwards.

    Short timings are spread over at least `span_s` seconds (default `min_span_s()`): a round quicker than its
    share is followed by a pause, which is not timing time (none with `budget_s`). Why: a shared host slows
    the machine by up to ~50% in bursts of 1-3 s (docs/ARCHITECTURE.md, "Logging and locks"), and a
    min over a one-second run inside a burst reports the burst; spread samples keep the min's claim."""
    rounds = range(rounds) if isinstance(rounds, int) else rounds
    samples: dict[str, list[float]] = {k: [] for k in runs}
    share_s = 0.0 if budget_s is not None else (min_span_s() if span_s is None else span_s) / max(1, len(rounds))
    last = time.perf_counter()
    elapsed = waits_before = paused = 0.0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(rounds), desc=progress if isinstance(progress, str) else "timing", unit="round",
                   leave=False)
    from .quiet import Guard

    if guard is None:
        guard = Guard.from_env(progress if isinstance(progress, str) else "timing", check_load=clock != "cuda")
    try:
        with pinned(threads):
            for r, sample in timed_rounds(runs, rounds, clock, seed=seed, guard=guard):
                for k, ms in sample.items():
                    samples[k].append(ms)
                if on_round is not None:
                    on_round(r, sample)
                if bar is not None:
                    bar.update(1)
                now = time.perf_counter()
                waits = guard.waited_lock_s + guard.waited_quiet_s  # waiting for quiet is not timing time
                span = now - last - paused  # this round, waits included
                round_s, waits_before = span - (waits - waits_before), waits
                paused = max(0.0, share_s - span) if r != rounds[-1] else 0.0  # none after the last
                if paused:
                    time.sleep(paused)
                elapsed += round_s
                if budget_s is not None and len(samples[next(iter(runs))]) >= min_rounds and \
                        elapsed + round_s > budget_s:
                    break
                last = now
    finally:
        if bar is not None:
            bar.close()
        guard.finish()
    return samples


def min_span_s() -> float:
    """Seconds a timing call's rounds are spread over at least (`AGD_MIN_SPAN_S`, default 8; 0 = no pauses)."""
    from .quiet import _env_float

    return max(0.0, _env_float("AGD_MIN_SPAN_S", 8.0))


def time_artifacts(target, artifacts: Mapping[str, Any], rounds: int | range, *, threads: int = 1, clock: str = "",
                   passes: int = 1, inputs: Mapping[str, np.ndarray] | None = None,
                   load_options: Mapping[str, Any] | None = None, budget_s: float | None = None,
                   **kw: Any) -> dict[str, list[float]]:
    """Time the artifacts of one target: sessions opened here (and always closed), the target's clock unless
    given, then `time_runs` (its keywords pass through). `passes`: the rounds are split into this many
    passes, each with freshly loaded sessions, because a session can sit in a slow state for its whole life
    (docs/ARCHITECTURE.md, "Known pitfalls"): a statistic over several passes drops it. inputs: {name: array}
    to time on (default: each session's example input); load_options go to the runtime adapter (adb=...).
    The passes share one `min_span_s()` between them. `time_passes` keeps the passes apart."""
    samples: dict[str, list[float]] = {k: [] for k in artifacts}
    for got in time_passes(target, artifacts, rounds, threads=threads, clock=clock, passes=passes, inputs=inputs,
                           load_options=load_options, budget_s=budget_s, **kw):
        for k, v in got.items():
            samples[k].extend(v)
    return samples


def time_passes(target, artifacts: Mapping[str, Any], rounds: int | range, *, threads: int = 1, clock: str = "",
                passes: int = 1, inputs: Mapping[str, np.ndarray] | None = None,
                load_options: Mapping[str, Any] | None = None, budget_s: float | None = None,
                **kw: Any) -> list[dict[str, list[float]]]:
    """`time_artifacts`, one {name: samples} per pass: how far the passes' sessions disagree is noise a
    within-pass estimate (even vs odd rounds) cannot see. With `budget_s` a pass may stop short of its rounds."""
    rounds = range(rounds) if isinstance(rounds, int) else rounds
    n = max(1, min(passes, len(rounds)))
    cuts = [rounds.start + round(i * len(rounds) / n) for i in range(n + 1)]
    out = []
    t0 = time.perf_counter()
    for i, (lo, hi) in enumerate(zip(cuts[:-1], cuts[1:])):
        left = None if budget_s is None else max(0.0, budget_s - (time.perf_counter() - t0)) / (n - i)
        out.append(_one_pass(target, artifacts, range(lo, hi), threads, clock or target_clock(target, threads),
                             inputs, load_options, left, {"span_s": min_span_s() / n, **kw}))
    return out


def _one_pass(target, artifacts, rounds: range, threads: int, clock: str, inputs, load_options, budget_s, kw):
    from .targets import load_session

    with pinned(threads), contextlib.ExitStack() as stack:  # runtimes size their thread pools at load
        sessions = {k: stack.enter_context(closing(load_session(target, p, threads=threads, **(load_options or {}))))
                    for k, p in artifacts.items()}
        runs = {k: s.timer((inputs or {}).get(k)) for k, s in sessions.items()}
        return time_runs(runs, rounds, threads=threads, clock=clock, budget_s=budget_s, **kw)


@contextlib.contextmanager
def closing(session):
    """A session closed on exit, whatever happens inside."""
    try:
        yield session
    finally:
        try:
            session.close()
        except Exception:  # closing a runtime's session must never hide the error that ended the block
            pass
