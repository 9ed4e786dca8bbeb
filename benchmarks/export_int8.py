"""int8 export benchmark: every int8 format beside its fp32 counterpart on the same runtime, in one run.

    python benchmarks/export_int8.py [MODEL] [--input 1x3x64x64] [--formats ...] [--threads 1] [--rounds 30]
    python benchmarks/export_int8.py realesrgan-x4plus --input 1x3x32x32 --formats onnx,onnx-int8 \
        --profile export/teacher.yaml                     # the teacher's onnx-int8 as `agd export` makes it
    python benchmarks/export_int8.py realesrgan-x4plus --input 1x3x32x32 --sweep all --sweep-dir DIR
        # ORT int8 lowerings side by side (U8U8 / u8s8 / S8S8, calibration, per-tensor, float trunk, ...)

--sweep: every named lowering (SWEEP below; comma-separated names or `all`) of one fp32 ONNX, calibrated on the
same crops, compared with the fp32 PyTorch model on the same held-out crops (PSNR as in the manifest) and timed
together with the fp32 ONNX, interleaved, through agd's timing loop. --sweep-dir keeps the files and results:
a rerun re-times them without re-quantizing (Real-ESRGAN: ~2 min per lowering).

MODEL: a CKPT folder (trained: PSNR means something), an arch .json, or a teacher (realesrgan-x4plus).
Default: a small derived SR generator (seeded weights) at 1x3x64x64. Prints the table (format, size,
PSNR vs fp32, min/p50 ms, speedup, size ratio) measured side by side through agd's shared timing loop, and the
goals of issue 7 as PASS/MISS lines. Run it alone on the machine (`flock -x /tmp/agd-cpu.lock ...`):
speedups on a busy CPU are noise."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


def default_model(tmp: Path) -> str:
    """A small derived SR arch: what `agd search` yields under a tight budget (conv3x3/residual cells, narrow head)."""
    from agd_deploy.space import Arch, get_space

    sp = get_space("sr")
    ops = (["conv3x3", "residual", "skip", "conv3x3", "skip"] * 5)[: sp.n_positions]
    widths = {k: 32 for k in sp.width_vars}
    widths.update({"up1": 32, "up2": 24, "hr": 24})
    p = tmp / "arch.json"
    p.write_text(Arch("sr", ops, widths, [1, 3, 64, 64]).to_json())
    return str(p)


def quick_train(arch_json: str, steps: int, out: Path, seed: int = 0) -> str:
    """A few hundred Adam steps of plain L1 super-resolution on the built-in training images (LR by bicubic, as
    the SR protocol makes it), so the int8 PSNR is measured on weights that compute something image-like.
    Not a good SR model: just not random. Saved as a CKPT folder (trained: the PSNR gate applies)."""
    import numpy as np
    import torch

    from agd_deploy.data import builtin_images, make_lr
    from agd_deploy.space import Arch, build
    from agd_deploy.train.ckpt import save_ckpt

    torch.manual_seed(seed)
    arch = Arch.load(arch_json)
    net = build(arch).train()
    pairs = [make_lr(img, 4) for _, img in builtin_images("train")]
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    p, b = 24, 8
    for step in range(steps):
        lrs, hrs = [], []
        for _ in range(b):
            hr, lr = pairs[rng.integers(len(pairs))]
            y, x = rng.integers(0, lr.shape[0] - p), rng.integers(0, lr.shape[1] - p)
            lrs.append(lr[y:y + p, x:x + p])
            hrs.append(hr[4 * y:4 * (y + p), 4 * x:4 * (x + p)])
        lt = torch.from_numpy(np.stack(lrs)).permute(0, 3, 1, 2).float() / 255
        ht = torch.from_numpy(np.stack(hrs)).permute(0, 3, 1, 2).float() / 255
        loss = (net(lt) - ht).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"train step {step}: L1 {loss.item():.4f}", file=sys.stderr)
    return str(save_ckpt(net.eval(), arch, out))


RESID = ["Conv", "LeakyRelu", "Concat", "Resize"]  # op types quantized when Add/Mul (the residual trunk) stay float
U8U8 = {"weight": "uint8", "weight_symmetric": True, "reduce_range": False}
SWEEP: dict[str, tuple[dict, int, str]] = {  # name: (OrtInt8Config fields, calibration crops, what it is)
    "u8s8-rr": ({}, 24, "OrtInt8Config() default: u8 act, s8 per-channel 7-bit weights (ort-cpu-int8 tables)"),
    "u8s8-full": ({"reduce_range": False}, 24, "u8s8, full 8-bit weights (saturates on AVX2 without VNNI)"),
    "s8s8": ({"activation": "int8", "reduce_range": False}, 24, "s8 activations, s8 weights"),
    "u8u8": (dict(U8U8), 24, "u8 act, u8 symmetric per-channel 8-bit weights (no int16 saturation)"),
    "u8u8-percentile": (dict(U8U8, calibration="percentile"), 24, "U8U8, percentile 99.999 calibration"),
    "u8u8-entropy": (dict(U8U8, calibration="entropy"), 24, "U8U8, entropy calibration"),
    "u8u8-48crops": (dict(U8U8), 48, "U8U8, 48 calibration crops"),
    "u8u8-pertensor": (dict(U8U8, per_channel=False), 24, "U8U8, per-tensor weights"),
    "u8u8-keepfirstlast": (dict(U8U8), 24, "U8U8, first and last conv in fp32"),
    "u16s8": ({"activation": "uint16", "reduce_range": False}, 24, "16-bit activations, s8 weights"),
    "u8u8-floattrunk": (dict(U8U8, op_types=RESID), 24, "U8U8, Add/Mul (residual trunk) left in float"),
    "u8u8-convonly": (dict(U8U8, op_types=["Conv"]), 24, "U8U8, only Conv quantized (LeakyReLU/Concat/Add float)"),
    "u8u8-pct-convonly": (dict(U8U8, calibration="percentile", op_types=["Conv"]), 24,
                          "U8U8, percentile, only Conv quantized"),
    "u8u8-pct9999": (dict(U8U8, calibration="percentile", percentile=99.99), 24, "U8U8, percentile 99.99"),
    "u8u8-pct999": (dict(U8U8, calibration="percentile", percentile=99.9), 24, "U8U8, percentile 99.9"),
    "u8u8-pct-48crops": (dict(U8U8, calibration="percentile"), 48, "U8U8, percentile 99.999, 48 crops"),
}


def sweep(model: str, names: str, input_shape, threads: int, rounds: int, out: Path) -> list[dict]:
    """Quantize the model's fp32 ONNX with each named lowering, check and time them all side by side."""
    import numpy as np

    from agd_deploy.export.calib import calibration_inputs, heldout_inputs
    from agd_deploy.export.onnx import conv_nodes, export_fp32_onnx
    from agd_deploy.export.source import load_source
    from agd_deploy.quant.onnx import OrtInt8Config, quantize_qdq
    from agd_deploy.runtimes import load_session
    from agd_deploy.runtimes.timing import Stats, target_clock, time_runs
    from agd_deploy.verify.check import reference_outputs
    from agd_deploy.verify.metrics import compare

    chosen = list(SWEEP) if names == "all" else [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in SWEEP]
    if unknown:
        raise SystemExit(f"--sweep: unknown {unknown}; known: {', '.join(SWEEP)}")
    import torch

    torch.set_num_threads(max(1, threads))
    src = load_source(model, input_shape)
    info = src.info
    out.mkdir(parents=True, exist_ok=True)
    fp32 = out / "fp32.onnx"
    calib, _ = calibration_inputs(None, info.input_shape, info.scale, info.value_range,
                                  max(SWEEP[n][1] for n in chosen))
    inputs, _ = heldout_inputs(info.input_shape, info.scale, info.value_range, 2)
    if not fp32.is_file():
        export_fp32_onnx(src.module, calib[0], info, fp32)
    convs = [n for n, _ in conv_nodes(fp32)]
    refs = reference_outputs(src.module, inputs)
    cache_path = out / "sweep.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    rows, timers, sessions = [], {}, []
    for name in ["fp32"] + chosen:
        path = fp32 if name == "fp32" else out / f"{name}.onnx"
        row = {"name": name, "what": "fp32 ONNX" if name == "fp32" else SWEEP[name][2]}
        if name != "fp32":
            kw, n, _ = SWEEP[name]
            kw = dict(kw, keep_fp32=[convs[0], convs[-1]]) if name.endswith("keepfirstlast") else kw
            cfg = OrtInt8Config(**kw)
            row["config"] = cfg.to_dict() | {"crops": n}
            row["config"]["keep_fp32"] = len(cfg.keep_fp32)
            if not (path.is_file() and cache.get(name) == row["config"]):
                print(f"quantizing {name} ...", file=sys.stderr)
                quantize_qdq(fp32, path, calib[:n], cfg)
                cache[name] = row["config"]
                cache_path.write_text(json.dumps(cache, indent=1))
        s = load_session("ort-cpu-int8" if name != "fp32" else "ort-cpu-fp32", path, threads=threads)
        sessions.append(s)
        cmp = compare(refs, [np.asarray(s.run(x), np.float32) for x in inputs], info.value_range)
        row.update({"mb": path.stat().st_size / 1e6, "psnr_db": cmp.psnr_db, "psnr_min_db": cmp.psnr_min_db})
        print(f"{name}: {cmp.psnr_db:.2f} dB vs fp32", file=sys.stderr)
        timers[name] = s.timer(inputs[0])
        rows.append(row)
    samples = time_runs(timers, rounds, threads=threads, clock=target_clock("ort-cpu-int8", threads),
                        progress="timing")
    stats = {k: Stats.from_samples(v) for k, v in samples.items()}
    base = rows[0]
    for r in rows:
        r.update({"min_ms": stats[r["name"]].min_ms, "p50_ms": stats[r["name"]].p50_ms})
    for r in rows:
        r["speedup"] = stats["fp32"].min_ms / r["min_ms"]
        r["smaller"] = base["mb"] / r["mb"]
    (out / "sweep_results.json").write_text(json.dumps(rows, indent=1))
    return rows


def sweep_table(rows: list[dict]) -> str:
    lines = ["| lowering | MB | PSNR vs fp32 (dB) | worst crop (dB) | min ms | p50 ms | speedup (min) | smaller |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['mb']:.1f} | {r['psnr_db']:.2f} | {r['psnr_min_db']:.2f} | {r['min_ms']:.1f} "
                     f"| {r['p50_ms']:.1f} | {r['speedup']:.2f}x | {r['smaller']:.2f}x |")
    lines += ["", *[f"- {r['name']}: {r['what']}" for r in rows]]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default=None)
    ap.add_argument("--input", default=None)
    ap.add_argument("--formats", default="onnx,onnx-int8,openvino-int8,tflite-fp32,tflite-int8")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--keep-fp32", default=None)
    ap.add_argument("--profile", default=None, help="export profile (YAML path or shipped name), as agd export's")
    ap.add_argument("--sweep", default=None, help=f"compare int8 lowerings: 'all' or names from {', '.join(SWEEP)}")
    ap.add_argument("--sweep-dir", default=None, help="keep --sweep's files here (reruns reuse them)")
    ap.add_argument("--out", default=None, help="keep the artifacts here (default: a temp folder)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--train-steps", type=int, default=300,
                    help="quick L1 training of the default arch first (0: seeded random weights)")
    a = ap.parse_args()

    from agd_deploy.utils import parse_shape
    from agd_deploy.verify import manifest as mf
    from agd_deploy.deploy import run_export

    if a.sweep:
        if a.model is None:
            raise SystemExit("--sweep needs a MODEL (e.g. realesrgan-x4plus)")
        with tempfile.TemporaryDirectory() as tmp:
            rows = sweep(a.model, a.sweep, parse_shape(a.input) if a.input else None, a.threads, a.rounds,
                         Path(a.sweep_dir) if a.sweep_dir else Path(tmp))
        print(json.dumps(rows) if a.json else sweep_table(rows))
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        model = a.model
        if model is None:
            model = default_model(Path(tmp))
            if a.train_steps > 0:
                import torch

                torch.set_num_threads(max(1, a.threads))
                ck = Path(a.out + "_ckpt") if a.out else Path(tmp) / "ckpt"  # kept beside --out for reuse
                model = quick_train(model, a.train_steps, ck)
        out = Path(a.out) if a.out else Path(tmp) / "out"
        m, code = run_export(model, a.formats, out, input_shape=parse_shape(a.input) if a.input else None,
                             threads=a.threads, rounds=a.rounds, keep_fp32=a.keep_fp32, profile=a.profile,
                             log=lambda s: print(s, file=sys.stderr))
    if a.json:
        print(json.dumps(m))
        return code
    print(mf.markdown_table(m))
    arts = {x["format"]: x for x in m["artifacts"]}
    goals = [("onnx-int8", "psnr_db", 40.0, "dB vs fp32"), ("onnx-int8", "speedup_vs_fp32", 1.4, "x min-latency vs onnx"),
             ("onnx-int8", "smaller_than_fp32", 3.5, "x smaller"), ("tflite-int8", "psnr_db", 38.0, "dB vs fp32"),
             ("tflite-int8", "smaller_than_fp32", 3.5, "x smaller"), ("openvino-int8", "speedup_vs_fp32", 1.4,
                                                                      "x min-latency vs fp32 on OpenVINO")]
    for fmt, key, goal, what in goals:
        v = arts.get(fmt, {}).get(key)
        if v is None:
            print(f"  ----  {fmt}: {key} not measured ({arts.get(fmt, {}).get('status', 'not requested')})")
        else:
            print(f"  {'PASS' if v >= goal else 'MISS'}  {fmt}: {v:.2f} {what} (goal >= {goal})")
    return code


if __name__ == "__main__":
    sys.exit(main())
