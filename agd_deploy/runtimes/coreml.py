"""CoreML adapter: `MLModel.predict` on an .mlpackage. Prediction exists only on macOS (on Linux coremltools
converts and compresses but cannot run a model: its "Failed to load _MLModelProxy" note is that fact)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from .base import Runtime, Session, package_version


class CoreMlSession(Session):
    def __init__(self, path: Path, threads: int):
        import coremltools as ct

        self.model = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.CPU_AND_NE)
        spec = self.model.get_spec()
        inp = spec.description.input[0]
        self.input_name = inp.name
        self.output_name = spec.description.output[0].name
        self.input_shape = tuple(int(s) for s in inp.type.multiArrayType.shape)

    def run(self, x: np.ndarray) -> np.ndarray:
        out = self.model.predict({self.input_name: np.ascontiguousarray(x, dtype=np.float32)})
        return np.asarray(out[self.output_name], dtype=np.float32)


class CoreMlRuntime(Runtime):
    name = "coreml"
    package = "coremltools"

    def available(self, device: str = "mac") -> tuple[bool, str]:
        if sys.platform != "darwin":
            return False, "CoreML prediction needs macOS"
        try:
            import coremltools  # noqa: F401
        except ImportError:
            return False, "coremltools is not installed (pip install agd-deploy[coreml])"
        return True, ""

    def versions(self) -> dict[str, str]:
        return {"coremltools": package_version("coremltools")}

    def load(self, artifact: str | Path, threads: int = 1, device: str = "mac", **options: Any) -> Session:
        self.require(device)
        return CoreMlSession(Path(artifact), threads)
