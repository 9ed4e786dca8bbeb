"""Training throughput (patches/s) of `agd train` at world 1 vs world 2 on the CPU, same effective batch.

Runs the real command under the real launcher (`python -m torch.distributed.run --nproc_per_node N
--standalone -m agd_deploy train ...`, gloo), both worlds on the same cores: world 1 with --threads C, world 2
with C/2 threads per rank (a fair split of the machine), interleaved `--repeats` times, the best of each.
patches/s = steps x effective batch / the training loop's own seconds (`train_seconds` in train.json: no
start-up, no teacher). The teacher's outputs are computed once before the timed runs (shared cache).

    python benchmarks/train_scale.py                       # the demo student, Real-ESRGAN x4plus, 200 steps
    python benchmarks/train_scale.py --tiny                # seconds: a tiny arch and teacher (proves it works)

Writes benchmarks/results/train_scale.{md,json} with this machine's CPU next to the numbers. Run it on a quiet
machine (`flock -s /tmp/agd-cpu.lock ...` here): the numbers of a busy machine mean nothing."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agd_deploy.device import identify  # noqa: E402


def _tiny_setup(d: Path) -> tuple[str, str, str]:
    """A tiny random ESRGAN teacher, the smallest SR arch and two image crops (the --tiny run)."""
    import torch
    from PIL import Image
    from skimage import data

    from agd_deploy.nets import RRDBNet
    from agd_deploy.space import Arch

    torch.manual_seed(0)
    torch.save({"params": RRDBNet(nf=8, nb=1, gc=4).state_dict()}, d / "teacher.pth")
    (d / "imgs").mkdir(exist_ok=True)
    Image.fromarray(data.astronaut()[100:228, 150:278]).save(d / "imgs" / "astronaut.png")
    Image.fromarray(data.rocket()[200:328, 300:428]).save(d / "imgs" / "rocket.png")
    (d / "arch.json").write_text(Arch.extreme("sr", largest=False).to_json())
    return str(d / "arch.json"), f"esrgan-pth:{d / 'teacher.pth'}", str(d / "imgs")


def _demo_arch(d: Path) -> str:
    """The `short` student of benchmarks/train_fidelity.py (~31 GMACs at 256x256 LR)."""
    from agd_deploy.space import Arch, get_space

    sp = get_space("sr")
    widths = {k: 64 for k in sp.width_vars if k.startswith("c")}
    widths.update(up1=24, up2=24, hr=24)
    arch = Arch("sr", ["conv3x3", "skip", "skip", "skip", "skip"] * sp.n_cells, widths, [1, 3, 64, 64])
    (d / "arch.json").write_text(arch.to_json())
    return str(d / "arch.json")


def run_world(world: int, threads: int, args, arch: str, teacher: str, data: str, work: Path, env: dict,
              tag: str) -> dict:
    out = work / f"ck-w{world}-{tag}"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(world), "--standalone",
           "-m", "agd_deploy", "train", arch, "--teacher", teacher, "--data", data, "--steps", str(args.steps),
           "--patch", str(args.patch), "--batch", str(args.batch), "--max-side", str(args.max_side),
           "--threads", str(threads), "--ckpt-every", str(10 ** 9), "--device", "cpu", "--no-resume",
           "--out", str(out), "--json"]
    t0 = time.time()
    r = subprocess.run(cmd, env={**env, "OMP_NUM_THREADS": str(threads)}, capture_output=True, text=True)
    wall = time.time() - t0
    if r.returncode != 0:
        sys.exit(f"world {world} failed:\n{r.stderr[-3000:]}")
    res = json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("{")][-1])
    sec = float(res["train_seconds"])
    return {"world": world, "threads_per_rank": threads, "per_rank_batch": res["per_rank_batch"],
            "effective_batch": res["effective_batch"], "steps": res["steps"], "train_seconds": sec,
            "patches_per_s": res["steps"] * res["effective_batch"] / sec, "steps_per_s": res["steps"] / sec,
            "final_loss": res["final_loss"], "wall_seconds": round(wall, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="A tiny arch/teacher and a few steps (proves it works).")
    ap.add_argument("--teacher", default="realesrgan-x4plus")
    ap.add_argument("--data", default=None, help="Folder of HR images (default: the built-in training images).")
    ap.add_argument("--arch", default=None, help="ARCH.json (default: the demo-sized student).")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--patch", type=int, default=24)
    ap.add_argument("--batch", type=int, default=16, help="The effective batch (the same at both worlds).")
    ap.add_argument("--max-side", type=int, default=256)
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 2, help="Cores both worlds share.")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train_scale"))
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="agd-train-scale-"))
    env = {**os.environ, "AGD_CACHE_DIR": os.environ.get("AGD_CACHE_DIR", str(work / "cache"))}
    if args.tiny:
        arch, teacher, data = _tiny_setup(work)
        args.steps, args.patch, args.batch, args.max_side, args.repeats = 30, 8, 8, 128, 1
    else:
        arch, teacher, data = args.arch or _demo_arch(work), args.teacher, args.data or "builtin"
    if args.batch < 2:
        sys.exit("--batch must be at least 2 (world 2 splits it)")
    threads = {1: max(1, args.cores), 2: max(1, args.cores // 2)}
    # teacher outputs once, untimed (the same cache serves both worlds)
    run_world(1, threads[1], argparse.Namespace(**{**vars(args), "steps": 1}), arch, teacher, data, work, env, "warm")
    runs: dict[int, list[dict]] = {1: [], 2: []}
    for rep in range(args.repeats):
        for world in ((1, 2) if rep % 2 == 0 else (2, 1)):  # interleaved, alternating order
            runs[world].append(run_world(world, threads[world], args, arch, teacher, data, work, env, str(rep)))
    best = {w: max(rs, key=lambda r: r["patches_per_s"]) for w, rs in runs.items()}
    ident = identify(with_gpu=False)
    result = {"cpu": ident.describe(), "device_key": ident.device_key, "cores": args.cores,
              "arch": arch if args.arch or args.tiny else "demo short student (benchmarks/train_fidelity.py)",
              "teacher": teacher if not args.tiny else "tiny random ESRGAN", "patch": args.patch,
              "effective_batch": args.batch, "steps": args.steps, "repeats": args.repeats, "tiny": args.tiny,
              "best": {str(w): b for w, b in best.items()}, "runs": {str(w): rs for w, rs in runs.items()},
              "speedup_world2": best[2]["patches_per_s"] / best[1]["patches_per_s"],
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# agd train throughput, world 1 vs world 2 (CPU, gloo)\n",
             f"CPU: {result['cpu']}; {args.cores} cores shared by both worlds.  ",
             f"Effective batch {args.batch} at both worlds, {args.patch}x{args.patch} LR patches, {args.steps} steps, "
             f"best of {args.repeats} interleaved runs{' (--tiny: proves the script, not a measurement)' if args.tiny else ''}.\n",
             "| world | threads/rank | per-rank batch | effective batch | patches/s | steps/s | final loss |",
             "|---|---|---|---|---|---|---|"]
    for w in (1, 2):
        b = best[w]
        lines.append(f"| {w} | {b['threads_per_rank']} | {b['per_rank_batch']} | {b['effective_batch']} | "
                     f"{b['patches_per_s']:.1f} | {b['steps_per_s']:.2f} | {b['final_loss']:.4f} |")
    lines.append(f"\nworld 2 / world 1: {result['speedup_world2']:.2f}x patches/s.")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
