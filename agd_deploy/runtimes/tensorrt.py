"""TensorRT adapter: builds an engine from an explicit Q/DQ ONNX model (TensorRT 10+ dropped implicit int8
calibrators) and runs it on CUDA memory owned by PyTorch. Needs the `tensorrt` package and a CUDA GPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import AgdError
from .base import Runtime, Session, package_version


def build_engine(onnx_path: str | Path, int8: bool = True, fp16: bool = True, workspace_gb: float = 2.0) -> bytes:
    """Serialized engine of an ONNX model. With explicit Q/DQ nodes the INT8 flag makes TensorRT honour them."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # removed (always on) in TensorRT 10+
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise AgdError(f"TensorRT cannot parse {onnx_path}: {errs}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if int8 and hasattr(trt.BuilderFlag, "INT8"):
        config.set_flag(trt.BuilderFlag.INT8)
    if fp16 and hasattr(trt.BuilderFlag, "FP16"):
        config.set_flag(trt.BuilderFlag.FP16)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise AgdError(f"TensorRT could not build an engine from {onnx_path}")
    return bytes(blob)


class TensorRtSession(Session):
    def __init__(self, path: Path):
        import tensorrt as trt
        import torch

        self.torch = torch
        engine_bytes = path.read_bytes() if path.suffix in (".engine", ".plan") else build_engine(path)
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
        self.engine = self.runtime.deserialize_cuda_engine(engine_bytes)
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self.input_name = next(n for n in names if self.engine.get_tensor_mode(n) == mode)
        self.output_name = next(n for n in names if self.engine.get_tensor_mode(n) != mode)
        self.input_shape = tuple(int(s) for s in self.engine.get_tensor_shape(self.input_name))
        out_shape = tuple(int(s) for s in self.engine.get_tensor_shape(self.output_name))
        self.x = torch.zeros(self.input_shape, dtype=torch.float32, device="cuda")
        self.y = torch.zeros(out_shape, dtype=torch.float32, device="cuda")
        self.context.set_tensor_address(self.input_name, self.x.data_ptr())
        self.context.set_tensor_address(self.output_name, self.y.data_ptr())
        self.stream = torch.cuda.Stream()

    def _execute(self) -> None:
        self.context.execute_async_v3(self.stream.cuda_stream)
        self.stream.synchronize()

    def run(self, x: np.ndarray) -> np.ndarray:
        self.x.copy_(self.torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        self.torch.cuda.synchronize()
        self._execute()
        return self.y.cpu().numpy()

    def timer(self, x: np.ndarray | None = None) -> Callable[[], Any]:
        self.x.copy_(self.torch.from_numpy(self.example_input() if x is None else np.asarray(x, np.float32)))
        self.torch.cuda.synchronize()
        return self._execute


class TensorRtRuntime(Runtime):
    name = "tensorrt"
    package = "tensorrt"

    def available(self, device: str = "cuda") -> tuple[bool, str]:
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            return False, "the tensorrt package is not installed"
        try:
            import torch

            if not torch.cuda.is_available():
                return False, "no CUDA GPU visible"
        except ImportError:
            return False, "torch is not installed"
        return True, ""

    def versions(self) -> dict[str, str]:
        return {"tensorrt": package_version("tensorrt")}

    def load(self, artifact: str | Path, threads: int = 1, device: str = "cuda", **options: Any) -> Session:
        self.require(device)
        return TensorRtSession(Path(artifact))
