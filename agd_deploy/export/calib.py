"""Model inputs cut from images: calibration crops (a folder or the built-in training images) and held-out
crops for verification (the built-in held-out images, never used for calibration).

An SR model takes LR crops (bicubic-downscaled by its scale, as in training); an image-to-image model takes crops
of the image. Values are mapped to the model's range. Crops are deterministic for a seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import AgdError


def _prepare(img: np.ndarray, scale: int, h: int, w: int) -> np.ndarray:
    """The picture a crop is cut from: the LR image for SR; for ST the image scaled to ~4x the crop size so a
    crop shows a scene part, not a few pixels of texture. Upscaled if smaller than the crop."""
    from ..data import make_lr

    if scale > 1:
        img = make_lr(img, scale)[1]
    else:
        side = min(img.shape[:2])
        want = 4 * max(h, w)
        if side > want:
            f = want / side
            img = np.asarray(Image.fromarray(img).resize((round(img.shape[1] * f), round(img.shape[0] * f)),
                                                         Image.BICUBIC))
    ih, iw = img.shape[:2]
    if ih < h or iw < w:
        f = max(h / ih, w / iw)
        img = np.asarray(Image.fromarray(img).resize((max(w, round(iw * f)), max(h, round(ih * f))), Image.BICUBIC))
    return img


def _to_input(crop: np.ndarray, value_range: tuple[float, float], n: int) -> np.ndarray:
    lo, hi = value_range
    x = crop.astype(np.float32).transpose(2, 0, 1)[None] / 255.0 * (hi - lo) + lo
    return np.ascontiguousarray(np.repeat(x, n, axis=0), dtype=np.float32)


def crops(images, shape: list[int], scale: int, value_range, count: int, seed: int, centre_first: bool):
    """`count` inputs of `shape`, cycling over `images` (an agd_deploy.data.Images); the i-th crop of an image is
    random (seeded), except the first of each image when `centre_first`. Returns (arrays, names)."""
    n, _, h, w = shape
    rng = np.random.default_rng(seed)
    prepared = [(name, _prepare(img, scale, h, w)) for name, img in images]
    arrays, names = [], []
    for i in range(count):
        name, img = prepared[i % len(prepared)]
        ih, iw = img.shape[:2]
        if centre_first and i < len(prepared):
            y, x = (ih - h) // 2, (iw - w) // 2
        else:
            y, x = int(rng.integers(0, ih - h + 1)), int(rng.integers(0, iw - w + 1))
        arrays.append(_to_input(img[y:y + h, x:x + w], value_range, n))
        names.append(f"{name}@{y},{x}")
    return arrays, names


def calibration_inputs(calib_dir: str | Path | None, shape, scale, value_range, count: int = 24, seed: int = 0):
    """Calibration inputs from `--calib DIR` (every readable image in it) or the built-in training images."""
    from ..data import open_images

    if calib_dir is not None:
        p = Path(calib_dir)
        if not p.exists():
            raise AgdError(f"--calib: calibration folder {p} does not exist")
        if not p.is_dir():
            raise AgdError(f"--calib: {p} is not a folder of images")
    images = open_images(str(calib_dir) if calib_dir is not None else None, split="train")
    arrays, names = crops(images, shape, scale, value_range, count, seed, centre_first=False)
    return arrays, {"source": images.source, "images": len(images), "crops": len(arrays),
                    "data_hash": images.data_hash}


def heldout_inputs(shape, scale, value_range, per_image: int = 2, seed: int = 1):
    """Verification inputs: the built-in held-out images (a centre crop and random crops of each)."""
    from ..data import builtin_images

    images = builtin_images("heldout")
    arrays, names = crops(images, shape, scale, value_range, per_image * len(images), seed, centre_first=True)
    return arrays, names
