"""One whole search, as `agd search` runs it: resolve table and budget, make patches, loop, derive, write.

    <out>/arch.json        the derived arch + space_hash, target, lut (+ sha256), budget_ms, predicted_ms, gmacs...
    <out>/log.jsonl        one object per step
    <out>/search_ckpt.pt   the resumable state (teacher outputs live in the shared data/ cache)"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import AgdError
from ..profiling import LUT, tables
from ..space import Arch, build, count, get_space
from ..utils import atomic_write_json, format_shape, sha256_file
from .config import SearchConfig
from .cost import CostModel, FlopsCost, LatencyCost, linear_fit
from .derive import check_budget, fit_measured, project
from .distributed import Dist, debug_hash, init_from_env


@dataclass
class Budget:
    """The resolved budget: in the search's cost unit, and in ms when a latency table is known."""

    value: float
    unit: str
    ms: float | None = None
    how: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def load_table(cfg: SearchConfig, target: str, table: str | Path | None, required: bool) -> LUT | None:
    """The LUT for this search, refused (one line) if it was made for another space, target or input size.
    Without `table`, the best one `profiling.tables` finds, this device's first. Whether a table of another
    device predicts this machine is the caller's check (`profiling.check.gate`, run by `agd search`): the
    search itself only sees a cost model."""
    if table:
        path = Path(table)
        if not path.is_file():
            raise AgdError(f"--table {path}: no such file")
        lut = LUT.load(path)
    else:
        found = tables.find(target, cfg.space, cfg.input_shape)
        if found is None:
            if not required:
                return None
            raise AgdError(f"no latency table for target {target} at {format_shape(cfg.input_shape)}; "
                           f"run `agd profile --target {target} --space {cfg.space}` or pass --table FILE")
        lut = found.lut
    lut.check(get_space(cfg.space), target, cfg.input_shape)
    return lut


def resolve_budget(cfg: SearchConfig, cost: CostModel, lat: LatencyCost | None, budget_ms: float | None,
                   budget_frac: float | None, budget_gmacs: float | None) -> Budget:
    """Budget precedence: explicit ms / GMACs, then a fraction, then the recipe's. `--budget-frac F` is
    min + F*(max-min) of the predicted latency (of the MACs without a table); with `--cost flops` a ms budget
    becomes the MACs a linear ms-per-MAC fit over random archs maps to the same ms."""
    if budget_ms is None and budget_frac is None and budget_gmacs is None:
        budget_ms, budget_frac, budget_gmacs = cfg.budget_ms, cfg.budget_frac, cfg.budget_gmacs
    if budget_frac is not None and not 0.0 <= budget_frac <= 1.0:
        raise AgdError(f"--budget-frac must be in [0, 1], got {budget_frac:g}")
    if budget_gmacs is not None:
        if cost.unit != "gmacs":
            raise AgdError("--budget-gmacs needs --cost flops (a latency search takes --budget-ms or --budget-frac)")
        check_budget(cost, budget_gmacs)
        if lat is None:
            return Budget(budget_gmacs, "gmacs", None, "gmacs")
        a, b = linear_fit(cost, lat)  # report the ms this MACs budget stands for on the table's target
        return Budget(budget_gmacs, "gmacs", a + b * budget_gmacs, f"gmacs; ms = {a:.4f} + {b:.4f}*GMACs",
                      {"ms_per_gmac_fit": [a, b]})
    if lat is not None and (budget_ms is not None or budget_frac is not None):
        if budget_ms is None:
            (lo, _), (hi, _) = lat.extremes()
            budget_ms = lo + budget_frac * (hi - lo)
            how = f"frac {budget_frac:g} of [{lo:.3f}, {hi:.3f}] ms"
        else:
            how = "ms"
        check_budget(lat, budget_ms)
        if cost.unit == "ms":
            return Budget(budget_ms, "ms", budget_ms, how)
        a, b = linear_fit(cost, lat)
        gmacs = (budget_ms - a) / b
        check_budget(cost, gmacs)
        return Budget(gmacs, "gmacs", budget_ms, how + f"; ms = {a:.4f} + {b:.4f}*GMACs",
                      {"ms_per_gmac_fit": [a, b]})
    if budget_ms is not None:
        raise AgdError("--budget-ms needs a latency table (--table FILE or a shipped one for --target)")
    (lo, _), (hi, _) = cost.extremes()
    value = lo + budget_frac * (hi - lo)
    check_budget(cost, value)
    return Budget(value, cost.unit, None, f"frac {budget_frac:g} of [{lo:.4g}, {hi:.4g}] {cost.unit}")


def make_patches(cfg: SearchConfig, teacher_spec: str | None, data: str | None, dist: Dist, progress: bool):
    """(weight set, arch set): patches of the teacher's cached outputs (data/), split 50/50 by image (an
    image's degraded variants stay together). The LR inputs are the recipe's degradation (the teacher's
    default: the same cache `agd train` fills). Every rank computes its shard of the missing teacher outputs
    (on the search's device; data.cache.TeacherCache) and polls for the rest; each rank draws its own batches
    (seed + rank)."""
    from ..data import PatchDataset, TeacherCache, open_images
    from ..teachers import default_degradation, load_teacher

    spec = teacher_spec or cfg.teacher
    if not spec:
        raise AgdError(f"recipe {cfg.name} names no teacher: pass --teacher (e.g. cyclegan-pth:PATH)")
    sp = get_space(cfg.space)
    teacher = load_teacher(spec)
    if teacher.scale != sp.scale:
        raise AgdError(f"teacher {spec} is x{teacher.scale}, the {sp.name} space is x{sp.scale}")
    images = open_images(data or cfg.data)
    deg = dict(degradation=cfg.degradation or default_degradation(teacher), variants=cfg.variants)
    if teacher.module is not None:
        teacher.module.to(dist.device)  # teacher outputs computed on the search's device, in batches of tiles
    from ..utils import cache_dir

    from .distributed import timeout_s

    # every rank computes its shard of the missing entries, then polls the files for the others' (no collective)
    cache = TeacherCache(teacher, images, max_side=cfg.max_side, progress=progress and dist.is_main, **deg,
                         shard=dist.cache_shard(cache_dir("teacher_outputs")), wait_s=timeout_s())
    samples = list(cache)
    halves = ([s for s in samples if s.image % 2 == 0], [s for s in samples if s.image % 2 == 1])
    if not halves[0] or not halves[1]:
        halves = (samples, samples)
    seed = cfg.seed * 1000 + dist.rank * 2
    return (PatchDataset(halves[0], cfg.patch, tuple(sp.value_range), seed=seed),
            PatchDataset(halves[1], cfg.patch, tuple(sp.value_range), seed=seed + 1))


def search(cfg: SearchConfig, *, target: str | None = None, table: str | None = None, cost_name: str | None = None,
           budget_ms: float | None = None, budget_frac: float | None = None, budget_gmacs: float | None = None,
           teacher: str | None = None, data: str | None = None, out: str | Path = "agd-search",
           resume: bool = False, steps: int | None = None, progress: bool = True, device: str | None = "auto",
           amp: str | None = "auto", measure: Callable[[Arch], float] | None = None) -> dict[str, Any]:
    """Run a search and write `<out>/arch.json`; returns the arch.json object.
    device/amp: where the supernet trains (train.device; under torchrun cuda:LOCAL_RANK, NCCL, else gloo).
    measure: times an arch on the target (ms, the table's statistic); given, a latency search re-derives
    while the measured time is over the budget (derive.fit_measured), on the main rank."""
    t0 = time.time()
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)  # spinning OpenMP threads waste CPU on an oversubscribed box
    dist = init_from_env(device, amp)
    out = Path(out)
    if steps is not None:
        cfg.steps = steps
    cost_name = cost_name or cfg.cost
    explicit_target = target
    target = target or (LUT.load(table).target if table else cfg.target)
    lut = load_table(cfg, target, table, required=cost_name == "latency")
    if explicit_target is None and table is None and lut is not None:
        target = lut.target
    lat = LatencyCost(lut) if lut is not None else None
    cost: CostModel = lat if cost_name == "latency" else FlopsCost(cfg.space, cfg.input_shape)
    bud = resolve_budget(cfg, cost, lat, budget_ms, budget_frac, budget_gmacs)
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
    w_set, a_set = make_patches(cfg, teacher, data, dist, progress)
    if progress and dist.is_main:  # the one line that states the parallel setup (also in arch.json's "search")
        import sys

        sys.stderr.write(f"search: world {dist.world}" + (f" ({dist.backend})" if dist.backend else "")
                         + f" on {dist.compute.describe()}; per-rank batch {cfg.batch}, effective batch "
                         f"{cfg.batch * dist.world}, lr {cfg.lr_weights:g} (weights) / {cfg.lr_arch:g} (arch), "
                         "not scaled (each rank draws its own batch: the recipe's batch is per rank)\n")
    from .loop import run_loop

    res = run_loop(cfg, cost, bud.value, w_set, a_set, out, resume=resume, dist=dist, progress=progress,
                   report_cost=lat)
    net = res.net.cpu()  # derive on the CPU, wherever the supernet trained
    op_logp, width_logp = net.log_probs()
    argmax = net.argmax_arch(cfg.input_shape)
    checked: dict[str, Any] | None = None
    if measure is not None and lat is not None and cost.unit == "ms" and dist.is_main:
        arch, tries = fit_measured(argmax, cost, bud.value, measure, cfg.margin, cfg.fill, op_logp, width_logp)
        last = tries[-1]
        checked = {"measured_ms": round(last.measured_ms, 4), "accept_ms": round(bud.value * (1 - cfg.margin), 4),
                   "met": last.measured_ms <= bud.value, "tries": [t.to_dict() for t in tries]}
    else:
        arch = project(argmax, cost, bud.value, cfg.margin, cfg.fill, op_logp, width_logp)
    c = count(build(arch), arch.input_shape)
    meta: dict[str, Any] = {
        "target": target if lut is not None else None,
        "lut": str(Path(lut.path).resolve()) if lut is not None else None,
        "lut_sha256": sha256_file(lut.path) if lut is not None else None,
        "budget_ms": bud.ms,
        "predicted_ms": lat.predict(arch) if lat is not None else None,
        "gmacs": c.gmacs, "params": c.params,
        "cost": cost.name,
        "budget": {"value": bud.value, "unit": bud.unit, "how": bud.how, **bud.extra},
        f"predicted_{cost.unit}": cost.predict(arch),
        "argmax": {"ops": argmax.ops, "widths": argmax.widths,
                   f"predicted_{cost.unit}": cost.predict(argmax)},
        "search": {"recipe": cfg.name, "steps": res.steps, "resumed_from": res.resumed_from,
                   "seconds": round(time.time() - t0, 1),
                   "world_size": dist.world, "margin": cfg.margin, "teacher": teacher or cfg.teacher,
                   "per_rank_batch": cfg.batch, "effective_batch": cfg.batch * dist.world, "lr_scaled": False,
                   "device": str(dist.device), "amp": dist.compute.amp_name},
    }
    if checked is not None:
        meta["measured_ms"] = checked["measured_ms"]
        meta["budget_check"] = checked
    if cost.unit == "gmacs":
        meta["budget_gmacs"] = bud.value
    result = Arch(arch.space, arch.ops, arch.widths, list(cfg.input_shape), meta).to_dict()
    if dist.is_main:
        atomic_write_json(out / "arch.json", result)
    debug_hash(net, dist.rank)
    dist.barrier()
    dist.close()
    return result
