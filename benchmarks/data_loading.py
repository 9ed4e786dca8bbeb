"""`agd train` steps/s with the batches cut in the training process (--workers 0) vs by DataLoader worker
processes (--workers N), side by side in one run, the CPU (and GPU) printed next to the numbers.

The real command, world 1, interleaved `--repeats` times in alternating order, the best of each. steps/s =
steps / the training loop's own seconds (`train_seconds` in train.json: no start-up, no teacher; the teacher's
outputs are computed once before the timed runs into a shared cache). Both settings train bit-identical
weights (tests/test_distributed.py), so only the speed differs. On the CPU the workers compete with the
training threads for the same cores; the case they are for is a GPU that waits for its next batch
(`--device cuda`), where they cut and pin batch i+1 while step i runs.

    python benchmarks/data_loading.py                        # the demo student, Real-ESRGAN x4plus, 200 steps
    python benchmarks/data_loading.py --device cuda --batch 64 --patch 48
    python benchmarks/data_loading.py --tiny                 # seconds: a tiny arch and teacher (proves it works)

Writes benchmarks/results/data_loading.{md,json}. Run it on a quiet machine: the numbers of a busy one mean
nothing."""

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
sys.path.insert(0, str(ROOT / "benchmarks"))

from agd_deploy.device import identify  # noqa: E402
from train_scale import _demo_arch, _tiny_setup  # noqa: E402


def run(workers: int, args, arch: str, teacher: str, data: str, work: Path, env: dict, tag: str) -> dict:
    out = work / f"ck-j{workers}-{tag}"
    cmd = [sys.executable, "-m", "agd_deploy", "train", arch, "--teacher", teacher, "--data", data,
           "--steps", str(args.steps), "--patch", str(args.patch), "--batch", str(args.batch),
           "--max-side", str(args.max_side), "--threads", str(args.threads), "--ckpt-every", str(10 ** 9),
           "--device", args.device, "--workers", str(workers), "--no-resume", "--out", str(out), "--json"]
    t0 = time.time()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    if r.returncode != 0:
        sys.exit(f"--workers {workers} failed:\n{r.stderr[-3000:]}")
    res = json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("{")][-1])
    sec = float(res["train_seconds"])
    return {"workers": workers, "device": res["device"], "amp": res["amp"], "steps": res["steps"],
            "batch": res["effective_batch"], "train_seconds": sec, "steps_per_s": res["steps"] / sec,
            "patches_per_s": res["steps"] * res["effective_batch"] / sec, "final_loss": res["final_loss"],
            "wall_seconds": round(wall, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="A tiny arch/teacher and a few steps (proves it works).")
    ap.add_argument("--teacher", default="realesrgan-x4plus")
    ap.add_argument("--data", default=None, help="Folder of HR images (default: the built-in training images).")
    ap.add_argument("--arch", default=None, help="ARCH.json (default: the demo-sized student).")
    ap.add_argument("--device", default="cpu", help="auto|cpu|cuda|cuda:N, as `agd train --device`.")
    ap.add_argument("--workers", type=int, default=2, help="The worker count compared with 0.")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--patch", type=int, default=24)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-side", type=int, default=256)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="Training threads (--threads).")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "data_loading"))
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="agd-data-loading-"))
    env = {**os.environ, "AGD_CACHE_DIR": os.environ.get("AGD_CACHE_DIR", str(work / "cache")),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "OMP_NUM_THREADS": str(args.threads)}
    if args.tiny:
        arch, teacher, data = _tiny_setup(work)
        args.steps, args.patch, args.batch, args.max_side, args.repeats, args.threads = 20, 8, 8, 128, 1, 1
        env["OMP_NUM_THREADS"] = "1"
    else:
        arch, teacher, data = args.arch or _demo_arch(work), args.teacher, args.data or "builtin"
    settings = (0, args.workers)
    # teacher outputs once, untimed (the same cache serves both settings)
    run(0, argparse.Namespace(**{**vars(args), "steps": 1}), arch, teacher, data, work, env, "warm")
    runs: dict[int, list[dict]] = {w: [] for w in settings}
    for rep in range(args.repeats):
        for w in (settings if rep % 2 == 0 else settings[::-1]):  # interleaved, alternating order
            runs[w].append(run(w, args, arch, teacher, data, work, env, str(rep)))
    best = {w: max(rs, key=lambda r: r["steps_per_s"]) for w, rs in runs.items()}
    ident = identify(with_gpu=best[0]["device"].startswith("cuda"))
    result = {"cpu": ident.describe(), "device_key": ident.device_key, "cores": os.cpu_count(),
              "device": best[0]["device"], "amp": best[0]["amp"], "threads": args.threads,
              "arch": arch if args.arch or args.tiny else "demo short student (benchmarks/train_fidelity.py)",
              "teacher": teacher if not args.tiny else "tiny random ESRGAN", "patch": args.patch,
              "batch": args.batch, "steps": args.steps, "repeats": args.repeats, "tiny": args.tiny,
              "best": {str(w): b for w, b in best.items()}, "runs": {str(w): rs for w, rs in runs.items()},
              "speedup_workers": best[args.workers]["steps_per_s"] / best[0]["steps_per_s"],
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# agd train data loading: --workers 0 vs {args.workers} ({result['device']})\n",
             f"Machine: {result['cpu']}; {result['cores']} cores, --threads {args.threads}.  ",
             f"Batch {args.batch}, {args.patch}x{args.patch} LR patches, {args.steps} steps, amp {result['amp']}, "
             f"best of {args.repeats} interleaved runs"
             f"{' (--tiny: proves the script, not a measurement)' if args.tiny else ''}.\n",
             "| workers | steps/s | patches/s | train s | final loss |", "|---|---|---|---|---|"]
    for w in settings:
        b = best[w]
        lines.append(f"| {w} | {b['steps_per_s']:.2f} | {b['patches_per_s']:.1f} | {b['train_seconds']:.2f} | "
                     f"{b['final_loss']:.6f} |")
    lines.append(f"\n--workers {args.workers} / --workers 0: {result['speedup_workers']:.2f}x steps/s "
                 "(the final losses are equal: the same batches).")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
