"""Does distilling on Real-ESRGAN's degradations make the student a better copy of the teacher on real inputs?

The same student arch and schedule (the demo's: 500 steps, batch 8, 24x24 LR patches, lr 1.5e-3, the recipe's
192-px HR crops of the 13 built-in training images) trained twice from the Real-ESRGAN x4plus teacher: once on
clean `bicubic` LR, once on `realesrgan` LR (`--variants` degraded variants per image). Each student, and
bicubic, against the teacher's output on the same input (PSNR/SSIM on Y, train/evaluate.py):

  (a) native: centre crops of the held-out photos at their own resolution (what `agd upscale` is fed)
  (b) degraded: the held-out HR crops degraded by `realesrgan` (a fixed draw, seed train.evaluate.EVAL_SEED)
  (c) bicubic: the held-out HR crops bicubic-downscaled (the published tables' protocol)
  (b') for each trained degradation other than bicubic and realesrgan (e.g. `photo`): the held-out HR crops
       degraded by it (the same fixed draw), so a student is also measured on its own training distribution

Goal (issue 18): the realesrgan student >= +1.5 dB over bicubic on (a) and (b), and not > 0.3 dB below the
bicubic-trained student on (c). Then the realesrgan student is exported to onnx + onnx-int8 (calibrated on
degraded + clean inputs, deploy/pipeline.py) and int8 vs fp32 is measured on (b): PSNR vs the teacher and the
verified artifacts' times (`runtimes.timing`, the manifest's min/p50 ms). Writes
benchmarks/results/degradation.{md,json}. Teacher outputs are cached in the user cache dir (first run pays).

    python benchmarks/degradation.py                 # the real run (see the README for its time)
    python benchmarks/degradation.py --tiny          # a smoke run: minutes, numbers meaningless
    python benchmarks/degradation.py --degradations bicubic,photo --before OLD.json   # the mild mix; keeps OLD's table
    python benchmarks/degradation.py --extra-data DIR    # train on DIR's photos too (benchmarks/debian_photos.py)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agd_deploy.data import ImageFolder, Images, builtin_images, center_crop  # noqa: E402
from agd_deploy.device import identify  # noqa: E402
from agd_deploy.space import Arch, build, count, get_space  # noqa: E402
from agd_deploy.train.loop import LOSSES  # noqa: E402
from agd_deploy.utils import atomic_write_json, atomic_write_text  # noqa: E402

TEACHER = "realesrgan-x4plus"
PROTOCOLS = (("native", "(a) native-resolution photos"), ("degraded", "(b) degraded held-out LR"),
             ("bicubic", "(c) clean bicubic LR"))


def default_arch() -> Arch:
    """The demo's size class when no --arch is given: one conv per cell, 24-channel head (~31 GMACs at 256^2)."""
    sp = get_space("sr")
    widths = {k: 64 for k in sp.width_vars if k.startswith("c")}
    widths.update(up1=24, up2=24, hr=24)
    return Arch("sr", ["conv3x3", "skip", "skip", "skip", "skip"] * sp.n_cells, widths, [1, 3, 64, 64])


def load_arch(path: str | None) -> tuple[Arch, str]:
    if path:
        return Arch.load(path), path
    demo = Path("runs/demo/search/arch.json")
    if demo.is_file():
        return Arch.load(demo), str(demo)
    return default_arch(), "default (conv3x3 cells, 24-wide head)"


def crops(images: Images, side: int, what: str) -> Images:
    return Images(images.names, [center_crop(a, side) for a in images.arrays], f"{images.source}, centre {side} {what}")


def with_folder(base: Images, folder: str) -> Images:
    """The built-in training images plus every photo of `folder` (decoded now: tens of photos, not thousands)."""
    extra = ImageFolder(folder)
    names, arrays = [f"extra/{n}" for n in extra.names], [extra[i][1] for i in range(len(extra))]
    return Images(list(base.names) + names, list(base.arrays) + arrays, f"{base.source} + {len(names)} photos of {folder}")


def training_images(tiny: bool, extra: str | None) -> Images:
    """The 13 built-in training photos (the first 4 for a smoke run), plus `extra`'s photos when given."""
    imgs = builtin_images("train")
    if tiny:
        imgs = Images(imgs.names[:4], imgs.arrays[:4], imgs.source + " (first 4)")
    return with_folder(imgs, extra) if extra else imgs


def held_out_sets(native_side: int, eval_side: int) -> dict[str, Images]:
    """The held-out photos as the three protocols feed them: (a) native crops, (b)/(c) HR crops to degrade/downscale."""
    held = builtin_images("heldout")
    return {"native": crops(held, native_side, "at native resolution"),
            "degraded": crops(held, eval_side, "HR"), "bicubic": crops(held, eval_side, "HR")}


def protocols(degs: list[str]) -> list[tuple[str, str]]:
    """(a), (b), (c), then (b') per extra degradation: `degraded:NAME`."""
    extra = [(f"degraded:{d}", f"(b') held-out LR degraded by {d}") for d in degs
             if d not in ("bicubic", "realesrgan") and not d.startswith("native")]  # native+X: (a) and X's own
    return list(PROTOCOLS[:2]) + extra + [PROTOCOLS[2]]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default=None, help="arch.json (default: runs/demo/search/arch.json, else a demo-size arch)")
    ap.add_argument("--steps", type=int, default=500, help="the demo's train steps (DemoConfig.train_steps)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=24)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--seed", type=int, default=0, help="the training seed (TrainConfig.seed: init and batches)")
    ap.add_argument("--loss", default="l1", choices=list(LOSSES), help="the teacher term (TrainConfig.loss)")
    ap.add_argument("--variants", type=int, default=2, help="degraded variants per training image (the demo's 2)")
    ap.add_argument("--max-side", type=int, default=192, help="HR crop of the training images (sr_x4_tiny's)")
    ap.add_argument("--eval-side", type=int, default=256, help="HR crop of the held-out images for (b), (c)")
    ap.add_argument("--native-side", type=int, default=128, help="native crop of the held-out photos for (a)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--amp", default="off", help="the students' training precision (TrainConfig.amp): off | bf16 | auto")
    ap.add_argument("--work", default="runs/bench-degradation", help="CKPTs and exports go here")
    ap.add_argument("--out", default="benchmarks/results/degradation", help="writes OUT.md and OUT.json")
    ap.add_argument("--degradations", default="bicubic,realesrgan",
                    help="students to train, comma separated (also realesrgan+clean, photo: the mild mix); "
                         "the goal compares the last with bicubic; int8 is measured on the last")
    ap.add_argument("--no-export", action="store_true", help="skip the int8 vs fp32 part")
    ap.add_argument("--before", default=None, help="an earlier results JSON: its table is kept in a 'before' section")
    ap.add_argument("--tiny", action="store_true", help="smoke run: 3 steps, 4 training images, small crops")
    ap.add_argument("--extra-data", default=None,
                    help="a folder of photos trained on beside the 13 built-in ones (benchmarks/debian_photos.py)")
    a = ap.parse_args(argv)
    if a.tiny:
        a.steps, a.max_side, a.eval_side, a.native_side, a.patch = 3, 64, 64, 16, 12
        a.work, a.out = a.work + "-tiny", a.out + "-tiny"

    import torch

    from agd_deploy.teachers import load_teacher
    from agd_deploy.train import TrainConfig, evaluate, train

    torch.set_num_threads(a.threads)
    device = identify().describe()  # the CPU (or GPU) these numbers belong to
    print(f"device: {device}", flush=True)
    arch, arch_src = load_arch(a.arch)
    c = count(build(arch), arch.input_shape)
    print(f"arch: {arch_src} ({c.gmacs:.2f} GMACs at {arch.input_shape})", flush=True)
    teacher = load_teacher(TEACHER)
    train_imgs = training_images(a.tiny, a.extra_data)
    print(f"training images: {len(train_imgs)} ({train_imgs.source})", flush=True)
    eval_sets = held_out_sets(a.native_side, a.eval_side)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    t_all = time.time()
    results: dict = {"device": device, "arch": arch_src,
                     "gmacs": c.gmacs, "steps": a.steps, "batch": a.batch, "patch": a.patch, "lr": a.lr,
                     "loss": a.loss, "seed": a.seed, "amp": a.amp,
                     "variants": a.variants, "max_side": a.max_side, "eval_side": a.eval_side,
                     "native_side": a.native_side, "students": {}, "tiny": a.tiny,
                     "train_images": len(train_imgs), "train_source": train_imgs.source}
    degs = [d.strip() for d in a.degradations.split(",") if d.strip()]
    if "bicubic" not in degs or len(degs) < 2:
        ap.error("--degradations needs bicubic and at least one other")
    real = [d for d in degs if d != "bicubic"][-1]
    results["real"] = real
    protos = protocols(degs)
    results["protocols"] = protos
    for proto, _ in protos:
        if proto.startswith("degraded:"):
            eval_sets[proto] = eval_sets["degraded"]
    if a.before:
        import json

        old = json.loads(Path(a.before).read_text())
        results["before"] = {k: old.get(k) for k in ("students", "goals", "device", "steps", "variants", "seconds")}
    for deg in degs:
        cfg = TrainConfig(steps=a.steps, batch=a.batch, patch=a.patch, lr=a.lr, threads=a.threads, loss=a.loss,
                          seed=a.seed, max_side=a.max_side, degradation=deg, variants=a.variants, amp=a.amp)
        t0 = time.time()
        print(f"[train {deg}] {a.steps} steps ...", flush=True)
        res = train(arch, teacher, train_imgs, cfg, work / f"student-{deg}", resume=True, progress=True)
        row = {"train_seconds": res.get("train_seconds"), "teacher_seconds": res.get("teacher_seconds"),
               "wall_seconds": round(time.time() - t0, 1), "final_loss": res.get("final_loss")}
        for proto, _ in protos:
            print(f"[eval {deg} student] {proto} ...", flush=True)
            kind, _, own = proto.partition(":")
            r = evaluate(str(work / f"student-{deg}"), eval_sets[proto], 4, teacher=teacher, progress=False,
                         protocol=kind, degradation=own or None)
            row[proto] = {"psnr_vs_teacher": r["psnr_vs_teacher"], "ssim_vs_teacher": r["ssim_vs_teacher"],
                          "bicubic_psnr_vs_teacher": r["bicubic"]["psnr_vs_teacher"],
                          "bicubic_ssim_vs_teacher": r["bicubic"]["ssim_vs_teacher"],
                          "gain_vs_bicubic_db": r["gain_vs_bicubic_db"], "psnr_vs_hr": r.get("psnr")}
        results["students"][deg] = row
    bi = results["students"]["bicubic"]
    results["goals"] = {}
    for deg in degs[1:] if degs[0] == "bicubic" else [d for d in degs if d != "bicubic"]:
        re = results["students"][deg]
        g = {"a_gain_db": re["native"]["gain_vs_bicubic_db"], "b_gain_db": re["degraded"]["gain_vs_bicubic_db"],
             "c_loss_db": bi["bicubic"]["psnr_vs_teacher"] - re["bicubic"]["psnr_vs_teacher"]}
        g["met"] = bool(g["a_gain_db"] >= 1.5 and g["b_gain_db"] >= 1.5 and g["c_loss_db"] <= 0.3)
        if f"degraded:{deg}" in re:  # on its own training distribution (not the goal's (b))
            g["b_own_gain_db"] = re[f"degraded:{deg}"]["gain_vs_bicubic_db"]
        results["goals"][deg] = g
    if not a.no_export:
        results["int8"] = int8_part(work, eval_sets["degraded"], teacher, real)
    results["seconds"] = round(time.time() - t_all, 1)
    out = Path(a.out)
    atomic_write_json(out.with_suffix(".json"), results)
    atomic_write_text(out.with_suffix(".md"), report(results))
    print(report(results))
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")
    return 0


def int8_part(work: Path, degraded: Images, teacher, real: str) -> dict:
    """Export the realesrgan student (onnx + onnx-int8, calibrated on its degraded inputs), verify and time both,
    and compare them on the degraded protocol."""
    from agd_deploy.deploy import run_export
    from agd_deploy.train import evaluate

    edir = work / f"export-{real}"
    shutil.rmtree(edir, ignore_errors=True)
    print(f"[export] onnx, onnx-int8 of the {real} student ...", flush=True)
    manifest, _ = run_export(str(work / f"student-{real}"), ["onnx", "onnx-int8"], edir, threads=1,
                             progress=False, log=lambda m: print(m, flush=True))
    out = {"calibration": manifest.get("calibration"), "artifacts": {}}
    for e in manifest["artifacts"]:
        row = {k: e.get(k) for k in ("status", "psnr_db", "min_ms", "p50_ms", "speedup_vs_fp32", "bytes")}
        if e.get("file") and str(e.get("status", "")).startswith("ok"):
            r = evaluate(str(edir / e["file"]), degraded, 4, teacher=teacher, progress=False, protocol="degraded")
            row["degraded_psnr_vs_teacher"] = r["psnr_vs_teacher"]
            row["degraded_bicubic_psnr_vs_teacher"] = r["bicubic"]["psnr_vs_teacher"]
        out["artifacts"][e["format"]] = row
    return out


def _f(v, fmt=".2f"):
    return format(v, fmt) if isinstance(v, (int, float)) else "-"


def report(r: dict) -> str:
    lines = [f"# Degradation-aware distillation ({'TINY smoke run: numbers meaningless' if r['tiny'] else 'full run'})",
             "", f"- device: {r['device']}", f"- arch: {r['arch']} ({_f(r['gmacs'])} GMACs at 64x64 LR)",
             f"- schedule: {r['steps']} steps, batch {r['batch']}, {r['patch']}x{r['patch']} LR patches, lr {r['lr']}, "
             f"loss {r.get('loss', 'l1')}, seed {r.get('seed', 0)}, "
             f"training HR crops {r['max_side']}, {r['variants']} degraded variants per image",
             f"- held-out: (a) centre {r['native_side']} px at native resolution, (b)/(c) centre {r['eval_side']} px HR",
             f"- training images: {r.get('train_images', '13')} ({r.get('train_source', 'built-in images (train)')})",
             f"- total {r.get('seconds')} s", "",
             "PSNR vs the teacher's output on the same input (Y, dB); bicubic's beside it.", "",
             "| trained on | input | student | bicubic | gain | SSIM student | SSIM bicubic |",
             "|---|---|---|---|---|---|---|"]
    for deg, row in r["students"].items():
        for proto, label in r.get("protocols") or PROTOCOLS:
            q = row[proto]
            lines.append(f"| {deg} | {label} | {_f(q['psnr_vs_teacher'])} | {_f(q['bicubic_psnr_vs_teacher'])} | "
                         f"{_f(q['gain_vs_bicubic_db'], '+.2f')} | {_f(q['ssim_vs_teacher'], '.4f')} | "
                         f"{_f(q['bicubic_ssim_vs_teacher'], '.4f')} |")
    lines.append("")
    for deg, g in r["goals"].items():
        lines.append(f"- goal, {deg} student: (a) >= +1.5 dB: {_f(g['a_gain_db'], '+.2f')}; (b) >= +1.5 dB: "
                     f"{_f(g['b_gain_db'], '+.2f')}; (c) loss vs the bicubic-trained student <= 0.3 dB: "
                     f"{_f(g['c_loss_db'], '.2f')} -> **{'met' if g['met'] else 'not met'}**"
                     + (f" (on its own degradation (b'): {_f(g['b_own_gain_db'], '+.2f')})" if "b_own_gain_db" in g else ""))
    lines.append("")
    for deg, row in r["students"].items():
        lines.append(f"- {deg}: teacher {row.get('teacher_seconds')} s, train {row.get('train_seconds')} s")
    if r.get("int8"):
        lines += ["", f"int8 vs fp32 of the {r.get('real')} student (degraded inputs (b); times: the verified artifacts, "
                  "1 thread)", "", "| format | status | PSNR vs teacher (b) | PSNR vs fp32 (gate) | min ms | p50 ms | "
                  "speed-up vs fp32 |", "|---|---|---|---|---|---|---|"]
        for fmt, e in r["int8"]["artifacts"].items():
            lines.append(f"| {fmt} | {e.get('status')} | {_f(e.get('degraded_psnr_vs_teacher'))} | "
                         f"{_f(e.get('psnr_db'))} | {_f(e.get('min_ms'))} | {_f(e.get('p50_ms'))} | "
                         f"{_f(e.get('speedup_vs_fp32'))} |")
        cal = r["int8"].get("calibration") or {}
        lines.append(f"\ncalibration: {cal.get('crops')} crops, {cal.get('degraded_crops')} of them degraded "
                     f"({cal.get('degradation')})")
    if r.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in r["notes"]]
    b = r.get("before")
    if b:
        lines += ["", f"## Before (an earlier run of this benchmark: {b.get('steps')} steps, {b.get('variants')} variants, "
                  f"{b.get('device')})", "", "| trained on | input | student | bicubic | gain |", "|---|---|---|---|---|"]
        for deg, row in (b.get("students") or {}).items():
            for proto, label in PROTOCOLS:
                q = row.get(proto) or {}
                lines.append(f"| {deg} | {label} | {_f(q.get('psnr_vs_teacher'))} | "
                             f"{_f(q.get('bicubic_psnr_vs_teacher'))} | {_f(q.get('gain_vs_bicubic_db'), '+.2f')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
