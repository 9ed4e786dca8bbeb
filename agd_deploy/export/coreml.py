"""`coreml-fp16` and `coreml-int8` (.mlpackage) exporters, through coremltools.

Conversion and weight compression run on any OS. Prediction (and so activation calibration for W8A8) needs
macOS: off macOS the int8 artifact is W8 (int8 per-channel weights, fp16 activations) and its status is
`not verified: CoreML prediction needs macOS`."""

from __future__ import annotations

import contextlib
import io
import logging
import platform
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

from ..utils import atomic_path
from .base import Artifact, Exporter

MACOS_REASON = "CoreML prediction needs macOS"


@contextlib.contextmanager
def _quiet():
    """coremltools prints progress bars and 'Failed to load _MLModelProxy' lines off macOS: that is expected."""
    logging.disable(logging.WARNING)
    buf = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(buf):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


def _convert(model, example: np.ndarray, meta: dict[str, str]):
    with _quiet():
        import coremltools as ct

        x = torch.from_numpy(np.ascontiguousarray(example, dtype=np.float32))
        with torch.no_grad():
            traced = torch.jit.trace(model.eval(), x)
        ml = ct.convert(traced, inputs=[ct.TensorType(name="input", shape=tuple(x.shape))],
                        outputs=[ct.TensorType(name="output")], convert_to="mlprogram",
                        compute_precision=ct.precision.FLOAT16, minimum_deployment_target=ct.target.iOS16)
    ml.user_defined_metadata.update(meta)
    ml.short_description = "agd-deploy generator: input `input` float32 NCHW RGB, output `output`"
    return ml


def _save(ml, path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    with atomic_path(path, suffix=".mlpackage") as tmp:
        tmp.unlink()  # coremltools wants to create the package folder itself
        with _quiet():
            ml.save(str(tmp))


def _skip() -> str:
    return "" if platform.system() == "Darwin" else MACOS_REASON


class CoremlFp16(Exporter):
    name, precision, suffix, target = "coreml-fp16", "fp16", ".fp16.mlpackage", "coreml-mac-fp16"

    def export(self, model, example, info, out_dir, cfg) -> Artifact:
        path = Path(out_dir) / self.filename(info.name)
        _save(_convert(model, example, info.metadata()), path)
        return self.artifact(path, skip_reason=_skip())


class CoremlInt8(Exporter):
    """W8 (per-channel symmetric int8 weights) everywhere; W8A8 (activations calibrated on `cfg.calib`) on macOS."""

    name, precision, suffix, target, fp32_format = "coreml-int8", "int8", ".int8.mlpackage", "coreml-mac-int8", "coreml-fp16"

    def export(self, model, example, info, out_dir, cfg) -> Artifact:
        path = Path(out_dir) / self.filename(info.name)
        ml = _convert(model, example, info.metadata())
        with _quiet():
            import coremltools.optimize.coreml as cto

            wcfg = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(
                mode="linear_symmetric", dtype="int8", granularity="per_channel"))
            mode = "W8"
            if platform.system() == "Darwin" and cfg.calib:
                acfg = cto.OptimizationConfig(global_config=cto.experimental.OpActivationLinearQuantizerConfig(
                    mode="linear_symmetric"))
                ml = cto.experimental.linear_quantize_activations(ml, acfg, [{"input": a} for a in cfg.calib])
                mode = "W8A8"
            ml = cto.linear_quantize_weights(ml, wcfg)
        ml.user_defined_metadata.update({**info.metadata(), "agd.quantization": mode})
        _save(ml, path)
        extra = {"quantization": mode}
        if mode == "W8":
            extra["note"] = "W8A8 needs activation calibration, which coremltools runs only on macOS"
        return self.artifact(path, skip_reason=_skip(), extra=extra)
