"""Artifacts of the torch targets: a `torch.export` program (.pt2). It holds graph and weights in one file and
loads without unpickling arbitrary objects; `torch.jit.trace` is deprecated in torch 2.13."""

from __future__ import annotations

import warnings
from pathlib import Path

from ..errors import MissingRuntimeError
from ..utils import atomic_path


def export_pt2(module, example, out: str | Path, fp16_cuda: bool = False) -> Path:
    """Export `module` at `example`'s shape. fp16_cuda: convert to half precision on the GPU first (the
    `torch-cuda-fp16` target; needs CUDA here)."""
    import torch

    module = module.eval()
    if fp16_cuda:
        if not torch.cuda.is_available():
            raise MissingRuntimeError("target torch-cuda-fp16 needs CUDA PyTorch and a CUDA GPU")
        module, example = module.cuda().half(), example.cuda().half()
    out = Path(out)
    with atomic_path(out, suffix=".pt2") as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ep = torch.export.export(module, (example,))
        torch.export.save(ep, str(tmp))
    return out


def lower(target, module, example, out: str | Path, **_) -> Path:
    """`torch-pt2` lowering handler (runtimes.targets.LOWERINGS)."""
    return export_pt2(module, example, out, fp16_cuda=target.precision == "fp16")
