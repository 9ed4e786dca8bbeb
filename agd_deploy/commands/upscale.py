"""`agd upscale MODEL IN OUT`: upscale an image or a folder of images, tile by tile."""

from __future__ import annotations

from pathlib import Path

import click

from .options import device_options


@click.command()
@click.argument("model")
@click.argument("src", metavar="IN")
@click.argument("dst", metavar="OUT")
@click.option("--tile", type=click.IntRange(min=8), default=192, show_default=True,
              help="Input tile side for large images (fixed-shape artifacts use their own input size).")
@click.option("--overlap", type=click.IntRange(min=0), default=16, show_default=True)
@click.option("--scale", type=click.IntRange(min=1), default=4, show_default=True, help="For 'bicubic' only.")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@device_options(amp_default="off")
def upscale(model, src, dst, tile, overlap, scale, threads, device, amp):
    """Upscale IN (an image or a folder) with MODEL (CKPT folder, teacher, .onnx/.tflite artifact, 'bicubic').

    A folder IN writes one PNG per readable image into the folder OUT."""
    import torch
    from PIL import Image
    from tqdm import tqdm

    from ..data import ImageFolder, load_image
    from ..errors import AgdError
    from ..train import load_upscaler
    from ..utils import atomic_path

    torch.set_num_threads(threads)
    src_p, dst_p = Path(src), Path(dst)
    if not src_p.exists():
        raise AgdError(f"{src_p} does not exist")
    up = load_upscaler(model, scale, device=device, amp=amp)
    if src_p.is_dir():
        images = ImageFolder(src_p)
        jobs = [(i, dst_p / Path(n).with_suffix(".png")) for i, n in enumerate(images.names)]
    else:
        try:
            jobs = [(load_image(src_p), dst_p)]
        except (OSError, ValueError) as e:
            raise AgdError(f"cannot read {src_p} as an image: {str(e).splitlines()[0][:120]}") from None
    for src_img, out in tqdm(jobs, desc="upscale", unit="img", disable=len(jobs) < 2):
        img = images[src_img][1] if isinstance(src_img, int) else src_img  # a folder's images: one at a time
        res = up.upscale(img, tile=tile, overlap=overlap)
        fmt = (out.suffix.lstrip(".").upper() or "PNG").replace("JPG", "JPEG")
        try:
            with atomic_path(out, out.suffix or ".png") as tmp:
                Image.fromarray(res).save(tmp, format=fmt)
        except (KeyError, ValueError):
            raise AgdError(f"unknown image format for {out} (use .png, .jpg, .bmp)") from None
        click.echo(f"{out} ({res.shape[1]}x{res.shape[0]})")
