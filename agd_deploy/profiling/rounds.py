"""Round-by-round timing on top of the shared loop (`runtimes.timing.measure`), with a choice of clock.

Why round by round: a table's samples are checkpointed after every round (resume after SIGKILL), and
validation splits rounds into two passes. Each call is `measure(runs, rounds=1)`: the shared loop still does
the random order, the untimed run before each timed one, and the warm-up.

Why a CPU clock: on a shared machine a whole net (hundreds of ms) is preempted by other processes far more
often than a block (a few ms), so wall-clock minima inflate long models: measured here under load ~10 on 2
cores, a whole net's wall minimum was 2.1x its thread CPU time while the CPU time varied by 1%. With one
compute thread (ORT intra-op 1 and XNNPACK at 1 thread run in the calling thread), the calling thread's CPU
time is the latency the model would have on a core of its own: memory stalls count, preemption does not.
`clock="wall"` keeps wall time (use it for several threads, or GPUs)."""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator, Mapping

CLOCKS = ("cpu", "wall")


def default_clock(threads: int) -> str:
    return "cpu" if threads == 1 else "wall"


def timed_rounds(runs: Mapping[str, Callable[[], Any]], rounds: range, clock: str = "cpu",
                 seed: int = 0) -> Iterator[tuple[int, dict[str, float]]]:
    """Yield (round index, {name: ms}) for each round of `rounds`; one sample per model per round."""
    from ..runtimes.timing import measure

    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {CLOCKS}")
    last: dict[str, float] = {}

    def wrap(name: str, fn: Callable[[], Any]) -> Callable[[], Any]:
        def call() -> Any:
            c0 = time.thread_time_ns()
            out = fn()
            last[name] = (time.thread_time_ns() - c0) / 1e6  # the last call of a round is its timed one
            return out
        return call

    wrapped = {k: wrap(k, fn) for k, fn in runs.items()} if clock == "cpu" else dict(runs)
    first = True
    for r in rounds:
        stats = measure(wrapped, rounds=1, warmup=2 if first else 0, seed=seed * 100_003 + r)
        first = False
        if clock == "cpu":
            yield r, {k: last[k] for k in runs}
        else:
            yield r, {k: s.min_ms for k, s in stats.items()}
