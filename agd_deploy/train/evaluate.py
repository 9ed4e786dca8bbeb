"""PSNR/SSIM (docs/ARCHITECTURE.md, "SR evaluation protocol") per image and mean; with a teacher, fidelity to the teacher
(the teacher's output on the same LR is the reference) — what distillation optimises."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data.images import Images
from ..data.protocol import make_lr, psnr_y, ssim_y
from ..errors import AgdError
from .models import load_upscaler


def evaluate(model, images: Images, scale: int = 4, teacher=None, cache_root=None, progress: bool = True,
             tile: int = 192) -> dict[str, Any]:
    """model: anything `load_upscaler` takes; teacher: a Teacher or teacher spec (outputs cached on disk).

    Returns {"model", "scale", "psnr", "ssim", ["psnr_vs_teacher", "ssim_vs_teacher"], "images": [...]}."""
    from tqdm import tqdm

    from ..data.cache import TeacherCache
    from ..teachers import Teacher, is_teacher_spec, load_teacher

    for name, img in images:
        if min(img.shape[:2]) <= 2 * scale:
            raise AgdError(f"{name}: {img.shape[1]}x{img.shape[0]} is too small to evaluate at x{scale}")
    own = None  # a teacher evaluated as the model: its outputs come from (and go to) the teacher-output cache
    if isinstance(model, Teacher) or (isinstance(model, str) and is_teacher_spec(model) and not model.endswith(".onnx")):
        tm = load_teacher(model)
        if tm.scale != scale:
            raise AgdError(f"{tm.name} upscales x{tm.scale}, not x{scale} (use --scale {tm.scale})")
        own = TeacherCache(tm, images, cache_root, progress=progress)
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
        ref = TeacherCache(t, images, cache_root, progress=progress)
    rows = []
    for i, (name, img) in enumerate(tqdm(list(images), desc=f"eval {up.name}", unit="img", leave=False,
                                         disable=not progress)):
        hr, lr = make_lr(img, scale)
        sr = own[i].teacher if own is not None else up.upscale(lr, tile=tile)
        row = {"name": name, "psnr": psnr_y(sr, hr, scale), "ssim": ssim_y(sr, hr, scale)}
        if ref is not None:
            row["psnr_vs_teacher"] = psnr_y(sr, ref[i].teacher, scale)
            row["ssim_vs_teacher"] = ssim_y(sr, ref[i].teacher, scale)
        rows.append(row)
    out: dict[str, Any] = {"model": up.name, "scale": scale}
    for k in ("psnr", "ssim", "psnr_vs_teacher", "ssim_vs_teacher"):
        if k in rows[0]:
            out[k] = float(np.mean([r[k] for r in rows]))
    out["images"] = rows
    return out
