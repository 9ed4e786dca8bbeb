"""Artifacts of the torch targets: a `torch.export` program (.pt2). It holds graph and weights in one file and
loads without unpickling arbitrary objects; `torch.jit.trace` is deprecated in torch 2.13."""

from __future__ import annotations

from pathlib import Path

from ..errors import MissingRuntimeError
from ..utils import atomic_path


def export_pt2(module, example, out: str | Path, fp16_cuda: bool = False, cuda: bool = False,
               target: str = "torch-cuda-fp16") -> Path:
    """Export `module` at `example`'s shape. cuda: export on the GPU (the program's weights and input live
    there: `torch-cuda-fp32`); fp16_cuda: on the GPU in half precision (`torch-cuda-fp16`). Both need CUDA
    here; the caller's module is left where it was (a copy moves)."""
    import copy

    import torch

    module = module.eval()
    if fp16_cuda or cuda:
        if not torch.cuda.is_available():
            raise MissingRuntimeError(f"target {target} needs CUDA PyTorch and a CUDA GPU")
        module, example = copy.deepcopy(module).cuda(), example.cuda()
        if fp16_cuda:
            module, example = module.half(), example.half()
    out = Path(out)
    with atomic_path(out, suffix=".pt2") as tmp, torch.no_grad():
        ep = torch.export.export(module, (example,))
        torch.export.save(ep, str(tmp))
    return out


def lower(target, module, example, out: str | Path, **_) -> Path:
    """`torch-pt2` lowering handler (runtimes.targets.LOWERINGS)."""
    return export_pt2(module, example, out, fp16_cuda=target.precision == "fp16", cuda=target.device == "cuda",
                      target=target.name)
