"""CycleGAN's ResnetGenerator, laid out exactly as pytorch-CycleGAN-and-pix2pix builds it (same Sequential
indices), so the official `latest_net_G.pth` state_dicts load without renaming."""

from __future__ import annotations

import torch
from torch import nn


def _norm(c: int) -> nn.Module:
    # The official 'instance' norm: no affine parameters, no running stats.
    return nn.InstanceNorm2d(c, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), _norm(dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), _norm(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """Image-to-image generator: 7x7 stem, two stride-2 downsamplers, n_blocks residual blocks, two
    transposed-conv upsamplers, 7x7 conv and tanh. Inputs and outputs are in [-1, 1]."""

    scale = 1
    value_range = (-1.0, 1.0)

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, n_blocks: int = 9):
        super().__init__()
        model: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=True), _norm(ngf), nn.ReLU(True)]
        for i in range(2):
            mult = 2**i
            model += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=True),
                      _norm(ngf * mult * 2), nn.ReLU(True)]
        mult = 4
        model += [ResnetBlock(ngf * mult) for _ in range(n_blocks)]
        for i in range(2):
            mult = 2 ** (2 - i)
            model += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1, bias=True),
                      _norm(ngf * mult // 2), nn.ReLU(True)]
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
