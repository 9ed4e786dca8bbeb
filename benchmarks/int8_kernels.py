"""Is int8 faster than fp32 on this CPU at all? Lone kernels through onnxruntime, side by side in one run.

    python benchmarks/int8_kernels.py [--rounds 8] [--threads 1]

Times, interleaved through agd's shared loop (min of `--rounds`): two 3x3 convs (with a ReLU between) at the
SR space's shapes, fp32 vs the int8 QDQ lowerings of `agd_deploy.quant.onnx` (u8s8 7-bit weights = the default
profile, u8s8 8-bit, u8u8), and a plain GEMM (MatMul fp32 vs MatMulInteger u8s8). If the GEMM ratio is ~1x,
no int8 lowering of a conv net can be much faster than fp32 on this CPU with this runtime: that is the machine,
not the export. (Measured on the 2-core AMD EPYC VM, AVX2 without VNNI: GEMM 1.04-1.08x over runs, once
1.17x in a 3-round run; convs 0.80-0.99x; see benchmarks/results/export_int8-demo-student-1x3x64x64-t1.md.)"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper, numpy_helper

    from agd_deploy.quant.onnx import OrtInt8Config, export_onnx, quantize_qdq
    from agd_deploy.runtimes import load_session
    from agd_deploy.runtimes.timing import Stats, target_clock, time_runs

    d = Path(tempfile.mkdtemp(prefix="agd-int8-kernels-"))
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    runs, groups = {}, []
    lowerings = {"u8s8 7-bit w": OrtInt8Config(), "u8s8 8-bit w": OrtInt8Config(reduce_range=False),
                 "u8u8": OrtInt8Config(weight="uint8", reduce_range=False)}
    print(f"onnxruntime {ort.__version__}, {args.threads} thread(s); building models in {d} ...")
    for c, hw in ((64, 64), (64, 128), (32, 256)):
        name = f"conv3x3 x2 {c}ch @{hw}x{hw}"
        net = torch.nn.Sequential(torch.nn.Conv2d(c, c, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(c, c, 3, padding=1))
        calib = [rng.random((1, c, hw, hw), dtype=np.float32) for _ in range(4)]
        fp32 = export_onnx(net.eval(), torch.from_numpy(calib[0]), d / f"c{c}_{hw}.onnx")
        runs[f"{name} | fp32"] = load_session("ort-cpu-fp32", fp32, threads=args.threads).timer()
        for tag, cfg in lowerings.items():
            q = quantize_qdq(fp32, d / f"c{c}_{hw}_{tag.replace(' ', '_')}.onnx", calib, cfg)
            runs[f"{name} | {tag}"] = load_session("ort-cpu-int8", q, threads=args.threads).timer()
        groups.append((name, list(lowerings)))
    for m, k, n in ((4096, 576, 64), (1024, 1024, 1024)):
        name = f"GEMM {m}x{k}x{n}"
        for tag, (at, bt, yt, op, b) in {
                "fp32": (TensorProto.FLOAT, None, TensorProto.FLOAT, "MatMul", rng.standard_normal((k, n)).astype(np.float32)),
                "u8s8": (TensorProto.UINT8, None, TensorProto.INT32, "MatMulInteger",
                         rng.integers(-100, 100, (k, n)).astype(np.int8))}.items():
            g = helper.make_graph([helper.make_node(op, ["a", "b"], ["y"])], "g",
                                  [helper.make_tensor_value_info("a", at, [m, k])],
                                  [helper.make_tensor_value_info("y", yt, [m, n])], [numpy_helper.from_array(b, "b")])
            p = d / f"gemm{m}_{tag}.onnx"
            onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(p))
            s = load_session("ort-cpu-fp32" if tag == "fp32" else "ort-cpu-int8", p, threads=args.threads)
            runs[f"{name} | {tag}"] = s.timer()
        groups.append((name, ["u8s8"]))
    samples = time_runs(runs, args.rounds, threads=args.threads, clock=target_clock("ort-cpu-int8", args.threads),
                        progress="timing")
    st = {k: Stats.from_samples(v) for k, v in samples.items()}
    runs.clear()
    shutil.rmtree(d, ignore_errors=True)
    print("\n| kernel | lowering | min ms | speedup vs fp32 |\n|---|---|---:|---:|")
    for name, tags in groups:
        base = st[f"{name} | fp32"].min_ms
        print(f"| {name} | fp32 | {base:.2f} | 1.00x |")
        for tag in tags:
            v = st[f"{name} | {tag}"].min_ms
            print(f"| {name} | {tag} | {v:.2f} | {base / v:.2f}x |")


if __name__ == "__main__":
    main()
