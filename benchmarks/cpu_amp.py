"""Training on the CPU in fp32 vs bf16 autocast, side by side in one run: step time and fidelity to the teacher.

The same arch, data and recipe (the demo's: `native+bicubic`, 16 variants, MSE, batch 8, 24x24 LR patches, lr
1.5e-3, seed 0) trained three times on this CPU: fp32 for `--steps`, bf16 (`TrainConfig.amp="bf16"`: CPU autocast
+ channels-last) for `--steps`, and bf16 for as many steps as fit in the fp32 run's training time. Each student
against the teacher on (a) native-resolution held-out photos, (b) realesrgan-degraded held-out LR, (c) clean
bicubic LR, as `benchmarks/degradation.py` measures them. First, what `--amp auto` reads on this CPU
(`train.device.choose_cpu_amp` on this arch's step). Writes benchmarks/results/cpu_amp-<device class>.{md,json}.

    python benchmarks/cpu_amp.py --arch benchmarks/results/degradation-native-anywhere.arch.json
    python benchmarks/cpu_amp.py --tiny        # a smoke run: seconds, numbers meaningless
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from degradation import PROTOCOLS, held_out_sets, load_arch, training_images  # noqa: E402

from agd_deploy.device import identify  # noqa: E402
from agd_deploy.space import build, count  # noqa: E402
from agd_deploy.utils import atomic_write_json, atomic_write_text  # noqa: E402

TEACHER = "realesrgan-x4plus"


def probe(arch, threads: int) -> dict:
    """What `--amp auto` decides for this arch on this CPU (one batch of the demo's shape, random pixels)."""
    import torch
    import torch.nn.functional as F

    from agd_deploy.train.device import Compute, choose_cpu_amp
    from agd_deploy.train.loop import probe_steps

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    steps = probe_steps(build(arch).train(), F.mse_loss, torch.rand(8, 3, 24, 24), torch.rand(8, 3, 96, 96))
    return choose_cpu_amp(steps, Compute(torch.device("cpu")), rounds=5)[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default=None, help="arch.json (default: runs/demo/search/arch.json, else a demo-size arch)")
    ap.add_argument("--steps", type=int, default=500, help="the demo's train steps")
    ap.add_argument("--degradation", default="native+bicubic", help="the demo's training inputs")
    ap.add_argument("--variants", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--extra-data", default=None, help="a folder of photos trained on beside the 13 built-in ones")
    ap.add_argument("--work", default="runs/bench-cpu-amp")
    ap.add_argument("--out", default=None, help="writes OUT.md and OUT.json (default: results/cpu_amp-<device class>)")
    ap.add_argument("--tiny", action="store_true", help="smoke run: 3 steps, 4 training images, small crops")
    a = ap.parse_args(argv)
    ident = identify()
    device = ident.describe()
    max_side, eval_side, native_side, patch = 192, 256, 128, 24
    if a.tiny:
        a.steps, max_side, eval_side, native_side, patch, a.variants = 3, 64, 64, 16, 12, 2
        a.work += "-tiny"
    out = Path(a.out or f"benchmarks/results/cpu_amp-{ident.device_class}{'-tiny' if a.tiny else ''}")

    import torch

    from agd_deploy.teachers import load_teacher
    from agd_deploy.train import TrainConfig, evaluate, train

    torch.set_num_threads(a.threads)
    print(f"device: {device}", flush=True)
    arch, arch_src = load_arch(a.arch)
    gmacs = count(build(arch), arch.input_shape).gmacs
    reading = probe(arch, a.threads)
    print(f"--amp auto here: {reading}", flush=True)
    teacher = load_teacher(TEACHER)
    train_imgs = training_images(a.tiny, a.extra_data)
    sets = held_out_sets(native_side, eval_side)
    rows: dict = {}

    def run(name: str, amp: str, steps: int) -> dict:
        cfg = TrainConfig(steps=steps, batch=8, patch=patch, lr=1.5e-3, threads=a.threads, loss="mse", seed=0,
                          max_side=max_side, degradation=a.degradation, variants=a.variants, amp=amp, device="cpu")
        print(f"[train {name}] {steps} steps, amp {amp} ...", flush=True)
        res = train(arch, teacher, train_imgs, cfg, Path(a.work) / name, resume=True, progress=True)
        row = {"amp": res.get("amp"), "steps": steps, "train_seconds": res.get("train_seconds"),
               "teacher_seconds": res.get("teacher_seconds"), "final_loss": res.get("final_loss")}
        for proto, _ in PROTOCOLS:
            r = evaluate(res["ckpt"], sets[proto], 4, teacher=teacher, progress=False, protocol=proto)
            row[proto] = {"psnr_vs_teacher": r["psnr_vs_teacher"], "gain_vs_bicubic_db": r["gain_vs_bicubic_db"]}
        rows[name] = row
        return row

    fp = run("fp32", "off", a.steps)
    bf = run("bf16", "bf16", a.steps)
    same_time = max(1, round(a.steps * fp["train_seconds"] / max(bf["train_seconds"], 1e-9)))
    run("bf16-same-time", "bf16", same_time)
    results = {"device": device, "device_class": ident.device_class, "arch": arch_src, "gmacs": gmacs,
               "degradation": a.degradation, "variants": a.variants, "train_images": len(train_imgs),
               "train_source": train_imgs.source, "auto_reading": reading, "rows": rows, "tiny": a.tiny,
               "train_speedup": round(fp["train_seconds"] / max(bf["train_seconds"], 1e-9), 3)}
    atomic_write_json(out.with_suffix(".json"), results)
    atomic_write_text(out.with_suffix(".md"), report(results))
    print(report(results))
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")
    return 0


def report(r: dict) -> str:
    rd = r["auto_reading"]
    auto = (f"bf16 step {rd['bf16_step_ms']} ms vs fp32 {rd['fp32_step_ms']} ms ({rd['speedup']}x) -> **{rd['chosen']}**"
            if "speedup" in rd else f"**{rd['chosen']}** ({rd.get('why')})")
    lines = [f"# CPU training, fp32 vs bf16 autocast ({'TINY smoke run: numbers meaningless' if r['tiny'] else 'full run'})",
             "", f"- device: {r['device']}", f"- arch: {r['arch']} ({r['gmacs']:.2f} GMACs at 64x64 LR)",
             f"- data: {r['train_images']} training images ({r['train_source']}), `{r['degradation']}`, "
             f"{r['variants']} variants, MSE, batch 8, 24x24 LR patches, lr 1.5e-3, seed 0",
             f"- `--amp auto` on this CPU (one step of this arch, 5 interleaved rounds): {auto}",
             f"- training speed-up of bf16 over fp32 at the same steps: {r['train_speedup']}x", "",
             "Gain over bicubic, PSNR vs the teacher's output on the same input (Y, dB):", "",
             "| run | steps | train s | (a) native photos | (b) realesrgan-degraded LR | (c) clean bicubic LR |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, row in r["rows"].items():
        g = [f"{row[p]['gain_vs_bicubic_db']:+.2f}" for p, _ in PROTOCOLS]
        lines.append(f"| {name} | {row['steps']} | {row['train_seconds']:.0f} | " + " | ".join(g) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
