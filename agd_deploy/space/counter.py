"""Our own MAC/parameter counter (forward hooks; thop-style counters break across torch versions).

Convention: multiply-accumulates of convolutions, transposed convolutions and linear layers for one
sample; biases, activations, norms and interpolation are not counted. A transposed conv is counted on its
*input* pixels (every input value meets every kernel weight once: in_pixels * cin * cout/groups * k*k),
which is the work a direct implementation does."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Count:
    macs: int
    params: int

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def size_mb(self) -> float:
        """fp32 weights in MB (1e6 bytes)."""
        return self.params * 4 / 1e6


def count(model: nn.Module, input_shape: tuple[int, ...] | list[int]) -> Count:
    """Count MACs for one forward of a tensor of `input_shape` (per sample) and the parameters."""
    macs = 0

    def conv_hook(m: nn.Conv2d, inp, out):
        nonlocal macs
        kh, kw = m.kernel_size
        macs += out[0].numel() * (m.in_channels // m.groups) * kh * kw

    def convT_hook(m: nn.ConvTranspose2d, inp, out):
        nonlocal macs
        kh, kw = m.kernel_size
        macs += inp[0][0].numel() * (m.out_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, inp, out):
        nonlocal macs
        macs += out[0].numel() * m.in_features

    params = sum(p.numel() for p in model.parameters())
    # Shapes are all we need: run a copy on the meta device (no compute, no memory), so counting a
    # 1-TMAC teacher takes milliseconds.
    meta = copy.deepcopy(model).to("meta").eval()
    handles = [m.register_forward_hook(h) for m, h in _hooks(meta, conv_hook, convT_hook, linear_hook)]
    try:
        with torch.no_grad():
            meta(torch.zeros(1, *list(input_shape)[1:], device="meta"))
    finally:
        for h in handles:
            h.remove()
    return Count(macs, params)


def _hooks(model: nn.Module, conv_hook, convT_hook, linear_hook):
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            yield m, conv_hook
        elif isinstance(m, nn.ConvTranspose2d):
            yield m, convT_hook
        elif isinstance(m, nn.Linear):
            yield m, linear_hook


def block_macs(module: nn.Module, cin: int, h: int, w: int) -> int:
    """MACs of one block at a cin x h x w input (used by the FLOPs cost model and LUT keys)."""
    return count(module, (1, cin, h, w)).macs
