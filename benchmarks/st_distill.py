"""A distilled ST (image-to-image) student from waifu2x CUNet noise level 2, measured (issue 15).

One real run of the chain `agd demo --task denoise` runs (agd_deploy/demo.py: a table of the st space at 64x64 on
this machine, search/denoise_tiny.yaml under the ms budget, distillation on JPEG q50 copies of the 13 built-in
training images, export onnx / onnx-int8 / tflite-int8 with verification, evaluation on the 4 built-in held-out
images, never used for training or calibration), with a longer training than the demo's (--train-steps). Then:

- PSNR/SSIM (RGB, whole image, peak 255 on uint8 outputs = the model's range) vs the clean held-out crops and vs
  the teacher's output on the same JPEG input, for the student (torch fp32 and each artifact), the teacher, and
  the do-nothing baseline (the JPEG input itself);
- GMACs and params: the student (space/counter.py at 1x3x64x64) vs the teacher (its .param: every conv layer's
  weights x output pixels, teachers/ncnn_teacher.py: count_macs) for a 64x64 output (120x120 padded window) and
  per output megapixel at the teacher's 256-px tiles;
- int8 vs fp32: each artifact's PSNR vs the fp32 torch model (the manifest's verification on held-out crops),
  their PSNR vs clean/teacher above, and speed: the manifest's times (runtimes.timing, interleaved with the fp32
  partner on the same runtime) as ratios, plus the ncnn teacher timed beside the onnx artifacts on a 64x64 output.

Writes benchmarks/results/st_distill.{md,json}. The machine may be shared: use the ratios, not the ms.

    python benchmarks/st_distill.py --run runs/st_distill --train-steps 1500
    python benchmarks/st_distill.py --run /tmp/st --train-steps 20     # a smoke run, numbers meaningless
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agd_deploy.utils import atomic_write_json, atomic_write_text  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def time_teacher_vs_artifacts(teacher: str, arts: dict[str, Path], rounds: int = 10) -> dict[str, float]:
    """min ms of one 64x64 output: the ncnn teacher (1 thread, its 120x120 padded window) and each onnx artifact
    (ORT, 1 thread), interleaved round by round (wall clock)."""
    import numpy as np
    import onnxruntime as ort

    from agd_deploy.teachers import load_teacher
    from agd_deploy.teachers.ncnn_teacher import NcnnTeacher
    import torch

    t = load_teacher(teacher)
    t = NcnnTeacher(t.model, t.name, t.fingerprint, threads=1)
    x01 = torch.rand(1, 3, 64, 64)
    fns = {"teacher (ncnn)": lambda: t(x01)}
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    for name, p in arts.items():
        if p.suffix != ".onnx":
            continue
        sess = ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
        xin = np.random.default_rng(0).uniform(-1, 1, (1, 3, 64, 64)).astype(np.float32)
        fns[name] = (lambda s=sess, a=xin: s.run(None, {"input": a}))
    best = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            fn()  # untimed run first
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], (time.perf_counter() - t0) * 1e3)
    return {k: round(v, 3) for k, v in best.items()}


class FullRes(__import__("torch").nn.Module):
    """A probe outside the search space: `depth` 3x3 convs of `width` channels at full resolution (ReLU) + the
    input (identity skip), in -1..1. Trained on the same patches and schedule as the student, it says whether a
    full-resolution path is what the ST frame (downsampled x4 before any searched op) lacks for this teacher."""

    scale, value_range = 1, (-1.0, 1.0)

    def __init__(self, width: int = 32, depth: int = 4):
        import torch.nn as nn

        super().__init__()
        layers, c = [], 3
        for _ in range(depth - 1):
            layers += [nn.Conv2d(c, width, 3, 1, 1), nn.ReLU(inplace=True)]
            c = width
        layers.append(nn.Conv2d(c, 3, 3, 1, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.body(x)


def fullres_probe(cfg, steps: int) -> dict:
    """Train FullRes on the demo's teacher cache (same patches, batch, lr and cosine schedule as agd train) and
    evaluate it like the student (train/evaluate.py, RGB, the held-out crops)."""
    import math

    import torch
    import torch.nn.functional as F

    from agd_deploy.data import PatchDataset, TeacherCache, builtin_images
    from agd_deploy.demo import heldout_images, train_degradation
    from agd_deploy.search.config import SearchConfig
    from agd_deploy.space import count
    from agd_deploy.teachers import load_teacher
    from agd_deploy.train import evaluate

    torch.manual_seed(0)
    t = load_teacher(cfg.teacher)
    cache = TeacherCache(t, builtin_images("train"), max_side=SearchConfig.load(cfg.recipe).max_side,
                         degradation=train_degradation(cfg), progress=False)
    ds = PatchDataset(cache, cfg.train_patch, (-1.0, 1.0), seed=0)
    net = FullRes()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.train_lr, betas=(0.9, 0.99))
    t0 = time.time()
    for step in range(steps):
        warm = min(100, int(0.05 * steps))
        lr = cfg.train_lr * (step + 1) / warm if step < warm else \
            1e-5 + 0.5 * (cfg.train_lr - 1e-5) * (1 + math.cos(math.pi * step / steps))
        for g in opt.param_groups:
            g["lr"] = lr
        x, y, _ = ds.batch(step, cfg.train_batch)
        loss = F.l1_loss(net(x), y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
    net.eval()
    ev = evaluate(net, heldout_images(cfg), scale=1, teacher=cfg.teacher, progress=False, protocol="degraded",
                  degradation=train_degradation(cfg))
    c = count(net, (1, 3, 64, 64))
    return {"arch": "4 x conv3x3 (32 ch) at full resolution + identity skip", "steps": steps,
            "gmacs_64x64": round(c.macs / 1e9, 4), "params": c.params, "train_seconds": round(time.time() - t0, 1),
            **{k: round(ev[k], 3) for k in ("psnr", "ssim", "psnr_vs_teacher", "ssim_vs_teacher")}}


def residuals(crops: Path) -> dict:
    """Mean |output - input| in grey levels (uint8) over the held-out crops: how much each model changes its
    JPEG input (the do-nothing baseline changes nothing)."""
    import numpy as np
    from PIL import Image

    out: dict = {}
    for k in ("teacher", "student", "student_int8"):
        vals = [np.abs(np.asarray(Image.open(d / f"{k}.png"), float) - np.asarray(Image.open(d / "lr.png"), float)).mean()
                for d in sorted(crops.iterdir()) if (d / f"{k}.png").is_file()]
        if vals:
            out[k] = round(float(np.mean(vals)), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", default="runs/st_distill", help="the demo run folder (reused stage by stage)")
    ap.add_argument("--train-steps", type=int, default=1500)
    ap.add_argument("--budget-frac", type=float, default=None, help="default: the demo task's (0.15)")
    ap.add_argument("--out", default=str(RESULTS / "st_distill"), help="results stem (.md, .json)")
    ap.add_argument("--fullres-probe", type=int, default=0, metavar="STEPS",
                    help="also train the FullRes probe (outside the space) for STEPS steps")
    a = ap.parse_args()

    import torch

    from agd_deploy.demo import DemoConfig, run_demo
    from agd_deploy.device import identify
    from agd_deploy.space import Arch, build, count
    from agd_deploy.teachers.ncnn_teacher import count_macs

    t0 = time.time()
    cfg = DemoConfig.for_task("denoise", out=Path(a.run), train_steps=a.train_steps, budget_frac=a.budget_frac)
    summary = run_demo(cfg)
    run = Path(a.run)
    ev = json.loads((run / "eval.json").read_text())
    manifest = json.loads((run / "export" / "manifest.json").read_text())
    arch = Arch.load(run / "search" / "arch.json")
    torch.set_num_threads(1)
    st = count(build(arch), tuple(arch.input_shape))
    t64 = count_macs(cfg.teacher, 120, 120)  # 64 px core + 2 x 28 border (a multiple of 4)
    t256 = count_macs(cfg.teacher, 312, 312)
    arts = {e["format"]: run / "export" / e["file"] for e in manifest["artifacts"] if e.get("file")}
    speed = time_teacher_vs_artifacts(cfg.teacher, arts)
    ident = identify()
    cpu = f"{ident.model_name} ({ident.device_class})"

    def row(name: str, r: dict) -> dict:
        return {k: (round(r[k], 3) if isinstance(r.get(k), float) else r.get(k))
                for k in ("psnr", "ssim", "psnr_vs_teacher", "ssim_vs_teacher")}

    quality = {n: row(n, r) for n, r in ev.items() if isinstance(r, dict) and "psnr" in r and n != "input"}
    quality["input (do nothing)"] = row("input", summary["input"])
    exports = [{k: e.get(k) for k in ("format", "precision", "status", "psnr_db", "ssim", "min_ms", "p50_ms",
                                      "speedup_vs_fp32", "bytes", "runtime")} for e in manifest["artifacts"]]
    res = {"cpu": cpu, "device": {"device_key": ident.device_key, "device_class": ident.device_class},
           "shared_machine": True, "run": str(run), "teacher": cfg.teacher, "degradation": summary["degradation"],
           "train_steps": a.train_steps, "budget_ms": summary["budget_ms"], "predicted_ms": summary["predicted_ms"],
           "measured_ms": summary["measured_ms"], "lut_validation": summary["lut_validation"],
           "lut_check": summary["lut_check"], "eval_images": summary["eval_images"],
           "arch": {"ops": arch.ops, "widths": arch.widths, "input_shape": arch.input_shape},
           "space_hash": json.loads((run / "search" / "arch.json").read_text()).get("space_hash"),
           "student": {"gmacs_64x64": round(st.macs / 1e9, 4), "params": st.params,
                       "gmacs_per_mpix": round(st.macs / 1e9 / (64 * 64) * 1e6, 3)},
           "teacher_cost": {"gmacs_64x64_output": round(t64["macs"] / 1e9, 4), "params": t64["params"],
                            "window_64x64_output": t64["input"],
                            "gmacs_per_mpix_tile256": round(t256["macs"] / 1e9 / (256 * 256) * 1e6, 3),
                            "counted": "conv/deconv/InnerProduct MACs from the .param x blob sizes of one ncnn run"},
           "quality": quality, "exports": exports, "speed_64x64_min_ms": speed,
           "seconds": {"stages_when_computed": {k: round(v, 1) for k, v in summary.get("seconds", {}).items()},
                       "this_invocation": round(time.time() - t0, 1)}}
    res["fullres_probe_steps"] = a.fullres_probe
    if a.fullres_probe:
        res["fullres_probe"] = fullres_probe(cfg, a.fullres_probe)
    res["residual_grey_levels"] = residuals(run / "crops")
    res["ratios"] = {
        "teacher_over_student_macs_64x64": round(t64["macs"] / st.macs, 2),
        "teacher_over_student_params": round(t64["params"] / st.params, 2)}
    fp = speed.get("onnx")
    for k, v in speed.items():
        if fp and k != "onnx":
            res["ratios"][f"{k}_ms_over_onnx_fp32"] = round(v / fp, 3)
    stem = Path(a.out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(stem.with_suffix(".json"), res)
    atomic_write_text(stem.with_suffix(".md"), render(res))
    print(render(res))


def _reading(r: dict) -> list[str]:
    """What the numbers say, computed from them (no hand-written figures)."""
    q = r["quality"]
    st, inp, te = q.get("student", {}), q.get("input (do nothing)", {}), q.get("teacher", {})
    if not all(isinstance(x.get("psnr"), (int, float)) for x in (st, inp, te)):
        return []
    res = r.get("residual_grey_levels", {})
    L = ["## Reading", "",
         f"- Student vs the do-nothing input: {st['psnr'] - inp['psnr']:+.2f} dB vs clean, "
         f"{st['psnr_vs_teacher'] - inp['psnr_vs_teacher']:+.2f} dB vs the teacher; the teacher is "
         f"{te['psnr'] - inp['psnr']:+.2f} dB over the input vs clean."]
    if res:
        L.append(f"- Mean |output - input| over the held-out crops: teacher {res.get('teacher')} grey levels, "
                 f"student {res.get('student')}, student int8 {res.get('student_int8')}.")
    fp = r.get("fullres_probe")
    if fp:
        L.append(f"- A plain full-resolution probe outside the space ({fp['gmacs_64x64']:.3f} GMACs, same data and "
                 f"steps): {fp['psnr'] - inp['psnr']:+.2f} dB vs clean, "
                 f"{fp['psnr_vs_teacher'] - inp['psnr_vs_teacher']:+.2f} dB vs the teacher over the input. The ST "
                 "frame downsamples x4 before any searched op and has no full-resolution path besides the 7x7 "
                 "stem, the upsampler output and the identity skip, so JPEG blocks (8x8 detail) are hard for it "
                 "to undo; a searched full-resolution path (or a stem-to-head skip) is the frame change this "
                 "suggests.")
    return L + [""]


def render(r: dict) -> str:
    L = [f"# ST student distilled from {r['teacher']} ({r['degradation']['train']} inputs)", "",
         f"CPU: {r['cpu']}, shared with other jobs (ratios measured side by side; ms are indicative). "
         f"Run: `python benchmarks/st_distill.py --run {r['run']} --train-steps {r['train_steps']}"
         + (f" --fullres-probe {r['fullres_probe_steps']}" if r.get("fullres_probe_steps") else "")
         + f"` (the `agd demo --task denoise` chain, {r['train_steps']} training steps).", "",
         f"Budget {r['budget_ms']:.2f} ms (ort-cpu-int8, 1x3x64x64, 1 thread), LUT prediction "
         f"{r['predicted_ms']:.2f} ms, measured onnx-int8 {r['measured_ms']:.2f} ms; table {r['lut_check']}, "
         f"validation {r['lut_validation']['within_10pct'] * 100:.0f}% of {r['lut_validation']['n']} nets within "
         f"±10% (MAPE {r['lut_validation']['mape'] * 100:.1f}%).", "",
         f"Arch: ops {r['arch']['ops']}, widths {r['arch']['widths']} (st space_hash {r.get('space_hash')}"
         + (f"; {r['frame_note']}" if r.get("frame_note") else "") + ").", "",
         *_reading(r), "## Quality on held-out images", "",
         f"{r['eval_images']}; PSNR/SSIM on RGB, whole image, peak 255 (= the model's range after clipping). "
         "Held-out images are never used for training or int8 calibration.", "",
         "| model | PSNR vs clean | SSIM vs clean | PSNR vs teacher | SSIM vs teacher |", "|---|---|---|---|---|"]

    def f(v, fmt):
        return format(v, fmt) if isinstance(v, (int, float)) else "-"

    for n, q in r["quality"].items():
        L.append(f"| {n} | {f(q['psnr'], '.2f')} | {f(q['ssim'], '.4f')} | {f(q['psnr_vs_teacher'], '.2f')} | "
                 f"{f(q['ssim_vs_teacher'], '.4f')} |")
    s, t = r["student"], r["teacher_cost"]
    L += ["", "## Cost", "", "| | GMACs (64x64 output) | GMACs / output Mpx | params |", "|---|---|---|---|",
          f"| student | {s['gmacs_64x64']:.3f} | {s['gmacs_per_mpix']:.1f} | {s['params']:,} |",
          f"| teacher (ncnn, {t['window_64x64_output'][0]}x{t['window_64x64_output'][1]} padded window) | "
          f"{t['gmacs_64x64_output']:.3f} | {t['gmacs_per_mpix_tile256']:.1f} (256-px tiles) | {t['params']:,} |",
          "", f"Teacher MACs: {t['counted']}; element-wise layers not counted. Teacher / student: "
          f"{r['ratios']['teacher_over_student_macs_64x64']}x MACs, {r['ratios']['teacher_over_student_params']}x "
          "params.", "", "## int8 vs fp32", "",
          "| artifact | status | PSNR vs fp32 torch (dB) | min ms | speed-up vs its fp32 |", "|---|---|---|---|---|"]
    for e in r["exports"]:
        L.append(f"| {e['format']} | {e['status']} | {f(e['psnr_db'], '.2f')} | {f(e['min_ms'], '.2f')} | "
                 f"{f(e['speedup_vs_fp32'], '.2f')} |")
    L += ["", "Speed-ups: the manifest's (runtimes.timing, interleaved with the fp32 partner on the same runtime, "
          "thread CPU clock, 1 thread).", "", "One 64x64 output, min wall ms, 1 thread, interleaved:", "",
          "| model | min ms | / onnx fp32 |", "|---|---|---|"]
    fp = r["speed_64x64_min_ms"].get("onnx")
    for k, v in r["speed_64x64_min_ms"].items():
        L.append(f"| {k} | {v:.2f} | {f(v / fp if fp else None, '.2f')} |")
    fp_ = r.get("fullres_probe")
    if fp_:
        L += ["", "## Probe outside the space", "",
              f"{fp_['arch']} ({fp_['gmacs_64x64']:.3f} GMACs at 64x64, {fp_['params']:,} params), trained "
              f"{fp_['steps']} steps on the same patches and schedule: PSNR vs clean {fp_['psnr']:.2f} dB / SSIM "
              f"{fp_['ssim']:.4f}, vs teacher {fp_['psnr_vs_teacher']:.2f} dB / {fp_['ssim_vs_teacher']:.4f} "
              f"({fp_['train_seconds']} s)."]
    sec = r["seconds"]["stages_when_computed"]
    L += ["", "Stage seconds when each was computed (a rerun reuses finished stages): "
          + ", ".join(f"{k} {v:.0f}" for k, v in sec.items()) + f"; this invocation {r['seconds']['this_invocation']} s.",
          ""]
    return "\n".join(L)


if __name__ == "__main__":
    main()
