"""Shared caches under `utils.file_lock`: two real processes on one cache make a result once; the second one says
it waits, then reuses the first one's finished file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

BLOCK = "stem:conv3x3:cin3:cout64:h16:w16"
ARGS = ["--target", "ort-cpu-fp32", "--input", "1x3x16x16", "--only", BLOCK, "--ref-nets", "0", "--rounds", "2",
        "--jobs", "1", "--json"]

# the first process: profiles, and holds the lock (inside its timing rounds) until the test says the second one
# is waiting, so the order does not depend on how fast each interpreter starts
FIRST = """
import sys, time
from pathlib import Path
from agd_deploy.profiling.profile import ProfileConfig, profile
release = Path(sys.argv[1])
def hold(r):
    t0 = time.time()
    while not release.exists() and time.time() - t0 < 120:
        time.sleep(0.1)
res = profile(ProfileConfig(target="ort-cpu-fp32", space="sr", input_shape=[1, 3, 16, 16], rounds=2, ref_nets=0,
                            only=[%r]), progress=False, on_round=hold, jobs_n=1)
print(res.table, res.lowered)
""" % BLOCK


# a cache entry built under the lock, the pattern of every cache site: check, lock, check again, build
BUILD = """
import sys, time
from pathlib import Path
from agd_deploy import log
from agd_deploy.utils import atomic_write_text, file_lock
log.setup(1)
entry = Path(sys.argv[1])
if not entry.exists():
    with file_lock(entry, "building the test entry") as waited:
        if entry.exists():
            print("reused", round(waited, 2))
        else:
            time.sleep(float(sys.argv[2]))
            atomic_write_text(entry, sys.argv[3])
            print("built")
"""


def test_file_lock_second_process_waits_and_reuses(tmp_path):
    entry = tmp_path / "cache" / "entry.txt"
    first = subprocess.Popen([sys.executable, "-c", BUILD, str(entry), "3", "first"], text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t0 = time.time()
    while not (tmp_path / "cache" / "entry.txt.lock").exists() and time.time() - t0 < 30:
        time.sleep(0.05)
    time.sleep(0.3)
    second = subprocess.run([sys.executable, "-c", BUILD, str(entry), "0", "second"], text=True,
                            capture_output=True, timeout=60)
    out1, err1 = first.communicate(timeout=60)
    assert out1.strip() == "built" and second.returncode == 0, (err1, second.stderr)
    assert second.stdout.startswith("reused") and float(second.stdout.split()[1]) > 0.5
    assert second.stderr.count("warning: waiting for another agd process to finish building the test entry") == 1
    assert "waited" in second.stderr and entry.read_text() == "first"


@pytest.mark.slow
def test_two_profiles_on_one_cache_measure_once(tmp_path):
    """~50 s on the shared 2-core box (two interpreters importing torch)."""
    env = dict(os.environ, AGD_CACHE_DIR=str(tmp_path / "cache"), PYTHONUNBUFFERED="1")
    release = tmp_path / "release"
    first = subprocess.Popen([sys.executable, "-c", FIRST, str(release)], env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    tables = tmp_path / "cache" / "latency_tables" / "ort-cpu-fp32"
    t0 = time.time()
    while not list(tables.glob("*/.sr-16x16-t1.work")) and time.time() - t0 < 120:  # first holds the lock
        assert first.poll() is None, first.communicate()
        time.sleep(0.1)
    second = subprocess.Popen([sys.executable, "-m", "agd_deploy", "-v", "profile", *ARGS], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err2 = ""
    for line in second.stderr:  # the lock's message, then the first one may finish
        err2 += line
        if "waiting for another agd process" in line:
            break
    release.touch()
    out1, err1 = first.communicate(timeout=300)
    out2, rest = second.communicate(timeout=300)
    err2 += rest
    assert first.returncode == 0 and second.returncode == 0, (err1, err2)
    table, lowered = out1.split()
    s2 = json.loads(out2)
    assert s2["table"] == table and s2["lowered"] == 0 and int(lowered) == 2       # measured once, reused once
    assert err2.count("warning: waiting for another agd process to finish profiling ort-cpu-fp32") == 1, err2
    assert "waited" in err2 and f"reusing {table}" in err2, err2
    assert len(list(tables.glob("*/*.json"))) == 1 and not list(tables.glob("*/*.work"))
    lut = json.loads(Path(table).read_text())
    assert list(lut["entries"]) == [BLOCK]
