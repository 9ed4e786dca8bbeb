"""The SR evaluation protocol of docs/ARCHITECTURE.md, in one place, so training, eval and verify agree.

HR cropped to a multiple of the scale; LR = PIL BICUBIC resize of the uint8 HR; model outputs clipped and rounded
to uint8; PSNR/SSIM on Y = 16 + 65.481 R + 128.553 G + 24.966 B (R, G, B in [0,1]) after cropping `scale` pixels at
each border, peak 255. SSIM is Wang et al.'s (11x11 gaussian window, sigma 1.5)."""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

MAX_PSNR = 100.0  # identical images: reported as 100 dB rather than infinity (JSON has no inf)


def crop_to_multiple(hr: np.ndarray, scale: int) -> np.ndarray:
    h, w = hr.shape[:2]
    return hr[: h - h % scale, : w - w % scale]


def make_lr(hr: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 HxWx3 HR -> (HR cropped to a multiple of scale, bicubic LR). scale 1 returns the HR twice."""
    hr = crop_to_multiple(np.ascontiguousarray(hr), scale)
    if scale == 1:
        return hr, hr.copy()
    h, w = hr.shape[:2]
    lr = np.asarray(Image.fromarray(hr).resize((w // scale, h // scale), Image.BICUBIC))
    return hr, lr


def bicubic_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    """The bicubic baseline: PIL BICUBIC resize of the uint8 LR to scale x its size."""
    h, w = lr.shape[:2]
    return np.asarray(Image.fromarray(lr).resize((w * scale, h * scale), Image.BICUBIC))


def to_tensor(img: np.ndarray, value_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """uint8 HxWx3 -> float32 1x3xHxW in value_range."""
    lo, hi = value_range
    t = torch.from_numpy(np.array(img, copy=True)).permute(2, 0, 1)[None].float() / 255.0
    return t * (hi - lo) + lo


def to_uint8(t: torch.Tensor, value_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """float 1x3xHxW (or 3xHxW) in value_range -> uint8 HxWx3, clipped and rounded."""
    lo, hi = value_range
    if t.dim() == 4:
        t = t[0]
    x = ((t.detach().float().cpu() - lo) / (hi - lo)).clamp(0, 1) * 255.0
    return x.round().to(torch.uint8).permute(1, 2, 0).numpy()


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float64 Y (MATLAB rgb2ycbcr's luma, range 16..235)."""
    x = img.astype(np.float64) / 255.0
    return 16.0 + 65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]


def _crop(y: np.ndarray, border: int) -> np.ndarray:
    return y[border:-border, border:-border] if border > 0 else y


def psnr_y(a: np.ndarray, b: np.ndarray, border: int) -> float:
    """PSNR (dB) on Y between two uint8 RGB images of the same size, `border` pixels cropped, peak 255."""
    if a.shape != b.shape:
        raise ValueError(f"image sizes differ: {a.shape} vs {b.shape}")
    mse = float(np.mean((_crop(rgb_to_y(a), border) - _crop(rgb_to_y(b), border)) ** 2))
    return MAX_PSNR if mse == 0 else min(MAX_PSNR, 10 * math.log10(255.0**2 / mse))


def ssim_y(a: np.ndarray, b: np.ndarray, border: int) -> float:
    """SSIM on Y (gaussian window sigma 1.5, population covariance, data range 255), `border` cropped."""
    from skimage.metrics import structural_similarity

    ya, yb = _crop(rgb_to_y(a), border), _crop(rgb_to_y(b), border)
    return float(structural_similarity(ya, yb, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                       data_range=255.0))
