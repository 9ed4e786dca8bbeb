"""OpenVINO IR from the fp32 ONNX export, and int8 through NNCF post-training quantization (`nncf.quantize`,
calibrated on the given inputs). The IR is an .xml with its weights in a .bin beside it."""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import AgdError, MissingRuntimeError


def _require(int8: bool) -> None:
    try:
        import openvino  # noqa: F401

        if int8:
            import nncf  # noqa: F401
    except ImportError as e:
        raise MissingRuntimeError(f"OpenVINO conversion needs openvino and nncf: pip install 'agd-deploy[openvino]' "
                                  f"({e})") from None


def _save(model, out: Path) -> Path:
    """Save the IR (.xml + .bin) so readers never see a half-written pair: write in a temp dir, then move the
    .bin first and the .xml last (the .xml is what a loader opens)."""
    import openvino as ov

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".ov-") as tmp:
        xml = Path(tmp) / out.name
        ov.save_model(model, str(xml), compress_to_fp16=False)
        shutil.move(str(xml.with_suffix(".bin")), str(out.with_suffix(".bin")))
        shutil.move(str(xml), str(out))
    return out


def to_openvino_fp32(onnx_path: str | Path, out: str | Path) -> Path:
    _require(False)
    import openvino as ov

    return _save(ov.convert_model(str(onnx_path)), Path(out))


def quantize_openvino(onnx_path: str | Path, out: str | Path, calib: Sequence[np.ndarray]) -> Path:
    """int8 IR: NNCF PTQ (default preset: symmetric weights, per-channel; mixed preset not needed on CPU).

    Activation ranges are the calibration set's min/max (as onnx-int8's default `minmax`), not NNCF's default
    estimator (a mean of per-sample extremes): on an SR net that clipped the [0,1] input image to [0,0.68] and
    cost ~23 dB vs fp32 (29.4 -> 52.9 dB on tests/test_onnx_source.py's SkipSR)."""
    _require(True)
    import openvino as ov

    if not calib:
        raise AgdError("int8 quantization needs at least one calibration input")
    import nncf

    from ..log import quiet

    with quiet("nncf"):  # nncf logs INFO lines (to stdout) per quantization: hidden for this call only
        model = ov.convert_model(str(onnx_path))
        data = nncf.Dataset([np.ascontiguousarray(a, dtype=np.float32) for a in calib])
        with contextlib.redirect_stdout(io.StringIO()):
            q = nncf.quantize(model, data, subset_size=len(calib), advanced_parameters=_minmax_ranges())
    return _save(q, Path(out))


def _minmax_ranges():
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    return AdvancedQuantizationParameters(activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX)


def lower(target, module, example, out: Path, *, calib, metadata=None, **_) -> Path:
    """`openvino` lowering handler (runtimes.targets.LOWERINGS): the fp32 ONNX export read by OpenVINO, as an
    fp32 IR, or NNCF-quantized for an int8 target."""
    from .onnx import export_onnx

    _require(target.is_int8)
    with tempfile.TemporaryDirectory(prefix="agd-lower-") as tmp:
        fp32 = export_onnx(module, example, Path(tmp) / "fp32.onnx", metadata=metadata)
        if target.is_int8:
            return quantize_openvino(fp32, out, calib)
        return to_openvino_fp32(fp32, out)
