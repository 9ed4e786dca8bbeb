"""Run an image model on overlapping tiles, so large images fit in memory and fixed-shape artifacts
(exported at e.g. 1x3x64x64) can process any image size. Each tile's border `overlap` pixels are thrown away
except at the image edge, which hides the seams of zero padding.

A net with strided downsamplers and 2x upsamplers (the ST frame: two stride-2 convs, two 2x ups) only gives an
output of its input's size when H and W are multiples of 4: an `fn` with `hw_multiple` set (or the `multiple`
argument) has its input edge-replicated up to that multiple and the output cropped back, so any image size works."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def _windows(length: int, tile: int, overlap: int) -> list[tuple[int, int, int]]:
    """(window start, core start, core end) along one axis; windows have length `tile` (<= length)."""
    if length <= tile:
        return [(0, 0, length)]
    overlap = min(overlap, tile // 4)  # keep the step >= tile/2, whatever overlap a caller asks for
    step = tile - 2 * overlap
    starts = list(range(0, length - tile, step)) + [length - tile]
    out = []
    for s in starts:
        lo = 0 if s == 0 else s + overlap
        hi = length if s + tile >= length else s + tile - overlap
        out.append((s, lo, hi))
    return out


def tiled_apply(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, scale: int,
                tile: int | tuple[int, int] = 128, overlap: int = 8, fixed: bool = False,
                batch: int = 1, multiple: int | None = None) -> torch.Tensor:
    """fn on NCHW `x` tile by tile. `fixed`: fn only accepts exactly `tile`-sized inputs (smaller images are
    padded by edge replication and the output cropped back). `batch` > 1 (an N=1 input): up to that many
    tiles per call (all tiles of one image have the same size), which keeps a GPU busy.
    An `fn` with `tiles_itself` set (ncnn teachers: their receptive border is wider than any overlap here, and
    they pad each window with its real neighbours) gets the whole image."""
    if getattr(fn, "tiles_itself", False):
        return fn(x)
    th, tw = (tile, tile) if isinstance(tile, int) else tile
    n, c, h, w = x.shape
    m = int(multiple or getattr(fn, "hw_multiple", 1) or 1)
    if m > 1 and (h % m or w % m):
        if not fixed and (th % m or tw % m):  # windows must be multiples too
            th, tw = max(m, th - th % m), max(m, tw - tw % m)
        xp = F.pad(x, (0, -w % m, 0, -h % m), mode="replicate")
        return tiled_apply(fn, xp, scale, (th, tw), overlap, fixed, batch, multiple=1)[:, :, :h * scale, :w * scale]
    ph, pw = max(0, th - h) if fixed else 0, max(0, tw - w) if fixed else 0
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    H, W = x.shape[2:]
    if H <= th and W <= tw and not fixed:
        return fn(x)
    if batch > 1 and n == 1:
        return _tiled_batched(fn, x, scale, th, tw, overlap, batch)[:, :, :h * scale, :w * scale]
    out = None
    for ys, ylo, yhi in _windows(H, th, overlap):
        for xs, xlo, xhi in _windows(W, tw, overlap):
            y = fn(x[:, :, ys:ys + min(th, H), xs:xs + min(tw, W)])
            if out is None:
                out = torch.zeros(n, y.shape[1], H * scale, W * scale, dtype=y.dtype)
            s = scale
            out[:, :, ylo * s:yhi * s, xlo * s:xhi * s] = y[:, :, (ylo - ys) * s:(yhi - ys) * s, (xlo - xs) * s:(xhi - xs) * s]
    return out[:, :, :h * scale, :w * scale]


def _tiled_batched(fn, x: torch.Tensor, s: int, th: int, tw: int, overlap: int, batch: int) -> torch.Tensor:
    H, W = x.shape[2:]
    wins = [(yw, xw) for yw in _windows(H, th, overlap) for xw in _windows(W, tw, overlap)]
    out = None
    for i in range(0, len(wins), batch):
        chunk = wins[i:i + batch]
        xb = torch.cat([x[:, :, ys:ys + min(th, H), xs:xs + min(tw, W)] for (ys, _, _), (xs, _, _) in chunk])
        yb = fn(xb)
        if out is None:
            out = torch.zeros(1, yb.shape[1], H * s, W * s, dtype=yb.dtype)
        for k, ((ys, ylo, yhi), (xs, xlo, xhi)) in enumerate(chunk):
            out[:, :, ylo * s:yhi * s, xlo * s:xhi * s] = \
                yb[k:k + 1, :, (ylo - ys) * s:(yhi - ys) * s, (xlo - xs) * s:(xhi - xs) * s]
    return out
