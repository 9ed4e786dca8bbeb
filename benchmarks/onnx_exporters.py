"""TorchScript (`dynamo=False`, deprecated since torch 2.9) vs dynamo ONNX exporter on this project's nets, side by
side in one run: export seconds, fp32 output difference (ORT), int8 PSNR vs the net's own fp32 (ORT static QDQ,
the export's lowering), node count and whether node names keep the module paths agd maps back to.

    python benchmarks/onnx_exporters.py [--arch ARCH.json] [--out benchmarks/results]

Nets: one profiled block (what `agd profile` exports hundreds of times), a derived student (an arch JSON, default
a seeded sample of the sr space) and the Real-ESRGAN x4plus teacher at 1x3x32x32. Writes onnx_exporters.md/.json."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def _export(module, x: np.ndarray, out: Path, dynamo: bool) -> tuple[float, list[str]]:
    import torch

    kw = {"dynamo": True, "external_data": False, "verbose": False} if dynamo else {"dynamo": False}
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        torch.onnx.export(module, (torch.from_numpy(x),), str(out), input_names=["input"], output_names=["output"],
                          opset_version=18, **kw)
    dt = time.perf_counter() - t0
    dep = sorted({f"{w.category.__name__}: {str(w.message)[:80]}" for w in caught
                  if issubclass(w.category, (DeprecationWarning, FutureWarning))})
    return dt, dep


def nets(arch_path: str | None):
    import torch

    from agd_deploy.space import Arch, build, get_space
    from agd_deploy.teachers import load_teacher

    torch.manual_seed(0)
    arch = Arch.load(arch_path) if arch_path else Arch.sample("sr", 0, [1, 3, 64, 64])
    sp = get_space(arch.space)
    specs = [b for b in arch.blocks([1, 3, 64, 64]) if b.op != "skip"]
    spec = specs[len(specs) // 2]
    yield f"block {spec.key}", sp.build_block(spec).eval(), (1, spec.cin, spec.h, spec.w)
    yield "student", build(arch).eval(), (1, 3, 64, 64)
    yield "realesrgan-x4plus", load_teacher("realesrgan-x4plus").module.eval(), (1, 3, 32, 32)


def main() -> None:
    from agd_deploy.device import describe_device, identify
    from agd_deploy.quant.onnx import OrtInt8Config, quantize_qdq
    from agd_deploy.verify.metrics import psnr

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default=None)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    work = Path(tempfile.mkdtemp(prefix="agd-exporters-"))
    rows = []
    for name, module, shape in nets(a.arch):
        x = rng.random(shape, dtype=np.float32)
        calib = [rng.random(shape, dtype=np.float32) for _ in range(4)]
        row: dict = {"net": name, "shape": list(shape)}
        outs = {}
        for dyn in (False, True):
            tag = "dynamo" if dyn else "torchscript"
            p = work / f"{len(rows)}-{tag}.onnx"
            dt, dep = _export(module, x, p, dyn)
            outs[tag] = y = _ort(p, x)
            q = work / f"{len(rows)}-{tag}.int8.onnx"
            try:
                quantize_qdq(p, q, calib, OrtInt8Config())
                qp = round(float(psnr(y, _ort(q, x), (0.0, 1.0))), 2)
            except Exception as e:  # noqa: BLE001 - a benchmark reports what failed
                qp = f"failed: {str(e).splitlines()[0][:80]}"
            import onnx

            g = onnx.load(str(p))
            row[tag] = {"export_s": round(dt, 2), "nodes": len(g.graph.node), "int8_psnr_db": qp,
                        "module_path_names": sum(n.name.startswith("/") for n in g.graph.node) / max(1, len(g.graph.node)),
                        "external_data": any(work.glob(p.name + "*.data")), "deprecations": dep}
        row["fp32_max_abs_diff"] = float(np.abs(outs["dynamo"] - outs["torchscript"]).max())
        row["dynamo_over_torchscript_export_time"] = round(row["dynamo"]["export_s"] / row["torchscript"]["export_s"], 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    cpu = describe_device(identify())
    res = {"cpu": cpu, "rows": rows}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "onnx_exporters.json").write_text(json.dumps(res, indent=2) + "\n")
    lines = ["# ONNX exporters: TorchScript vs dynamo\n", f"CPU: {cpu}\n",
             "| net | export s (TS / dynamo) | dynamo/TS | fp32 max abs diff | int8 PSNR dB (TS / dynamo) | "
             "module-path names (TS / dynamo) |", "|---|---|---|---|---|---|"]
    for r in rows:
        ts, dy = r["torchscript"], r["dynamo"]
        lines.append(f"| {r['net']} | {ts['export_s']} / {dy['export_s']} | {r['dynamo_over_torchscript_export_time']}x | "
                     f"{r['fp32_max_abs_diff']:.2e} | {ts['int8_psnr_db']} / {dy['int8_psnr_db']} | "
                     f"{ts['module_path_names']:.0%} / {dy['module_path_names']:.0%} |")
    (out / "onnx_exporters.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
