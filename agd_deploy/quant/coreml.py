"""torch -> CoreML .mlpackage (ML program) with coremltools: the one CoreML conversion, used by the CoreML
targets' tables and by the `coreml-*` exporters alike.

fp16, or int8: per-channel symmetric int8 weights (W8) everywhere, plus activations calibrated on `calib`
(W8A8) on macOS. Conversion and weight compression run on any OS; activation calibration and prediction need
macOS, so off macOS the int8 artifact is W8 with fp16 activations."""

from __future__ import annotations

import contextlib
import io
import json
import platform
import shutil
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import MissingRuntimeError
from ..utils import atomic_path


@contextlib.contextmanager
def _quiet():
    """coremltools prints progress bars (stderr) and, off macOS, 'Failed to load _MLModelProxy' warnings on its
    loggers (one of its modules logs on the root logger): expected, so hidden for this call only, by logger name
    (log.quiet), never process-wide."""
    from ..log import quiet

    # torch.utils._pytree: torchao's enum registration note, logged when coremltools imports it
    with quiet("", "coremltools", "torch.utils._pytree"), warnings.catch_warnings(), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        # but not torch's own deprecations (torch.jit.trace, below): they stay visible (in tests, too)
        warnings.filterwarnings("default", category=DeprecationWarning, module=r"torch\.")
        yield


def int8_mode(calib: Sequence[np.ndarray] | None) -> str:
    """W8A8 where activations can be calibrated (macOS, with calibration inputs), else W8."""
    return "W8A8" if platform.system() == "Darwin" and calib else "W8"


def _convert(module, example):
    import coremltools as ct
    import torch

    # torch.jit.trace is deprecated since torch 2.13; coremltools 9 also converts torch.export programs, but off
    # macOS nothing can run a CoreML model to show the two conversions' outputs are equal, so the switch waits
    # for a Mac to measure it (docs/ARCHITECTURE.md, pitfalls).
    x = example if isinstance(example, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(example, np.float32))
    with torch.no_grad():
        traced = torch.jit.trace(module.eval(), x)
    return ct.convert(traced, inputs=[ct.TensorType(name="input", shape=tuple(x.shape))],
                      outputs=[ct.TensorType(name="output")], convert_to="mlprogram",
                      compute_precision=ct.precision.FLOAT16, minimum_deployment_target=ct.target.iOS16)


def _quantize(ml, calib: Sequence[np.ndarray] | None):
    import coremltools.optimize.coreml as cto

    if int8_mode(calib) == "W8A8":
        acfg = cto.OptimizationConfig(global_config=cto.experimental.OpActivationLinearQuantizerConfig(
            mode="linear_symmetric"))
        ml = cto.experimental.linear_quantize_activations(ml, acfg, [{"input": a} for a in calib])
    wcfg = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(
        mode="linear_symmetric", dtype="int8", granularity="per_channel"))
    return cto.linear_quantize_weights(ml, wcfg)


def _save(ml, path: Path) -> Path:
    if path.is_dir():
        shutil.rmtree(path)
    with atomic_path(path, suffix=".mlpackage") as tmp:
        tmp.unlink()  # coremltools wants to create the package folder itself
        with _quiet():
            ml.save(str(tmp))
    return path


def lower(target, module, example, out: str | Path, *, calib=None, metadata: dict[str, Any] | None = None,
          **_: Any) -> Path:
    """`coreml` lowering handler (runtimes.targets.LOWERINGS): fp16, or int8 (W8 / W8A8, see `int8_mode`)."""
    try:
        with _quiet():
            import coremltools  # noqa: F401
    except ImportError:
        raise MissingRuntimeError("CoreML conversion needs coremltools: pip install 'agd-deploy[coreml]'") from None
    with _quiet():
        ml = _convert(module, example)
        if target.is_int8:
            ml = _quantize(ml, calib)
    # the package says what it is, as a .tflite's metadata does: W8 keeps float activations ("int8-weights")
    mode = int8_mode(calib) if target.is_int8 else None
    meta = {"precision": {"W8": "int8-weights", "W8A8": "int8"}.get(mode, target.precision), "layout": "NCHW"}
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()})
    if mode:
        meta["agd.quantization"] = mode
    ml.user_defined_metadata.update(meta)
    ml.short_description = "agd-deploy generator: input `input` float32 NCHW RGB, output `output`"
    return _save(ml, Path(out))
