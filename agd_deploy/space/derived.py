"""Build a plain `nn.Module` (the derived generator) from an Arch, out of the same blocks a LUT measures."""

from __future__ import annotations

import torch
from torch import nn

from .arch import Arch


class SRNet(nn.Module):
    """Derived SR generator. Input RGB in [0,1], output 4x larger."""

    def __init__(self, arch: Arch):
        super().__init__()
        sp = arch.space_obj
        self.scale, self.value_range = sp.scale, sp.value_range
        blocks = iter(sp.build_block(b) for b in arch.blocks())
        self.stem = next(blocks)
        cells = []
        for _ in range(sp.n_cells):
            cells.append(nn.Sequential(*[next(blocks) for _ in range(sp.cell_len)]))
            self.cellsum = next(blocks)  # parameter-free, identical for every cell
        self.cells = nn.ModuleList(cells)
        self.body, self.up1, self.up2, self.hr, self.last, self.skip = (next(blocks) for _ in range(6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.stem(x)
        h = feat
        for cell in self.cells:
            h = self.cellsum(h, cell(h))
        h = self.body(h, feat)
        return self.skip(x, self.last(self.hr(self.up2(self.up1(h)))))


class STNet(nn.Module):
    """Derived image-to-image generator. Input and output RGB in [-1,1], same size; the output is the input
    plus a learned residual (a fresh net returns about its input); the last upsampler adds the stem's features."""

    def __init__(self, arch: Arch):
        super().__init__()
        sp = arch.space_obj
        self.scale, self.value_range = sp.scale, sp.value_range
        blocks = [sp.build_block(b) for b in arch.blocks()]
        self.stem, self.down1, self.down2 = blocks[:3]
        self.positions = nn.Sequential(*blocks[3:3 + sp.n_positions])
        self.up1, self.up2, self.last, self.skip = blocks[3 + sp.n_positions:]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.stem(x)
        h = self.positions(self.down2(self.down1(feat)))
        return self.skip(x, self.last(self.up2(self.up1(h), feat)))


def build(arch: Arch) -> nn.Module:
    """The derived net of an arch (randomly initialised)."""
    return {"sr": SRNet, "st": STNet}[arch.space](arch)
