"""`tflite-fp32` and `tflite-int8` (.tflite for LiteRT) exporters.

Both go through `agd_deploy.quant.litert` via the shared lowering (litert-torch; int8 = PT2E static
quantization calibrated on `cfg.calib`), the conversion the `litert-cpu-*` latency tables were measured with."""

from __future__ import annotations

from .base import Exporter


class TfliteFp32(Exporter):
    name, target = "tflite-fp32", "litert-cpu-fp32"


class TfliteInt8(Exporter):
    name, target = "tflite-int8", "litert-cpu-int8"
