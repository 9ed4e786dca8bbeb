"""The four candidate ops of the AGD search space, at any input/output width.

Two flavours share one definition: the SR frame uses no normalisation and LeakyReLU(0.2) (ESRGAN-like),
the ST frame uses ReLU without normalisation since frame version 3 (CycleGAN's InstanceNorm ran in float in
every int8 artifact: benchmarks/results/st_int8_ops.md; `norm=True` still builds it). If the forward logic of anything here changes,
bump FRAME_VERSION in frames.py and set every frame's `frame_version` to it (both frames use these ops):
shipped latency tables were measured on the old definition."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

OPS: tuple[str, ...] = ("conv3x3", "residual", "dwsblock", "skip")
EXPAND = 4  # dwsblock expansion ratio (MobileNetV2 inverted residual)


@dataclass(frozen=True)
class Flavour:
    """How convs are followed: normalisation and activation; and how they start (`kaiming`: He-normal weights,
    zero biases, residual branches starting at 0.1x, so that a norm-free ReLU net keeps its activations' scale
    at init; PyTorch's default init shrinks them ~0.4x per conv). Init is not part of `space_hash` (a table
    times the same graph either way)."""

    name: str
    norm: bool
    act: str  # "lrelu" | "relu"
    kaiming: bool = False

    def act_layer(self) -> nn.Module:
        return nn.LeakyReLU(0.2, inplace=True) if self.act == "lrelu" else nn.ReLU(inplace=True)

    def conv(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
        """conv -> [InstanceNorm] -> [activation], zero padding k//2."""
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=True)]
        if self.kaiming:
            nn.init.kaiming_normal_(layers[0].weight, nonlinearity="relu")
            nn.init.zeros_(layers[0].bias)
        if self.norm:
            layers.append(nn.InstanceNorm2d(cout, affine=True))
        if act:
            layers.append(self.act_layer())
        return nn.Sequential(*layers)


SR_FLAVOUR = Flavour("sr", norm=False, act="lrelu")
ST_FLAVOUR = Flavour("st", norm=False, act="relu", kaiming=True)


def _proj(cin: int, cout: int, fl: Flavour) -> nn.Module:
    """A 1x1 width change (skip op, residual shortcut); He-normal in kaiming flavours like every other conv."""
    conv = nn.Conv2d(cin, cout, 1)
    if fl.kaiming:
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        nn.init.zeros_(conv.bias)
    return conv


def _start_small(seq: nn.Sequential, fl: Flavour) -> None:
    """A residual branch's last conv at 0.1x its init (kaiming flavours): the block starts near its shortcut."""
    if fl.kaiming:
        with torch.no_grad():
            seq[0].weight.mul_(0.1)


class Conv3x3(nn.Module):
    def __init__(self, cin: int, cout: int, fl: Flavour):
        super().__init__()
        self.conv = fl.conv(cin, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Residual(nn.Module):
    """Two 3x3 convs plus a shortcut (identity at equal widths, else a 1x1 conv)."""

    def __init__(self, cin: int, cout: int, fl: Flavour):
        super().__init__()
        self.conv1 = fl.conv(cin, cout, 3)
        self.conv2 = fl.conv(cout, cout, 3, act=False)
        self.shortcut = nn.Identity() if cin == cout else _proj(cin, cout, fl)
        _start_small(self.conv2, fl)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x)) + self.shortcut(x)


class DwsBlock(nn.Module):
    """Inverted residual: 1x1 expand (x4) -> depthwise 3x3 -> 1x1 project; identity added at equal widths."""

    def __init__(self, cin: int, cout: int, fl: Flavour):
        super().__init__()
        hidden = cin * EXPAND
        self.expand = fl.conv(cin, hidden, 1)
        self.dw = fl.conv(hidden, hidden, 3, groups=hidden)
        self.project = fl.conv(hidden, cout, 1, act=False)
        self.use_res = cin == cout
        if self.use_res:
            _start_small(self.project, fl)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.dw(self.expand(x)))
        return y + x if self.use_res else y


class Skip(nn.Module):
    """Identity at equal widths, else a 1x1 projection (the cheapest way to change width)."""

    def __init__(self, cin: int, cout: int, fl: Flavour):
        super().__init__()
        self.proj = nn.Identity() if cin == cout else _proj(cin, cout, fl)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


_OP_CLASSES = {"conv3x3": Conv3x3, "residual": Residual, "dwsblock": DwsBlock, "skip": Skip}


def make_op(op: str, cin: int, cout: int, fl: Flavour) -> nn.Module:
    if op not in _OP_CLASSES:
        raise ValueError(f"unknown op {op!r}; ops are {', '.join(OPS)}")
    return _OP_CLASSES[op](cin, cout, fl)


def make_divisible(v: float, divisor: int = 8) -> int:
    """MobileNet's rounding: nearest multiple of `divisor`, never below 90% of v."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


WIDTH_MULTS: tuple[float, ...] = (4 / 12, 6 / 12, 8 / 12, 10 / 12, 1.0)


def width_choices(base: int) -> tuple[int, ...]:
    """Channel counts the search may pick for a layer whose full width is `base`."""
    return tuple(make_divisible(base * m) for m in WIDTH_MULTS)
