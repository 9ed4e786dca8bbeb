"""`agd profile`: measure a target's latency table; `agd profile measure` / `agd profile validate` check it."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .info import SHAPE


NOISY = 0.05  # a table whose two halves differ by more than this was measured while the machine changed speed


def _emit(obj: dict, as_json: bool, text: str) -> None:
    click.echo(json.dumps(obj) if as_json else text)


@click.group(invoke_without_command=True)
@click.option("--target", "-t", default=None, help="Target <runtime>-<device>-<precision>, e.g. ort-cpu-int8.")
@click.option("--space", type=click.Choice(["sr", "st"]), default="sr", show_default=True)
@click.option("--input", "input_shape", type=SHAPE, default="1x3x64x64", show_default=True,
              help="Input shape NxCxHxW the table is measured at (the LR input for SR).")
@click.option("--threads", type=click.IntRange(1, 256), default=1, show_default=True)
@click.option("--rounds", type=click.IntRange(2, 10_000), default=20, show_default=True,
              help="Interleaved timing rounds (each model timed once per round).")
@click.option("--statistic", type=click.Choice(["min_ms", "p10_ms", "p50_ms"]), default="min_ms", show_default=True,
              help="The per-block estimate the predictor uses.")
@click.option("--ref-nets", type=click.IntRange(0, 50), default=6, show_default=True,
              help="Whole nets timed beside the blocks to calibrate the per-net overhead.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Table file (default latency_tables/<target>/<space>-<H>x<W>-t<threads>.json).")
@click.option("--only", default=None, hidden=True, help="Comma-separated block keys (testing: a partial table).")
@click.option("--clock", type=click.Choice(["cpu", "wall"]), default=None,
              help="cpu: the timing thread's CPU time (default at 1 thread: robust to other jobs on a shared "
                   "machine); wall: wall-clock time (default with more threads).")
@click.option("--lower-only", is_flag=True, help="Only convert the blocks (no timing); a rerun times them.")
@click.option("--jobs", "jobs_n", type=click.IntRange(1, 64), default=None,
              help="Conversion processes (default: one per usable core, at most 4). Timing is one process.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@click.pass_context
def profile(ctx: click.Context, target, space, input_shape, threads, rounds, statistic, ref_nets, seed, out, only,
            clock, lower_only, jobs_n, as_json) -> None:
    """Measure a per-block latency table (LUT) of TARGET for a search space.

    \b
    agd profile --target ort-cpu-int8 --space sr
    agd profile measure ARCH.json --target ort-cpu-int8
    agd profile validate --table latency_tables/ort-cpu-int8/sr-64x64-t1.json --n 50 --plot val.png

    An interrupted run resumes where it stopped (rerun the same command)."""
    if ctx.invoked_subcommand is not None:
        return
    if not target:
        raise click.UsageError("--target is required (e.g. --target ort-cpu-fp32), or use a subcommand")
    from ..profiling.profile import ProfileConfig, profile as run_profile

    cfg = ProfileConfig(target=target, space=space, input_shape=list(input_shape), threads=threads, rounds=rounds,
                        ref_nets=ref_nets, statistic=statistic, seed=seed, clock=clock or "",
                        only=[k for k in only.split(",") if k] if only else None)
    res = run_profile(cfg, out, progress=True, lower_only=lower_only, jobs_n=jobs_n)
    if lower_only:
        _emit({"lowered": res.lowered, "seconds": round(res.seconds, 2)}, as_json,
              f"converted {res.lowered} models in {res.seconds:.0f} s; rerun without --lower-only to time them")
        return
    s = res.summary()
    _emit(s, as_json, f"wrote {s['table']}: {s['entries']} entries in {s['seconds']:.0f} s, block noise "
                      f"(median rel. diff of two halves) {s['noise']['median_rel_diff'] * 100:.1f}%")
    if s["noise"]["median_rel_diff"] > NOISY:
        click.echo(f"warning: block noise {s['noise']['median_rel_diff'] * 100:.1f}% (> {NOISY * 100:.0f}%): the "
                   "machine's speed changed during the run; profile again on a quieter machine, or check the "
                   "table with `agd profile validate`", err=True)


def _load_table(table, target: str | None, space: str, shape, threads: int):
    from ..profiling.lut import LUT
    from ..profiling.profile import find_table

    if table:
        lut = LUT.load(table)
    else:
        p = find_table(target, space, shape, threads) if target else None
        if p is None:
            return None
        lut = LUT.load(p)
    lut.check(space, target, shape)
    lut.warn_if_other_device()
    return lut


@profile.command("measure")
@click.argument("model", type=click.Path(exists=True, path_type=Path))
@click.option("--target", "-t", default=None, help="Target (default: the table's).")
@click.option("--table", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="LUT for the prediction (default: the shipped table of the target, if any).")
@click.option("--threads", type=click.IntRange(1, 256), default=1, show_default=True)
@click.option("--rounds", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def measure_cmd(model: Path, target, table, threads, rounds, as_json) -> None:
    """Predict (from a LUT) and measure one whole net: MODEL is an arch .json or a checkpoint folder."""
    from ..profiling.lut import LUT
    from ..profiling.predictor import predict_ms
    from ..profiling.validate import measure_one
    from ..space import Arch

    arch = Arch.load(model)
    if target is None:
        if table is None:
            raise click.UsageError("give --target or --table")
        target = LUT.load(table).target
    lut = _load_table(table, target, arch.space, arch.input_shape, threads)
    stat = lut.statistic if lut else "min_ms"
    predicted = predict_ms(lut, arch) if lut else None
    from ..runtimes.timing import default_clock

    clock = lut.clock if lut else default_clock(threads)
    measured = measure_one(arch, target, threads=threads, rounds=rounds, statistic=stat, progress=not as_json,
                           clock=clock)
    out = {"predicted_ms": None if predicted is None else round(predicted, 4), "measured_ms": round(measured, 4),
           "target": target, "statistic": stat, "clock": clock, "table": str(lut.path) if lut else None}
    pred_txt = f"predicted {predicted:.2f} ms" if predicted is not None else "no table for a prediction"
    _emit(out, as_json, f"{model} on {target}: measured {measured:.2f} ms ({stat}), {pred_txt}")


@profile.command("validate")
@click.option("--table", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The LUT to check.")
@click.option("--n", "n", type=click.IntRange(3, 10_000), default=50, show_default=True, help="Random nets.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--rounds", type=click.IntRange(1, 10_000), default=10, show_default=True,
              help="Interleaved rounds per pass (two passes).")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Scatter plot PNG.")
@click.option("--lower-only", is_flag=True, help="Only convert the nets (cached); a rerun times them.")
@click.option("--json", "as_json", is_flag=True)
def validate_cmd(table: Path, n, seed, rounds, plot, lower_only, as_json) -> None:
    """Measure N random whole nets on the table's target; compare with the LUT and with a FLOPs fit."""
    from ..profiling.lut import LUT
    from ..profiling.validate import validate

    lut = LUT.load(table)
    rep = validate(lut, n=n, seed=seed, rounds=rounds, progress=True, plot=plot, lower_only=lower_only)
    if lower_only:
        _emit(rep, as_json, f"converted {rep['lowered']} nets; rerun without --lower-only to time them")
        return
    if as_json:
        click.echo(json.dumps(rep))
        return
    lines = [f"{rep['n']} random nets on {lut.target} ({table}):"]
    for k in ("lut", "flops"):
        m = rep[k]
        lines.append(f"  {k:5s}  MAPE {m['mape'] * 100:5.1f}%  within ±10% {m['within_10pct'] * 100:5.1f}%  "
                     f"Spearman {m['spearman']:.3f}  Kendall {m['kendall']:.3f}")
    lines.append(f"  repeatability Spearman (pass 1 vs 2) {rep['repeatability']['spearman']:.3f}")
    if plot:
        lines.append(f"  plot: {plot}")
    click.echo("\n".join(lines))


@profile.command("compare")
@click.argument("table_a", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("table_b", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--n", "n", type=click.IntRange(1, 100_000), default=200, show_default=True,
              help="Random nets whose predictions are compared.")
@click.option("--json", "as_json", is_flag=True)
def compare_cmd(table_a: Path, table_b: Path, n, as_json) -> None:
    """Do two tables of one target agree within their measurement noise? (e.g. two profiles of this machine)"""
    from ..profiling.compare import compare_tables
    from ..profiling.lut import LUT

    rep = compare_tables(LUT.load(table_a), LUT.load(table_b), n_nets=n)
    if as_json:
        click.echo(json.dumps(rep))
        return
    b, p = rep["blocks"], rep["predictions"]
    verdict = {True: "agree", False: "DISAGREE", None: "no noise figure"}[rep["agree"]]
    click.echo("\n".join([
        f"{rep['entries']} common blocks of {rep['target']} {rep['space']}: {verdict} "
        f"(median rel. diff {b['median_rel_diff'] * 100:.1f}%, allowed = the tables' noise "
        f"{rep['noise']['allowed'] * 100:.1f}%)",
        f"  B/A speed ratio {rep['speed_ratio']:.3f}; after removing it {b['median_rel_diff_after_speed_ratio'] * 100:.1f}%",
        f"  worst block {b['worst']['key']}: {b['worst']['a_ms']} vs {b['worst']['b_ms']} ms",
        f"  predictions of {p['n']} random nets: median rel. diff {p['median_rel_diff'] * 100:.1f}%, "
        f"max {p['max_rel_diff'] * 100:.1f}%, mean B/A {p['mean_ratio']:.3f}"]))
