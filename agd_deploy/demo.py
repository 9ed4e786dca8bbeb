"""`agd demo`: the whole product on the embedded default (x4 SR, Real-ESRGAN x4plus teacher, built-in images).

    profile -> validate -> search -> train -> export -> measure -> evaluate -> crops -> summary + report

`agd demo --task denoise` (DemoConfig.for_task("denoise")) runs the same stages on the ST frame (image-to-image,
scale 1): a table of the st space at 64x64, search/denoise_tiny.yaml under the ms budget, distillation from
waifu2x CUNet noise level 2 (an ncnn black box) on JPEG q50 copies of the built-in images, and PSNR/SSIM (RGB)
of the student, its int8 artifact, the teacher and the do-nothing baseline (the JPEG input itself) vs the
clean held-out images and vs the teacher.

Each stage calls its layer's library function and leaves its artifact in the run folder (docs/ARCHITECTURE.md, Contracts,
"A run folder"). A stage also writes a done-marker `RUN/.stages/<stage>.json` holding a key (the stage's
settings and the sha256 of the files it read) and its result; a rerun skips a stage whose marker key still
matches and whose outputs are still there, so an interrupted or repeated demo reuses the finished stages and
redoes only what changed downstream."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import AgdError
from .verify.status import Kind, Status
from .utils import atomic_write_json, atomic_write_text, check_writable, format_shape, sha256_file

DEFAULT_FORMATS = ("onnx", "onnx-int8", "tflite-int8", "coreml-int8")
TEACHER = "realesrgan-x4plus"
TASKS = ("sr", "denoise")


@dataclass
class DemoConfig:
    out: Path = Path("agd-demo")
    target: str = "ort-cpu-int8"
    budget_ms: float | None = None
    budget_frac: float | None = 0.5
    formats: list[str] = field(default_factory=lambda: list(DEFAULT_FORMATS))
    recipe: str = "sr_x4_tiny"
    input_shape: list[int] = field(default_factory=lambda: [1, 3, 64, 64])
    threads: int = 1            # threads of the LUT and of every latency measurement
    train_threads: int = 2      # torch threads for search/train/eval
    profile_rounds: int = 6     # fewer than `agd profile`'s 20: the demo trades LUT noise for minutes
    validate_n: int = 8         # random whole nets in the brief LUT validation
    validate_rounds: int = 3     # per pass (two passes)
    measure_rounds: int = 20
    train_steps: int = 500
    train_batch: int = 8
    train_patch: int = 24
    train_lr: float = 1.5e-3    # a short schedule takes a high rate (with train's warm-up and gradient clipping)
    shipped_lut: bool = False   # start from the shipped LUT (checked on this machine like any other table)
    transfer_probes: int = 10   # probe nets of a few-shot transfer from another device's table
    min_within_10pct: float = 0.9  # the brief validation's bar: below it, re-profile once, then stop
    teacher: str = TEACHER
    eval_side: int = 256        # held-out images are centre-cropped to this HR side (LR 64x64)
    native_side: int = 64       # the native protocol's input: a centre crop of each held-out photo, not downscaled
    # The SR student is distilled on native+bicubic, 16 variants, MSE: half the draws native-resolution crops of
    # the photos (what `agd upscale` is fed), which beat bicubic-only training on native, degraded and clean
    # inputs on two seeds (benchmarks/results/degradation-native-anywhere.md). None: the teacher's default.
    train_degradation: str | None = "native+bicubic"
    train_variants: int = 16    # degraded variants per training image, each one teacher run per image, once (the
                                # bicubic share repeats one LR per image: run once); the search keeps its recipe's
    train_loss: str = "mse"     # TrainConfig.loss
    device: str = "auto"        # search/train/teacher device (train.device); latency is measured on the target
    amp: str = "auto"           # mixed precision of search and train (train.device; on the CPU train times it)
    task: str = "sr"            # sr | denoise (for_task)
    space: str = "sr"           # the search space of the task's recipe

    @classmethod
    def for_task(cls, task: str, **kw) -> "DemoConfig":
        """The demo's settings for a task: `sr` (the defaults) or `denoise` (the ST frame, see the module doc).
        The denoise schedule is short for the 15-minute goal on 2 cores: 30 search steps at 32x32 patches, 200
        training steps, a 6-round table; the student is a demo, not a converged one (benchmarks/st_distill.py
        trains longer). Its budget is 0.15 of the st space's ms range: the CycleGAN-sized frame reaches ~3.5
        GMACs at 64x64, above the CUNet teacher's ~2.3 (benchmarks/results/st_distill.md), so half the range
        would not compress the teacher."""
        if task not in TASKS:
            raise AgdError(f"unknown demo task {task!r}: {', '.join(TASKS)}")
        if task == "denoise":
            base = dict(task="denoise", space="st", recipe="denoise_tiny", teacher="waifu2x-cunet-denoise2",
                        formats=["onnx", "onnx-int8", "tflite-int8"], budget_frac=0.15, train_steps=200,
                        train_batch=4, train_patch=32, train_lr=1e-3, train_variants=1, train_degradation=None,
                        train_loss="l1")
            base.update({k: v for k, v in kw.items() if v is not None or k == "budget_ms"})
            kw = base
        return cls(**kw)


def _log(msg: str) -> None:
    """A stage's progress note: the agd_deploy logger's info (`agd -v demo` shows them)."""
    from .log import get

    get(__name__).info(msg)


def _key(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Stages:
    """Runs stages once: a stage whose done-marker key matches and whose outputs exist is reused."""

    def __init__(self, run: Path, log: Callable[[str], None] = _log):
        self.run, self.log = run, log
        self.dir = run / ".stages"
        self.seconds: dict[str, float] = {}   # seconds each stage took when it was computed
        self.reused: list[str] = []
        self.wall: dict[str, float] = {}      # seconds each stage took in this invocation

    def reuse(self, name: str, key: dict[str, Any], outputs: list[Path] = ()) -> dict[str, Any] | None:
        """The result of `name` finished earlier with this key (its outputs still there), recorded as reused;
        else None, and nothing runs."""
        marker = self.dir / f"{name}.json"
        t0 = time.perf_counter()
        if not marker.is_file():
            return None
        try:
            old = json.loads(marker.read_text())
        except (OSError, ValueError):
            return None
        if old.get("key") != _key(key) or not all(Path(p).exists() for p in outputs):
            return None
        self.seconds[name] = float(old.get("seconds", 0.0))
        self.reused.append(name)
        self.wall[name] = time.perf_counter() - t0
        self.log(f"[{name}] reused (finished earlier in {self.seconds[name]:.1f} s)")
        return old["result"]

    def __call__(self, name: str, key: dict[str, Any], fn: Callable[[bool], dict[str, Any]],
                 outputs: list[Path] = ()) -> dict[str, Any]:
        """Run fn(resume) unless reused. resume is True only when an interrupted run of this stage had the same
        key (its partial state may be continued); otherwise the stage's libraries must start over."""
        marker = self.dir / f"{name}.json"
        k = _key(key)
        t0 = time.perf_counter()
        done = self.reuse(name, key, outputs)
        if done is not None:
            return done
        started = self.dir / f"{name}.started"
        resume = started.is_file() and started.read_text().strip() == k
        self.log(f"[{name}] {'resuming' if resume else 'running'} ...")
        atomic_write_text(started, k)
        result = fn(resume)
        started.unlink(missing_ok=True)
        dt = time.perf_counter() - t0
        self.seconds[name] = self.wall[name] = dt
        atomic_write_json(marker, {"stage": name, "key": k, "inputs": key, "seconds": round(dt, 2),
                                   "result": result})
        self.log(f"[{name}] done in {dt:.1f} s")
        return result


# ---------------------------------------------------------------------------------------------- checks

def check_out(out: Path) -> None:
    """An unwritable --out is one line, before any work."""
    check_writable(out)


def check_target(target: str) -> None:
    """Unknown targets and targets whose runtime is missing here fail before any work."""
    from .runtimes.targets import get_target

    t = get_target(target)  # AgdError / MissingRuntimeError, one line
    if t.device not in ("cpu", "cuda"):
        raise AgdError(f"agd demo profiles and measures on this machine; target {target} runs on {t.device}")


def target_format(target: str, formats: list[str]) -> str:
    """The export format whose artifact runs on `target` (ort-cpu-int8 -> onnx-int8)."""
    from .export import EXPORTERS

    for name, cls in EXPORTERS.items():
        if cls.target == target:
            return name
    raise AgdError(f"no export format runs on target {target}")


# ---------------------------------------------------------------------------------------------- stages

def _device_key() -> str:
    """What makes a LUT valid on this machine (`agd_deploy.device`: ISA, family/model, caches, cores, GPU)."""
    from .device import identify

    return identify().device_key


def pick_table(cfg: DemoConfig, identity=None):
    """The table the demo starts from (`profiling.tables.Found`, or None): this device's if any, else the best
    other one; with `shipped_lut`, the shipped one of this device, else any shipped one."""
    from .profiling import tables

    shape = list(cfg.input_shape)
    if not cfg.shipped_lut:
        return tables.find(cfg.target, cfg.space, shape, cfg.threads, identity=identity)
    found = next((f for f in tables.candidates(cfg.target, cfg.space, shape, cfg.threads, identity=identity)
                  if f.root == "shipped"), None)
    if found is None:
        raise AgdError(f"no shipped latency table for {cfg.target} at {format_shape(shape)} t{cfg.threads}; "
                       "run without --shipped-lut to profile this machine")
    return found


def stage_profile(cfg: DemoConfig, dest: Path, force_profile: bool = False, since: float | None = None
                  ) -> dict[str, Any]:
    """A latency table that predicts this machine, copied to `dest`:

    1. one measured on (or checked or transferred to) this device: the user's tables, then the shipped ones;
    2. else one of another device, checked here (`profiling.check`): if it fits, or fits after one speed
       factor, its copy for this device;
    3. else a few-shot transfer from it (`transfer_probes` probe nets), else a full profile (`profile_rounds`).
    What 2 and 3 make is saved in this device's folder of the user's tables, so the next demo finds it in 1.
    `force_profile` (after a failed validation): profile with `agd profile`'s 20 rounds, whatever exists,
    unless another agd process wrote this device's table after `since` (epoch seconds: when this demo started
    judging the old table; default now), e.g. while this one validated or waited: then that one. `shipped_lut`:
    start from the shipped table (checked like any other)."""
    from .profiling import tables
    from .profiling.check import adopt, check_table
    from .profiling.profile import ProfileConfig, profile
    from .profiling.transfer import transfer

    shape, verdict = list(cfg.input_shape), None
    cache_path = tables.user_path(cfg.target, cfg.space, shape, cfg.threads)
    from .utils import file_lock

    # two demos on one cache make this device's table once: the second waits, then finds the first one's table
    since = time.time() if since is None else since
    with file_lock(cache_path, "the latency table of this device"):
        fresh = force_profile and cache_path.is_file() and cache_path.stat().st_mtime > since
        found = None if force_profile else pick_table(cfg)
        if fresh:  # another demo profiled this machine since this one began judging its table: use that one
            _log(f"  using the table another agd process just profiled: {cache_path}")
            source, src_path, verdict = "profiled", cache_path, "profiled"
        elif found is not None and found.this_device:
            _log(f"  using the latency table of this device: {found.path}")
            source, src_path, verdict = f"this device ({found.root})", found.path, "this-device"
        elif found is not None:
            _log(f"  latency table {found.describe()}: not this device; checking it (<= 30 s) ...")
            res = check_table(found.lut, budget_s=30.0)
            verdict = res.verdict
            _log(f"  check: {res.verdict} (speed ratio {res.speed_ratio:.3f}, spread {res.spread * 100:.1f}%): "
                 f"{res.reason}")
            if res.usable:
                src_path, source = adopt(found.lut, res).path, f"{res.verdict} from {found.path}"
            else:
                _log(f"  transferring it to this device with {cfg.transfer_probes} probe nets ...")
                transfer(found.lut, probes=cfg.transfer_probes, progress=True).table.save(cache_path)
                src_path, source = cache_path, f"transferred from {found.path}"
        else:
            _log(f"  profiling {cfg.target} on this machine (every block of the {cfg.space} space, interleaved) ...")
            # after a failed check, `agd profile`'s full 20 rounds: the demo's few rounds were too noisy to
            # validate on a noisy VM (block noise 11.6% at 6 rounds, 62% of nets within ±10%)
            rounds = max(cfg.profile_rounds, 20) if force_profile else cfg.profile_rounds
            profile(ProfileConfig(target=cfg.target, space=cfg.space, input_shape=shape, threads=cfg.threads,
                                  rounds=rounds), cache_path, progress=True)
            source, src_path, verdict = "profiled", cache_path, "profiled"
    dest.parent.mkdir(parents=True, exist_ok=True)
    d = json.loads(Path(src_path).read_text())
    d["source"] = f"{source}: {src_path}"
    atomic_write_json(dest, d)
    return {"table": str(dest), "source": source, "from": str(src_path), "sha256": sha256_file(dest),
            "check": verdict}


def _brief_json(out_json: Path) -> Path:
    """Where stage_validate keeps the brief check beside `out_json` (which holds the pooled one after `extend`)."""
    return out_json.with_name(out_json.stem + ".brief.json")


def stage_validate(cfg: DemoConfig, table: Path, out_json: Path, out_png: Path, extend: bool = False
                   ) -> dict[str, Any]:
    """The brief validation (`validate_n` nets, seed 1); `extend`: 2 x `validate_n` more nets (seed 2) pooled
    with the brief one already in `out_json`."""
    from .profiling.lut import LUT
    from .profiling.validate import pool, validate

    lut = LUT.load(table)
    brief = _brief_json(out_json)
    if not extend:
        rep = validate(lut, n=cfg.validate_n, seed=1, rounds=cfg.validate_rounds, progress=True, plot=out_png)
        atomic_write_json(brief, rep)
    else:
        first = json.loads(brief.read_text())
        more = validate(lut, n=2 * cfg.validate_n, seed=2, rounds=cfg.validate_rounds, progress=True)
        rep = pool([first, more], plot=out_png)
    atomic_write_json(out_json, rep)
    return {"lut": rep["lut"], "flops": rep["flops"], "n": rep["n"]}


def stage_search(cfg: DemoConfig, table: Path, out: Path, resume: bool = False) -> dict[str, Any]:
    """The search library's entry point, under the demo's budget; leaves out/arch.json and out/log.jsonl.
    The derived arch is measured here and re-derived while over (`agd search --measure`): the table passed
    its check on this machine, and the device has the last word on the budget."""
    import torch

    from .profiling.lut import LUT
    from .profiling.validate import measurer
    from .search.run import search as run_search

    torch.set_num_threads(cfg.train_threads)
    scfg = _recipe(cfg)
    res = run_search(scfg, target=cfg.target, table=str(table), budget_ms=cfg.budget_ms,
                     budget_frac=None if cfg.budget_ms is not None else cfg.budget_frac, out=str(out),
                     resume=resume, progress=True, device=cfg.device, amp=cfg.amp,
                     measure=measurer(LUT.load(table), progress=True))
    return {"arch": str(out / "arch.json"), "budget_ms": res.get("budget_ms"), "predicted_ms": res.get("predicted_ms"),
            "measured_ms": res.get("measured_ms"), "gmacs": res.get("gmacs"), "params": res.get("params")}


def stage_train(cfg: DemoConfig, arch_path: Path, out: Path, resume: bool = False) -> dict[str, Any]:
    import torch

    from .data import builtin_images
    from .space import Arch
    from .teachers import load_teacher
    from .train import TrainConfig, train

    torch.set_num_threads(cfg.train_threads)
    arch = Arch.load(arch_path)
    # the search recipe's HR crop size: training reuses the teacher outputs the search already cached
    max_side = _recipe(cfg).max_side
    tc = TrainConfig(steps=cfg.train_steps, batch=cfg.train_batch, patch=min(cfg.train_patch, max_side // 4),
                     lr=cfg.train_lr,
                     threads=cfg.train_threads, max_side=max_side, device=cfg.device, amp=cfg.amp,
                     degradation=cfg.train_degradation, variants=cfg.train_variants, loss=cfg.train_loss)
    res = train(arch, load_teacher(cfg.teacher), builtin_images("train"), tc, out, resume=resume, progress=True)
    # (the built-in grey photos are replicated to RGB on purpose, also for the ncnn teacher: data/images.py)
    return {"ckpt": str(out), "steps": res.get("steps"), "final_loss": res.get("final_loss"),
            "degradation": res.get("degradation"), "variants": res.get("variants"),
            "amp": res.get("amp"), "amp_probe": res.get("amp_probe"),  # CPU: what --amp auto read (train.json)
            "weights_sha256": sha256_file(out / "generator.safetensors")}


def stage_export(cfg: DemoConfig, ckpt: Path, out: Path) -> dict[str, Any]:
    from .deploy import run_export

    manifest, _code = run_export(str(ckpt), list(cfg.formats), out, input_shape=list(cfg.input_shape),
                                 threads=cfg.threads, progress=True, log=_log)
    return {"manifest": str(out / "manifest.json"),
            "status": {e["format"]: e.get("status") for e in manifest["artifacts"]}}


def stage_measure(cfg: DemoConfig, artifact: Path, table: Path, budget_ms: float | None = None) -> dict[str, Any]:
    """The artifact itself on the target, timed as the LUT's entries were: the shared interleaved loop, the
    table's clock (thread CPU time at one thread) and its statistic. Over `budget_ms`, it is timed once more and
    the samples pooled, as the search's budget check does (search.derive.fit_measured): host load only ever
    slows a run, so one slow window should not decide the verdict; `timings` says how many were pooled.
    The table's smallest reference net is timed beside it, interleaved: its time here over the table's says how
    fast this machine runs *now* against the table (a shared VM's speed moves with its host's load), so a
    prediction that misses can be told apart from a table that no longer fits (`reference_net`)."""
    from .profiling.check import reference_archs_of
    from .profiling.lut import LUT
    from .profiling.profile import table_lowering
    from .profiling.validate import lower_archs
    from .runtimes.timing import Stats, time_artifacts

    lut = LUT.load(table)
    arts: dict[str, Path] = {"net": artifact}
    refs = reference_archs_of(lut)[:1]
    if refs:
        arts["reference"] = lower_archs([refs[0][0]], lut.target, progress=False, int8=table_lowering(lut))[0]

    def timed() -> dict[str, list[float]]:
        got = time_artifacts(cfg.target, arts, cfg.measure_rounds, threads=cfg.threads, clock=lut.clock, passes=2)
        return {k: list(v) for k, v in got.items()}

    samples, timings = timed(), 1
    st = Stats.from_samples(samples["net"])
    if budget_ms is not None and st.get(lut.statistic) > budget_ms:
        samples, timings = {k: v + w for (k, v), w in zip(samples.items(), timed().values())}, 2
        st = Stats.from_samples(samples["net"])
    out = {"artifact": str(artifact), "measured_ms": st.get(lut.statistic), "statistic": lut.statistic,
           "clock": lut.clock, "min_ms": st.get("min_ms"), "p50_ms": st.get("p50_ms"), "p90_ms": st.get("p90_ms"),
           "timings": timings, "samples": len(samples["net"]), "sha256": sha256_file(artifact)}
    if refs:
        here = Stats.from_samples(samples["reference"]).get(lut.statistic)
        out["reference_net"] = {"table_ms": round(refs[0][1], 4), "here_ms": round(here, 4),
                                "speed_factor": round(here / refs[0][1], 4)}
    return out


def stage_evaluate(cfg: DemoConfig, ckpt: Path, int8_artifact: Path | None, out_json: Path) -> dict[str, Any]:
    """PSNR/SSIM on the held-out built-in images, vs ground truth and vs the teacher, for the four models (the
    bicubic protocol, the published tables'); then the student (fp32, int8) on the two real-input protocols
    (train/evaluate.py: degraded held-out LR, and native-resolution crops of the photos), each with bicubic's
    fidelity to the teacher on the same inputs."""
    import torch

    from .train import evaluate

    torch.set_num_threads(cfg.train_threads)
    images = heldout_images(cfg)
    models = {"bicubic": "bicubic", "student": str(ckpt), "teacher": cfg.teacher}
    if int8_artifact is not None:
        models["student_int8"] = str(int8_artifact)
    full: dict[str, Any] = {}
    for name, spec in models.items():
        _log(f"  evaluating {name}")
        teacher = None if name == "teacher" else cfg.teacher
        full[name] = evaluate(spec, images, scale=4, teacher=teacher, progress=True)
    keys = ("psnr", "ssim", "psnr_vs_teacher", "ssim_vs_teacher")

    def brief(r):
        return {k: round(r[k], 4) for k in keys if r.get(k) is not None}

    protocols: dict[str, Any] = {"bicubic": {n: brief(full[n]) for n in ("student", "student_int8", "bicubic")
                                             if n in full}}
    full["protocols"] = {}
    for proto, imgs in (("degraded", images), ("native", native_images(cfg))):
        res = {}
        for name, spec in models.items():
            if not name.startswith("student"):
                continue
            _log(f"  evaluating {name} ({proto} inputs)")
            res[name] = evaluate(spec, imgs, scale=4, teacher=cfg.teacher, progress=True, protocol=proto)
        full["protocols"][proto] = res
        protocols[proto] = {n: brief(r) for n, r in res.items()}
        protocols[proto]["bicubic"] = {k: round(v, 4) for k, v in res["student"]["bicubic"].items()}
        if proto == "degraded":
            protocols[proto]["degradation"] = res["student"]["degradation"]
    atomic_write_json(out_json, full)
    out = {n: brief(full[n]) for n in models}
    out["protocols"] = protocols
    return out


def stage_evaluate_st(cfg: DemoConfig, ckpt: Path, arts: dict[str, Path], out_json: Path) -> dict[str, Any]:
    """The ST task's fidelity (train/evaluate.py at scale 1: RGB, the whole image): the student (fp32 torch
    and every exported artifact), the teacher vs the clean held-out crops, and the do-nothing baseline (the
    degraded input itself), each vs the clean image and vs the teacher's output on the same degraded input.
    No native protocol: at scale 1 the degraded protocol's input is what a user feeds the model."""
    import torch

    from .train import evaluate

    torch.set_num_threads(cfg.train_threads)
    images, deg = heldout_images(cfg), train_degradation(cfg)
    models = {"student": str(ckpt), **{f"student[{f}]": str(p) for f, p in sorted(arts.items())},
              "teacher": cfg.teacher}
    full: dict[str, Any] = {}
    for name, spec in models.items():
        _log(f"  evaluating {name}")
        full[name] = evaluate(spec, images, scale=1, teacher=None if name == "teacher" else cfg.teacher,
                              progress=True, protocol="degraded", degradation=deg)
    keys = ("psnr", "ssim", "psnr_vs_teacher", "ssim_vs_teacher")

    def brief(r):
        return {k: round(r[k], 4) for k in keys if r.get(k) is not None}

    inp = {k: round(v, 4) for k, v in full["student"]["input"].items()}
    out: dict[str, Any] = {"student": brief(full["student"]), "teacher": brief(full["teacher"]), "input": inp,
                           "bicubic": inp,  # at scale 1 bicubic is the input itself (the Contract's key)
                           "students": {n: brief(r) for n, r in full.items() if n.startswith("student")}}
    if "student[onnx-int8]" in full:
        out["student_int8"] = brief(full["student[onnx-int8]"])
    out["protocols"] = {"degraded": {"student": out["student"], "student_int8": out.get("student_int8"),
                                     "bicubic": {k: v for k, v in inp.items() if "teacher" in k},
                                     "degradation": full["student"]["degradation"]}}
    rows = [{"name": r["name"], "input": r["input"], "psnr": r.get("input_psnr"), "ssim": r.get("input_ssim"),
             "psnr_vs_teacher": r.get("bicubic_psnr_vs_teacher"), "ssim_vs_teacher": r.get("bicubic_ssim_vs_teacher")}
            for r in full["student"]["images"]]
    atomic_write_json(out_json, {**full, "input": {"model": "input (do nothing)", "scale": 1, "metric": "rgb",
                                                   **full["student"]["input"], "images": rows}})
    return out


def stage_crops_st(cfg: DemoConfig, ckpt: Path, int8_artifact: Path | None, out: Path) -> dict[str, Any]:
    """Each held-out crop: the degraded input, the clean image, the teacher's output and the student's (fp32,
    int8), as PNGs for the report; inputs and the teacher's output come from the evaluation's teacher cache."""
    from .data import TeacherCache
    from .teachers import load_teacher
    from .train import load_upscaler
    from .train.evaluate import EVAL_SEED

    cache = TeacherCache(load_teacher(cfg.teacher), heldout_images(cfg), progress=False,
                         degradation=train_degradation(cfg), seed=EVAL_SEED)
    ups = {"student": load_upscaler(str(ckpt), 1)}
    if int8_artifact is not None:
        ups["student_int8"] = load_upscaler(str(int8_artifact), 1)
    names = []
    for smp in cache:
        pics = {"lr": smp.lr, "hr": smp.hr, "teacher": smp.teacher, **{k: up.upscale(smp.lr) for k, up in ups.items()}}
        _save_pngs(out / smp.name, pics)
        names.append(smp.name)
    return {"images": names}


def native_images(cfg: DemoConfig):
    """The native protocol's inputs: centre native_side x native_side crops of the held-out photos at their own
    resolution (no downscale), the size of the artifacts' input."""
    from .data import Images, builtin_images, center_crop

    imgs = builtin_images("heldout")
    return Images(imgs.names, [center_crop(a, cfg.native_side) for a in imgs.arrays], f"{imgs.source}, centre "
                  f"{cfg.native_side}x{cfg.native_side} at native resolution")


def heldout_images(cfg: DemoConfig):
    """The built-in held-out images, centre-cropped to eval_side x eval_side HR: the teacher (~18 M MACs per LR
    pixel) then costs seconds, not minutes, and the LR crop is the artifacts' fixed input size (no tiling)."""
    from .data import Images, builtin_images, center_crop

    imgs = builtin_images("heldout")
    return Images(imgs.names, [center_crop(a, cfg.eval_side) for a in imgs.arrays], f"{imgs.source}, centre "
                  f"{cfg.eval_side}x{cfg.eval_side}")


def _save_pngs(folder: Path, pics: dict[str, Any]) -> None:
    """`folder/<name>.png` for each uint8 HxWx3 image of `pics`, written atomically (the report reads them)."""
    import numpy as np
    from PIL import Image

    from .utils import atomic_path

    for k, a in pics.items():
        with atomic_path(folder / f"{k}.png", ".png") as tmp:
            Image.fromarray(np.ascontiguousarray(a)).save(tmp, format="PNG")


def stage_crops(cfg: DemoConfig, ckpt: Path, int8_artifact: Path | None, out: Path) -> dict[str, Any]:
    """Each held-out crop upscaled by every model, saved as PNGs for the report. LR, ground truth and the
    teacher's output come from the teacher cache the evaluation filled."""
    import numpy as np

    from .data import TeacherCache
    from .teachers import load_teacher
    from .train import load_upscaler

    cache = TeacherCache(load_teacher(cfg.teacher), heldout_images(cfg), progress=False)
    ups = {"bicubic": load_upscaler("bicubic"), "student": load_upscaler(str(ckpt))}
    if int8_artifact is not None:
        ups["student_int8"] = load_upscaler(str(int8_artifact))
    native = TeacherCache(load_teacher(cfg.teacher), native_images(cfg), progress=False, degradation="native")
    names = []
    for smp, folder in [(s, s.name) for s in cache] + [(s, f"{s.name}@native") for s in native]:
        pics = {"lr": np.repeat(np.repeat(smp.lr, 4, 0), 4, 1), "teacher": smp.teacher}
        if smp.hr.size:  # native inputs have no ground truth
            pics["hr"] = smp.hr
        pics.update({k: up.upscale(smp.lr) for k, up in ups.items()})
        _save_pngs(out / folder, pics)
        names.append(folder)
    return {"images": names}


# ---------------------------------------------------------------------------------------------- the demo

def run_demo(cfg: DemoConfig, log: Callable[[str], None] = _log) -> dict[str, Any]:
    """Run (or resume) the demo in cfg.out; returns summary.json's object."""
    from .report import write_report

    t_start = time.perf_counter()
    run = Path(cfg.out)
    fmt = _formats(cfg)
    check_out(run)
    stages = Stages(run, log)
    table = run / "profile" / f"{cfg.target}-{cfg.space}-{cfg.input_shape[2]}x{cfg.input_shape[3]}-t{cfg.threads}.json"
    prof, val = _table_stages(cfg, run, table, stages, log)                      # 1. profile + validation
    sdir, tdir, edir = run / "search", run / "train", run / "export"                # 2. search
    srch = stages("search", {"table": prof["sha256"], "recipe": _recipe_key(cfg.recipe), "budget_ms": cfg.budget_ms,
                             "budget_frac": None if cfg.budget_ms is not None else cfg.budget_frac},
                  lambda resume: stage_search(cfg, table, sdir, resume), [sdir / "arch.json", sdir / "log.jsonl"])
    trn = stages("train", {"arch": sha256_file(sdir / "arch.json"), "steps": cfg.train_steps,       # 3. distill
                           "batch": cfg.train_batch, "patch": cfg.train_patch, "lr": cfg.train_lr,
                           "degradation": cfg.train_degradation, "variants": cfg.train_variants,
                           "loss": cfg.train_loss,
                           "teacher": cfg.teacher},
                 lambda resume: stage_train(cfg, sdir / "arch.json", tdir, resume), [tdir / "generator.safetensors"])
    stages("export", {"weights": trn["weights_sha256"], "formats": cfg.formats, "shape": cfg.input_shape,  # 4.
                      "threads": cfg.threads},
           lambda resume: stage_export(cfg, tdir, edir), [edir / "manifest.json"])
    manifest, main_art, int8 = _exported(run, edir, fmt)
    art_path, int8_path = edir / main_art["file"], edir / int8["file"] if int8 else None
    arch = json.loads((sdir / "arch.json").read_text())
    budget = arch.get("budget_ms", srch.get("budget_ms"))  # the summary's within_budget is judged against it
    meas = stages("measure", {"artifact": main_art.get("sha256"), "target": cfg.target, "threads": cfg.threads,  # 5.
                              "rounds": cfg.measure_rounds, "table": prof["sha256"]},
                  lambda resume: stage_measure(cfg, art_path, table,
                                               budget if isinstance(budget, (int, float)) else None), [art_path])
    eval_json = run / "eval.json"                                                  # 6. fidelity and crops
    akey = {"weights": trn["weights_sha256"], "int8": int8.get("sha256") if int8 else None, "teacher": cfg.teacher,
            "eval_side": cfg.eval_side, "native_side": cfg.native_side, "protocols": 3}
    if cfg.space == "st":
        arts = {e["format"]: edir / e["file"] for e in manifest["artifacts"]
                if e.get("file") and Status.parse(e.get("status")).kind is Kind.OK}
        akey = {**akey, "task": cfg.task, "artifacts": sorted(str(a) for a in arts), "metric": "rgb"}
        quality = stages("evaluate", akey, lambda resume: stage_evaluate_st(cfg, tdir, arts, eval_json), [eval_json])
        stages("crops", akey, lambda resume: stage_crops_st(cfg, tdir, int8_path, run / "crops"), [run / "crops"])
    else:
        quality = stages("evaluate", akey, lambda resume: stage_evaluate(cfg, tdir, int8_path, eval_json),
                         [eval_json])
        stages("crops", akey, lambda resume: stage_crops(cfg, tdir, int8_path, run / "crops"), [run / "crops"])
    # 7. summary + report (always rewritten: cheap, and they show this run's reuse)
    summary = _summary(cfg, arch, srch, meas, quality, manifest, prof, val, stages, fmt)
    t0 = time.perf_counter()
    summary["wall_seconds"] = round(t0 - t_start, 2)
    atomic_write_json(run / "summary.json", summary)
    write_report(run)
    stages.wall["report"] = time.perf_counter() - t0
    summary["wall_seconds"] = round(time.perf_counter() - t_start, 2)
    summary["wall_per_stage"] = {k: round(v, 2) for k, v in stages.wall.items()}
    atomic_write_json(run / "summary.json", summary)
    write_report(run)
    return summary


def _formats(cfg: DemoConfig) -> str:
    """Check the target and the formats (onnx-int8, the acceptance artifact, and the target's own format are
    always made); returns the target's format."""
    from .export import parse_formats

    cfg.formats = parse_formats(list(cfg.formats))
    if "onnx-int8" not in cfg.formats:
        cfg.formats.insert(1 if "onnx" in cfg.formats else 0, "onnx-int8")
    check_target(cfg.target)
    fmt = target_format(cfg.target, cfg.formats)
    if fmt not in cfg.formats:
        cfg.formats.append(fmt)
    return fmt


def _table_stages(cfg: DemoConfig, run: Path, table: Path, stages: Stages, log) -> tuple[dict, dict]:
    """The table (stage_profile) and its brief validation; on a near miss, 2x more nets pooled with it decide;
    below `min_within_10pct` of nets within ±10%, profile this machine once more, and if that does not fit
    either, stop: no budget from a table that does not predict this machine."""
    pkey = {"target": cfg.target, "shape": cfg.input_shape, "threads": cfg.threads, "rounds": cfg.profile_rounds,
            "space": _space_hash(), "device": _device_key(), "shipped": cfg.shipped_lut}
    if cfg.space != "sr":  # the SR demo's marker keys stay as they were
        pkey = {**pkey, "space": _space_hash(cfg.space), "space_name": cfg.space}
    # a run that had to profile this machine (below) reuses that table on a rerun, not the one it refused
    prof = stages.reuse("profile", dict(pkey, force=True), [table]) or \
        stages("profile", pkey, lambda resume: stage_profile(cfg, table), [table])
    judged = time.time()  # a table another agd process writes for this device after this is not the one we judge
    _check_budget(cfg, table)
    val_json, val_png = run / "profile" / "validation.json", run / "profile" / "validation.png"

    def validated(prof) -> dict[str, Any]:
        key = {"table": prof["sha256"], "n": cfg.validate_n, "rounds": cfg.validate_rounds}
        val = stages("validate", key, lambda resume: stage_validate(cfg, table, val_json, val_png),
                     [val_json, _brief_json(val_json)])
        if cfg.min_within_10pct - 0.25 <= val["lut"]["within_10pct"] < cfg.min_within_10pct:
            # A near miss of a few nets (8 nets can only show 90% as 8 of 8): one or two nets off on a noisy
            # machine, or a table that is a little off? Decide on three times as many nets, pooled.
            log(f"[validate] {val['lut']['within_10pct'] * 100:.0f}% of {val['n']} nets within ±10%: timing "
                f"{2 * cfg.validate_n} more before deciding")
            val = stages("validate-more", key, lambda resume: stage_validate(cfg, table, val_json, val_png, True),
                         [val_json])
        return val

    val = validated(prof)
    if val["lut"]["within_10pct"] < cfg.min_within_10pct and prof["source"] != "profiled":
        log(f"[validate] only {val['lut']['within_10pct'] * 100:.0f}% of {val['n']} nets within ±10% of the "
            f"table ({prof['source']}): profiling this machine once")
        prof = stages("profile", dict(pkey, force=True), lambda resume: stage_profile(cfg, table, True, judged),
                      [table])
        val = validated(prof)
        _check_budget(cfg, table)
    if val["lut"]["within_10pct"] < cfg.min_within_10pct:
        for name in ("validate", "validate-more"):  # a rerun (on a quieter machine) checks again
            (stages.dir / f"{name}.json").unlink(missing_ok=True)
        lut, why = val["lut"], "the machine may be too noisy to time now"
        if lut.get("within_10pct_rescaled", 0.0) >= cfg.min_within_10pct:
            why = (f"but they ran uniformly {lut['speed_factor']:.2f}x the table's times "
                   f"({lut['within_10pct_rescaled'] * 100:.0f}% within ±10% after that one factor): this machine's "
                   "speed moved between profiling and validating (a shared host's load); rerun when it is steady")
        raise AgdError(f"the latency table does not predict this machine: {lut['within_10pct'] * 100:.0f}% "
                       f"of {val['n']} random nets within ±10% (needs {cfg.min_within_10pct * 100:.0f}%), see "
                       f"{val_png}; {why}")
    return prof, val


def _exported(run: Path, edir: Path, fmt: str) -> tuple[dict, dict, dict | None]:
    """(manifest, the target's artifact entry, the onnx-int8 entry if ok); the target's must be ok."""
    manifest = json.loads((edir / "manifest.json").read_text())
    arts = {e["format"]: e for e in manifest["artifacts"]}

    def ok(e) -> bool:
        return bool(e) and Status.parse(e.get("status")).kind is Kind.OK and bool(e.get("file"))

    main_art = arts.get(fmt)
    if not ok(main_art):
        (run / ".stages" / "export.json").unlink(missing_ok=True)  # retry it next time
        status = main_art.get("status") if main_art else "missing"
        raise AgdError(f"the {fmt} artifact is not ok ({status}); see {edir / 'manifest.json'}")
    int8 = arts.get("onnx-int8")
    return manifest, main_art, int8 if ok(int8) else None


def _summary(cfg: DemoConfig, arch: dict, srch: dict, meas: dict, quality: dict, manifest: dict, prof: dict,
             val: dict, stages: Stages, fmt: str) -> dict[str, Any]:
    """summary.json (docs/ARCHITECTURE.md, "Contracts"), without the wall times."""
    summary = {"budget_ms": arch.get("budget_ms", srch.get("budget_ms")),
               "predicted_ms": arch.get("predicted_ms", srch.get("predicted_ms")),
               "measured_ms": meas["measured_ms"], "measured_statistic": meas["statistic"],
               "measured_clock": meas["clock"], "measured_artifact": fmt, "target": cfg.target,
               "measured_timings": meas.get("timings", 1), "measured_samples": meas.get("samples"),
               "student": quality.get("student"), "student_int8": quality.get("student_int8"),
               "bicubic": quality.get("bicubic"),
               "teacher": {k: v for k, v in (quality.get("teacher") or {}).items() if k in ("psnr", "ssim")},
               "exports": manifest["artifacts"], "seconds": dict(stages.seconds),
               "eval_images": f"built-in held-out images, centre {cfg.eval_side}x{cfg.eval_side} HR crops",
               "protocols": quality.get("protocols"),
               "degradation": {"train": train_degradation(cfg), "variants": cfg.train_variants,
                               "native_side": cfg.native_side, "loss": cfg.train_loss},
               "lut_source": prof["source"], "lut_check": prof.get("check"), "device": _device(),
               "lut_validation": {"within_10pct": val["lut"]["within_10pct"], "mape": val["lut"]["mape"],
                                  "n": val["n"]},
               "reused_stages": list(stages.reused)}
    if cfg.task != "sr":  # the image-to-image task: what the student is, and the do-nothing baseline by name
        summary.update(task=cfg.task, space=cfg.space, teacher_spec=cfg.teacher, metric="rgb",
                       input=quality.get("input"), students=quality.get("students"),
                       eval_images=f"built-in held-out images, centre {cfg.eval_side}x{cfg.eval_side} crops, "
                                   f"{train_degradation(cfg)} inputs")
    st, bi = (summary["student"] or {}).get("psnr_vs_teacher"), (summary["bicubic"] or {}).get("psnr_vs_teacher")
    if isinstance(st, (int, float)) and isinstance(bi, (int, float)):
        summary["student_gain_vs_bicubic_db"] = round(st - bi, 4)
    for q in (summary["protocols"] or {}).values():  # the gain on each protocol's inputs
        st, bi = (q.get("student") or {}).get("psnr_vs_teacher"), (q.get("bicubic") or {}).get("psnr_vs_teacher")
        if isinstance(st, (int, float)) and isinstance(bi, (int, float)):
            q["student_gain_vs_bicubic_db"] = round(st - bi, 4)
    if isinstance(summary["budget_ms"], (int, float)):  # the table passed validation here (_table_stages)
        summary["within_budget"] = bool(meas["measured_ms"] <= summary["budget_ms"])
    pred, ms = summary["predicted_ms"], meas["measured_ms"]
    if isinstance(pred, (int, float)) and ms:
        summary["prediction_rel_error"] = round(abs(pred - ms) / ms, 4)
        ref = meas.get("reference_net")
        if ref:  # the machine's speed now against the table's, from a reference net timed beside the artifact
            f = ref["speed_factor"]
            summary["machine_speed_factor"] = f
            summary["prediction_rel_error_rescaled"] = round(abs(pred * f - ms) / ms, 4)
        from .profiling.validate import WITHIN

        if summary["prediction_rel_error"] > WITHIN:
            summary["prediction_note"] = prediction_note(summary, table_name=prof.get("table") or "the table")
    return summary


def prediction_note(summary: dict[str, Any], table_name: str) -> str:
    """One line on a prediction that missed by more than the ±10% a validated table promises
    (`profiling.validate.WITHIN`): the table, or this machine's speed?"""
    from .profiling.validate import WITHIN

    pred, ms, err = summary["predicted_ms"], summary["measured_ms"], summary["prediction_rel_error"]
    head = f"the table predicted {pred:.2f} ms, the artifact measured {ms:.2f} ms ({err * 100:.0f}% off)"
    f, left = summary.get("machine_speed_factor"), summary.get("prediction_rel_error_rescaled")
    if f is None:
        return f"{head}; check the table here: agd profile check --table {table_name}"
    if left <= WITHIN:  # (one net's factor: it tells a changed machine state, not a few percent)
        return (f"{head}, but a reference net timed beside it ran {f:.2f}x its table time: this machine runs at "
                f"another speed than when the table was measured (a shared host's load moves it), and at that speed "
                f"the prediction is {left * 100:.0f}% off. A budget in ms holds only at the table's speed")
    return (f"{head}, and {left * 100:.0f}% off even at this machine's speed now ({f:.2f}x the table on a "
            f"reference net): the table does not predict this net here; agd profile check --table {table_name}")


def train_degradation(cfg: DemoConfig) -> str:
    """The degradation the demo's student is distilled on (the teacher's default unless set)."""
    from .teachers import default_degradation

    return cfg.train_degradation or default_degradation(cfg.teacher)


def _device() -> dict[str, Any]:
    from .runtimes.base import device_fingerprint

    return device_fingerprint()


def _space_hash(space: str = "sr") -> str:
    from .space import get_space

    return get_space(space).space_hash


def _recipe(cfg: DemoConfig):
    from .search.config import SearchConfig

    return SearchConfig.load(cfg.recipe)


def _recipe_key(recipe: str) -> str:
    from .utils import find_resource

    p = find_resource("search", recipe)
    return sha256_file(p) if p else recipe


def _check_budget(cfg: DemoConfig, table: Path) -> None:
    """--budget-ms outside [fastest, slowest] net of the space on this LUT: one line, before the search."""
    if cfg.budget_ms is None:
        return
    from .profiling.lut import LUT
    from .profiling.predictor import min_max_ms
    from .space import get_space

    (lo, _), (hi, _) = min_max_ms(LUT.load(table), get_space(cfg.space))
    if cfg.budget_ms < lo:
        raise AgdError(f"--budget-ms {cfg.budget_ms:g} is below the fastest net of the space on {cfg.target} "
                       f"({lo:.2f} ms predicted); give at least {lo:.2f}")
    if cfg.budget_ms > hi:
        from .log import warn

        warn(f"--budget-ms {cfg.budget_ms:g} is above the slowest net ({hi:.2f} ms): no constraint")
