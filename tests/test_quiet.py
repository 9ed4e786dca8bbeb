"""The quiet-machine guard of the timing service (agd_deploy/runtimes/quiet.py): real processes, real load."""

import json
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from agd_deploy.runtimes import quiet
from agd_deploy.runtimes.timing import time_runs

pytestmark = pytest.mark.skipif(quiet._machine_busy_s() is None, reason="no /proc/stat on this OS")

SPIN = [sys.executable, "-c", "while True: pass"]


@pytest.fixture(autouse=True)
def _fresh_wait_budget():
    """The quiet wait budget is per process: each test starts with all of it."""
    quiet._waited_here[0] = 0.0
    yield
    quiet._waited_here[0] = 0.0


def _spinner() -> subprocess.Popen:
    """A process spinning on a core the timing thread will not use (time_runs pins itself to the last one):
    sharing the timing core would show as half a core of others, not one."""
    import os

    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    other = cores[:-1]
    if len(cores) < 2:
        pytest.skip("one usable core: a spinner would share the timing core")
    proc = subprocess.Popen(SPIN, preexec_fn=lambda: os.sched_setaffinity(0, other))
    tick = os.sysconf("SC_CLK_TCK")
    end = time.monotonic() + 10
    while time.monotonic() < end:  # until it burns CPU (an interpreter's start can take a while on a busy box)
        with open(f"/proc/{proc.pid}/stat") as f:
            utime = int(f.read().rsplit(")", 1)[1].split()[11])
        if utime / tick >= 0.2:
            return proc
        time.sleep(0.05)
    proc.kill()
    pytest.skip("the spinner did not start spinning within 10 s")


def _others(seconds: float = 1.0) -> float:
    m = quiet.LoadMeter()
    m.start()
    time.sleep(seconds)
    return m.others()


def _spin_here(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_load_meter_counts_other_processes_not_this_one():
    if _others() > 0.3:
        pytest.skip("the machine is busy already: other processes' load cannot be told apart")
    m = quiet.LoadMeter()
    m.start()
    _spin_here(1.0)  # this process busy: not "others"
    own_busy = m.others()
    spinner = _spinner()
    try:
        time.sleep(0.3)
        m.start()
        _spin_here(1.0)
        with_spinner = m.others()
    finally:
        spinner.kill()
        spinner.wait()
    assert with_spinner >= 0.7, with_spinner  # one spinning process is about one core
    assert with_spinner >= own_busy + 0.5, (own_busy, with_spinner)


def test_disturbed_round_is_timed_again_once_quiet():
    """A round other processes disturbed asks to be redone, after the guard waited (lock released) until the
    machine was quiet; a quiet round does not."""
    spinner = _spinner()
    threading.Timer(2.0, spinner.kill).start()
    guard = quiet.Guard(what="test", busy_cores=0.5, wait_s=30)
    try:
        t0 = time.monotonic()
        with guard.round() as first:
            _spin_here(0.5)
        took = time.monotonic() - t0
        with guard.round() as second:
            _spin_here(0.5)
    finally:
        spinner.kill()
        spinner.wait()
    rep = guard.report()
    assert first.redo and not second.redo, rep
    assert rep["disturbed_rounds"] == 1 and rep["retried_rounds"] == 1, rep
    assert rep["waited_quiet_s"] > 0.5 and took < 20, (rep, took)


def test_gives_up_waiting_and_says_so(caplog):
    spinner = _spinner()
    try:
        time.sleep(0.3)
        guard = quiet.Guard(what="busy test", busy_cores=0.5, wait_s=1.0)
        with caplog.at_level("WARNING"):
            samples = time_runs({"spin": lambda: _spin_here(0.15)}, 2, guard=guard)
    finally:
        spinner.kill()
        spinner.wait()
    assert len(samples["spin"]) == 2
    assert guard.report()["disturbed_rounds"] >= 1
    assert any("timed on a busy machine" in r.getMessage() for r in caplog.records)


def test_two_processes_never_time_at_once(tmp_path):
    """Both time with the wall clock; every call of one lies outside every call of the other."""
    script = textwrap.dedent("""
        import json, sys, time
        from agd_deploy.runtimes.timing import time_runs
        spans = []
        def call():
            t0 = time.time(); time.sleep(0.05); spans.append((t0, time.time()))
        time_runs({"a": call, "b": call}, 4, clock="wall")
        json.dump(spans, open(sys.argv[1], "w"))
    """)
    env = dict(__import__("os").environ, AGD_TIMING_LOCK=str(tmp_path / "timing.lock"), AGD_QUIET_WAIT_S="0")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / f"{n}.json")], env=env)
             for n in "AB"]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "AB")
    assert len(a) == len(b) == 2 * 2 + 4 * 2 * 2  # warm-up 2 each, then per round one untimed + one timed each
    overlaps = [(x, y) for x in a for y in b if x[0] < y[1] and y[0] < x[1]]
    assert not overlaps, overlaps[:3]


def test_short_timings_are_spread_over_the_min_span(monkeypatch):
    """Rounds quicker than their share of AGD_MIN_SPAN_S are followed by pauses: the samples cover the span
    (a shared host's bursts of load last seconds), their count and values stay those of the rounds; a
    time-budgeted call (profiles, checks) is never paused."""
    import time

    stamps = []

    def call():
        stamps.append(time.perf_counter())
    monkeypatch.setenv("AGD_MIN_SPAN_S", "0.8")
    t0 = time.perf_counter()
    samples = time_runs({"a": call}, 5, clock="wall")
    took = time.perf_counter() - t0
    assert len(samples["a"]) == 5 and max(samples["a"]) < 50  # a pause is not inside any sample
    assert took >= 0.8 * 4 / 5  # 4 pauses of 0.16 s at least, after rounds 1..4 (none after the last)
    assert stamps[-1] - stamps[2] >= 0.8 * 2 / 5 * 0.9  # the timed calls themselves are spread
    t0 = time.perf_counter()
    time_runs({"a": call}, 5, clock="wall", budget_s=60)
    assert time.perf_counter() - t0 < 0.5
    monkeypatch.setenv("AGD_MIN_SPAN_S", "0")
    t0 = time.perf_counter()
    time_runs({"a": call}, 5, clock="wall")
    assert time.perf_counter() - t0 < 0.5
