"""Distillation training of a derived arch, from scratch: L1 to the teacher's output (+ optional L1 to ground
truth, + optional VGG perceptual/style terms), Adam with a cosine schedule.

Resumable: every `ckpt_every` steps the model, optimizer, step and RNG state go atomically to
`<out>.partial/state.pt`; rerunning the same command after a kill continues from there. Batches are a pure
function of (seed, step), so a resumed run sees the same data it would have seen. The finished model is the
CKPT folder `<out>` (generator.safetensors + arch.json), written via a temp folder + rename."""

from __future__ import annotations

import json
import math

import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..data.cache import TeacherCache
from ..data.images import Images
from ..data.patches import PatchDataset
from ..errors import AgdError
from ..space import Arch, build
from ..utils import atomic_path
from .ckpt import WEIGHTS, is_ckpt, load_weights, save_ckpt


@dataclass
class TrainConfig:
    steps: int | None = None      # total optimizer steps; None: epochs * steps per epoch
    epochs: float = 20.0          # one epoch = as many LR patch pixels as the training LR images hold
    patch: int = 32               # LR patch side
    batch: int = 16
    lr: float = 1e-3
    lr_min: float = 1e-5          # cosine schedule floor
    warmup: float = 0.05          # share of the steps (at most 100) with a linear ramp to lr: Adam's first
                                  # steps at 2e-3 blew a full-width residual student up (loss 0.04 -> 1e9)
    grad_clip: float = 1.0        # max global gradient norm (0: off)
    gt_weight: float = 0.0        # weight of L1 to ground truth (teacher term has weight 1)
    vgg: str | None = None        # torchvision-layout VGG19 state_dict for the perceptual/style terms
    perceptual_weight: float = 0.0
    style_weight: float = 0.0
    ckpt_every: int = 50
    seed: int = 0
    threads: int = 2
    max_side: int | None = 512    # HR images are centre-cropped to this before the teacher runs (its cost)

    def total_steps(self, lr_pixels: int) -> int:
        if self.steps:
            return int(self.steps)
        per_epoch = max(1, math.ceil(lr_pixels / (self.patch * self.patch * self.batch)))
        return max(1, int(round(self.epochs * per_epoch)))


def _partial_dir(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def _lr_at(cfg: TrainConfig, step: int, total: int) -> float:
    warm = min(100, int(cfg.warmup * total))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * min(step, total) / total))


def _save_state(path: Path, model, opt, step: int, total: int, arch: Arch, cfg: TrainConfig, loss: float) -> None:
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "total": total,
             "torch_rng": torch.get_rng_state(), "arch": arch.to_json(), "config": json.dumps(asdict(cfg)),
             "loss": loss}
    with atomic_path(path, ".pt") as tmp:
        torch.save(state, tmp)


def _load_state(path: Path, arch: Arch) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        step = int(state["step"])
    except Exception as e:
        raise AgdError(f"corrupt training checkpoint {path}: {str(e).splitlines()[0][:160]} "
                       "(delete it or use --no-resume)") from None
    if Arch.from_json(state["arch"], str(path)) != arch:
        raise AgdError(f"training checkpoint {path} was made for another arch (delete it or use --no-resume)")
    state["step"] = step
    return state


def train(arch: Arch, teacher, data: Images, cfg: TrainConfig, out: str | Path, resume: bool = True,
          cache_root: str | Path | None = None, progress: bool = True, log=None) -> dict[str, Any]:
    """Train `arch` from scratch by distilling `teacher` on `data`; returns a summary with the CKPT path.

    teacher: a Teacher (agd_deploy.teachers.load_teacher). Rerunning with resume=True continues an interrupted
    run, and returns at once if `out` is already a finished CKPT of the same arch and step count."""
    from tqdm import tqdm

    out = Path(out)
    sp = arch.space_obj
    if teacher.scale != sp.scale:
        raise AgdError(f"teacher {teacher.name} is x{teacher.scale}, the {sp.name} space is x{sp.scale}")
    torch.set_num_threads(max(1, cfg.threads))
    t0 = time.time()
    cache = TeacherCache(teacher, data, cache_root, max_side=cfg.max_side, progress=progress)
    ds = PatchDataset(cache, cfg.patch, tuple(sp.value_range), seed=cfg.seed)
    total = cfg.total_steps(ds.lr_pixels)
    teacher_s = time.time() - t0

    if resume and is_ckpt(out):
        info = _read_json(out / "train.json")
        try:
            same = Arch.load(out) == arch and info.get("steps") == total
        except AgdError:
            same = False
        if same:
            return {**info, "ckpt": str(out), "resumed_from": total, "skipped": True}

    torch.manual_seed(cfg.seed)
    model = build(arch).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
    start = 0
    partial = _partial_dir(out)
    state_path = partial / "state.pt"
    if not resume:
        shutil.rmtree(partial, ignore_errors=True)
    elif state_path.is_file():
        st = _load_state(state_path, arch)
        load_weights(model, st["model"], str(state_path))
        opt.load_state_dict(st["optimizer"])
        torch.set_rng_state(st["torch_rng"])
        start = min(st["step"], total)
    partial.mkdir(parents=True, exist_ok=True)

    vgg_loss = None
    if cfg.vgg and (cfg.perceptual_weight or cfg.style_weight):
        from .vgg import PerceptualLoss, load_vgg19

        vgg_loss = PerceptualLoss(load_vgg19(cfg.vgg), cfg.perceptual_weight, cfg.style_weight)
    lo, hi = sp.value_range
    log_path = partial / "log.jsonl"
    bar = tqdm(range(start, total), initial=start, total=total, desc="train", unit="step", disable=not progress,
               dynamic_ncols=True)
    loss_v, t_train = float("nan"), time.time()
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = _lr_at(cfg, step, total)
        x, t, hr = ds.batch(step, cfg.batch)
        y = model(x)
        loss = F.l1_loss(y, t)
        if cfg.gt_weight:
            loss = loss + cfg.gt_weight * F.l1_loss(y, hr)
        if vgg_loss is not None:
            loss = loss + vgg_loss((y - lo) / (hi - lo), (t - lo) / (hi - lo))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        loss_v = float(loss.detach())
        bar.set_postfix(loss=f"{loss_v:.4f}")
        done = step + 1
        if done % 10 == 0 or done == total:
            with open(log_path, "a") as fh:
                fh.write(json.dumps({"step": done, "loss": loss_v, "lr": opt.param_groups[0]["lr"]}) + "\n")
        if done % cfg.ckpt_every == 0 and done < total:
            _save_state(state_path, model, opt, done, total, arch, cfg, loss_v)
    bar.close()
    summary = {"steps": total, "resumed_from": start, "final_loss": loss_v, "teacher": teacher.name,
               "teacher_fingerprint": teacher.fingerprint, "data": data.source, "data_hash": data.data_hash,
               "teacher_seconds": round(teacher_s, 2), "train_seconds": round(time.time() - t_train, 2),
               "config": asdict(cfg)}
    model.eval()
    save_ckpt(model, arch, out, extra=summary)
    if log_path.is_file():
        shutil.copy(log_path, out / "log.jsonl")
    shutil.rmtree(partial, ignore_errors=True)
    return {**summary, "ckpt": str(out)}


def _read_json(p: Path) -> dict:
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return {}


__all__ = ["TrainConfig", "train", "WEIGHTS"]
