import os

import pytest

# Keep tests on few threads: the CI box has 2 cores, and tests must not fight each other.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(autouse=True)
def _agd_log():
    """The CLI's `agd_deploy.log.setup()` is process state: undo it after each in-process CLI run, so the next
    test's library warnings reach pytest's caplog again."""
    yield
    from agd_deploy import log

    log.reset()


@pytest.fixture(autouse=True)
def _agd_cache(tmp_path_factory, monkeypatch):
    """A per-session cache dir unless the user points AGD_CACHE_DIR somewhere (teacher conversions are cached)."""
    if "AGD_CACHE_DIR" not in os.environ:
        monkeypatch.setenv("AGD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "agd-cache"))


# Timing in tests never waits for a quiet machine (runtimes/quiet.py): a busy CI box gets a warning, not a stall.
os.environ.setdefault("AGD_QUIET_WAIT_S", "0")
os.environ.setdefault("AGD_MIN_SPAN_S", "0")  # no pauses between timing rounds: tests assert behaviour, not speed
