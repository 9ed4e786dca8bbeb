"""`agd search RECIPE`: AGD search of a generator under a latency (or MACs) budget."""

from __future__ import annotations

import json

import click

from .options import device_options


@click.command()
@click.argument("recipe")
@click.option("--target", default=None, help="Target the budget is for, e.g. ort-cpu-int8 (default: the recipe's).")
@click.option("--table", type=click.Path(dir_okay=False), default=None,
              help="Latency table (default: the one measured on this device, else one checked here; see agd profile check).")
@click.option("--budget-ms", type=click.FloatRange(min=0, min_open=True), default=None, help="Latency budget in ms.")
@click.option("--budget-frac", type=click.FloatRange(0, 1), default=None,
              help="Budget = min + F*(max-min) of the predicted latency of the smallest and largest arch.")
@click.option("--cost", "cost_name", type=click.Choice(["latency", "flops"]), default=None,
              help="Search penalty: LUT latency (default) or MACs (AGD's original).")
@click.option("--budget-gmacs", type=click.FloatRange(min=0, min_open=True), default=None,
              help="MACs budget in G (with --cost flops).")
@click.option("--teacher", default=None, help="Teacher: realesrgan-x4plus, esrgan-pth:PATH, cyclegan-pth:PATH, PATH.onnx, "
              "ncnn:PATH.param, waifu2x-cunet-denoise0..3, realcugan-x2 (agd_deploy/teachers).")
@click.option("--data", type=click.Path(file_okay=False), default=None, help="Folder of training images (default: built-in).")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output folder (default: agd-search/<recipe>).")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Override the recipe's step count.")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint in --out.")
@click.option("--allow-other-device", is_flag=True,
              help="Search with a table that a check found stale on this machine (its ms are another device's).")
@click.option("--measure", is_flag=True,
              help="Measure the derived arch on the target on this machine and re-derive (up to 3 tries) while "
                   "it is over the budget; arch.json gets measured_ms and budget_check.")
@device_options(amp_default="auto")
@click.option("--json", "as_json", is_flag=True, help="Print arch.json's object.")
@click.option("--dry-run", is_flag=True,
              help="Only check the recipe (and --table: readable, same space and input shape) and print the "
                   "resolved settings as JSON; no search, nothing written.")
def search(recipe, target, table, budget_ms, budget_frac, cost_name, budget_gmacs, teacher, data, out, steps, resume,
           allow_other_device, measure, device, amp, as_json, dry_run):
    """Search RECIPE (a shipped name like sr_x4_tiny, or a YAML path) under a budget; writes OUT/arch.json."""
    from ..search.config import SearchConfig
    from ..search.run import search as run_search

    if budget_ms is not None and budget_frac is not None:
        raise click.UsageError("give --budget-ms or --budget-frac, not both")
    cfg = SearchConfig.load(recipe)
    if dry_run:
        from ..profiling.lut import LUT

        if table:
            LUT.load(table).check(cfg.space, target, cfg.input_shape)
        click.echo(json.dumps({"recipe": cfg.to_dict(), "table": table, **_dry_checks(cfg, teacher, data, target)},
                              indent=1))
        return
    _refuse_non_rgb(teacher or cfg.teacher, data or cfg.data)
    out = out or f"agd-search/{cfg.name}"
    lut = None
    if (cost_name or cfg.cost) == "latency" or table:
        from ..profiling.lut import LUT
        from ..profiling.check import usable_table

        tgt = target or (LUT.load(table).target if table else cfg.target)
        lut = usable_table(table, tgt, cfg.space, cfg.input_shape, 1, allow_other_device, not as_json)
        if lut is not None:
            table, target = str(lut.path), tgt
    measure_fn = _measurer(lut, cost_name or cfg.cost, not as_json) if measure else None
    res = run_search(cfg, target=target, table=table, cost_name=cost_name, budget_ms=budget_ms,
                     budget_frac=budget_frac, budget_gmacs=budget_gmacs, teacher=teacher, data=data, out=out,
                     resume=resume, steps=steps, progress=not as_json, device=device, amp=amp,
                     measure=measure_fn)
    import os

    if int(os.environ.get("RANK", "0")) != 0:
        return  # under torchrun rank 0 alone reports
    if as_json:
        click.echo(json.dumps(res))
        return
    pm = res.get("predicted_ms")
    bm = res.get("budget_ms")
    lat = f"predicted {pm:.2f} ms (budget {bm:.2f} ms), " if pm is not None and bm is not None else ""
    click.echo(f"{out}/arch.json: {lat}{res['gmacs']:.3f} GMACs, {res['params']:,} params at "
               f"{'x'.join(map(str, res['input_shape']))}")
    chk = res.get("budget_check")
    if chk:
        verdict = "within" if chk["met"] else "OVER"
        click.echo(f"  measured here {chk['measured_ms']:.2f} ms: {verdict} the budget after "
                   f"{len(chk['tries'])} tr{'y' if len(chk['tries']) == 1 else 'ies'}")


def _measurer(lut, cost_name, progress):
    """The device check for --measure: a latency search (on the table just resolved) on a target that runs here."""
    if cost_name != "latency" or lut is None:
        raise click.UsageError("--measure checks a latency budget: it needs --cost latency and a latency table")
    from ..profiling.validate import measurer

    return measurer(lut, progress=progress)


def _dry_checks(cfg, teacher, data, target) -> dict:
    """--dry-run also loads a --teacher given on the command line (its scale must be the space's; the recipe's
    own teacher is not loaded: a dry run stays cheap), opens --data (headers only) and names the latency table
    the search would use, or the `agd profile` command that makes one."""
    from ..errors import AgdError
    from ..profiling import tables
    from ..space import get_space
    from ..utils import format_shape

    out: dict = {}
    spec = teacher or cfg.teacher
    sp = get_space(cfg.space)
    if teacher:
        from ..teachers import load_teacher

        t = load_teacher(spec)
        if t.scale != sp.scale:
            raise AgdError(f"teacher {spec} is x{t.scale}, the {sp.name} space is x{sp.scale}")
        out["teacher"] = {"spec": str(spec), "scale": t.scale, "value_range": list(t.value_range),
                          "fingerprint": t.fingerprint}
    if data or cfg.data:
        from ..data import open_images

        out["images"] = len(open_images(data or cfg.data))
        _refuse_non_rgb(spec, data or cfg.data)
    tgt = target or cfg.target
    found = tables.find(tgt, cfg.space, cfg.input_shape)
    shape = format_shape(cfg.input_shape)
    out["table_found"] = str(found.path) if found else None
    if found is None:
        out["table_hint"] = (f"no {tgt} table of the {cfg.space} space at {shape}: agd profile --target {tgt} "
                             f"--space {cfg.space} --input {shape} (then --table FILE), or --cost flops")
    return out


def _refuse_non_rgb(teacher, data) -> None:
    """An ncnn teacher takes a folder's RGB files only (teachers/ncnn_teacher.py: refuse_non_rgb)."""
    from ..teachers.ncnn_teacher import is_ncnn_spec, refuse_non_rgb

    if teacher and data and is_ncnn_spec(str(teacher)) and not str(data).startswith("builtin"):
        from ..data import open_images

        refuse_non_rgb(open_images(data), str(teacher))
