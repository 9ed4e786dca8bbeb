"""int8 export benchmark: every int8 format beside its fp32 counterpart on the same runtime, in one run.

    python benchmarks/export_int8.py [MODEL] [--input 1x3x64x64] [--formats ...] [--threads 1] [--rounds 30]

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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default=None)
    ap.add_argument("--input", default=None)
    ap.add_argument("--formats", default="onnx,onnx-int8,openvino-int8,tflite-fp32,tflite-int8")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--keep-fp32", default=None)
    ap.add_argument("--out", default=None, help="keep the artifacts here (default: a temp folder)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--train-steps", type=int, default=300,
                    help="quick L1 training of the default arch first (0: seeded random weights)")
    a = ap.parse_args()

    from agd_deploy.utils import parse_shape
    from agd_deploy.verify import manifest as mf
    from agd_deploy.verify.pipeline import run_export

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
                             threads=a.threads, rounds=a.rounds, keep_fp32=a.keep_fp32,
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
