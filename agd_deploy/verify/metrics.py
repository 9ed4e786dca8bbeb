"""Output comparison, as Contracts define it: "PSNR vs fp32" = RGB outputs clipped to the model's value range,
peak = the range's width. Identical outputs report MAX_PSNR (JSON has no infinity)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MAX_PSNR = 100.0


def _clip(a: np.ndarray, value_range) -> np.ndarray:
    lo, hi = value_range
    return np.clip(np.asarray(a, dtype=np.float64), lo, hi)


def psnr(ref: np.ndarray, out: np.ndarray, value_range) -> float:
    if ref.shape != out.shape:
        raise ValueError(f"output shape {tuple(out.shape)} != reference {tuple(ref.shape)}")
    peak = value_range[1] - value_range[0]
    mse = float(np.mean((_clip(ref, value_range) - _clip(out, value_range)) ** 2))
    if not math.isfinite(mse):
        return 0.0
    return MAX_PSNR if mse <= 0 else min(MAX_PSNR, 10 * math.log10(peak * peak / mse))


def ssim(ref: np.ndarray, out: np.ndarray, value_range) -> float:
    """Mean SSIM over the batch of NCHW RGB outputs (scikit-image, per channel, gaussian window)."""
    from skimage.metrics import structural_similarity

    peak = value_range[1] - value_range[0]
    r, o = _clip(ref, value_range), _clip(out, value_range)
    vals = [structural_similarity(r[i].transpose(1, 2, 0), o[i].transpose(1, 2, 0), data_range=peak,
                                  channel_axis=2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
            for i in range(r.shape[0])]
    return float(np.mean(vals))


@dataclass
class Comparison:
    psnr_db: float  # mean over held-out inputs
    psnr_min_db: float  # worst held-out input
    ssim: float
    max_abs_err: float  # largest |difference| of clipped outputs

    def to_dict(self) -> dict[str, float]:
        return {"psnr_db": round(self.psnr_db, 3), "psnr_min_db": round(self.psnr_min_db, 3),
                "ssim": round(self.ssim, 6), "max_abs_err": round(self.max_abs_err, 6)}


def compare(refs: list[np.ndarray], outs: list[np.ndarray], value_range) -> Comparison:
    """Compare an artifact's outputs with the fp32 reference outputs, input by input."""
    if len(refs) != len(outs) or not refs:
        raise ValueError("compare needs one output per reference")
    ps = [psnr(r, o, value_range) for r, o in zip(refs, outs)]
    ss = [ssim(r, o, value_range) for r, o in zip(refs, outs)]
    mx = max(float(np.max(np.abs(_clip(r, value_range) - _clip(o, value_range)))) for r, o in zip(refs, outs))
    if not all(np.all(np.isfinite(o)) for o in outs):
        mx = float("inf")
    return Comparison(float(np.mean(ps)), float(np.min(ps)), float(np.mean(ss)),
                      mx if math.isfinite(mx) else 1e9)
