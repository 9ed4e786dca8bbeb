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
              help="Table file (default: this device's folder of the user's tables, "
                   "<cache>/latency_tables/<target>/<device>/<space>-<H>x<W>-t<threads>.json).")
@click.option("--only", default=None, hidden=True, help="Comma-separated block keys (testing: a partial table).")
@click.option("--clock", type=click.Choice(["cpu", "wall", "cuda"]), default=None,
              help="cpu: the timing thread's CPU time (default at 1 thread: robust to other jobs on a shared "
                   "machine); wall: wall-clock time (default with more threads); cuda: CUDA events (default "
                   "for the torch-cuda-* targets).")
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
        from ..log import warn

        warn(f"block noise {s['noise']['median_rel_diff'] * 100:.1f}% (> {NOISY * 100:.0f}%): the "
             "machine's speed changed during the run; profile again on a quieter machine, or check the "
             "table with `agd profile validate`")


ALLOW_OTHER = click.option("--allow-other-device", is_flag=True,
                           help="Use a table that a check found stale on this machine (its ms are another device's).")


@profile.command("measure")
@click.argument("model", type=click.Path(exists=True, path_type=Path))
@click.option("--target", "-t", default=None, help="Target (default: the table's).")
@click.option("--table", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="LUT for the prediction (default: the shipped table of the target, if any).")
@click.option("--threads", type=click.IntRange(1, 256), default=1, show_default=True)
@click.option("--rounds", type=click.IntRange(1, 10_000), default=20, show_default=True)
@ALLOW_OTHER
@click.option("--json", "as_json", is_flag=True)
def measure_cmd(model: Path, target, table, threads, rounds, allow_other_device, as_json) -> None:
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
    from ..profiling.check import usable_table

    lut = usable_table(table, target, arch.space, arch.input_shape, threads, allow_other_device, not as_json)
    stat = lut.statistic if lut else "min_ms"
    predicted = predict_ms(lut, arch) if lut else None
    from ..profiling.profile import table_lowering
    from ..runtimes.timing import target_clock

    clock = lut.clock if lut else target_clock(target, threads)
    measured = measure_one(arch, target, threads=threads, rounds=rounds, statistic=stat, progress=not as_json,
                           clock=clock, int8=table_lowering(lut) if lut else None)
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
    lines = [f"{rep['n']} random nets on {lut.target} ({table}):",
             f"  table measured on {rep['devices']['table']}", f"  this machine:     {rep['devices']['here']}"]
    for k in ("lut", "flops"):
        m = rep[k]
        lines.append(f"  {k:5s}  MAPE {m['mape'] * 100:5.1f}%  within ±10% {m['within_10pct'] * 100:5.1f}%  "
                     f"Spearman {m['spearman']:.3f}  Kendall {m['kendall']:.3f}")
    f = rep["lut"].get("speed_factor")
    if f is not None:
        lines.append(f"  after one factor (the nets ran {f:.3f}x the table's times here) within ±10% "
                     f"{rep['lut']['within_10pct_rescaled'] * 100:5.1f}%")
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

    from ..device import describe_device

    a, b = LUT.load(table_a), LUT.load(table_b)
    rep = compare_tables(a, b, n_nets=n)
    rep["devices"] = {"a": a.device, "b": b.device, "same_device": _same(a, b)}
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
        f"max {p['max_rel_diff'] * 100:.1f}%, mean B/A {p['mean_ratio']:.3f}",
        f"  A measured on {describe_device(a.device)}",
        f"  B measured on {describe_device(b.device)}"
        + ("" if rep["devices"]["same_device"] else "  (another device, or unknown: differences are expected)")]))


def _same(a, b) -> bool:
    from ..device import same_device

    return same_device(a.device, b.device)


@profile.command("check")
@click.option("--table", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The LUT to check.")
@click.option("--seconds", type=click.FloatRange(5, 600), default=25.0, show_default=True,
              help="Time budget of conversions and timing (the command answers in about 4 s more).")
@click.option("--json", "as_json", is_flag=True)
def check_cmd(table: Path, seconds, as_json) -> None:
    """Does TABLE predict this machine? Re-times the reference nets it carries: fits / rescaled-fits / stale.
    Exit 0 for fits and rescaled-fits, 1 for stale."""
    from ..device import describe_device
    from ..profiling.check import check_table
    from ..profiling.lut import LUT

    lut = LUT.load(table)
    res = check_table(lut, budget_s=seconds, progress=not as_json)
    if as_json:
        click.echo(json.dumps(res.to_dict()))
    else:
        lines = [f"{table}: {res.verdict.upper()} on this machine ({res.reason})",
                 f"  speed ratio here/table {res.speed_ratio:.3f}, spread after it {res.spread * 100:.1f}%, "
                 f"largest deviation {res.max_abs_dev * 100:.1f}%, tolerance {res.tolerance * 100:.1f}% "
                 f"(check noise {res.noise * 100:.1f}%), {len(res.nets)} nets x {res.rounds} rounds in "
                 f"{res.seconds:.1f} s",
                 f"  table measured on {describe_device(res.table_device or lut.device)}",
                 f"  this machine:     {describe_device(res.this_device)}"]
        lines += [f"    net {i}: table {n['table_ms']:.2f} ms, here {n['here_ms']:.2f} ms, x{n['ratio']:.3f}"
                  for i, n in enumerate(res.nets)]
        click.echo("\n".join(lines))
    if not res.usable:
        raise SystemExit(1)


@profile.command("transfer")
@click.option("--from", "source", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A table of another device (same target, space, input size).")
@click.option("--probes", type=click.IntRange(0, 200), default=10, show_default=True,
              help="Whole nets measured here (beside the source's reference nets).")
@click.option("--rounds", type=click.IntRange(1, 1000), default=5, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The new table (default: this device's folder of the user's tables).")
@click.option("--jobs", "jobs_n", type=click.IntRange(1, 64), default=None, help="Conversion processes.")
@click.option("--json", "as_json", is_flag=True)
def transfer_cmd(source: Path, probes, rounds, seed, out, jobs_n, as_json) -> None:
    """Few-shot transfer: time K probe nets here and fit per-op-class scales of a table from another device."""
    from ..profiling import tables
    from ..profiling.lut import LUT
    from ..profiling.transfer import transfer

    from ..utils import file_lock

    src = LUT.load(source)
    if out is None:
        out = tables.user_path(src.target, src.space, src.input_shape, src.threads)
    with file_lock(out, f"a latency table transfer into {out.name}"):  # one process times probes at a time
        res = transfer(src, probes=probes, rounds=rounds, seed=seed, progress=not as_json, jobs_n=jobs_n)
        res.table.save(out)
    s = res.summary()
    if as_json:
        click.echo(json.dumps(s))
        return
    sc = ", ".join(f"{k} x{v:.3f}" for k, v in s["scales"].items())
    click.echo(f"wrote {out}: transferred from {source} with {probes} probes in {s['seconds']:.0f} s; scales {sc}; "
               f"fit residuals median {s['fit']['median_abs_rel_error'] * 100:.1f}%, "
               f"max {s['fit']['max_abs_rel_error'] * 100:.1f}% (check it: agd profile validate --table {out})")
