"""Reference generators (teachers and baselines), registered by name like timm's models."""

from __future__ import annotations

from typing import Callable

from torch import nn

from .cyclegan import ResnetGenerator
from .esrgan import RRDBNet
from .vdsr import VDSR

# name -> (constructor, space it belongs to, default LR/input shape)
REGISTRY: dict[str, tuple[Callable[[], nn.Module], str]] = {
    "esrgan": (lambda: RRDBNet(nb=23), "sr"),
    "vdsr": (lambda: VDSR(scale=4), "sr"),
    "cyclegan": (lambda: ResnetGenerator(ngf=64, n_blocks=9), "st"),
}


def create(name: str) -> nn.Module:
    """Build a reference net by registry name (randomly initialised: weights come from agd_deploy.teachers)."""
    try:
        ctor, _ = REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(REGISTRY))}") from None
    return ctor()


__all__ = ["REGISTRY", "RRDBNet", "ResnetGenerator", "VDSR", "create"]
