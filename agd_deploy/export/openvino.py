"""`openvino-int8`: OpenVINO IR (.xml + .bin) quantized by NNCF post-training quantization, via the shared
lowering (`agd_deploy.quant.openvino`). Its speedup is measured against the fp32 ONNX run by OpenVINO itself."""

from __future__ import annotations

from .base import Exporter


class OpenvinoInt8(Exporter):
    name, precision, suffix, target, fp32_format = "openvino-int8", "int8", ".int8.xml", "openvino-cpu-int8", "onnx"
