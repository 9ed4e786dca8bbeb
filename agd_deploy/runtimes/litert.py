"""LiteRT adapter (ai-edge-litert Interpreter; the XNNPACK delegate is applied by default on CPU): fp32 and
int8 .tflite. Sessions take and return NCHW numpy; a model converted channels-last (int8 LUT blocks, see
`quant.litert`) is transposed on the host outside the timed call."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from .base import Runtime, Session, package_version


class LiteRtSession(Session):
    def __init__(self, path: Path, threads: int):
        from ai_edge_litert.interpreter import Interpreter

        from ..quant.litert import read_metadata

        self.meta = read_metadata(path)
        self.nhwc = self.meta.get("layout") == "NHWC"
        self.it = Interpreter(model_path=str(path), num_threads=threads)
        self.it.allocate_tensors()
        self.inp = self.it.get_input_details()[0]
        self.out = self.it.get_output_details()[0]
        shape = tuple(int(s) for s in self.inp["shape"])
        self.input_shape = (shape[0], shape[3], shape[1], shape[2]) if self.nhwc else shape
        self.input_dtype = np.dtype(self.inp["dtype"])
        self.io_quant = {}
        if np.issubdtype(self.input_dtype, np.integer):
            self.io_quant["input"] = tuple(self.inp["quantization"])
        if np.issubdtype(np.dtype(self.out["dtype"]), np.integer):
            self.io_quant["output"] = tuple(self.out["quantization"])

    def _set(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=self.input_dtype)
        if self.nhwc:
            x = x.transpose(0, 2, 3, 1)
        self.it.set_tensor(self.inp["index"], np.ascontiguousarray(x))

    def run(self, x: np.ndarray) -> np.ndarray:
        self._set(x)
        self.it.invoke()
        y = self.it.get_tensor(self.out["index"])
        return np.ascontiguousarray(y.transpose(0, 3, 1, 2)) if self.nhwc and y.ndim == 4 else y

    def timer(self, x: np.ndarray | None = None) -> Callable[[], Any]:
        """The input is set once; a timed call is one `invoke()`."""
        self._set(self.example_input() if x is None else x)
        return self.it.invoke


class LiteRtRuntime(Runtime):
    name = "litert"
    package = "ai-edge-litert"

    def available(self, device: str = "cpu") -> tuple[bool, str]:
        try:
            from ai_edge_litert.interpreter import Interpreter  # noqa: F401
        except ImportError:
            return False, "ai-edge-litert is not installed (pip install ai-edge-litert)"
        return True, ""

    def versions(self) -> dict[str, str]:
        return {"ai-edge-litert": package_version("ai-edge-litert"), "litert-torch": package_version("litert-torch")}

    def load(self, artifact: str | Path, threads: int = 1, device: str = "cpu", **options: Any) -> Session:
        return LiteRtSession(Path(artifact), threads)
