"""Model inputs cut from images: calibration crops (a folder or the built-in training images) and held-out
crops for verification (the built-in held-out images, never used for calibration).

An SR model takes LR crops made as in its training: bicubic-downscaled by its scale, or degraded by the
degradation it was distilled on (data/degrade.py; `realesrgan` for a Real-ESRGAN student or teacher), so int8
ranges are calibrated, and the PSNR gate measured, on the inputs the artifact will see. An image-to-image model
takes crops of the image, degraded the same way when it was distilled on a degraded copy (`jpeg:50` for a
denoise student). Values are mapped to the model's range. Crops are deterministic for a seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import AgdError


def _prepare(img: np.ndarray, scale: int, h: int, w: int, degradation=None, seed: int = 0) -> np.ndarray:
    """The picture a crop is cut from: the LR image for SR (bicubic, or `degradation`'s draw for this seed);
    for ST the image scaled to ~4x the crop size so a crop shows a scene part, not a few pixels of texture.
    Upscaled if smaller than the crop."""
    from ..data import make_lr

    if scale > 1 and degradation is not None and degradation.key != "bicubic":
        from ..data.degrade import rng_for

        img = degradation(img, scale, rng_for(seed, 0, img))[1]
    elif scale > 1:
        img = make_lr(img, scale)[1]
    else:
        side = min(img.shape[:2])
        want = 4 * max(h, w)
        if side > want:
            f = want / side
            img = np.asarray(Image.fromarray(img).resize((round(img.shape[1] * f), round(img.shape[0] * f)),
                                                         Image.BICUBIC))
        if degradation is not None:  # image-to-image: the degraded copy (e.g. jpeg:50 for a denoise student)
            from ..data.degrade import rng_for

            img = degradation(img, 1, rng_for(seed, 0, img))[1]
    ih, iw = img.shape[:2]
    if ih < h or iw < w:
        f = max(h / ih, w / iw)
        img = np.asarray(Image.fromarray(img).resize((max(w, round(iw * f)), max(h, round(ih * f))), Image.BICUBIC))
    return img


def _to_input(crop: np.ndarray, value_range: tuple[float, float], n: int) -> np.ndarray:
    lo, hi = value_range
    x = crop.astype(np.float32).transpose(2, 0, 1)[None] / 255.0 * (hi - lo) + lo
    return np.ascontiguousarray(np.repeat(x, n, axis=0), dtype=np.float32)


def crops(images, shape: list[int], scale: int, value_range, count: int, seed: int, centre_first: bool,
          degradation=None):
    """`count` inputs of `shape`, cycling over `images` (an agd_deploy.data.Images); the i-th crop of an image is
    random (seeded), except the first of each image when `centre_first`. Returns (arrays, names)."""
    n, _, h, w = shape
    rng = np.random.default_rng(seed)
    prepared = [(name, _prepare(img, scale, h, w, degradation, seed)) for name, img in images]
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


def _degradation(degradation, scale: int):
    """The Degradation of the crops (None: plain bicubic LR for SR, the image itself at scale 1)."""
    if degradation is None:
        return None
    from ..data.degrade import get_degradation

    d = get_degradation(degradation)
    return None if d.key == "bicubic" else d


def calibration_inputs(calib_dir: str | Path | None, shape, scale, value_range, count: int = 24, seed: int = 0,
                       degradation=None):
    """Calibration inputs from `--calib DIR` (every readable image in it) or the built-in training images; with
    a degradation the LR the crops are cut from is degraded (half the crops, the rest bicubic: a real-world
    model is also fed clean images, and the int8 ranges must cover both)."""
    from ..data import open_images

    if calib_dir is not None:
        p = Path(calib_dir)
        if not p.exists():
            raise AgdError(f"--calib: calibration folder {p} does not exist")
        if not p.is_dir():
            raise AgdError(f"--calib: {p} is not a folder of images")
    images = open_images(str(calib_dir) if calib_dir is not None else None, split="train")
    deg = _degradation(degradation, scale)
    if deg is None:
        arrays, names = crops(images, shape, scale, value_range, count, seed, centre_first=False)
    else:
        arrays, names = crops(images, shape, scale, value_range, count - count // 2, seed, centre_first=False)
        more, _ = crops(images, shape, scale, value_range, count // 2, seed + 1, centre_first=False, degradation=deg)
        arrays = [a for pair in zip(arrays, more) for a in pair] + arrays[len(more):]
    return arrays, {"source": images.source, "images": len(images), "crops": len(arrays),
                    "data_hash": images.data_hash, "degradation": deg.key if deg is not None else "bicubic",
                    "degraded_crops": count // 2 if deg is not None else 0}


def heldout_inputs(shape, scale, value_range, per_image: int = 2, seed: int = 1, degradation=None):
    """Verification inputs: the built-in held-out images (a centre crop and random crops of each); with a
    degradation also as many crops of their degraded LR (names end in `@<degradation>`), so the PSNR-vs-fp32
    gate covers the inputs a real-world model is fed."""
    from ..data import builtin_images

    images = builtin_images("heldout")
    arrays, names = crops(images, shape, scale, value_range, per_image * len(images), seed, centre_first=True)
    deg = _degradation(degradation, scale)
    if deg is not None:
        more, more_names = crops(images, shape, scale, value_range, per_image * len(images), seed, centre_first=True,
                                 degradation=deg)
        arrays, names = arrays + more, names + [f"{n}@{deg.name}" for n in more_names]
    return arrays, names


def input_degradation(source) -> str:
    """What the model's inputs look like (an `export.source.Source`): a CKPT's training degradation (its
    train.json), a teacher's default (`teachers.default_degradation`), else bicubic."""
    import json

    if source.kind == "ckpt":
        try:
            info = json.loads((Path(source.spec) / "train.json").read_text())
        except (OSError, ValueError):
            return "bicubic"
        return str(info.get("degradation") or "bicubic")
    if source.kind == "teacher":
        from ..teachers import default_degradation

        return default_degradation(source.spec)
    return "bicubic"
