"""`agd eval MODEL --data DIR`: PSNR/SSIM by the SR protocol, optionally fidelity to a teacher."""

from __future__ import annotations

import json

import click


@click.command("eval")
@click.argument("model")
@click.option("--data", default=None,
              help="Folder of HR images (default: the built-in held-out images; 'builtin:train' etc. pick a split).")
@click.option("--scale", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--teacher", default=None, help="Also report PSNR/SSIM against this teacher's outputs.")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object (Contracts).")
def eval_cmd(model, data, scale, teacher, threads, as_json):
    """Evaluate MODEL (a CKPT folder, a teacher, an .onnx/.tflite artifact, or 'bicubic') on HR images.

    LR images are made by bicubic downscaling; PSNR/SSIM on Y with `scale` border pixels cropped."""
    import torch

    from ..data import open_images
    from ..train import evaluate

    torch.set_num_threads(threads)
    res = evaluate(model, open_images(data, "heldout"), scale=scale, teacher=teacher)
    if as_json:
        click.echo(json.dumps(res))
        return
    for r in res["images"]:
        extra = f"  vs teacher {r['psnr_vs_teacher']:.2f} dB / {r['ssim_vs_teacher']:.4f}" if "psnr_vs_teacher" in r else ""
        click.echo(f"{r['name']:<28} {r['psnr']:.2f} dB / {r['ssim']:.4f}{extra}")
    extra = (f"  vs teacher {res['psnr_vs_teacher']:.2f} dB / {res['ssim_vs_teacher']:.4f}"
             if "psnr_vs_teacher" in res else "")
    click.echo(f"{'mean':<28} {res['psnr']:.2f} dB / {res['ssim']:.4f}{extra}")
