"""torch -> CoreML .mlpackage (ML program) with coremltools: fp16, or int8 weights (W8, per-channel linear
quantization via coremltools.optimize). Conversion and weight compression run on Linux; activation
calibration (W8A8) and prediction need macOS, so the int8 artifact made here is W8 with fp16 activations."""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from ..errors import MissingRuntimeError


def to_coreml(module, example, out: str | Path, precision: str = "int8", metadata: dict[str, Any] | None = None) -> Path:
    try:
        import coremltools as ct
    except ImportError:
        raise MissingRuntimeError("CoreML conversion needs coremltools: pip install 'agd-deploy[coreml]'") from None
    import torch

    out = Path(out)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.export.export(module.eval(), (example,)).run_decompositions({})
        ml = ct.convert(traced, inputs=[ct.TensorType(name="input", shape=tuple(example.shape))],
                        outputs=[ct.TensorType(name="output")], convert_to="mlprogram",
                        compute_precision=ct.precision.FLOAT16, minimum_deployment_target=ct.target.iOS16)
        if precision == "int8":
            cfg = ct.optimize.coreml.OptimizationConfig(
                global_config=ct.optimize.coreml.OpLinearQuantizerConfig(mode="linear_symmetric",
                                                                         granularity="per_channel"))
            ml = ct.optimize.coreml.linear_quantize_weights(ml, config=cfg)
    meta = {"precision": "int8-weights" if precision == "int8" else precision, "layout": "NCHW", **(metadata or {})}
    for k, v in meta.items():
        ml.user_defined_metadata[str(k)] = v if isinstance(v, str) else json.dumps(v)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".coreml-") as tmp:
        staged = Path(tmp) / out.name
        ml.save(str(staged))
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        shutil.move(str(staged), str(out))
    return out
