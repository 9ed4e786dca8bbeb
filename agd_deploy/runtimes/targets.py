"""Deployment targets `<runtime>-<device>-<precision>`: one record per target, and the one place that turns a
torch module into the artifact a target runs (`lower`) and loads it (`load_session`). Profiling (LUT blocks)
and export (whole nets) both call `lower`, so a LUT entry and a shipped file come from the same conversion.

A target is a record (`Target`) naming its runtime adapter (ADAPTERS), its lowering handler (LOWERINGS: a
function in `agd_deploy/quant/`, registered by name and imported only when used), artifact suffix, precision,
the fp32 target its speed-ups are measured against, and whether its runtime computes in the calling thread
(then one-thread timings use that thread's CPU clock). Adding a target = one record here + its lowering
handler (docs/ARCHITECTURE.md, "How to add a target")."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import AgdError, MissingRuntimeError
from .base import Runtime, Session


@dataclass(frozen=True)
class Target:
    name: str
    runtime: str        # adapter key in ADAPTERS
    device: str         # cpu | cuda | android | mac
    precision: str      # fp32 | fp16 | int8
    suffix: str         # artifact file suffix
    needs: str          # what a user must have, for error messages
    lowering: str       # handler key in LOWERINGS
    fp32: str | None = None     # the target (same runtime) speed-ups are measured against
    in_caller: bool = False     # at one thread the runtime computes in the calling thread (CPU clock)
    clock: str = ""             # the clock it is timed with ("cuda": CUDA events); "" = from in_caller

    @property
    def is_int8(self) -> bool:
        return self.precision == "int8"


_LITERT = "the 'ai-edge-litert' and 'litert-torch' packages (pip install agd-deploy[litert])"
_OPENVINO = "the 'openvino' and 'nncf' packages (pip install agd-deploy[openvino])"
TARGETS: dict[str, Target] = {t.name: t for t in [
    Target("torch-cpu-fp32", "torch", "cpu", "fp32", ".pt2", "the 'torch' package", "torch-pt2"),
    Target("ort-cpu-fp32", "ort", "cpu", "fp32", ".onnx", "the 'onnxruntime' package", "onnx-fp32", in_caller=True),
    Target("ort-cpu-int8", "ort", "cpu", "int8", ".int8.onnx", "the 'onnxruntime' package", "onnx-int8",
           "ort-cpu-fp32", in_caller=True),
    Target("litert-cpu-fp32", "litert", "cpu", "fp32", ".tflite", _LITERT, "litert", in_caller=True),
    Target("litert-cpu-int8", "litert", "cpu", "int8", ".int8.tflite", _LITERT, "litert", "litert-cpu-fp32",
           in_caller=True),
    Target("openvino-cpu-fp32", "openvino", "cpu", "fp32", ".xml", _OPENVINO, "openvino"),
    Target("openvino-cpu-int8", "openvino", "cpu", "int8", ".int8.xml", _OPENVINO, "openvino", "openvino-cpu-fp32"),
    Target("torch-cuda-fp32", "torch", "cuda", "fp32", ".cuda.pt2", "CUDA PyTorch and a CUDA GPU", "torch-pt2",
           clock="cuda"),
    Target("torch-cuda-fp16", "torch", "cuda", "fp16", ".fp16.pt2", "CUDA PyTorch and a CUDA GPU", "torch-pt2",
           "torch-cuda-fp32", clock="cuda"),
    Target("tensorrt-cuda-int8", "tensorrt", "cuda", "int8", ".qdq.onnx", "the 'tensorrt' package and a CUDA GPU "
           "(pip install 'agd-deploy[tensorrt]': polygraphy, tensorrt-cu13)", "onnx-int8"),
    Target("litert-android-int8", "adb", "android", "int8", ".int8.tflite", "an Android device reachable through "
           "adb (--adb 'adb -s SERIAL shell') with LiteRT's benchmark_model on it", "litert"),
    Target("coreml-mac-fp16", "coreml", "mac", "fp16", ".fp16.mlpackage", "macOS with coremltools (CoreML "
           "prediction needs macOS)", "coreml"),
    Target("coreml-mac-int8", "coreml", "mac", "int8", ".int8.mlpackage", "macOS with coremltools (CoreML "
           "prediction needs macOS)", "coreml", "coreml-mac-fp16"),
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

# Lowering handlers: handler(target, module, example, out, *, calib, quantized_io, metadata, int8_config) -> Path
LOWERINGS: dict[str, str] = {
    "torch-pt2": "agd_deploy.quant.torch_export:lower",
    "onnx-fp32": "agd_deploy.quant.onnx:lower_fp32",
    "onnx-int8": "agd_deploy.quant.onnx:lower_int8",
    "litert": "agd_deploy.quant.litert:lower",
    "openvino": "agd_deploy.quant.openvino:lower",
    "coreml": "agd_deploy.quant.coreml:lower",
}


def _load(spec: str):
    mod, attr = spec.split(":")
    return getattr(importlib.import_module(mod), attr)


def runtime_for(target: Target | str) -> Runtime:
    """The adapter instance of a target (imports only the adapter module, not its runtime package)."""
    t = target if isinstance(target, Target) else get_target(target, require=False)
    return _load(ADAPTERS[t.runtime])()


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
    tensor), written as `out_dir/<name><target.suffix>`; returns its path. The target's registered handler
    does the work (intermediate files go to a temp dir).

    calib: int8 calibration inputs (NCHW float32, the example's shape); None = the example alone (good enough for
    timing-only blocks, not for accuracy). quantized_io: int8 LUT blocks only — the artifact takes and returns
    quantized tensors (see `quant.onnx.strip_boundary_qdq`, `quant.litert`). metadata: stored in the artifact
    (ONNX metadata_props; TFLite metadata). int8_config: an `OrtInt8Config` for ONNX int8 paths (None: the one
    chosen for this machine's ISA)."""
    t = target if isinstance(target, Target) else get_target(target, require=False)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if quantized_io and not t.is_int8:
        raise AgdError(f"quantized boundaries only apply to int8 targets, not {t.name}")
    handler = _load(LOWERINGS[t.lowering])
    return Path(handler(t, module.eval(), example, out_dir / f"{name}{t.suffix}",
                        calib=list(calib) if calib else [_to_numpy(example)], quantized_io=quantized_io,
                        metadata=metadata, int8_config=int8_config))


def load_session(target: Target | str, artifact: str | Path, threads: int = 1, **options: Any) -> Session:
    """Load an artifact made by `lower` on the target's runtime (raises MissingRuntimeError if absent here).
    `options` go to the adapter (e.g. adb=`"adb -s SERIAL shell"` for litert-android-int8)."""
    t = target if isinstance(target, Target) else get_target(target, require=False)
    get_target(t.name, require=True)
    if not Path(artifact).exists():
        raise AgdError(f"artifact {artifact} does not exist")
    rt = runtime_for(t)
    return rt.load(artifact, threads=threads, device=t.device, **options)
