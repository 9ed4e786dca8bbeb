"""Time `agd demo` twice in one run folder: per-stage wall time of the first run and how much faster the rerun
(every stage reused) is. Run it alone on the machine (timings are the point):

    flock -x /tmp/agd-cpu.lock python benchmarks/demo_time.py --out /tmp/demo-bench [--fresh]

--fresh deletes the run folder first (the user cache of LUTs and teacher outputs is kept; set AGD_CACHE_DIR to
an empty folder to time a first run on a fresh machine)."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path


def run(out: Path, extra: list[str]) -> tuple[float, dict]:
    agd = str(Path(sys.executable).parent / "agd")
    t0 = time.perf_counter()
    r = subprocess.run([agd, "demo", "--out", str(out), "--json", *extra], stdout=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"agd demo failed (exit {r.returncode})")
    return dt, json.loads(r.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("/tmp/agd-demo-bench"))
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("extra", nargs="*", help="more agd demo options, after --")
    a = ap.parse_args()
    if a.fresh:
        shutil.rmtree(a.out, ignore_errors=True)
    first, s1 = run(a.out, a.extra)
    second, s2 = run(a.out, a.extra)
    print(f"{'stage':<10} {'first run s':>12} {'rerun s':>9}")
    for k in s1["wall_per_stage"]:
        print(f"{k:<10} {s1['wall_per_stage'][k]:>12.1f} {s2['wall_per_stage'].get(k, 0):>9.1f}"
              + ("  (reused in the first run too)" if k in s1.get("reused_stages", []) else ""))
    print(f"{'total':<10} {first:>12.1f} {second:>9.1f}   rerun {first / second:.1f}x faster")
    print(f"budget {s1['budget_ms']:.2f} ms, predicted {s1['predicted_ms']:.2f} ms, measured {s1['measured_ms']:.2f} ms; "
          f"student vs teacher {s1['student']['psnr_vs_teacher']:.2f} dB, bicubic {s1['bicubic']['psnr_vs_teacher']:.2f} dB")


if __name__ == "__main__":
    main()
