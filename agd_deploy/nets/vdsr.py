"""VDSR (Kim et al. 2016): 20 3x3 convs on the bicubic-upsampled image, predicting the residual.

It takes the LR image like every SR model here and upsamples inside, so its MACs are counted on the
upsampled image, as the AGD paper's table does."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class VDSR(nn.Module):
    value_range = (0.0, 1.0)

    def __init__(self, scale: int = 4, channels: int = 3, nf: int = 64, depth: int = 20):
        super().__init__()
        self.scale = scale
        layers: list[nn.Module] = [nn.Conv2d(channels, nf, 3, 1, 1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(nf, nf, 3, 1, 1), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(nf, channels, 3, 1, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return up + self.body(up)
