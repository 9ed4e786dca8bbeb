"""`tensorrt-int8`: the explicit Q/DQ ONNX that TensorRT builds an int8 engine from.

TensorRT 10+ dropped implicit int8 calibrators, so the int8 decisions live in the ONNX file: symmetric s8
activations (zero point 0) and s8 per-channel weights, from the shared ORT quantizer. The file is checked here
with the ONNX checker and by onnxruntime against fp32 (`check_target`); the engine is built and timed only
where `tensorrt` imports and a CUDA GPU exists."""

from __future__ import annotations

from .base import Artifact
from .onnx import OnnxInt8


class TensorRTInt8(OnnxInt8):
    name, target = "tensorrt-int8", "tensorrt-cuda-int8"
    symmetric = True

    def export(self, model, example, info, out_dir, cfg) -> Artifact:
        return self._mark(super().export(model, example, info, out_dir, cfg))

    def export_from_onnx(self, fp32_onnx, info, out_dir, cfg) -> Artifact:
        return self._mark(super().export_from_onnx(fp32_onnx, info, out_dir, cfg))

    @staticmethod
    def _mark(art: Artifact) -> Artifact:
        art.extra["activations"] = "int8 symmetric (zero point 0)"
        # Where TensorRT cannot run, onnxruntime still proves the Q/DQ graph computes the right thing.
        art.extra["check_target"] = "ort-cpu-int8"
        return art
