"""OpenVINO adapter: CPU plugin, `threads` inference threads, one stream, latency hint."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from .base import Runtime, Session, package_version


class OpenVinoSession(Session):
    def __init__(self, path: Path, threads: int, perf_count: bool = False):
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(path))
        self.model = model  # the graph as read (verify/layers.py maps runtime nodes back to it)
        # f32 float math: on CPUs with AVX-512 BF16 (or AMX) the CPU plugin otherwise runs float ops in bf16 by
        # default, so an fp32 artifact (and an int8 one's float parts) would not run the precision it states
        config = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_PRECISION_HINT": "f32"}
        if perf_count:  # per-node counters for `get_profiling_info()` (verify/layers.py)
            config["PERF_COUNT"] = True
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        inp = self.compiled.inputs[0]
        self.input_shape = tuple(int(d) for d in inp.get_shape())
        self.input_dtype = np.dtype(inp.get_element_type().to_dtype())

    def run(self, x: np.ndarray) -> np.ndarray:
        self.request.infer({0: np.ascontiguousarray(x, dtype=self.input_dtype)})
        return np.array(self.request.get_output_tensor(0).data, copy=True)

    def timer(self, x: np.ndarray | None = None) -> Callable[[], Any]:
        """Input tensor set once; a timed call is one synchronous `infer()`."""
        import openvino as ov

        self._x = np.ascontiguousarray(self.example_input() if x is None else x, dtype=self.input_dtype)
        self.request.set_input_tensor(ov.Tensor(self._x, shared_memory=True))
        return self.request.infer


class OpenVinoRuntime(Runtime):
    name = "openvino"
    package = "openvino"

    def available(self, device: str = "cpu") -> tuple[bool, str]:
        try:
            import openvino  # noqa: F401
        except ImportError:
            return False, "openvino is not installed (pip install agd-deploy[openvino])"
        return True, ""

    def versions(self) -> dict[str, str]:
        return {"openvino": package_version("openvino"), "nncf": package_version("nncf")}

    def load(self, artifact: str | Path, threads: int = 1, device: str = "cpu", **options: Any) -> Session:
        return OpenVinoSession(Path(artifact), threads, perf_count=bool(options.get("perf_count")))
