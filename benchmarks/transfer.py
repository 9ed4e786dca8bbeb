"""Few-shot transfer benchmark: another device's table transferred to this one with K probe nets, next to the
untouched table, one global factor, and a full profile of this device, all scored on the same random nets
measured once, side by side in one run.

    python benchmarks/transfer.py --from latency_tables/ort-cpu-int8/sr-64x64-t1.json \
        --full latency_tables/ort-cpu-int8/<this device>/sr-64x64-t1.json --full-seconds 149 \
        --probes 5,10,20 --n 30 --out benchmarks/results

Seconds: each transfer's own time (conversions of its probe nets, from an empty conversion cache, + timing);
the full profile's time is what `agd profile --json` printed for it (`--full-seconds`), since profiling again
here would take minutes and is not what is compared. The goal (issue "Know the device"): >= 95% of the nets
within ±10% at K = 10. Run it alone on the machine."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


def score(pred: np.ndarray, meas: np.ndarray) -> dict[str, float]:
    from agd_deploy.profiling.validate import metrics

    return {k: round(v, 4) for k, v in metrics(pred, meas).items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="source", required=True)
    ap.add_argument("--full", default=None, help="a full profile of this device (default: found by device key)")
    ap.add_argument("--full-seconds", type=float, default=None)
    ap.add_argument("--probes", default="5,10,20")
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=5, help="rounds per pass of the random nets (two passes)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args()

    import os

    from agd_deploy.device import identify
    from agd_deploy.profiling import tables
    from agd_deploy.profiling.check import check_table, scaled
    from agd_deploy.profiling.lut import LUT
    from agd_deploy.profiling.predictor import predict_ms
    from agd_deploy.profiling.transfer import transfer
    from agd_deploy.profiling.validate import measure_archs
    from agd_deploy.space import sample_archs
    from agd_deploy.utils import atomic_write_json, atomic_write_text

    me = identify()
    src = LUT.load(a.source)
    full = LUT.load(a.full) if a.full else tables.find(src.target, src.space, src.input_shape, src.threads,
                                                       this_device_only=True).lut
    archs = sample_archs(src.space, a.n, seed=a.seed, input_shape=src.input_shape)
    print(f"measuring {a.n} random nets on {src.target} ...", file=sys.stderr)
    meas = np.array([m for m, _, _ in measure_archs(archs, src.target, src.threads, a.rounds, src.statistic,
                                                    seed=a.seed, progress=True, clock=src.clock)])
    rows = [{"table": f"source as it is ({Path(a.source).name}, {src.device.get('device_class', 'unknown')})",
             "k": None, "seconds": 0.0, **score(np.array([predict_ms(src, x) for x in archs]), meas)}]
    with tempfile.TemporaryDirectory() as cache:
        os.environ["AGD_CACHE_DIR"] = cache  # every method pays its own conversions
        res = check_table(src, progress=False)
        glob = scaled(src, res.speed_ratio, me, {"kind": "global factor (benchmark)"})
        rows.append({"table": f"one global factor x{res.speed_ratio:.3f} (agd profile check: {res.verdict})", "k": 0,
                     "seconds": res.seconds, **score(np.array([predict_ms(glob, x) for x in archs]), meas)})
    for k in [int(x) for x in a.probes.split(",") if x.strip()]:
        with tempfile.TemporaryDirectory() as cache:
            os.environ["AGD_CACHE_DIR"] = cache
            print(f"transfer with {k} probes ...", file=sys.stderr)
            t = transfer(src, probes=k, progress=True)
        rows.append({"table": f"transferred, {k} probes", "k": k, "seconds": round(t.seconds, 1),
                     "scales": t.table.extra["provenance"]["scales"],
                     **score(np.array([predict_ms(t.table, x) for x in archs]), meas)})
    rows.append({"table": "full profile of this device", "k": "all", "seconds": a.full_seconds,
                 **score(np.array([predict_ms(full, x) for x in archs]), meas)})

    lines = [f"# Few-shot transfer to {me.describe()}", "",
             f"From `{a.source}` (measured on {src.device.get('device_class', 'an unknown device')}); "
             f"{a.n} random nets (seed {a.seed}) of the {src.space} space measured here once "
             f"({2 * a.rounds} interleaved rounds, {src.statistic}, {src.clock} clock).", "",
             "| table | seconds | within ±10% | MAPE | Spearman |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        sec = "" if r["seconds"] is None else f"{r['seconds']:.0f}"
        lines.append(f"| {r['table']} | {sec} | {r['within_10pct'] * 100:.0f}% | {r['mape'] * 100:.1f}% | "
                     f"{r['spearman']:.3f} |")
    k10 = next((r for r in rows if r["k"] == 10), None)
    if k10:
        lines += ["", f"Goal >= 95% within ±10% at K = 10: {'PASS' if k10['within_10pct'] >= 0.95 else 'MISS'} "
                      f"({k10['within_10pct'] * 100:.0f}%)."]
    text = "\n".join(lines)
    print(text)
    out = Path(a.out)
    atomic_write_json(out / f"transfer-{src.target}-to-{me.device_class}.json",
                      {"this_device": me.to_dict(), "source": a.source, "n": a.n, "seed": a.seed, "rows": rows,
                       "measured_ms": [round(float(x), 4) for x in meas]})
    atomic_write_text(out / f"transfer-{src.target}-to-{me.device_class}.md", text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
