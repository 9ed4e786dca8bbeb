"""The search loop: alternating weight and arch steps on the supernet (first-order DARTS, as AGD).

weight step: sandwich rule -- the largest, the smallest and a sampled width setting each contribute
             L1(student, teacher) on the weight half of the patches, ops mixed by softmax(alpha) (frozen).
arch step:   one Gumbel width sample on the arch half; loss = L1 + lambda * E[cost] / budget, where E[cost]
             comes from the cost model only (a LUT or MACs), and lambda adapts to keep E[cost] in its band.

A checkpoint (supernet, alphas/betas, both optimizers, controller, RNG states, step) is written atomically
every `ckpt_every` steps; `resume` continues from it, and `log.jsonl` is cut back to the checkpoint's step."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import AgdError
from ..utils import atomic_path, atomic_write_text
from .config import SearchConfig
from .controller import LambdaController
from .cost import CostModel
from .distributed import Dist
from .supernet import SuperNet

CKPT = "search_ckpt.pt"
LOG = "log.jsonl"


@dataclass
class LoopResult:
    net: SuperNet
    steps: int
    seconds: float
    last: dict
    resumed_from: int = 0  # the checkpoint's step this run continued from (0: a fresh start)


def _ckpt_key(cfg: SearchConfig, budget: float, cost: CostModel) -> str:
    """What a checkpoint must agree on to be resumed (everything but the step count)."""
    d = cfg.to_dict()
    d.pop("steps", None)
    return json.dumps({"cfg": d, "budget": budget, "cost": cost.name}, sort_keys=True)


def _trim_log(path: Path, step: int) -> None:
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except json.JSONDecodeError:  # a line cut by a kill
            break
    atomic_write_text(path, "".join(s + "\n" for s in keep))


def run_loop(cfg: SearchConfig, cost: CostModel, budget: float, w_set, a_set, out: Path,
             resume: bool = False, dist: Dist | None = None, progress: bool = True,
             report_cost: CostModel | None = None) -> LoopResult:
    """Search for `cfg.steps` steps (continuing a checkpoint in `out` if `resume`); returns the supernet.
    w_set / a_set: data.PatchDataset-like (`batch(step, n) -> (x, teacher_out, hr)`), a pure function of the
    step, so a resumed run sees the batches it would have seen."""
    dist = dist or Dist()
    out = Path(out)
    torch.manual_seed(cfg.seed)
    comp = dist.compute
    net = SuperNet(cfg.space).to(comp.device)
    opt_w = torch.optim.Adam(net.weight_parameters(), lr=cfg.lr_weights)
    opt_a = torch.optim.Adam(net.arch_parameters(), lr=cfg.lr_arch, betas=(0.5, 0.999),
                             weight_decay=cfg.arch_weight_decay)
    ctl = LambdaController(cfg.lambda_init, cfg.lambda_low, cfg.lambda_high, cfg.lambda_min, cfg.lambda_max,
                           cfg.lambda_every)
    torch.manual_seed(cfg.seed * 104729 + dist.rank)  # Gumbel draws differ per rank, like the data
    key = _ckpt_key(cfg, budget, cost)
    start = 0
    ckpt_path, log_path = out / CKPT, out / LOG
    ck = None
    if resume and dist.is_main and ckpt_path.is_file():  # rank 0 reads it; every rank resumes from its copy
        try:
            ck = torch.load(ckpt_path, weights_only=True, map_location="cpu")
        except Exception as e:
            raise AgdError(f"{ckpt_path}: checkpoint cannot be read ({type(e).__name__}); remove it to start over") from None
        if ck.get("key") != key:
            raise AgdError(f"{ckpt_path}: checkpoint was made with another recipe, budget or cost; "
                           "use another --out or drop --resume")
    if resume:
        ck = dist.broadcast_object(ck)
    if ck is not None:
        net.load_state_dict(ck["net"])
        opt_w.load_state_dict(ck["opt_w"])
        opt_a.load_state_dict(ck["opt_a"])
        ctl.load_state_dict(json.loads(ck["ctl"]))
        start = int(ck["step"])
        if dist.rank == 0:
            torch.set_rng_state(ck["rng"])
            if comp.device.type == "cuda" and "cuda_rng" in ck:
                torch.cuda.set_rng_state(ck["cuda_rng"], comp.device)
        else:
            torch.manual_seed(cfg.seed * 104729 + dist.rank + 1000003 * start)
    elif not resume and dist.is_main:
        for p in (ckpt_path, log_path):
            p.unlink(missing_ok=True)
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        _trim_log(log_path, start)
    dist.broadcast(list(net.state_dict().values()))
    dist.barrier()

    wparams, aparams = net.weight_parameters(), net.arch_parameters()
    unit = cost.unit
    t0, last, saved = time.time(), {}, start
    from tqdm import tqdm

    bar = tqdm(total=cfg.steps, initial=start, desc=f"search {cfg.name}", unit="step",
               disable=not (progress and dist.is_main), dynamic_ncols=True)
    for step in range(start, cfg.steps):
        frac = step / max(cfg.steps - 1, 1)
        tau = cfg.tau_start + (cfg.tau_end - cfg.tau_start) * frac
        net.train()
        # -- weight step (sandwich rule) --
        opt_w.zero_grad(set_to_none=True)
        x, t, _ = w_set.batch(step, cfg.batch)
        x, t = x.to(comp.device), t.to(comp.device)
        single = cfg.op_sampling == "gumbel"
        op_w = net.op_weights(cfg.op_sampling, tau).detach()
        w_loss = 0.0
        for mode in cfg.sandwich:
            try:
                with comp.autocast():
                    y = net(x, net.width_masks(mode, tau), op_w, single)
                loss = (y.float() - t).abs().mean() / len(cfg.sandwich)
                loss.backward()
            except torch.cuda.OutOfMemoryError:
                raise AgdError(f"CUDA out of memory at search step {step + 1} on {comp.device}: a batch of "
                               f"{cfg.batch} {cfg.patch}x{cfg.patch} patches per rank ({mode} widths) did not "
                               f"fit; the last checkpoint ({ckpt_path}, step {saved}) is kept; use a recipe with a smaller "
                               "batch or patch and --resume") from None
            w_loss += loss.item()
        dist.average_grads(wparams)
        torch.nn.utils.clip_grad_norm_(wparams, 1.0)
        opt_w.step()
        row: dict = {"step": step + 1, "phase": "warmup" if step < cfg.warmup else "search"}
        # -- arch step --
        if step >= cfg.warmup and (step - cfg.warmup) % cfg.arch_every == 0:
            opt_a.zero_grad(set_to_none=True)
            x, t, _ = a_set.batch(step, cfg.batch)
            x, t = x.to(comp.device), t.to(comp.device)
            with comp.autocast():
                out_a = net(x, net.width_masks("gumbel", tau), net.op_weights(cfg.op_sampling, tau), single)
            distill = (out_a.float() - t).abs().mean()
            exp = cost.expected(net.op_probs().double(), {k: p.double() for k, p in net.width_probs().items()})
            loss = distill + ctl.lam * exp.float() / budget
            row.update(loss=dist.mean(loss.item()), distill=dist.mean(distill.item()), **{"lambda": ctl.lam})
            loss.backward()
            dist.average_grads(aparams)
            opt_a.step()
            ctl.update(exp.item(), budget)
        else:
            row.update(loss=dist.mean(w_loss), distill=dist.mean(w_loss), **{"lambda": ctl.lam})
        with torch.no_grad():
            probs = (net.op_probs().double(), {k: p.double() for k, p in net.width_probs().items()})
            row[f"expected_{unit}"] = float(cost.expected(*probs))
            if report_cost is not None and report_cost.unit != unit:
                row[f"expected_{report_cost.unit}"] = float(report_cost.expected(*probs))
        row.update(weight_loss=dist.mean(w_loss), tau=round(tau, 4), budget=budget)
        last = row
        if dist.is_main:
            with open(log_path, "a") as f:
                f.write(json.dumps(row) + "\n")
        if (step + 1) % cfg.ckpt_every == 0 or step + 1 == cfg.steps:
            if dist.is_main:
                state = {"key": key, "step": step + 1, "net": net.state_dict(), "opt_w": opt_w.state_dict(),
                         "opt_a": opt_a.state_dict(), "ctl": json.dumps(ctl.state_dict()), "rng": torch.get_rng_state()}
                if comp.device.type == "cuda":
                    state["cuda_rng"] = torch.cuda.get_rng_state(comp.device)
                with atomic_path(ckpt_path, suffix=".pt") as tmp:
                    torch.save(state, tmp)
            saved = step + 1
            dist.barrier()
        bar.set_postfix({"loss": f"{row['loss']:.4f}", f"E[{unit}]": f"{row[f'expected_{unit}']:.3g}",
                         "lambda": f"{ctl.lam:.3g}"}, refresh=False)
        bar.update(1)
    bar.close()
    return LoopResult(net, cfg.steps, time.time() - t0, last, start)
