"""Where did the ST ort-cpu-int8 table's error come from? Per-block times of whole int8 validation nets, from
ONNX Runtime's session profiler, beside the table's entries; `--before` lowers them as agd-deploy did before
`quant/onnx.py: unshare_weights` existed (shared zero biases: those convs run as float Conv).

    python benchmarks/st_shared_bias.py            # as lowered now
    python benchmarks/st_shared_bias.py --before   # with the exporter's shared biases left in place

Nets: 4 of the 24 validation nets of `benchmarks/validate_luts.py --n 24` (seed 0). Prints per net the node sum,
the whole run (min of 10 profiled runs, wall clock), the table's prediction, and per block measured ms, the
table's entry and the number of kernels ORT ran for it. Results: benchmarks/results/st_shared_bias.md."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TABLE = ROOT / "latency_tables/ort-cpu-int8/x86_64-amd-f25m1-avx2-2c-4789e753/st-64x64-t1.json"
NETS = (4, 17, 7, 8)  # the two best and two worst predicted by the table before the fix


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", action="store_true", help="lower without unsharing weights (the old files)")
    ap.add_argument("--table", default=str(TABLE))
    args = ap.parse_args()
    import numpy as np

    from agd_deploy.profiling.lut import LUT
    from agd_deploy.profiling.predictor import predict_ms
    from agd_deploy.profiling.profile import table_lowering
    from agd_deploy.profiling.validate import lower_archs
    from agd_deploy.quant import onnx as qonnx
    from agd_deploy.space import sample_archs
    from agd_deploy.verify.layers import profile_artifact

    lut = LUT.load(args.table)
    archs = sample_archs("st", 24, seed=0, input_shape=lut.input_shape)
    picked = [archs[i] for i in NETS]
    with tempfile.TemporaryDirectory(prefix="agd-shared-bias-") as tmp:
        if args.before:  # in this process (jobs_n=1), into a scratch cache: the real cache keeps the fixed files
            os.environ["AGD_CACHE_DIR"] = tmp
            qonnx.unshare_weights = lambda model: 0
        arts = lower_archs(picked, lut.target, False, jobs_n=1 if args.before else None, int8=table_lowering(lut))
        x = np.random.default_rng(0).random(lut.input_shape, dtype=np.float32)
        for i, a, art in zip(NETS, picked, arts):
            pl = profile_artifact("onnx-int8", art, x, threads=1, runs=10, warmup=3, arch=a)
            print(f"net {i}: node sum {pl['sum_min_ms']:.2f} ms, whole {pl['whole_min_ms']:.2f} ms, "
                  f"table {predict_ms(lut, a):.2f} ms (overhead {lut.overhead_ms:.2f})")
            for b in pl["blocks"]:
                entry = f"{lut.ms(b['lut_key']):7.3f}" if b["lut_key"] else "      -"
                print(f"   {b['block']:12s} measured {b['measured_ms']:7.3f}  table {entry}  kernels {b['nodes']}")


if __name__ == "__main__":
    main()
