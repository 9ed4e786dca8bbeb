"""PyTorch adapter: a `torch.export` .pt2 run eagerly under no_grad — fp32 on CPU, fp16 on CUDA (timed calls
synchronize so the GPU's queued work is inside the measurement)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from .base import Runtime, Session


class TorchSession(Session):
    def __init__(self, path: Path, threads: int, device: str):
        import torch

        if device == "cpu":
            torch.set_num_threads(threads)
        self.torch = torch
        self.device = device
        self.module = torch.export.load(str(path)).module()
        ph = [n for n in self.module.graph.nodes if n.op == "placeholder"]
        val = ph[-1].meta.get("val") if ph else None
        self.input_shape = tuple(int(s) for s in val.shape) if val is not None else ()
        self.dtype = torch.float16 if device == "cuda" else torch.float32

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
            return False, "no CUDA GPU visible to PyTorch"
        return True, ""

    def versions(self) -> dict[str, str]:
        import torch

        v = {"torch": torch.__version__}
        if torch.version.cuda:
            v["cuda"] = torch.version.cuda
        return v

    def load(self, artifact: str | Path, threads: int = 1, device: str = "cpu", **options: Any) -> Session:
        return TorchSession(Path(artifact), threads, device)
