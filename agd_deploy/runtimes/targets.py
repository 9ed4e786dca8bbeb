"""Deployment targets `<runtime>-<device>-<precision>` and the one place that turns a torch module into the
artifact a target runs (`lower`) and loads it (`load_session`). Profiling (LUT blocks) and export (whole nets)
both call `lower`, so a LUT entry and a shipped file come from the same conversion code."""

from __future__ import annotations

import importlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import AgdError, MissingRuntimeError
from .base import Runtime, Session


@dataclass(frozen=True)
class Target:
    name: str
    runtime: str  # adapter key in ADAPTERS
    device: str  # cpu | cuda | android | mac
    precision: str  # fp32 | fp16 | int8
    suffix: str  # artifact file suffix
    needs: str  # what a user must have, for error messages

    @property
    def is_int8(self) -> bool:
        return self.precision == "int8"


TARGETS: dict[str, Target] = {t.name: t for t in [
    Target("torch-cpu-fp32", "torch", "cpu", "fp32", ".pt2", "the 'torch' package"),
    Target("ort-cpu-fp32", "ort", "cpu", "fp32", ".onnx", "the 'onnxruntime' package"),
    Target("ort-cpu-int8", "ort", "cpu", "int8", ".int8.onnx", "the 'onnxruntime' package"),
    Target("litert-cpu-fp32", "litert", "cpu", "fp32", ".tflite", "the 'ai-edge-litert' and 'litert-torch' packages (pip install agd-deploy[litert])"),
    Target("litert-cpu-int8", "litert", "cpu", "int8", ".int8.tflite", "the 'ai-edge-litert' and 'litert-torch' packages (pip install agd-deploy[litert])"),
    Target("openvino-cpu-int8", "openvino", "cpu", "int8", ".int8.xml", "the 'openvino' and 'nncf' packages (pip install agd-deploy[openvino])"),
    Target("torch-cuda-fp16", "torch", "cuda", "fp16", ".fp16.pt2", "CUDA PyTorch and a CUDA GPU"),
    Target("tensorrt-cuda-int8", "tensorrt", "cuda", "int8", ".qdq.onnx", "the 'tensorrt' package and a CUDA GPU"),
    Target("litert-android-int8", "adb", "android", "int8", ".int8.tflite", "an Android device reachable through adb (--adb 'adb -s SERIAL shell') with LiteRT's benchmark_model on it"),
    Target("coreml-mac-int8", "coreml", "mac", "int8", ".int8.mlpackage", "macOS with coremltools (CoreML prediction needs macOS)"),
]}

ADAPTERS: dict[str, str] = {
    "torch": "agd_deploy.runtimes.torch_rt:TorchRuntime",
    "ort": "agd_deploy.runtimes.ort:OrtRuntime",
    "litert": "agd_deploy.runtimes.litert:LiteRtRuntime",
    "openvino": "agd_deploy.runtimes.openvino:OpenVinoRuntime",
    "tensorrt": "agd_deploy.runtimes.tensorrt:TensorRtRuntime",
    "coreml": "agd_deploy.runtimes.coreml:CoreMlRuntime",
    "adb": "agd_deploy.runtimes.adb:AdbRuntime",
}


def runtime_for(target: Target | str) -> Runtime:
    """The adapter instance of a target (imports only the adapter module, not its runtime package)."""
    t = target if isinstance(target, Target) else get_target(target, require=False)
    mod, cls = ADAPTERS[t.runtime].split(":")
    return getattr(importlib.import_module(mod), cls)()


def available(target: Target | str) -> tuple[bool, str]:
    """(True, "") if the target can run here, else (False, "target X needs ...: <reason>")."""
    t = target if isinstance(target, Target) else get_target(target, require=False)
    ok, why = runtime_for(t).available(t.device)
    return (True, "") if ok else (False, f"target {t.name} needs {t.needs} ({why})")


def get_target(name: str, require: bool = True) -> Target:
    """A target by name. Unknown names raise AgdError listing the known ones; with `require`, a target that
    cannot run here raises MissingRuntimeError naming what it needs. Pass require=False to only convert."""
    t = TARGETS.get(name)
    if t is None:
        raise AgdError(f"unknown target {name!r}; targets are {', '.join(TARGETS)}")
    if require:
        ok, why = available(t)
        if not ok:
            raise MissingRuntimeError(why)
    return t


def _to_numpy(t) -> np.ndarray:
    return t.detach().cpu().float().numpy()


def lower(target: Target | str, module, example, out_dir: str | Path, calib: Sequence[np.ndarray] | None = None,
          name: str = "model", quantized_io: bool = False, metadata: dict[str, Any] | None = None,
          int8_config: Any = None) -> Path:
    """Turn a torch module into the artifact `target` runs, at the fixed shape of `example` (NCHW float
    tensor), written as `out_dir/<name><target.suffix>`; returns its path. Intermediate files go to a temp dir.

    calib: int8 calibration inputs (NCHW float32, the example's shape); None = the example alone (good enough for
    timing-only blocks, not for accuracy). quantized_io: int8 LUT blocks only — the artifact takes and returns
    quantized tensors (see `quant.onnx.strip_boundary_qdq`, `quant.litert`). metadata: stored in the artifact
    (ONNX metadata_props; TFLite metadata). int8_config: an `OrtInt8Config` for ONNX int8 paths."""
    t = target if isinstance(target, Target) else get_target(target, require=False)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{name}{t.suffix}"
    module = module.eval()
    calib = list(calib) if calib else [_to_numpy(example)]
    if quantized_io and not t.is_int8:
        raise AgdError(f"quantized boundaries only apply to int8 targets, not {t.name}")

    if t.runtime == "torch":
        from ..quant.torch_export import export_pt2

        return export_pt2(module, example, out, fp16_cuda=(t.precision == "fp16"))
    if t.runtime == "litert" or t.runtime == "adb":
        from ..quant import litert

        if t.is_int8:
            return litert.to_tflite_int8(module, example, out, calib, quantized_io=quantized_io, metadata=metadata)
        return litert.to_tflite_fp32(module, example, out, metadata=metadata)
    if t.runtime == "coreml":
        from ..quant.coreml import to_coreml

        return to_coreml(module, example, out, precision=t.precision, metadata=metadata)

    from ..quant import onnx as qonnx

    with tempfile.TemporaryDirectory(prefix="agd-lower-") as tmp:
        fp32 = qonnx.export_onnx(module, example, Path(tmp) / "fp32.onnx", metadata=metadata)
        if t.name == "ort-cpu-fp32":
            return Path(_move(fp32, out))
        if t.runtime == "openvino":
            from ..quant.openvino import quantize_openvino

            return quantize_openvino(fp32, out, calib)
        if int8_config is None and t.runtime == "tensorrt":
            int8_config = qonnx.OrtInt8Config(symmetric_activations=True)
        if int8_config is None:  # chosen for this machine's ISA: the device a CPU artifact is lowered on
            from ..device import identify

            int8_config = qonnx.OrtInt8Config.for_device(identify())
        cfg = int8_config
        qdq = qonnx.quantize_qdq(fp32, Path(tmp) / "qdq.onnx", calib, cfg)
        if quantized_io:
            return qonnx.strip_boundary_qdq(qdq, out)
        return Path(_move(qdq, out))


def _move(src: Path, dst: Path) -> Path:
    import os
    import shutil

    try:
        os.replace(src, dst)
    except OSError:  # another file system
        shutil.move(str(src), str(dst))
    return dst


def load_session(target: Target | str, artifact: str | Path, threads: int = 1, **options: Any) -> Session:
    """Load an artifact made by `lower` on the target's runtime (raises MissingRuntimeError if absent here).
    `options` go to the adapter (e.g. adb=`"adb -s SERIAL shell"` for litert-android-int8)."""
    t = target if isinstance(target, Target) else get_target(target, require=False)
    get_target(t.name, require=True)
    if not Path(artifact).exists():
        raise AgdError(f"artifact {artifact} does not exist")
    rt = runtime_for(t)
    return rt.load(artifact, threads=threads, device=t.device, **options)
