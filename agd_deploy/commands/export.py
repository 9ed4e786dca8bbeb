"""`agd export` and `agd bench`: deployable artifacts, verified on their runtimes and timed."""

from __future__ import annotations

import json

import click

from .info import SHAPE


def _echo_err(msg: str) -> None:
    click.echo(msg, err=True)


STRICT = click.option("--strict", is_flag=True,
                      help="Exit 1 also when an artifact is 'not verified' (e.g. CoreML off macOS).")


def _exit(artifacts, code: int, strict: bool) -> None:
    if code:
        from ..verify import manifest as mf

        _echo_err(f"Error: {mf.failure_line(artifacts, strict)}")
        raise SystemExit(code)


@click.command()
@click.argument("model")
@click.option("--formats", default=None,
              help="Comma-separated: onnx, onnx-int8, tflite-fp32, tflite-int8, coreml-fp16, coreml-int8, "
                   "openvino-int8, tensorrt-int8. Default: the profile's formats.")
@click.option("--input", "input_shape", type=SHAPE, default=None,
              help="Fixed input shape NxCxHxW (SR: the LR input). Default: the arch's, else 1x3x64x64; an .onnx "
                   "file's own fixed input (needed where its H/W are dynamic).")
@click.option("--value-range", default=None, metavar="LO,HI",
              help="Input/output value range of an .onnx MODEL (default: its 'value_range' metadata, else 0,1).")
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
@STRICT
def export(model, formats, input_shape, value_range, calib, profile, keep_fp32, calibration, threads, rounds, out_dir,
           as_json, strict):
    """Export MODEL to deployable artifacts and verify each on its runtime.

    MODEL is a checkpoint folder (generator.safetensors + arch.json), an arch .json (seeded random weights:
    'untrained'), a teacher (realesrgan-x4plus, esrgan-pth:PATH, cyclegan-pth:PATH), esrgan/vdsr/cyclegan, or
    an ONNX generator (MODEL.onnx: onnx, onnx-int8, openvino-fp32, openvino-int8, tensorrt-int8 from its graph).
    Exits 1 (after writing the manifest) if a conversion failed or an artifact is under its PSNR threshold."""
    from ..verify import manifest as mf
    from ..deploy import run_export

    manifest, code = run_export(model, formats, out_dir, input_shape=input_shape, calib=calib, profile=profile,
                                keep_fp32=keep_fp32, calibration=calibration, threads=threads, rounds=rounds,
                                progress=not as_json, strict=strict, value_range=value_range)
    if as_json:
        click.echo(json.dumps(manifest))
    else:
        click.echo(mf.markdown_table(manifest))
        click.echo(f"wrote {out_dir}/manifest.json and {out_dir}/benchmark.md")
    _exit(manifest["artifacts"], code, strict)


@click.command()
@click.argument("directory", type=click.Path())
@click.option("--input", "input_shape", type=SHAPE, default=None,
              help="MODEL.onnx only: the input shape to time at (needed where its H/W are dynamic).")
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="Runtime threads (default: the manifest's).")
@click.option("--rounds", type=click.IntRange(1, 10000), default=None, help="Timing rounds (default: the manifest's).")
@click.option("--json", "as_json", is_flag=True, help="Print the re-measured manifest as JSON.")
@click.option("--per-layer", "per_layer", is_flag=True,
              help="Also profile each artifact per node with its runtime's own profiler (ONNX Runtime, OpenVINO): "
                   "time, precision as executed, block of the net, float fallbacks, the table's per-block "
                   "prediction beside it; written into the manifest as `per_layer`.")
@STRICT
def bench(directory, input_shape, threads, rounds, as_json, strict, per_layer):
    """Re-verify and re-time the artifacts of DIRECTORY/manifest.json on this machine (sha256 checked first).

    DIRECTORY may instead be an ONNX generator (MODEL.onnx): it is timed on onnxruntime (ort-cpu-fp32)."""
    from ..verify import manifest as mf
    from ..deploy import run_bench

    if str(directory).lower().endswith(".onnx"):
        from ..deploy.onnx_bench import describe, run_bench_onnx

        res = run_bench_onnx(directory, input_shape, threads=threads or 1, rounds=rounds or 20,
                             progress=not as_json)
        if per_layer:
            res["per_layer"] = _onnx_per_layer(directory, input_shape, threads or 1)
        click.echo(json.dumps(res) if as_json else describe(res))
        if per_layer and not as_json:
            from ..verify.layers import table

            click.echo(table("onnx", res["per_layer"]))
        return
    if input_shape is not None:
        raise click.UsageError("--input is for an ONNX file (agd bench MODEL.onnx); a manifest's shape is fixed")
    result, code = run_bench(directory, threads=threads, rounds=rounds, progress=not as_json, strict=strict,
                             per_layer=per_layer)
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(mf.markdown_table(result))
        if per_layer:
            from ..verify.layers import table

            for a in result["artifacts"]:
                if "per_layer" in a:
                    click.echo(table(a["format"], a["per_layer"]))
            click.echo(f"per-layer profiles written into {directory}/manifest.json")
    _exit(result["artifacts"], code, strict)


def _onnx_per_layer(path, input_shape, threads: int) -> dict:
    """`agd bench MODEL.onnx --per-layer`: node rows of the user's graph, grouped by its own scope names."""
    import numpy as np

    from ..verify.layers import profile_artifact

    x = None if input_shape is None else np.random.default_rng(0).random(input_shape, dtype=np.float32)
    return profile_artifact("onnx", path, x, threads)
