"""PSNR/SSIM (docs/ARCHITECTURE.md, "SR evaluation protocol") per image and mean; with a teacher, fidelity to the teacher
(the teacher's output on the same LR is the reference) — what distillation optimises.

Three protocols say which LR the model (and the teacher) is given:

- `bicubic`: the published tables' protocol, LR = bicubic-downscaled HR (the default, unchanged);
- `degraded`: LR = a degraded HR (data/degrade.py, `realesrgan` unless told), one fixed draw per image (seed
  `EVAL_SEED`), so runs compare; PSNR vs the clean HR and vs the teacher on that LR;
- `native`: the image itself at its own resolution is the input (what users feed `agd upscale`); there is no
  ground truth, so only fidelity to the teacher's output on the same input (needs a teacher).

With a teacher every protocol also reports bicubic's fidelity on the same inputs (`bicubic`), the baseline a
student must beat.

At scale 1 (image-to-image: the ST frame, a denoise teacher) there is no Y/border convention to follow: PSNR and
SSIM are on RGB, the whole image, peak 255 on the uint8 outputs (= the model's value range, clipped), and the
do-nothing baseline is the model's input itself (`input`: vs the clean image and vs the teacher; bicubic at
scale 1 is that same input)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data.images import Images
from ..data.protocol import bicubic_upscale, make_lr, psnr_y, ssim_y
from ..errors import AgdError
from .models import load_upscaler

PROTOCOLS = ("bicubic", "degraded", "native")
EVAL_SEED = 1  # the degraded protocol's draw (training variants use their own seed, on other images)


def evaluate(model, images: Images, scale: int = 4, teacher=None, cache_root=None, progress: bool = True,
             tile: int = 192, protocol: str = "bicubic", degradation=None, seed: int = EVAL_SEED) -> dict[str, Any]:
    """model: anything `load_upscaler` takes; teacher: a Teacher or teacher spec (outputs cached on disk).

    Returns {"model", "scale", "protocol", "psnr", "ssim", ["psnr_vs_teacher", "ssim_vs_teacher", "bicubic"],
    "images": [...]}; psnr/ssim are None for `native` (no ground truth)."""
    from tqdm import tqdm

    from ..data.cache import TeacherCache
    from ..teachers import Teacher, is_teacher_spec, load_teacher

    if protocol not in PROTOCOLS:
        raise AgdError(f"unknown protocol {protocol!r}: use {', '.join(PROTOCOLS)}")
    deg = {"bicubic": None, "degraded": degradation or "realesrgan", "native": "native"}[protocol]
    if protocol == "degraded":
        from ..data.degrade import get_degradation

        deg = get_degradation(deg)
    for name, img in images:
        if min(img.shape[:2]) <= 2 * scale:
            raise AgdError(f"{name}: {img.shape[1]}x{img.shape[0]} is too small to evaluate at x{scale}")
    own = None  # a teacher evaluated as the model: its outputs come from (and go to) the teacher-output cache
    if isinstance(model, Teacher) or (isinstance(model, str) and is_teacher_spec(model) and not model.endswith(".onnx")):
        tm = load_teacher(model)
        if tm.scale != scale:
            raise AgdError(f"{tm.name} upscales x{tm.scale}, not x{scale} (use --scale {tm.scale})")
        own = TeacherCache(tm, images, cache_root, progress=progress, degradation=deg, seed=seed)
    up = load_upscaler(model if own is None else "bicubic", scale)
    if own is not None:
        up.name = own.teacher.name
    if up.scale != scale:
        raise AgdError(f"{up.name} upscales x{up.scale}, not x{scale} (use --scale {up.scale})")
    ref = None
    if teacher is not None:
        t = load_teacher(teacher)
        if t.scale != scale:
            raise AgdError(f"teacher {t.name} upscales x{t.scale}, not x{scale}")
        ref = TeacherCache(t, images, cache_root, progress=progress, degradation=deg, seed=seed)
    if protocol == "native" and ref is None and own is None:
        raise AgdError("the native protocol has no ground truth: it compares with a teacher's output (give a teacher)")
    pairs = own if own is not None else ref  # the inputs, made once by the cache (identical for the same images and settings)
    metric = "rgb" if scale == 1 else "y"
    psnr_f, ssim_f = (psnr_rgb, ssim_rgb) if scale == 1 else (psnr_y, ssim_y)
    rows = []
    for i, (name, img) in enumerate(tqdm(list(images), desc=f"eval {up.name} ({protocol})", unit="img", leave=False,
                                         disable=not progress)):
        if pairs is not None:
            hr, lr = pairs[i].hr, pairs[i].lr
        else:
            hr, lr = make_lr(img, scale) if deg is None else deg(img, scale, _rng(seed, img))
        sr = own[i].teacher if own is not None else up.upscale(lr, tile=tile)
        row: dict[str, Any] = {"name": name, "input": f"{lr.shape[1]}x{lr.shape[0]}"}
        if sr.shape != (hr.shape if hr.size else (lr.shape[0] * scale, lr.shape[1] * scale, 3)):
            raise AgdError(f"{name}: {up.name} gave a {sr.shape[1]}x{sr.shape[0]} output for a {lr.shape[1]}x"
                           f"{lr.shape[0]} input at x{scale}")
        if protocol != "native":
            row["psnr"], row["ssim"] = psnr_f(sr, hr, scale), ssim_f(sr, hr, scale)
            if scale == 1:  # the do-nothing baseline vs the clean image
                row["input_psnr"], row["input_ssim"] = psnr_f(lr, hr, 1), ssim_f(lr, hr, 1)
        if ref is not None:
            ref_out = ref[i].teacher
            row["psnr_vs_teacher"] = psnr_f(sr, ref_out, scale)
            row["ssim_vs_teacher"] = ssim_f(sr, ref_out, scale)
            bic = sr if up.fn is None and own is None else bicubic_upscale(lr, scale)
            row["bicubic_psnr_vs_teacher"] = psnr_f(bic, ref_out, scale)
            row["bicubic_ssim_vs_teacher"] = ssim_f(bic, ref_out, scale)
        rows.append(row)
    out: dict[str, Any] = {"model": up.name, "scale": scale, "protocol": protocol, "metric": metric}
    if protocol == "degraded":
        out["degradation"], out["seed"] = deg.key, seed
    out["psnr"] = out["ssim"] = None
    for k in ("psnr", "ssim", "psnr_vs_teacher", "ssim_vs_teacher"):
        if k in rows[0]:
            out[k] = float(np.mean([r[k] for r in rows]))
    if ref is not None:
        out["bicubic"] = {"psnr_vs_teacher": float(np.mean([r["bicubic_psnr_vs_teacher"] for r in rows])),
                          "ssim_vs_teacher": float(np.mean([r["bicubic_ssim_vs_teacher"] for r in rows]))}
        out["gain_vs_bicubic_db"] = out["psnr_vs_teacher"] - out["bicubic"]["psnr_vs_teacher"]
    if scale == 1:  # the input itself (bicubic at scale 1 is the identity)
        inp = {k: float(np.mean([r[f"input_{k}"] for r in rows])) for k in ("psnr", "ssim") if f"input_{k}" in rows[0]}
        if ref is not None:
            inp.update(out["bicubic"])
        out["input"] = inp
    out["images"] = rows
    return out


def psnr_rgb(a: np.ndarray, b: np.ndarray, border: int = 0) -> float:
    """PSNR (dB) on RGB between two uint8 images, peak 255 (the scale-1 metric; border unused: whole image)."""
    import math

    from ..data.protocol import MAX_PSNR

    if a.shape != b.shape:
        raise ValueError(f"image sizes differ: {a.shape} vs {b.shape}")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return MAX_PSNR if mse == 0 else min(MAX_PSNR, 10 * math.log10(255.0**2 / mse))


def ssim_rgb(a: np.ndarray, b: np.ndarray, border: int = 0) -> float:
    """SSIM on RGB (per channel, averaged; gaussian window sigma 1.5, data range 255), the whole image."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a.astype(np.float64), b.astype(np.float64), gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, data_range=255.0, channel_axis=-1))


def _rng(seed: int, img: np.ndarray):
    from ..data.degrade import rng_for

    return rng_for(seed, 0, img)


__all__ = ["EVAL_SEED", "PROTOCOLS", "evaluate", "psnr_rgb", "ssim_rgb"]
