"""onnxruntime adapter: CPU EP (CUDA EP where present), `threads` intra-op threads, one inter-op thread,
sequential execution, all graph optimisations (ORT fuses QDQ pairs into QLinear* int8 kernels)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from .base import Runtime, Session, package_version


class OrtSession(Session):
    def __init__(self, path: Path, threads: int, device: str, profile_prefix: str | None = None):
        import onnxruntime as ort

        so = ort.SessionOptions()
        if profile_prefix:  # ORT's own per-node profiler (verify/layers.py reads and deletes its JSON)
            so.enable_profiling = True
            so.profile_file_prefix = profile_prefix
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            providers.insert(0, "CUDAExecutionProvider")
        self.sess = ort.InferenceSession(str(path), so, providers=providers)
        self.device = device
        inp = self.sess.get_inputs()[0]
        self.input_name = inp.name
        self.output_name = self.sess.get_outputs()[0].name
        self.input_shape = tuple(int(d) for d in inp.shape)
        self.input_dtype = np.dtype({"tensor(float)": np.float32, "tensor(uint8)": np.uint8,
                                     "tensor(int8)": np.int8, "tensor(float16)": np.float16}[inp.type])
        meta = self.sess.get_modelmeta().custom_metadata_map
        self.metadata = dict(meta)
        self.io_quant = {}
        if meta.get("agd.boundary") == "quantized":
            self.io_quant = {k: (float(meta[f"agd.{k}_scale"]), int(meta[f"agd.{k}_zero_point"]))
                             for k in ("input", "output") if f"agd.{k}_scale" in meta}

    def run(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=self.input_dtype)
        return self.sess.run([self.output_name], {self.input_name: x})[0]

    def timer(self, x: np.ndarray | None = None) -> Callable[[], Any]:
        """Input and output bound once (IOBinding): a timed call runs the graph and nothing else."""
        x = np.ascontiguousarray(self.example_input() if x is None else x, dtype=self.input_dtype)
        binding = self.sess.io_binding()
        binding.bind_cpu_input(self.input_name, x)
        binding.bind_output(self.output_name, "cuda" if self.device == "cuda" else "cpu")
        sess = self.sess
        self._keep = x  # the binding points into this buffer: keep it alive

        def call() -> None:
            sess.run_with_iobinding(binding)
            if self.device == "cuda":
                binding.synchronize_outputs()
        call()  # first run allocates the bound output
        return call


class OrtRuntime(Runtime):
    name = "ort"
    package = "onnxruntime"

    def available(self, device: str = "cpu") -> tuple[bool, str]:
        try:
            import onnxruntime as ort
        except ImportError:
            return False, "onnxruntime is not installed (pip install onnxruntime)"
        if device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            return False, "onnxruntime has no CUDA execution provider here (needs onnxruntime-gpu and a CUDA GPU)"
        return True, ""

    def versions(self) -> dict[str, str]:
        return {"onnxruntime": package_version("onnxruntime"), "onnx": package_version("onnx")}

    def load(self, artifact: str | Path, threads: int = 1, device: str = "cpu", **options: Any) -> Session:
        return OrtSession(Path(artifact), threads, device, profile_prefix=options.get("profile_prefix"))
