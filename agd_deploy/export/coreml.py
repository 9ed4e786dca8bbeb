"""`coreml-fp16` and `coreml-int8` (.mlpackage) exporters: the shared CoreML lowering (`agd_deploy.quant.coreml`,
the conversion the CoreML targets' tables use). Prediction needs macOS: off macOS the int8 artifact is W8
(int8 per-channel weights, fp16 activations) and its status is `not verified: CoreML prediction needs macOS`."""

from __future__ import annotations

import platform

from .base import Artifact, Exporter

MACOS_REASON = "CoreML prediction needs macOS"


def _skip() -> str:
    return "" if platform.system() == "Darwin" else MACOS_REASON


class CoremlFp16(Exporter):
    name, target = "coreml-fp16", "coreml-mac-fp16"

    def export(self, model, example, info, out_dir, cfg) -> Artifact:
        return self.artifact(self.lower(model, example, info, out_dir, cfg), skip_reason=_skip())


class CoremlInt8(Exporter):
    """W8 (per-channel symmetric int8 weights) everywhere; W8A8 (activations calibrated on `cfg.calib`) on macOS."""

    name, target = "coreml-int8", "coreml-mac-int8"

    def export(self, model, example, info, out_dir, cfg) -> Artifact:
        from ..quant.coreml import int8_mode

        mode = int8_mode(cfg.calib)
        extra = {"quantization": mode}
        if mode == "W8":
            extra["note"] = "W8A8 needs activation calibration, which coremltools runs only on macOS"
        return self.artifact(self.lower(model, example, info, out_dir, cfg), skip_reason=_skip(), extra=extra)
