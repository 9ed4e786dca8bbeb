"""A quiet machine for timing: one agd process times at a time, and rounds that other processes disturbed are
timed again.

Why: one pinned thread on its CPU clock survives preemption, not a neighbour's cache and memory traffic. Two
`agd demo` runs on one 2-core machine (one training while the other validated its table) failed the table's
validation gate. So each round of `timing.time_runs` goes through a `Guard`:

- it holds the machine's timing lock (`<tmp>/agd-deploy-timing.lock`, one per machine whatever the cache dir;
  `AGD_TIMING_LOCK` moves it): two agd processes never time at the same moment, they take turns by round;
- it measures the CPU that *other* processes used while the round ran (Linux `/proc/stat` busy time minus this
  process's own, in cores). Above `AGD_BUSY_CORES` (default 0.3: a process sharing the timing core shows as
  ~0.5) the round is disturbed: its samples are dropped and, with the lock released, the process waits until
  the machine is quiet, then times the round again, for at most `AGD_QUIET_WAIT_S` seconds in all per process
  (default 600: a profile's passes or an export's artifacts do not each wait that long on a machine that stays
  busy). Past that it keeps the samples and warns once that it timed on a busy machine. Steal time (other VMs) is not counted: waiting does not help there.

CUDA-clock timing takes the lock but skips the load check (the GPU keeps its own clock). Where `/proc/stat` is
missing (macOS, Windows) only the lock applies."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

POLL_S = 1.0  # how long one "is it quiet now?" sample lasts while waiting
_waited_here = [0.0]  # seconds this process has waited for quiet, all Guards together (the wait budget is per process)


def _machine_busy_s() -> float | None:
    """Non-idle CPU seconds of the whole machine since boot (user, nice, system, irq, softirq), or None."""
    try:
        with open("/proc/stat") as f:
            parts = f.readline().split()
    except OSError:
        return None
    if not parts or parts[0] != "cpu" or len(parts) < 8:
        return None
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in parts[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system  # every thread of this process; children are not in it


class LoadMeter:
    """Cores that other processes kept busy between `start()` and `others()`; None where unknown."""

    def start(self) -> None:
        self.t0, self.busy0, self.own0 = time.monotonic(), _machine_busy_s(), _own_cpu_s()

    def others(self) -> float | None:
        busy, own, dt = _machine_busy_s(), _own_cpu_s(), time.monotonic() - self.t0
        if busy is None or self.busy0 is None or dt < 0.2:  # the kernel counts in 10 ms ticks
            return None
        return max(0.0, ((busy - self.busy0) - (own - self.own0)) / dt)


def lock_path() -> Path:
    return Path(os.environ.get("AGD_TIMING_LOCK") or Path(tempfile.gettempdir()) / "agd-deploy-timing.lock")


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw.strip() else default
    except ValueError:
        from ..errors import AgdError

        raise AgdError(f"{name}={raw!r} is not a number") from None


@dataclass
class Guard:
    """The quiet-machine rules for one timing call (`timing.time_runs`); `report()` says what happened."""

    what: str = "timing"
    busy_cores: float = 0.3
    wait_s: float = 600.0
    check_load: bool = True
    rounds: int = 0
    disturbed: int = 0
    retried: int = 0
    waited_lock_s: float = 0.0
    waited_quiet_s: float = 0.0
    max_other_cores: float = 0.0
    _warned: set = field(default_factory=set)

    @classmethod
    def from_env(cls, what: str = "timing", check_load: bool = True) -> "Guard":
        return cls(what=what, busy_cores=_env_float("AGD_BUSY_CORES", 0.3),
                   wait_s=_env_float("AGD_QUIET_WAIT_S", 600.0), check_load=check_load)

    @contextlib.contextmanager
    def round(self) -> Iterator["RoundResult"]:
        """Hold the timing lock and watch the load for one round; the yielded result says whether to redo it."""
        res = RoundResult()
        meter = LoadMeter()
        with self._lock():
            meter.start()
            yield res
            other = meter.others() if self.check_load else None
        self.rounds += 1
        if other is None or other <= self.busy_cores:
            return
        self.max_other_cores = max(self.max_other_cores, other)
        self.disturbed += 1
        left = self.wait_s - _waited_here[0]  # a machine still busy after the budget is busy, not a passing job
        if left > 0:
            self._say_once("wait", f"the machine is busy (other processes used {other:.1f} cores during a round of "
                                   f"{self.what}): waiting for quiet, up to {left:.0f} s (AGD_QUIET_WAIT_S)")
            t0 = time.monotonic()
            quiet = self._wait_quiet(left)
            waited = time.monotonic() - t0
            self.waited_quiet_s += waited
            _waited_here[0] += waited
            if quiet:
                res.redo = True
                self.retried += 1
                return
        self._say_once("busy", f"{self.what} timed on a busy machine (other processes used up to "
                               f"{self.max_other_cores:.1f} cores); its numbers may be high")

    def _wait_quiet(self, budget_s: float) -> bool:
        end = time.monotonic() + budget_s
        meter = LoadMeter()
        while time.monotonic() < end:
            meter.start()
            time.sleep(min(POLL_S, max(0.2, end - time.monotonic())))
            other = meter.others()
            if other is None or other <= self.busy_cores:
                return True
        return False

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        from filelock import FileLock, Timeout

        path = lock_path()
        lock = FileLock(str(path), mode=0o666)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            self._say_once("lock", f"waiting for another agd process to finish timing ({path})")
            t0 = time.monotonic()
            lock.acquire()
            self.waited_lock_s += time.monotonic() - t0
        try:
            yield
        finally:
            lock.release()

    def _say_once(self, key: str, msg: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            from ..log import warn

            warn(msg)

    def finish(self) -> None:
        """Log the waits in the `waited N s for X` form the other locks use (benchmarks/two_demos.py reads it)."""
        from ..log import get

        log = get(__name__)
        if self.waited_lock_s >= 0.05:
            log.info(f"waited {self.waited_lock_s:.1f} s for the timing lock ({self.what})")
        if self.waited_quiet_s >= 0.05:
            log.info(f"waited {self.waited_quiet_s:.1f} s for a quiet machine ({self.what})")

    def report(self) -> dict:
        return {"rounds": self.rounds, "disturbed_rounds": self.disturbed, "retried_rounds": self.retried,
                "waited_lock_s": round(self.waited_lock_s, 1), "waited_quiet_s": round(self.waited_quiet_s, 1),
                "max_other_cores": round(self.max_other_cores, 2), "busy_cores_limit": self.busy_cores}


@dataclass
class RoundResult:
    redo: bool = False
