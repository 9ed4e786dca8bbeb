"""Verification of exported artifacts: run on their runtimes, compare with fp32 (PSNR/SSIM/max abs error),
time through the shared timing loop, gate against thresholds; manifest.json and the benchmark table."""

from .metrics import Comparison, compare, psnr, ssim

__all__ = ["Comparison", "compare", "psnr", "ssim"]
