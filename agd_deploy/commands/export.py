"""`agd export` and `agd bench`: deployable artifacts, verified on their runtimes and timed."""

from __future__ import annotations

import json

import click

from .info import SHAPE


def _echo_err(msg: str) -> None:
    click.echo(msg, err=True)


@click.command()
@click.argument("model")
@click.option("--formats", default=None,
              help="Comma-separated: onnx, onnx-int8, tflite-fp32, tflite-int8, coreml-fp16, coreml-int8, "
                   "openvino-int8, tensorrt-int8. Default: the profile's formats.")
@click.option("--input", "input_shape", type=SHAPE, default=None,
              help="Fixed input shape NxCxHxW (SR: the LR input). Default: the arch's, else 1x3x64x64.")
@click.option("--calib", type=click.Path(file_okay=False), default=None,
              help="Folder of calibration images. Default: the built-in training images.")
@click.option("--profile", default=None,
              help="Export profile: a YAML path or a shipped name (default, mobile, server, teacher). "
                   "Default: 'teacher' for a named teacher (realesrgan-x4plus, ...), else 'default'.")
@click.option("--keep-fp32", default=None, metavar="LAYERS|auto[:N]",
              help="Leave these layers (comma-separated module paths, e.g. 'last,up2') in fp32 in int8 artifacts, "
                   "or 'auto' (the most sensitive, by a per-layer measurement, until the profile's target PSNR) "
                   "or 'auto:N' (the N most sensitive).")
@click.option("--calibration", type=click.Choice(["minmax", "percentile", "entropy"]), default=None,
              help="Activation range calibration for onnx-int8 / tensorrt-int8 (default: the profile's, minmax).")
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="Runtime threads for verification timing.")
@click.option("--rounds", type=click.IntRange(1, 10000), default=None, help="Timing rounds (default: the profile's).")
@click.option("--out", "out_dir", default="export_out", show_default=True, type=click.Path(file_okay=False),
              help="Output folder: the artifacts, manifest.json and benchmark.md.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def export(model, formats, input_shape, calib, profile, keep_fp32, calibration, threads, rounds, out_dir, as_json):
    """Export MODEL to deployable artifacts and verify each on its runtime.

    MODEL is a checkpoint folder (generator.safetensors + arch.json), an arch .json (seeded random weights:
    'untrained'), a teacher (realesrgan-x4plus, esrgan-pth:PATH, cyclegan-pth:PATH) or esrgan/vdsr/cyclegan.
    Exits 1 (after writing the manifest) if a conversion failed or an artifact is under its PSNR threshold."""
    from ..verify import manifest as mf
    from ..deploy import run_export

    manifest, code = run_export(model, formats, out_dir, input_shape=input_shape, calib=calib, profile=profile,
                                keep_fp32=keep_fp32, calibration=calibration, threads=threads, rounds=rounds,
                                progress=not as_json,
                                log=_echo_err)
    if as_json:
        click.echo(json.dumps(manifest))
    else:
        click.echo(mf.markdown_table(manifest))
        click.echo(f"wrote {out_dir}/manifest.json and {out_dir}/benchmark.md")
    if code:
        from ..verify.status import Status

        failed = [a["format"] for a in manifest["artifacts"] if Status.parse(a["status"]).failed]
        _echo_err(f"Error: {len(failed)} artifact(s) failed verification: {', '.join(failed)}")
        raise SystemExit(code)


@click.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="Runtime threads (default: the manifest's).")
@click.option("--rounds", type=click.IntRange(1, 10000), default=None, help="Timing rounds (default: the manifest's).")
@click.option("--json", "as_json", is_flag=True, help="Print the re-measured manifest as JSON.")
def bench(directory, threads, rounds, as_json):
    """Re-verify and re-time the artifacts of DIRECTORY/manifest.json on this machine (sha256 checked first)."""
    from ..verify import manifest as mf
    from ..deploy import run_bench

    result, code = run_bench(directory, threads=threads, rounds=rounds, progress=not as_json)
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(mf.markdown_table(result))
    if code:
        from ..verify.status import Status

        failed = [a["format"] for a in result["artifacts"] if Status.parse(a["status"]).failed]
        _echo_err(f"Error: {len(failed)} artifact(s) failed verification: {', '.join(failed)}")
        raise SystemExit(code)
