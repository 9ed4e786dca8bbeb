"""`agd eval MODEL --data DIR`: PSNR/SSIM by the SR protocol, optionally fidelity to a teacher."""

from __future__ import annotations

import json

import click

from .options import device_options


@click.command("eval")
@click.argument("model")
@click.option("--data", default=None,
              help="Folder of HR images (default: the built-in held-out images; 'builtin:train' etc. pick a split).")
@click.option("--scale", type=click.IntRange(min=1), default=None,
              help="The model's scale (default: a CKPT's space, else the teacher's, else 4).")
@click.option("--teacher", default=None, help="Also report PSNR/SSIM against this teacher's outputs.")
@click.option("--protocol", type=click.Choice(["bicubic", "degraded", "native"]), default=None,
              help="LR inputs: bicubic-downscaled HR (published tables), degraded HR (--degradation), or the images "
                   "themselves at native resolution (no ground truth: needs --teacher). Default: degraded for a "
                   "scale-1 model with a denoise teacher (its JPEG copies), else bicubic.")
@click.option("--degradation", default=None,
              help="The degraded protocol's degradation: realesrgan, photo, jpeg:Q, noise:S or bicubic (default: the "
                   "teacher's, e.g. jpeg:50 for waifu2x-cunet-denoise2, else realesrgan).")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@device_options(amp_default="off")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object (Contracts).")
def eval_cmd(model, data, scale, teacher, protocol, degradation, threads, device, amp, as_json):
    """Evaluate MODEL (a CKPT folder, a teacher, an .onnx/.tflite artifact, or 'bicubic') on HR images.

    LR images are made by bicubic downscaling (--protocol bicubic), by degrading (degraded), or are the images
    themselves (native); PSNR/SSIM on Y with `scale` border pixels cropped, bicubic's fidelity beside. At scale 1
    (image-to-image, e.g. a student of waifu2x-cunet-denoise2): RGB, the whole image, and the do-nothing
    baseline (the degraded input itself) vs the clean image and vs the teacher."""
    import torch

    from ..data import open_images
    from ..train import evaluate

    from ..data.degrade import get_degradation
    from ..errors import AgdError

    scale, protocol, degradation = _defaults(model, teacher, scale, protocol, degradation)
    try:
        get_degradation(degradation)
    except AgdError as e:
        raise click.BadParameter(str(e), param_hint="--degradation") from None
    _refuse_non_rgb(model, teacher, data)
    if protocol == "native" and teacher is None:
        raise click.UsageError("--protocol native has no ground truth: it compares with --teacher's output")
    torch.set_num_threads(threads)
    model, teacher = _on_device(model, teacher, scale, device, amp)
    res = evaluate(model, open_images(data, "heldout"), scale=scale, teacher=teacher, protocol=protocol,
                   degradation=degradation)
    if as_json:
        click.echo(json.dumps(res))
        return
    def line(name, r, bic):
        gt = f"{r['psnr']:.2f} dB / {r['ssim']:.4f}" if r.get("psnr") is not None else "(no ground truth)"
        extra = f"  vs teacher {r['psnr_vs_teacher']:.2f} dB / {r['ssim_vs_teacher']:.4f}" if "psnr_vs_teacher" in r else ""
        if bic is not None:
            base = "input" if res.get("metric") == "rgb" else "bicubic"  # at scale 1 bicubic is the input itself
            extra += f"  ({base} {bic[0]:.2f} dB / {bic[1]:.4f})"
        click.echo(f"{name:<28} {gt}{extra}")

    click.echo(f"protocol {protocol}" + (f" ({res['degradation']})" if protocol == "degraded" else ""))
    for r in res["images"]:
        bic = (r["bicubic_psnr_vs_teacher"], r["bicubic_ssim_vs_teacher"]) if "bicubic_psnr_vs_teacher" in r else None
        line(r["name"], r, bic)
    b = res.get("bicubic")
    line("mean", res, (b["psnr_vs_teacher"], b["ssim_vs_teacher"]) if b else None)
    if res.get("input"):  # scale 1: the do-nothing baseline (the model's input itself)
        line("input (do nothing)", {**res["input"], "psnr": res["input"].get("psnr")}, None)
    click.echo(f"metric: {'RGB, whole image, peak 255' if res.get('metric') == 'rgb' else 'Y, scale px cropped'}")


def _defaults(model, teacher, scale, protocol, degradation):
    """--scale, --protocol and --degradation left out: a CKPT's space scale (else the teacher's, else 4); the
    degraded protocol for a scale-1 model whose teacher (or which itself) is a denoise teacher, with that
    teacher's JPEG quality; else bicubic / realesrgan as before."""
    from pathlib import Path

    from ..teachers import default_degradation, is_teacher_spec, load_teacher

    ref = teacher or (model if is_teacher_spec(model) and not str(model).endswith(".onnx") else None)
    if scale is None:
        p = Path(str(model))
        if (p / "arch.json").is_file():
            from ..space import Arch

            scale = Arch.load(p).space_obj.scale
        elif ref == "realesrgan-x4plus":
            scale = 4
        elif ref is not None:
            scale = load_teacher(ref).scale
        else:
            scale = 4
    deg = default_degradation(ref) if ref is not None else "bicubic"
    if protocol is None:
        protocol = "degraded" if scale == 1 and deg != "bicubic" else "bicubic"
    if degradation is None:
        degradation = deg if deg != "bicubic" else "realesrgan"
    return scale, protocol, degradation


def _refuse_non_rgb(model, teacher, data) -> None:
    """A user's RGBA/grey file given to an ncnn teacher (as MODEL or --teacher) is one line (ncnn_teacher.py)."""
    from ..teachers.ncnn_teacher import is_ncnn_spec, refuse_non_rgb

    for spec in (model, teacher):
        if spec is not None and is_ncnn_spec(str(spec)) and data and not str(data).startswith("builtin"):
            from ..data import ImageFolder

            refuse_non_rgb(ImageFolder(data), str(spec))


def _on_device(model, teacher, scale, device, amp):
    """Torch models and teachers placed on --device (CKPTs as Upscalers, teacher specs as Teachers, whose
    outputs the teacher cache then computes there); artifacts and 'bicubic' are passed through."""
    from ..teachers import is_teacher_spec, load_teacher
    from ..train import load_upscaler
    from ..train.device import resolve

    comp = resolve(device, amp)
    if comp.device.type == "cpu":
        return model, teacher

    def teacher_on(spec):
        t = load_teacher(spec)
        if t.module is not None:
            t.module.to(comp.device)
        return t

    if is_teacher_spec(model) and not str(model).endswith(".onnx"):
        model = teacher_on(model)
    elif str(model) != "bicubic" and not str(model).endswith((".onnx", ".tflite")):
        model = load_upscaler(model, scale, device=comp.device, amp=amp)
    return model, (teacher_on(teacher) if teacher is not None else None)
