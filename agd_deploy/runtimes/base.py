"""The runtime protocol (a small Polygraphy-like one): a `Runtime` loads an artifact into a `Session`, and a
session runs one NCHW numpy input named `input`. Adapters import their runtime package lazily, inside
`available()` / `load()`, so importing this package never pulls in a heavy or missing runtime."""

from __future__ import annotations

import platform
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import MissingRuntimeError


class Session(ABC):
    """One loaded artifact, ready to run.

    `input_dtype` is float32 for ordinary artifacts; an int8 LUT block built with quantized boundaries takes and
    returns uint8 (or int8) tensors instead, and `io_quant` then holds their {"input"/"output": (scale, zero_point)}."""

    input_shape: tuple[int, ...]
    input_dtype: np.dtype = np.dtype(np.float32)
    io_quant: dict[str, tuple[float, int]] = {}

    @abstractmethod
    def run(self, x: np.ndarray) -> np.ndarray:
        """Run the artifact on `x` (NCHW, `input_dtype`) and return its output as NCHW numpy."""

    def example_input(self, seed: int = 0) -> np.ndarray:
        """A deterministic input of the right shape and dtype (for timing)."""
        rng = np.random.default_rng(seed)
        if np.issubdtype(self.input_dtype, np.integer):
            info = np.iinfo(self.input_dtype)
            return rng.integers(info.min, info.max, size=self.input_shape, endpoint=True).astype(self.input_dtype)
        return rng.random(self.input_shape, dtype=np.float32).astype(self.input_dtype)

    def timer(self, x: np.ndarray | None = None) -> Callable[[], Any]:
        """A prepared zero-argument callable that runs the artifact once, for `timing.measure`. Adapters
        override it to bind inputs and outputs once so a timed call does not allocate."""
        x = self.example_input() if x is None else x
        return lambda: self.run(x)

    def close(self) -> None:
        """Free the runtime's resources (optional)."""

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Runtime(ABC):
    """A runtime adapter: `name` is the first part of target names (`ort` in `ort-cpu-int8`)."""

    name: str = ""
    package: str = ""  # the pip package a user installs to get it

    @abstractmethod
    def available(self, device: str = "cpu") -> tuple[bool, str]:
        """(True, "") when this runtime can run here, else (False, one-line reason)."""

    @abstractmethod
    def versions(self) -> dict[str, str]:
        """Package versions that shape latency (recorded in LUTs and manifests)."""

    @abstractmethod
    def load(self, artifact: str | Path, threads: int = 1, device: str = "cpu", **options: Any) -> Session:
        """Load an artifact made by `targets.lower` into a session using `threads` CPU threads."""

    def require(self, device: str = "cpu") -> None:
        ok, why = self.available(device)
        if not ok:
            raise MissingRuntimeError(why)


def package_version(module: str) -> str:
    """Installed version of a distribution/module, or 'missing'."""
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return "missing"


def device_fingerprint() -> dict[str, Any]:
    """What a LUT or a manifest was measured on: the device identity (`agd_deploy.device`: ISA, family/model,
    caches, cores, GPU, `device_key`, `device_class`) plus the keys older readers know (cpu, cores, host)."""
    from ..device import identify

    ident = identify()
    d = ident.to_dict()
    d.update({"cpu": ident.model_name, "cores": ident.logical_cores, "host": platform.node(),
              "machine": ident.arch})
    return d
