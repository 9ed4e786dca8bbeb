"""Distillation training of a derived arch, from scratch: L1 to the teacher's output (+ optional L1 to ground
truth, + optional VGG perceptual/style terms), Adam with a cosine schedule.

Resumable: every `ckpt_every` steps the model, optimizer, step and RNG state go atomically to
`<out>.partial/state.pt`; rerunning the same command after a kill continues from there. Batches are a pure
function of (seed, step), so a resumed run sees the same data it would have seen.

Under `torchrun --nproc_per_node N`: `batch` stays the effective batch; rank r cuts its shard of each step's
draws (data.patches.shard_bounds), the derived net is wrapped in DistributedDataParallel (a fixed graph), and
each rank's loss is weighted by its shard's share, so the averaged gradient is the world-1 gradient of the same
batch: the same command trains the same model at any world size (the learning rate is not scaled). Rank 0
writes the checkpoints, the log and the CKPT; the others wait at barriers. Teacher outputs missing from the
cache are computed in shards, one per rank, in parallel (data.cache.TeacherCache, Dist.cache_shard).
`workers` > 0 cuts the batches in DataLoader worker processes (data.patches.step_loader): the same batches.
The finished model is the CKPT folder `<out>` (generator.safetensors + arch.json), written via a temp
folder + rename."""

from __future__ import annotations

import json
import math

import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..data.cache import TeacherCache
from ..data.degrade import get_degradation
from ..data.images import Images
from ..data.patches import PatchDataset
from ..errors import AgdError
from ..space import Arch, build
from ..utils import atomic_path, cache_dir
from .ckpt import WEIGHTS, is_ckpt, load_weights, save_ckpt


PSNR_EPS = 1e-5  # psnr loss: an MSE floor (50 dB on a 0..1 range) so a patch the student already matches
                 # cannot dominate the batch with a huge 1/MSE gradient


def psnr_loss(y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The batch mean of log(per-patch MSE): each patch's PSNR in the same units (up to -10/ln 10), so every
    patch counts by its *relative* error. Plain MSE is driven by the patches with the largest errors; in a mix
    of heavily degraded and clean inputs those are the degraded ones, while the score (dB over bicubic, per
    image) weighs both kinds alike."""
    mse = (y - t).pow(2).flatten(1).mean(1)
    return torch.log(mse + PSNR_EPS).mean()


LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss, "psnr": psnr_loss}  # TrainConfig.loss: the teacher term


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
    loss: str = "l1"              # the teacher term: l1 | mse (MSE is what PSNR vs the teacher scores) | psnr
                                  # (log of each patch's MSE: patches weigh alike, loop.psnr_loss)
    gt_weight: float = 0.0        # weight of L1 to ground truth (teacher term has weight 1)
    vgg: str | None = None        # torchvision-layout VGG19 state_dict for the perceptual/style terms
    perceptual_weight: float = 0.0
    style_weight: float = 0.0
    ckpt_every: int = 50
    seed: int = 0
    threads: int = 2
    max_side: int | None = 512    # HR images are centre-cropped to this before the teacher runs (its cost)
    device: str = "auto"          # auto|cpu|cuda|cuda:N (train.device); teacher outputs are computed there too
    amp: str = "auto"             # CUDA mixed precision: auto (bf16, else fp16) | bf16 | fp16 | off; off on CPU
    degradation: str | None = None  # the LR inputs (data/degrade.py); None: the teacher's default
                                    # (teachers.default_degradation: jpeg:Q for denoise teachers, else bicubic)
    variants: int = 2             # degraded variants per image in the teacher cache (a random degradation):
                                  # each costs one teacher run per image, once; sr_x4_tiny and the demo use 2
    degradation_seed: int = 0     # seeds the variants' draw (not `seed`: a new training seed reuses the cache)
    workers: int = 0              # DataLoader worker processes cutting batches ahead (0: in the training process);
                                  # the same batches either way (a pure function of seed, step and rank)

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


def _save_state(path: Path, model, opt, step: int, total: int, arch: Arch, cfg: TrainConfig, loss: float,
                amp: str = "off") -> None:
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "total": total,
             "torch_rng": torch.get_rng_state(), "arch": arch.to_json(), "config": json.dumps(asdict(cfg)),
             "loss": loss, "amp": amp}
    with atomic_path(path, ".pt") as tmp:
        torch.save(state, tmp)


def probe_steps(model: torch.nn.Module, loss_fn, x: torch.Tensor, t: torch.Tensor):
    """`step_under` for train.device.choose_cpu_amp: compute -> one training step (forward, loss, backward, Adam)
    of a copy of `model` on the batch (x, t); the model itself and the global RNG are left untouched."""
    import copy

    def step_under(c):
        m = c.module(copy.deepcopy(model))
        o = torch.optim.Adam(m.parameters(), lr=1e-6)
        xc, tc = c.tensor(x), c.tensor(t)

        def step():
            with c.autocast():
                y = m(xc)
            loss = loss_fn(y.float(), tc)
            o.zero_grad(set_to_none=True)
            loss.backward()
            o.step()
        return step
    return step_under


def _cpu_amp(model: torch.nn.Module, loss_fn, x: torch.Tensor, t: torch.Tensor, cpu, resumed: str | None):
    """`--amp auto` on the CPU: fp32 vs bf16 timed on one step of this run's net and batch. A resumed run keeps
    the precision it started with (its checkpoint says which), without timing again."""
    from .device import Compute, choose_cpu_amp

    if resumed in ("off", "bf16"):
        chosen = Compute(cpu.device, torch.bfloat16, True) if resumed == "bf16" else cpu
        return chosen, {"chosen": resumed, "why": "resumed: the precision this run started with"}
    return choose_cpu_amp(probe_steps(model, loss_fn, x, t), cpu)


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
    from ..data.patches import shard_bounds
    from ..search.distributed import debug_hash, env_world, init_from_env, timeout_s

    _rank, world, _local = env_world()
    if world > cfg.batch:  # every rank needs a patch; checked before the rendezvous, so every rank says it
        raise AgdError(f"{world} ranks but --batch {cfg.batch}: --batch is the effective batch, split over the "
                       f"ranks, so each rank would get less than one patch; use --batch >= {world} or fewer ranks")
    dist = init_from_env(cfg.device, cfg.amp)
    comp, main = dist.compute, dist.is_main
    progress = progress and main
    if getattr(teacher, "module", None) is not None:
        teacher.module.to(comp.device)  # teacher outputs are computed on the device, in batches of tiles
    t0 = time.time()
    from ..teachers import default_degradation

    if cfg.loss not in LOSSES:
        raise AgdError(f"unknown loss {cfg.loss!r}: one of {', '.join(LOSSES)}")
    degradation = cfg.degradation or default_degradation(teacher)
    if get_degradation(degradation).name.startswith("native") and cfg.gt_weight:  # bad names: one line, too
        raise AgdError(f"--degradation {degradation} has native-resolution inputs without ground truth: "
                       "it cannot train with gt_weight")
    root = Path(cache_root) if cache_root else cache_dir("teacher_outputs")
    # every rank computes its shard of the missing entries, then polls the files for the others' (no collective)
    cache = TeacherCache(teacher, data, cache_root, max_side=cfg.max_side, progress=progress,
                         degradation=degradation, variants=cfg.variants, seed=cfg.degradation_seed,
                         shard=dist.cache_shard(root), wait_s=timeout_s())
    computed = dist.all_gather_object(cache.computed)
    ds = PatchDataset(cache, cfg.patch, tuple(sp.value_range), seed=cfg.seed)
    total = cfg.total_steps(ds.lr_pixels // cache.variants)  # an epoch counts each image once, not per variant
    teacher_s = time.time() - t0

    same, info = False, {}
    if resume and main and is_ckpt(out):  # rank 0's file system decides, for every rank
        info = _read_json(out / "train.json")
        try:
            same = (Arch.load(out) == arch and info.get("steps") == total
                    and info.get("degradation_key", "bicubic") == cache.degradation.key
                    and info.get("variants", cache.variants) == cache.variants  # another --variants: new data
                    and (info.get("config") or {}).get("loss", "l1") == cfg.loss)
        except AgdError:
            same = False
    same, info = dist.broadcast_object((same, info))
    if same:
        dist.close()
        return {**info, "ckpt": str(out), "resumed_from": total, "skipped": True, "rank": dist.rank}

    torch.manual_seed(cfg.seed)
    model = comp.module(build(arch).train())
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
    start = 0
    partial = _partial_dir(out)
    state_path = partial / "state.pt"
    st = None
    if main and not resume:
        shutil.rmtree(partial, ignore_errors=True)
    elif main and state_path.is_file():
        st = _load_state(state_path, arch)
        old_cfg = json.loads(st.get("config") or "{}")
        if (old_cfg.get("degradation"), old_cfg.get("variants", cfg.variants), old_cfg.get("loss", "l1")) != \
                (cfg.degradation, cfg.variants, cfg.loss):
            raise AgdError(f"training checkpoint {state_path} was made with another --degradation/--variants/--loss "
                           "(delete it or use --no-resume)")
    st = dist.broadcast_object(st)  # rank 0 reads the checkpoint; every rank resumes from the same state
    if st is not None:
        load_weights(model, st["model"], str(state_path))
        opt.load_state_dict(st["optimizer"])
        torch.set_rng_state(st["torch_rng"])
        start = min(st["step"], total)
    resumed_amp = st.get("amp") if st is not None else None
    del st
    amp_probe = None
    if comp.device.type == "cpu" and (cfg.amp or "auto").lower() == "auto" and start < total:
        xb, tb, _ = ds.batch(start, cfg.batch, dist.rank, dist.world)
        comp, amp_probe = _cpu_amp(model, LOSSES[cfg.loss], xb, tb, comp, resumed_amp)
        comp, amp_probe = dist.broadcast_object((comp, amp_probe))  # rank 0's reading, for every rank
        if comp.channels_last:
            model = comp.module(model)
    if main:
        partial.mkdir(parents=True, exist_ok=True)
    net = model
    if dist.active:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[comp.device.index] if comp.device.type == "cuda" else None)
    lo_i, hi_i = shard_bounds(cfg.batch, dist.rank, dist.world)
    share = (hi_i - lo_i) * dist.world / cfg.batch  # DDP averages over ranks: weighted shards = the batch mean
    scaler = torch.amp.GradScaler(comp.device.type, enabled=comp.amp == torch.float16)
    run_info = {"world_size": dist.world, "backend": dist.backend, "per_rank_batch": hi_i - lo_i,
                "effective_batch": cfg.batch, "lr": cfg.lr, "lr_scaled": False, "device": str(comp.device),
                "amp": comp.amp_name, "channels_last": comp.channels_last, "amp_probe": amp_probe}
    if progress:  # the one line that states the parallel setup (also in train.json)
        sizes = sorted({b - a for a, b in (shard_bounds(cfg.batch, r, dist.world) for r in range(dist.world))})
        tqdm.write(f"train: world {dist.world}" + (f" ({dist.backend})" if dist.backend else "")
                   + f" on {comp.describe()}; per-rank batch {'-'.join(map(str, sizes))}, effective batch "
                   f"{cfg.batch}, lr {cfg.lr:g} (not scaled: --batch is the effective batch at any world size)"
                   + (f"; --amp auto: a step {amp_probe['bf16_step_ms']:.0f} ms in bf16, "
                      f"{amp_probe['fp32_step_ms']:.0f} ms in fp32" if amp_probe and "speedup" in amp_probe else "")
                   + (f"; resuming from step {start}" if start else ""), file=sys.stderr)

    vgg_loss = None
    if cfg.vgg and (cfg.perceptual_weight or cfg.style_weight):
        from .vgg import PerceptualLoss, load_vgg19

        vgg_loss = PerceptualLoss(load_vgg19(cfg.vgg), cfg.perceptual_weight, cfg.style_weight).to(comp.device)
    lo, hi = sp.value_range
    log_path = partial / "log.jsonl"
    bar = tqdm(range(start, total), initial=start, total=total, desc="train", unit="step", disable=not progress,
               dynamic_ncols=True)
    loss_v, t_train, saved = float("nan"), time.time(), start
    batches = None
    if cfg.workers > 0 and start < total:  # worker processes cut the next batches while this one trains
        from ..data.patches import step_loader

        batches = iter(step_loader(ds, cfg.batch, start, total, dist.rank, dist.world, cfg.workers,
                                   pin_memory=comp.device.type == "cuda"))
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = _lr_at(cfg, step, total)
        x, t, hr = next(batches) if batches is not None else ds.batch(step, cfg.batch, dist.rank, dist.world)
        try:
            x, t = comp.tensor(x), comp.tensor(t)
            with comp.autocast():
                y = net(x)
            y = y.float()
            loss = LOSSES[cfg.loss](y, t)
            if cfg.gt_weight:
                loss = loss + cfg.gt_weight * F.l1_loss(y, comp.tensor(hr))
            if vgg_loss is not None:
                loss = loss + vgg_loss((y - lo) / (hi - lo), (t - lo) / (hi - lo))
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss * share if share != 1 else loss).backward()
            if cfg.grad_clip:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            loss_v = float(loss.detach())
        except torch.cuda.OutOfMemoryError:
            kept = f"the checkpoint of step {saved} is kept in {state_path}" if saved else "no checkpoint yet"
            raise AgdError(f"CUDA out of memory at step {step + 1} on {comp.device}: a batch of {hi_i - lo_i} "
                           f"{cfg.patch}x{cfg.patch} LR patches per rank (effective batch {cfg.batch}) did not fit; "
                           f"{kept}; rerun with a smaller --batch or --patch to resume") from None
        bar.set_postfix(loss=f"{loss_v:.4f}")
        done = step + 1
        if done % 10 == 0 or done == total:
            loss_v = dist.sum(loss_v * (hi_i - lo_i)) / cfg.batch if dist.active else loss_v  # the batch mean
            if main:
                with open(log_path, "a") as fh:
                    fh.write(json.dumps({"step": done, "loss": loss_v, "lr": opt.param_groups[0]["lr"]}) + "\n")
        if done % cfg.ckpt_every == 0 and done < total:
            if main:
                _save_state(state_path, model, opt, done, total, arch, cfg, loss_v, comp.amp_name)
            saved = done
            dist.barrier()
    bar.close()
    del batches  # its worker processes end here
    summary = {"steps": total, "resumed_from": start, "final_loss": loss_v, "teacher": teacher.name,
               "degradation": degradation, "degradation_key": cache.degradation.key, "variants": cache.variants,
               "teacher_fingerprint": teacher.fingerprint, "data": data.source, "data_hash": data.data_hash,
               "teacher_seconds": round(teacher_s, 2), "teacher_computed_per_rank": computed,
               "train_seconds": round(time.time() - t_train, 2),
               "config": asdict(cfg), **run_info}
    model.eval()
    if main:
        save_ckpt(model, arch, out, extra=summary)
        if log_path.is_file():
            shutil.copy(log_path, out / "log.jsonl")
        shutil.rmtree(partial, ignore_errors=True)
    debug_hash(model, dist.rank)
    dist.barrier()
    dist.close()
    return {**summary, "ckpt": str(out), "rank": dist.rank}


def _read_json(p: Path) -> dict:
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return {}


__all__ = ["TrainConfig", "train", "WEIGHTS"]
