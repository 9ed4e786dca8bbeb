"""The prepared check for a lent GPU machine (issue 14): a few minutes, one command, results as JSON + Markdown.

    PYTHONPATH=. python benchmarks/gpu_check.py              # writes under $OUT (else benchmarks/results/gpu_check)
    PYTHONPATH=. python benchmarks/gpu_check.py --out DIR --tiny   # seconds: proves every path runs (CPU too)
    PYTHONPATH=. python benchmarks/gpu_check.py --parts table      # one part (train, table, tensorrt, upscale)

Expected length on a 16-core GPU machine: about 5-6 minutes with the defaults (an estimate from the parts'
sizes, not yet measured: no GPU was lent while it was written); the table (171 conversions, 2 timing passes)
and its validation (30 nets) are most of it. `--rounds`, `--n`, `--steps` shrink it.

That machine has CUDA PyTorch and onnxruntime, Python 3.12 and no package registry, and runs the project from
the source tree; it may lack click, tqdm, scikit-image, safetensors, scipy... So the script first imports each
of the project's third-party packages and prints the missing ones, then runs what it can:

1. training throughput, cuda vs cpu, same arch, batch, patch and steps: through `agd_deploy.train.train` (the
   `agd train` loop, `TrainConfig.device`) where its imports are there, with a bicubic x4 teacher and generated
   images (no downloads); and always a forward/backward/Adam loop of the same built arch timed here ("own loop":
   the train loop's step without data loading), fp32 on both, plus bf16 autocast + channels-last on cuda;
2. a `torch-cuda-fp16` latency table profiled (`profiling.profile`: CUDA-event clock, this GPU's identity, its
   device folder) and validated on random whole nets (`profiling.validate`: within ±10%, MAPE, Spearman, vs a
   FLOPs fit; scipy's Spearman where scipy is there, else a rank correlation computed here); TensorRT through
   Polygraphy where the `[tensorrt]` extra is installed (compare with ORT, time it);
3. an upscale of a 512x512 image (tiled as `agd upscale` does, and whole) on cuda and cpu.

Each part is independent (a failure is recorded as one line and the next part runs) and the results file is
rewritten after each part, so a run cut short still leaves what it measured. Without CUDA the GPU parts say
"skipped: no CUDA" and the CPU parts run (with --tiny: tiny sizes, a partial torch-cpu-fp32 table as a stand-in
for the profile path)."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

PROJECT_IMPORTS = ("torch", "numpy", "click", "tqdm", "safetensors", "yaml", "PIL", "scipy", "platformdirs",
                   "filelock", "jsonschema", "onnx", "onnxruntime", "onnxscript", "skimage", "matplotlib",
                   "polygraphy", "tensorrt")


def probe_imports() -> tuple[dict[str, str], dict[str, str]]:
    """{module: version} of those that import, {module: why} of those that do not."""
    import warnings

    ok, missing = {}, {}
    for m in PROJECT_IMPORTS:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # some packages deprecate __version__
                mod = importlib.import_module(m)
                ok[m] = str(getattr(mod, "__version__", "?"))
        except Exception as e:  # noqa: BLE001 -- ImportError, or a package whose native libraries fail to load
            missing[m] = f"{type(e).__name__}: {' '.join(str(e).split())[:120]}"
    return ok, missing


def have(*mods: str) -> bool:
    return all(m in HAVE for m in mods)


HAVE: dict[str, str] = {}


# --- metrics without scipy ---------------------------------------------------------------------------------

def _ranks(a):
    import numpy as np

    a = np.asarray(a, dtype=np.float64)
    order = a.argsort(kind="mergesort")
    r = np.empty(len(a))
    r[order] = np.arange(len(a))
    for v in np.unique(a):  # ties share their mean rank (as scipy's spearmanr)
        idx = np.where(a == v)[0]
        if len(idx) > 1:
            r[idx] = r[idx].mean()
    return r


def spearman(x, y) -> float:
    import numpy as np

    rx, ry = _ranks(x), _ranks(y)
    return float(np.corrcoef(rx, ry)[0, 1])


def metrics(pred, meas) -> dict[str, float]:
    """validate.metrics' keys (kendall only with scipy)."""
    import numpy as np

    pred, meas = np.asarray(pred, float), np.asarray(meas, float)
    if have("scipy"):
        from agd_deploy.profiling.validate import metrics as m

        return m(pred, meas)
    rel = np.abs(pred - meas) / meas
    return {"mape": float(rel.mean()), "within_10pct": float((rel <= 0.10).mean()), "spearman": spearman(pred, meas)}


# --- helpers ----------------------------------------------------------------------------------------------

def _sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _arch(tiny: bool, smallest: bool = False):
    """A sampled SR arch (seed 0), or the space's smallest one (the "tiny arch" the throughput runs train)."""
    from agd_deploy.space import Arch

    shape = [1, 3, 16, 16] if tiny else [1, 3, 64, 64]
    return Arch.extreme("sr", False, shape) if smallest else Arch.sample("sr", 0, input_shape=shape)


def bicubic_x4():
    """The teacher of the throughput runs: bicubic x4 (a real upsampler, no weights to download)."""
    import torch
    import torch.nn.functional as F

    class Up(torch.nn.Module):
        scale = 4

        def forward(self, x):
            return F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)

    return Up().eval()


def _images(n: int, side: int, seed: int = 0):
    """Photo-like uint8 RGB images: smooth random fields plus edges and fine texture."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        base = F.interpolate(torch.rand(1, 3, side // 16, side // 16, generator=g), size=(side, side),
                             mode="bicubic", align_corners=False)
        yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
        stripes = ((xx + 2 * yy) // max(2, side // 24) % 2).float()[None, None] * 0.25
        tex = torch.rand(1, 3, side, side, generator=g) * 0.08
        img = (base * 0.7 + stripes + tex).clamp(0, 1)[0].permute(1, 2, 0).numpy()
        out.append((img * 255).round().astype(np.uint8))
    return out


# --- 1. training throughput ---------------------------------------------------------------------------------

def own_loop(arch, device: str, steps: int, batch: int, patch: int, amp: str = "off", warmup: int = 3) -> dict:
    """The train loop's step (forward, L1 to the teacher, backward, clip, Adam) on pre-made batches on the
    device, timed with the device synchronised; steps/s and patches/s."""
    import torch
    import torch.nn.functional as F

    from agd_deploy.space import build

    dev = torch.device(device)
    torch.manual_seed(0)
    model = build(arch).train().to(dev)
    cl = dev.type == "cuda" and amp != "off"
    if cl:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    teacher = bicubic_x4().to(dev)
    g = torch.Generator().manual_seed(1)
    xs = [torch.rand(batch, 3, patch, patch, generator=g) for _ in range(4)]
    xs = [x.to(dev).contiguous(memory_format=torch.channels_last) if cl else x.to(dev) for x in xs]
    with torch.no_grad():
        ts = [teacher(x) for x in xs]
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)

    def step(i: int) -> float:
        x, t = xs[i % len(xs)], ts[i % len(ts)]
        with torch.autocast(dev.type, dtype=dtype) if dtype is not None else torch.autocast(dev.type, enabled=False):
            y = model(x)
            loss = F.l1_loss(y.float(), t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    for i in range(warmup):
        step(i)
    _sync(dev)
    t0 = time.perf_counter()
    for i in range(steps):
        loss = step(i)
    _sync(dev)
    s = time.perf_counter() - t0
    return {"device": str(dev), "amp": amp, "channels_last": cl, "steps": steps, "batch": batch, "patch": patch,
            "seconds": round(s, 3), "steps_per_s": round(steps / s, 3), "patches_per_s": round(steps * batch / s, 1),
            "final_loss": round(float(loss.detach()), 5)}


def agd_train(arch, device: str, steps: int, batch: int, patch: int, work: Path, images) -> dict:
    """`agd train`'s library call (agd_deploy.train.train) on `device`: steps/s from its own train_seconds."""
    from agd_deploy.data.images import Images
    from agd_deploy.teachers.base import Teacher
    from agd_deploy.train import TrainConfig, train

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    kw = {"steps": steps, "batch": batch, "patch": patch, "ckpt_every": 10 ** 6, "threads": os.cpu_count() or 1}
    if "device" in names:
        kw["device"] = device
    if "amp" in names:
        kw["amp"] = "off"  # fp32 on both devices: the same arithmetic
    if "variants" in names:
        kw["variants"] = 1
    cfg = TrainConfig(**kw)
    teacher = Teacher("bicubic-x4", 4, (0.0, 1.0), "gpu-check-bicubic-x4", bicubic_x4())
    data = Images([f"img{i}" for i in range(len(images))], images, "gpu_check generated images")
    out = work / f"ckpt-{device.replace(':', '')}"
    t0 = time.perf_counter()
    res = train(arch, teacher, data, cfg, out, resume=False, cache_root=work / "teacher-cache", progress=False)
    wall = time.perf_counter() - t0
    ts = float(res.get("train_seconds") or wall)
    return {"device": device, "steps": steps, "batch": batch, "patch": patch, "train_seconds": ts,
            "teacher_seconds": res.get("teacher_seconds"), "wall_seconds": round(wall, 2),
            "steps_per_s": round(steps / ts, 3), "patches_per_s": round(steps * batch / ts, 1),
            "final_loss": res.get("final_loss"), "ckpt": str(out), "config_device_field": "device" in names}


def part_train(args, cuda: bool, work: Path) -> dict:
    arch = _arch(args.tiny, smallest=True)
    steps, batch, patch = (3, 2, 8) if args.tiny else (args.steps, 16, 32)
    out: dict = {"arch": {"ops": arch.ops, "widths": arch.widths}, "own_loop": [], "agd_train": [], "notes": []}
    devices = ["cpu", "cuda"] if cuda else ["cpu"]
    for dev in devices:
        out["own_loop"].append(own_loop(arch, dev, steps, batch, patch))
    if cuda:
        out["own_loop"].append(own_loop(arch, "cuda", steps, batch, patch, amp="bf16"))
    if have("tqdm", "safetensors", "PIL"):
        imgs = _images(2 if args.tiny else 4, 64 if args.tiny else 256)
        for dev in devices:
            try:
                out["agd_train"].append(agd_train(arch, dev, steps, batch, patch, work, imgs))
            except Exception as e:  # noqa: BLE001
                out["agd_train"].append({"device": dev, "error": _line(e)})
    else:
        out["notes"].append("agd train's loop not run: it needs tqdm, safetensors and PIL "
                            f"(missing: {', '.join(m for m in ('tqdm', 'safetensors', 'PIL') if m not in HAVE)}); "
                            "the own loop times the same step of the same built arch")
    by = {r["device"]: r for r in out["own_loop"] if r["amp"] == "off"}
    if "cuda" in by:
        out["cuda_vs_cpu_own_loop"] = round(by["cuda"]["steps_per_s"] / by["cpu"]["steps_per_s"], 2)
    tr = {r["device"]: r for r in out["agd_train"] if "steps_per_s" in r}
    if "cuda" in tr and "cpu" in tr:
        out["cuda_vs_cpu_agd_train"] = round(tr["cuda"]["steps_per_s"] / tr["cpu"]["steps_per_s"], 2)
    return out


# --- 2. latency tables --------------------------------------------------------------------------------------

def validate_table(lut, n: int, rounds: int) -> dict:
    """profiling.validate.validate where scipy is there; else the same steps with metrics computed here."""
    if have("scipy"):
        from agd_deploy.profiling.validate import validate

        rep = validate(lut, n=n, rounds=rounds, progress=False)
        rep.pop("points", None), rep.pop("table_device", None), rep.pop("this_device", None)
        return rep
    import numpy as np

    from agd_deploy.profiling.predictor import predict_ms
    from agd_deploy.profiling.profile import table_lowering
    from agd_deploy.profiling.validate import flops_fit, measure_archs
    from agd_deploy.space import build, count, get_space, sample_archs

    archs = sample_archs(get_space(lut.space).name, n, seed=0, input_shape=lut.input_shape)
    pred = np.array([predict_ms(lut, a) for a in archs])
    gmacs = np.array([count(build(a), a.input_shape).gmacs for a in archs])
    t = measure_archs(archs, lut.target, lut.threads, rounds, lut.statistic, progress=False, clock=lut.clock,
                      int8=table_lowering(lut))
    meas = np.array([x[0] for x in t])
    p1, p2 = np.array([x[1] for x in t]), np.array([x[2] for x in t])
    return {"n": n, "target": lut.target, "clock": lut.clock, "lut": metrics(pred, meas),
            "flops": metrics(flops_fit(gmacs, meas), meas),
            "repeatability": {"spearman": spearman(p1, p2),
                              "median_rel_diff": float(np.median(np.abs(p1 - p2) / ((p1 + p2) / 2)))},
            "metrics_by": "gpu_check (no scipy)"}


def part_table(args, cuda: bool, out_dir: Path) -> dict:
    import shutil

    from agd_deploy.profiling.lut import LUT
    from agd_deploy.profiling.profile import ProfileConfig, profile

    target = "torch-cuda-fp16" if cuda else "torch-cpu-fp32"
    res: dict = {"target": target}
    if not cuda:
        res["note"] = "no CUDA: a partial torch-cpu-fp32 table as a stand-in for the profile path (not validated)"
    only = ["cell:conv3x3:cin40:cout64:h16:w16", "cell:residual:cin40:cout64:h16:w16"] if not cuda else None
    shape = [1, 3, 16, 16] if (args.tiny or not cuda) else [1, 3, 64, 64]
    cfg = ProfileConfig(target=target, input_shape=shape, rounds=4 if args.tiny else args.rounds,
                        passes=2, only=only, ref_nets=2 if args.tiny else 6)
    t0 = time.perf_counter()
    pr = profile(cfg, progress=False, jobs_n=1 if args.tiny else args.jobs)
    lut = LUT.load(pr.table)
    res.update({"table": str(pr.table), "seconds": round(time.perf_counter() - t0, 1), "entries": pr.entries,
                "noise": round(pr.noise, 4), "clock": lut.clock, "device_class": lut.device.get("device_class"),
                "gpu": lut.device.get("gpu"), "runtime": lut.runtime,
                "scale": lut.extra.get("profile", {}).get("scale"), "overhead_ms": lut.overhead_ms})
    (out_dir / "tables").mkdir(parents=True, exist_ok=True)
    shutil.copy(pr.table, out_dir / "tables" / f"{target}-{pr.table.parent.name}-{pr.table.name}")
    if only:
        return res
    t1 = time.perf_counter()
    res["validation"] = validate_table(lut, 5 if args.tiny else args.n, 3 if args.tiny else args.val_rounds)
    res["validation_seconds"] = round(time.perf_counter() - t1, 1)
    return res


def part_tensorrt(args, cuda: bool, work: Path) -> dict:
    from agd_deploy.runtimes.targets import available

    ok, why = available("tensorrt-cuda-int8")
    if not ok:
        return {"skipped": why}
    import numpy as np
    import torch

    from agd_deploy.profiling.profile import default_lowering
    from agd_deploy.quant.onnx import OrtInt8Config
    from agd_deploy.runtimes.targets import lower
    from agd_deploy.runtimes.tensorrt import Tolerance, compare_with_ort
    from agd_deploy.runtimes.timing import Stats, time_artifacts
    from agd_deploy.space import build

    arch = _arch(args.tiny)
    torch.manual_seed(0)
    net = build(arch).eval()
    rng = np.random.default_rng(0)
    calib = [rng.random(tuple(arch.input_shape), dtype=np.float32) for _ in range(4)]
    cfg = OrtInt8Config.from_dict(default_lowering("tensorrt-cuda-int8"))
    p = lower("tensorrt-cuda-int8", net, torch.from_numpy(calib[0]), work, calib=calib, name="net", int8_config=cfg)
    cmp = compare_with_ort(p, calib[:2], Tolerance())
    ms = Stats.from_samples(time_artifacts("tensorrt-cuda-int8", {"net": p}, 10)["net"])
    return {"compare": cmp.to_dict(), "summary": cmp.describe(), "min_ms": round(ms.min_ms, 4),
            "p50_ms": round(ms.p50_ms, 4)}


# --- 3. upscale -------------------------------------------------------------------------------------------------

def part_upscale(args, cuda: bool, out_dir: Path, ckpt: str | None) -> dict:
    import numpy as np
    import torch

    from agd_deploy.space import build

    side = 64 if args.tiny else 512
    img = _images(1, side, seed=3)[0]
    if ckpt and have("safetensors"):
        from agd_deploy.train.ckpt import load_ckpt

        model, arch = load_ckpt(ckpt)
        what = f"the CKPT trained above ({ckpt})"
    else:
        arch = _arch(args.tiny)
        torch.manual_seed(0)
        model, what = build(arch), "the built arch, untrained weights (no CKPT from part 1)"
    model.eval()
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    res: dict = {"input": [side, side], "model": what, "runs": []}
    tiled = None
    try:
        from agd_deploy.data.tiles import tiled_apply as tiled
    except Exception as e:  # noqa: BLE001 -- agd_deploy.data needs PIL
        res["note"] = f"tiled path not run ({_line(e)})"
    y_ref = None
    for dev_name in (["cuda"] if cuda else []) + ["cpu"]:
        dev = torch.device(dev_name)
        m = model.to(dev)
        gpu = dev.type == "cuda"
        for dtype in ([torch.float16, torch.float32] if gpu else [torch.float32]):
            mm = m.to(dtype)
            # the CPU takes seconds per 512x512 image: once, tiled as `agd upscale` runs it
            for mode in (["tiled", "whole"] if tiled and gpu else ["tiled"] if tiled else ["whole"]):
                def fn(t):
                    with torch.no_grad():
                        return mm(t.to(dev, dtype)).float()

                def once():
                    if mode == "tiled":
                        return tiled(fn, x.to(dev), 4, tile=192, overlap=16)
                    return fn(x.to(dev))
                if gpu:
                    once()  # warm-up (cuDNN picks its kernels)
                    _sync(dev)
                times = []
                for _ in range(5 if gpu else 1):
                    t0 = time.perf_counter()
                    y = once()
                    _sync(dev)
                    times.append((time.perf_counter() - t0) * 1e3)
                y = y.clamp(0, 1).cpu()
                if y_ref is None:
                    y_ref = y
                diff = float((y - y_ref).abs().max())
                res["runs"].append({"device": dev_name, "dtype": str(dtype).replace("torch.", ""), "mode": mode,
                                    "min_ms": round(min(times), 2), "output": list(y.shape[2:]),
                                    "max_abs_diff_vs_first": round(diff, 5)})
        model = model.float().cpu()
    out = (y_ref[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    if have("PIL"):
        from PIL import Image

        Image.fromarray(out).save(out_dir / "upscale.png")
        Image.fromarray(img).save(out_dir / "upscale_input.png")
        res["files"] = ["upscale_input.png", "upscale.png"]
    return res


# --- driver -------------------------------------------------------------------------------------------------

def _line(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"


def write(out_dir: Path, results: dict) -> None:
    from agd_deploy.utils import atomic_write_json, atomic_write_text

    atomic_write_json(out_dir / "gpu_check.json", results)
    atomic_write_text(out_dir / "gpu_check.md", markdown(results))


def markdown(r: dict) -> str:
    env = r.get("env", {})
    lines = [f"# GPU check ({r.get('started')})", "",
             f"- machine: {env.get('device', {}).get('device_class')} (GPU: {env.get('gpu')})",
             f"- python {env.get('python')}, torch {env.get('torch')}, CUDA {env.get('cuda')}",
             f"- missing imports: {', '.join(r.get('missing', {})) or 'none'}", ""]
    t = r.get("train", {})
    if t:
        lines += ["## Training throughput (same arch, batch, patch, steps)", "",
                  "| path | device | amp | steps/s | patches/s |", "|---|---|---|---|---|"]
        for x in t.get("own_loop", []):
            lines.append(f"| own loop | {x['device']} | {x['amp']} | {x['steps_per_s']} | {x['patches_per_s']} |")
        for x in t.get("agd_train", []):
            if "error" in x:
                lines.append(f"| agd train | {x['device']} | off | failed: {x['error']} | |")
            else:
                lines.append(f"| agd train | {x['device']} | off | {x['steps_per_s']} | {x['patches_per_s']} |")
        for k in ("cuda_vs_cpu_own_loop", "cuda_vs_cpu_agd_train"):
            if k in t:
                lines.append(f"\n{k}: {t[k]}x")
        lines += [f"- {n}" for n in t.get("notes", [])] + [""]
    tb = r.get("table", {})
    if tb:
        lines += [f"## Latency table {tb.get('target')}", ""]
        if "error" in tb:
            lines.append(f"failed: {tb['error']}")
        elif "skipped" in tb:
            lines.append(tb["skipped"])
        else:
            lines.append(f"{tb.get('entries')} entries in {tb.get('seconds')} s, noise {tb.get('noise')}, clock "
                         f"{tb.get('clock')}, folder {tb.get('device_class')}; {tb.get('note', '')}")
            v = tb.get("validation")
            if v:
                lines += ["", "| predictor | within ±10% | MAPE | Spearman |", "|---|---|---|---|"]
                for k in ("lut", "flops"):
                    m = v[k]
                    lines.append(f"| {k} | {m['within_10pct'] * 100:.0f}% | {m['mape'] * 100:.1f}% | "
                                 f"{m['spearman']:.3f} |")
                lines.append(f"\n{v['n']} random nets; repeatability Spearman {v['repeatability']['spearman']:.3f}")
        lines.append("")
    trt = r.get("tensorrt", {})
    if trt:
        lines += ["## TensorRT (Polygraphy)", "", trt.get("summary") or trt.get("skipped") or trt.get("error", ""), ""]
    up = r.get("upscale", {})
    if up:
        lines += [f"## Upscale {up.get('input')} ({up.get('model')})", "", "| device | dtype | mode | min ms |",
                  "|---|---|---|---|"]
        lines += [f"| {x['device']} | {x['dtype']} | {x['mode']} | {x['min_ms']} |" for x in up.get("runs", [])]
        if "error" in up:
            lines.append(f"failed: {up['error']}")
        lines.append("")
    lines.append(f"seconds per part: {r.get('seconds')}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT") or "benchmarks/results/gpu_check")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes: seconds, proves the paths run")
    ap.add_argument("--steps", type=int, default=30, help="training steps per device")
    ap.add_argument("--rounds", type=int, default=10, help="table timing rounds")
    ap.add_argument("--n", type=int, default=30, help="validation nets")
    ap.add_argument("--val-rounds", type=int, default=5, help="validation rounds per pass (two passes)")
    ap.add_argument("--jobs", type=int, default=4, help="conversion processes")
    ap.add_argument("--parts", default="train,table,tensorrt,upscale")
    args = ap.parse_args(argv)
    out_dir = Path(args.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="agd-gpu-check-"))
    # a cache of its own (no platformdirs needed; lowered nets and engines stay out of the results folder: the
    # table JSON is copied there)
    os.environ.setdefault("AGD_CACHE_DIR", str(work / "cache"))

    ok, missing = probe_imports()
    HAVE.update(ok)
    print(f"imports: {len(ok)} of {len(PROJECT_IMPORTS)}; missing: "
          + (", ".join(f"{m} ({why})" for m, why in missing.items()) or "none"), flush=True)
    if not have("torch", "numpy"):
        print("torch and numpy are needed for every part; nothing to run", flush=True)
        return 1
    import torch

    from agd_deploy.device import identify

    cuda = torch.cuda.is_available()
    ident = identify()
    results: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "args": vars(args), "imports": ok,
                     "missing": missing, "seconds": {},
                     "env": {"python": platform.python_version(), "torch": torch.__version__,
                             "cuda": torch.version.cuda,
                             "cuda_available": cuda, "gpu": ident.gpu, "device": ident.to_dict(),
                             "cpu_threads": torch.get_num_threads()}}
    if have("onnxruntime"):
        import onnxruntime as ort

        results["env"]["onnxruntime_providers"] = ort.get_available_providers()
    write(out_dir, results)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    for name in parts:
        t0 = time.perf_counter()
        print(f"[{name}] ...", flush=True)
        try:
            if name == "train":
                results["train"] = part_train(args, cuda, work)
            elif name == "table":
                results["table"] = part_table(args, cuda, out_dir)
            elif name == "tensorrt":
                results["tensorrt"] = part_tensorrt(args, cuda, work)
            elif name == "upscale":
                ck = next((x["ckpt"] for x in results.get("train", {}).get("agd_train", [])
                           if x.get("device") == ("cuda" if cuda else "cpu") and "ckpt" in x), None)
                results["upscale"] = part_upscale(args, cuda, out_dir, ck)
            else:
                results[name] = {"error": f"unknown part {name!r}"}
        except Exception as e:  # noqa: BLE001 -- one part failing must not lose the others
            results[name] = {**results.get(name, {}), "error": _line(e), "traceback": traceback.format_exc()[-2000:]}
            print(f"[{name}] failed: {_line(e)}", flush=True)
        results["seconds"][name] = round(time.perf_counter() - t0, 1)
        write(out_dir, results)
        print(f"[{name}] {results['seconds'][name]} s", flush=True)
    print((out_dir / "gpu_check.md").read_text(), flush=True)
    print(f"wrote {out_dir / 'gpu_check.json'} and gpu_check.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
