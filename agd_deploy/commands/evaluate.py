"""`agd eval MODEL --data DIR`: PSNR/SSIM by the SR protocol, optionally fidelity to a teacher."""

from __future__ import annotations

import json

import click

from .options import device_options


@click.command("eval")
@click.argument("model")
@click.option("--data", default=None,
              help="Folder of HR images (default: the built-in held-out images; 'builtin:train' etc. pick a split).")
@click.option("--scale", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--teacher", default=None, help="Also report PSNR/SSIM against this teacher's outputs.")
@click.option("--protocol", type=click.Choice(["bicubic", "degraded", "native"]), default="bicubic", show_default=True,
              help="LR inputs: bicubic-downscaled HR (published tables), degraded HR (--degradation), or the images "
                   "themselves at native resolution (no ground truth: needs --teacher).")
@click.option("--degradation", default="realesrgan", show_default=True,
              help="The degraded protocol's degradation: realesrgan, jpeg:Q, noise:S or bicubic.")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@device_options(amp_default="off")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object (Contracts).")
def eval_cmd(model, data, scale, teacher, protocol, degradation, threads, device, amp, as_json):
    """Evaluate MODEL (a CKPT folder, a teacher, an .onnx/.tflite artifact, or 'bicubic') on HR images.

    LR images are made by bicubic downscaling (--protocol bicubic), by degrading (degraded), or are the images
    themselves (native); PSNR/SSIM on Y with `scale` border pixels cropped, bicubic's fidelity beside."""
    import torch

    from ..data import open_images
    from ..train import evaluate

    from ..data.degrade import get_degradation
    from ..errors import AgdError

    try:
        get_degradation(degradation)
    except AgdError as e:
        raise click.BadParameter(str(e), param_hint="--degradation") from None
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
            extra += f"  (bicubic {bic[0]:.2f} dB / {bic[1]:.4f})"
        click.echo(f"{name:<28} {gt}{extra}")

    click.echo(f"protocol {protocol}" + (f" ({res['degradation']})" if protocol == "degraded" else ""))
    for r in res["images"]:
        bic = (r["bicubic_psnr_vs_teacher"], r["bicubic_ssim_vs_teacher"]) if "bicubic_psnr_vs_teacher" in r else None
        line(r["name"], r, bic)
    b = res.get("bicubic")
    line("mean", res, (b["psnr_vs_teacher"], b["ssim_vs_teacher"]) if b else None)


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
