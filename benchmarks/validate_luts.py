"""Validate every shipped latency table (or the ones given) on this machine and print the report per table.

    flock -x /tmp/agd-cpu.lock .venv/bin/python benchmarks/validate_luts.py [TABLE.json ...] [--n 50] [--out DIR]

For each table: N random whole nets of its space are lowered for its target and timed (interleaved, two
passes), then compared with the LUT prediction and a FLOPs fit. Writes DIR/<target>-<table>.json and .png
and prints one summary line per table plus whether it meets the targets of issue 4:
within_10pct >= 0.90, spearman >= 0.90 or within 0.05 of the repeatability, and above the FLOPs spearman."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from agd_deploy.profiling import LUT
from agd_deploy.profiling.validate import validate
from agd_deploy.utils import resource_dir


def verdict(rep: dict) -> tuple[bool, str]:
    lut, flops, rep_s = rep["lut"], rep["flops"], rep["repeatability"]["spearman"]
    ok_within = lut["within_10pct"] >= 0.90
    ok_rank = lut["spearman"] >= 0.90 or lut["spearman"] >= rep_s - 0.05
    ok_flops = lut["spearman"] > flops["spearman"]
    ok = ok_within and ok_rank and ok_flops
    why = [] if ok else [w for w, good in (("within_10pct < 0.90", ok_within),
                                          ("spearman < min(0.90, repeatability - 0.05)", ok_rank),
                                          ("not above the FLOPs spearman", ok_flops)) if not good]
    return ok, "; ".join(why)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tables", nargs="*", type=Path)
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    a = ap.parse_args()
    tables = a.tables or sorted(resource_dir("latency_tables").glob("*/*.json"))
    if not tables:
        print("no tables found", file=sys.stderr)
        return 1
    a.out.mkdir(parents=True, exist_ok=True)
    all_ok = True
    for p in tables:
        lut = LUT.load(p)
        t0 = time.perf_counter()
        stem = f"{lut.target}-{p.stem}"
        rep = validate(lut, n=a.n, seed=a.seed, rounds=a.rounds, progress=True, plot=a.out / f"{stem}.png")
        rep["seconds"] = round(time.perf_counter() - t0, 1)
        (a.out / f"{stem}.json").write_text(json.dumps(rep, indent=1))
        ok, why = verdict(rep)
        all_ok &= ok
        m, f = rep["lut"], rep["flops"]
        print(f"{lut.target:16s} {p.name:22s} n={rep['n']} LUT: MAPE {m['mape'] * 100:.1f}% "
              f"within10 {m['within_10pct']:.2f} spearman {m['spearman']:.3f} kendall {m['kendall']:.3f} | "
              f"FLOPs: MAPE {f['mape'] * 100:.1f}% spearman {f['spearman']:.3f} | repeatability "
              f"{rep['repeatability']['spearman']:.3f} | {rep['seconds']:.0f} s | {'PASS' if ok else 'FAIL: ' + why}")
    return 0 if all_ok else 2


if __name__ == "__main__":
    sys.exit(main())
