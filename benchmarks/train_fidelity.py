"""Does a small derived SR arch, distilled from Real-ESRGAN x4plus on the built-in images, beat bicubic?

Trains with the library calls `agd train` uses and evaluates on the built-in held-out images:
  1. distillation only (L1 to the teacher): fidelity to the teacher vs bicubic's   (goal: >= +1 dB)
  2. distillation + ground-truth L1 (--gt-weight): PSNR vs ground truth vs bicubic's (goal: >= +0.3 dB)

Presets: `full` (~100 GMACs at 256x256 LR, ~1/12 of ESRGAN; the issue's 20-minute budget) and `short` (a
smaller arch and schedule for the demo). `--minutes M` sizes the step count from a timed warm-up so training
fits M minutes on this machine; `--steps N` fixes it. Teacher outputs are cached in the user cache dir (the
first run pays for the teacher: ~18 M MACs per LR pixel). Run it under `flock -s /tmp/agd-cpu.lock` here.

    python benchmarks/train_fidelity.py --preset short --minutes 4
    python benchmarks/train_fidelity.py --preset full --minutes 20
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agd_deploy.data import PatchDataset, TeacherCache, builtin_images  # noqa: E402
from agd_deploy.space import Arch, build, count, get_space  # noqa: E402
from agd_deploy.teachers import load_teacher  # noqa: E402
from agd_deploy.train import TrainConfig, evaluate, train  # noqa: E402


def make_arch(cell_ops: list[str], cell_width: int, up1: int, up2: int, hr: int) -> Arch:
    sp = get_space("sr")
    widths = {k: cell_width for k in sp.width_vars if k.startswith("c")}
    widths.update(up1=up1, up2=up2, hr=hr)
    return Arch("sr", cell_ops * sp.n_cells, widths, [1, 3, 64, 64])


PRESETS = {
    # ~100 GMACs at 256x256 LR: residual blocks at full trunk width, 32-channel upsampler/HR convs
    # batch 8: twice the steps of batch 16 in the same minutes (lr 2e-3 diverged on this arch without warm-up)
    "full": dict(arch=(["residual", "skip", "residual", "skip", "residual"], 64, 32, 32, 32), patch=32, batch=8,
                 lr=1e-3),
    # ~31 GMACs: one conv per cell, 24-channel head (what a short demo schedule can train)
    "short": dict(arch=(["conv3x3", "skip", "skip", "skip", "skip"], 64, 24, 24, 24), patch=24, batch=8, lr=2e-3),
}


def seconds_per_step(arch: Arch, patch: int, batch: int, threads: int) -> float:
    torch.set_num_threads(threads)
    m = build(arch).train()
    opt = torch.optim.Adam(m.parameters())
    x = torch.rand(batch, 3, patch, patch)
    times = []
    for _ in range(4):
        t0 = time.perf_counter()
        loss = m(x).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return min(times[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="short")
    ap.add_argument("--minutes", type=float, default=None, help="size the step count to this training time")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--gt-weight", type=float, default=1.0, help="weight of the ground-truth term in run 2")
    ap.add_argument("--skip-gt", action="store_true", help="only run 1 (distillation)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gt-only", action="store_true", help="only run 2 (distillation + ground truth)")
    ap.add_argument("--out", default="bench_out/train_fidelity")
    args = ap.parse_args()

    p = PRESETS[args.preset]
    arch = make_arch(*p["arch"])
    c = count(build(arch), [1, 3, 256, 256])
    out = Path(args.out) / args.preset
    out.mkdir(parents=True, exist_ok=True)
    (out / "arch.json").write_text(arch.to_json() + "\n")
    print(f"arch: {c.gmacs:.1f} GMACs at 256x256 LR (ESRGAN 1176.6), {c.params:,} params -> {out / 'arch.json'}")

    teacher = load_teacher("realesrgan-x4plus")
    torch.set_num_threads(args.threads)
    train_imgs, held = builtin_images("train"), builtin_images("heldout")
    t0 = time.time()
    cache = TeacherCache(teacher, train_imgs, max_side=512)
    TeacherCache(teacher, held)
    print(f"teacher outputs ready in {time.time() - t0:.0f} s (cached: {cache.dir})")

    steps = args.steps
    if steps is None:
        sps = seconds_per_step(arch, p["patch"], p["batch"], args.threads)
        minutes = args.minutes or 20.0
        steps = max(10, int(minutes * 60 * 0.9 / sps))
        print(f"{sps:.2f} s/step measured -> {steps} steps for {minutes:g} minutes")
    lr_px = PatchDataset(cache, p["patch"]).lr_pixels
    epochs = steps * p["patch"] ** 2 * p["batch"] / lr_px

    bic = evaluate("bicubic", held, 4, teacher=teacher, progress=False)
    results = {"preset": args.preset, "gmacs": c.gmacs, "params": c.params, "steps": steps, "patch": p["patch"],
               "batch": p["batch"], "epochs": round(epochs, 2), "bicubic": _short(bic)}
    runs = [("distill", 0.0)] + ([] if args.skip_gt else [("distill+gt", args.gt_weight)])
    if args.gt_only:  # run 2 alone (e.g. beside run 1 in another process, one thread each)
        runs = runs[1:]
    for name, gw in runs:
        cfg = TrainConfig(steps=steps, patch=p["patch"], batch=p["batch"], lr=p["lr"], gt_weight=gw,
                          threads=args.threads, max_side=512)
        t0 = time.time()
        res = train(arch, teacher, train_imgs, cfg, out / name.replace("+", "_"), resume=True)
        secs = res.get("train_seconds", time.time() - t0)
        ev = evaluate(res["ckpt"], held, 4, teacher=teacher, progress=False)
        results[name] = {**_short(ev), "train_seconds": secs, "gt_weight": gw,
                         "command": f"agd train {out / 'arch.json'} --teacher realesrgan-x4plus --steps {steps} "
                                    f"--patch {p['patch']} --batch {p['batch']} --lr {p['lr']} --gt-weight {gw} "
                                    f"--out {out / name.replace('+', '_')}"}
    print(json.dumps(results, indent=2))
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    b = results["bicubic"]
    print(f"\nheld-out {', '.join(held.names)} (x4, PSNR on Y):")
    print(f"  bicubic        vs GT {b['psnr']:.2f} dB   vs teacher {b['psnr_vs_teacher']:.2f} dB")
    for name, _ in runs:
        r = results[name]
        print(f"  {name:<14} vs GT {r['psnr']:.2f} dB ({r['psnr'] - b['psnr']:+.2f})   vs teacher "
              f"{r['psnr_vs_teacher']:.2f} dB ({r['psnr_vs_teacher'] - b['psnr_vs_teacher']:+.2f})   "
              f"trained {r['train_seconds'] / 60:.1f} min")


def _short(ev: dict) -> dict:
    keys = ("psnr", "ssim", "psnr_vs_teacher", "ssim_vs_teacher")
    return {k: round(ev[k], 4) for k in keys if k in ev} | {
        "images": {r["name"]: round(r["psnr"], 3) for r in ev["images"]}}


if __name__ == "__main__":
    main()
