"""PyTorch adapter: a `torch.export` .pt2 run eagerly under no_grad — fp32 on the CPU, fp32 or fp16 on CUDA.

The program says its own precision and device: the input placeholder's dtype (float16 for `torch-cuda-fp16`,
float32 otherwise) and the device its weights were exported on. A timed call on CUDA synchronises the device,
so it is right under any clock; the CUDA targets are timed with CUDA events (`runtimes/timing.py`), which
bracket the call on the GPU's own clock (the constant cost of that synchronise is in the identity model's
per-call cost, which every LUT entry has subtracted)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from .base import Runtime, Session


def program_input(module) -> tuple[tuple[int, ...], Any]:
    """(shape, dtype) of a `torch.export` module's (last) input placeholder; ((), None) when not recorded."""
    ph = [n for n in module.graph.nodes if n.op == "placeholder"]
    val = ph[-1].meta.get("val") if ph else None
    if val is None:
        return (), None
    return tuple(int(s) for s in val.shape), val.dtype


class TorchSession(Session):
    def __init__(self, path: Path, threads: int, device: str):
        import torch

        if device == "cpu":
            torch.set_num_threads(threads)
        self.torch = torch
        self.device = device
        self.module = torch.export.load(str(path)).module()
        self.input_shape, dtype = program_input(self.module)
        self.dtype = dtype if dtype is not None else (torch.float16 if device == "cuda" else torch.float32)

    def _tensor(self, x: np.ndarray):
        return self.torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device, self.dtype)

    def run(self, x: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            y = self.module(self._tensor(x))
        return y.float().cpu().numpy()

    def timer(self, x: np.ndarray | None = None) -> Callable[[], Any]:
        t = self._tensor(self.example_input() if x is None else x)
        torch, module, cuda = self.torch, self.module, self.device == "cuda"

        def call() -> None:
            with torch.no_grad():
                module(t)
            if cuda:
                torch.cuda.synchronize()
        return call


class TorchRuntime(Runtime):
    name = "torch"
    package = "torch"

    def available(self, device: str = "cpu") -> tuple[bool, str]:
        try:
            import torch
        except ImportError:
            return False, "torch is not installed"
        if device == "cuda" and not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU visible to PyTorch"
            return False, why
        return True, ""

    def versions(self) -> dict[str, str]:
        import torch

        v = {"torch": torch.__version__}
        if torch.version.cuda:
            v["cuda"] = torch.version.cuda
            if torch.cuda.is_available() and torch.backends.cudnn.is_available():
                v["cudnn"] = str(torch.backends.cudnn.version())
        return v

    def load(self, artifact: str | Path, threads: int = 1, device: str = "cpu", **options: Any) -> Session:
        return TorchSession(Path(artifact), threads, device)
