"""Per-layer profiles of an exported student (issue 17): do the runtime profilers' node sums account for the
whole-model time, where does the time go per block, what stays float, and how far is the latency table from
each block?

Exports a student (the demo's trained CKPT `runs/demo/train` when present, else the demo-style arch with
seeded weights) to onnx, onnx-int8 (and openvino-int8 where installed), runs `agd bench DIR --per-layer --json`
and prints per artifact, side by side: node sum, the profiled runs end to end, sum/whole, the bench's p50
(unprofiled, thread CPU clock), the profiler's overhead, the float-fallback share, and per block the measured
ms vs the table's prediction. Writes benchmarks/results/per_layer.{md,json}.

Goal: sum/whole within 15% (0.85..1.15) for onnx and onnx-int8. Run on a quiet machine: the node times are
wall clock, so a busy box inflates every number (the ratio much less).

    python benchmarks/per_layer.py                  # the demo student at 1x3x64x64
    python benchmarks/per_layer.py --tiny           # a smoke run (1x3x16x16 tiny arch): seconds, numbers meaningless
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agd_deploy.space import Arch  # noqa: E402
from agd_deploy.utils import atomic_write_json, atomic_write_text  # noqa: E402


def agd(*args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "agd_deploy", *args], capture_output=True, text=True, cwd=ROOT)
    if r.returncode:
        raise SystemExit(f"agd {' '.join(args)} failed ({r.returncode}): {r.stderr.strip().splitlines()[-1:]}")
    return r.stdout


def model_and_shape(tiny: bool, work: Path) -> tuple[str, str]:
    if tiny:
        a = Arch.extreme("sr", largest=False, input_shape=[1, 3, 16, 16])
        a.ops = ["conv3x3" if i % 5 == 0 else "skip" for i in range(len(a.ops))]
        (work / "arch.json").write_text(a.to_json())
        return str(work / "arch.json"), "1x3x16x16"
    ckpt = ROOT / "runs" / "demo" / "train"
    if (ckpt / "generator.safetensors").is_file():
        return str(ckpt), "1x3x64x64"
    arch = ROOT / "runs" / "demo" / "search" / "arch.json"
    if arch.is_file():
        return str(arch), "1x3x64x64"
    a = Arch.sample("sr", 0, [1, 3, 64, 64])
    (work / "arch.json").write_text(a.to_json())
    return str(work / "arch.json"), "1x3x64x64"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny arch at 16x16: proves the script runs")
    ap.add_argument("--formats", default=None, help="default: onnx,onnx-int8[,openvino-int8]")
    ap.add_argument("--rounds", type=int, default=None, help="bench timing rounds (default 2 tiny, 30 real)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    try:
        import openvino  # noqa: F401

        ov = ",openvino-int8"
    except ImportError:
        ov = ""
    formats = args.formats or f"onnx,onnx-int8{ov}"
    rounds = str(args.rounds or (2 if args.tiny else 30))
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="agd-perlayer-") as tmp:
        work = Path(tmp)
        model, shape = model_and_shape(args.tiny, work)
        exp = work / "export"
        agd("export", model, "--formats", formats, "--input", shape, "--rounds", rounds, "--out", str(exp), "--json")
        result = json.loads(agd("bench", str(exp), "--per-layer", "--rounds", rounds, "--json"))
    rows, blocks = [], {}
    for a in result["artifacts"]:
        pl = a.get("per_layer") or {}
        if not pl.get("available"):
            rows.append({"format": a["format"], "available": False, "reason": pl.get("reason")})
            continue
        rows.append({"format": a["format"], "available": True, "sum_ms": pl["sum_ms"], "whole_ms": pl["whole_ms"],
                     "sum_over_whole": pl["sum_over_whole"], "sum_min_ms": pl["sum_min_ms"],
                     "whole_min_ms": pl["whole_min_ms"], "whole_cpu_ms": pl.get("whole_cpu_ms"),
                     "bench_p50_ms": pl.get("bench_p50_ms"), "profiled_over_bench": pl.get("profiled_over_bench"),
                     "float_share": pl["float_share"], "float_ops": sorted({f["op"] for f in pl["float_fallback"]}),
                     "within_15pct": abs(pl["sum_over_whole"] - 1) <= 0.15, "predicted_by": pl.get("predicted_by")})
        blocks[a["format"]] = [b for b in pl["blocks"] if b["nodes"] or b.get("predicted_ms")]
    md = [f"# Per-layer profiles ({'tiny smoke run' if args.tiny else model}, {shape}, {formats})", "",
          "| format | node sum ms | profiled runs ms | sum/whole | within 15% | bench p50 ms | profiled/bench "
          "| float share | float ops |", "|---|---:|---:|---:|---|---:|---:|---:|---|"]
    for r in rows:
        if not r["available"]:
            md.append(f"| {r['format']} | - | - | - | - | - | - | - | {r['reason']} |")
            continue
        md.append(f"| {r['format']} | {r['sum_ms']:.2f} | {r['whole_ms']:.2f} | {r['sum_over_whole']:.3f} | "
                  f"{'yes' if r['within_15pct'] else 'NO'} | {r['bench_p50_ms'] or float('nan'):.2f} | "
                  f"{r['profiled_over_bench'] or float('nan'):.2f} | {r['float_share'] * 100:.1f}% | "
                  f"{', '.join(r['float_ops']) or '-'} |")
    fmts = list(blocks)
    if fmts:
        md += ["", "Per block: measured ms (mean of profiled runs) / the table's prediction (min statistic)", "",
               "| block | " + " | ".join(fmts) + " |", "|---|" + "---:|" * len(fmts)]
        names = list(dict.fromkeys(b["block"] for f in fmts for b in blocks[f]))
        for n in names:
            cells = []
            for f in fmts:
                b = next((b for b in blocks[f] if b["block"] == n), None)
                if b is None:
                    cells.append("-")
                else:
                    p = b.get("predicted_ms")
                    cells.append(f"{b['measured_ms']:.3f}" + (f" / {p:.3f}" if p is not None else ""))
            md.append(f"| {n} | " + " | ".join(cells) + " |")
    md.append(f"\n{time.time() - t0:.0f} s in all. Node times are wall clock: run on a quiet machine.")
    text = "\n".join(md) + "\n"
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "per_layer_tiny" if args.tiny else "per_layer"
    atomic_write_json(out / f"{stem}.json", {"model": model, "shape": shape, "formats": formats, "rows": rows,
                                            "blocks": blocks, "seconds": round(time.time() - t0, 1)})
    atomic_write_text(out / f"{stem}.md", text)


if __name__ == "__main__":
    main()
