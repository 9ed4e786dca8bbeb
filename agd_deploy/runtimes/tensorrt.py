"""TensorRT adapter, through Polygraphy (NVIDIA's own tool for building, running and checking TensorRT engines).

Why Polygraphy and not raw bindings: it builds the engine from the ONNX file (`NetworkFromOnnxPath` ->
`EngineBytesFromNetwork`), owns the CUDA buffers and stream (`TrtRunner`, `polygraphy.cuda.DeviceArray`), and
compares TensorRT with onnxruntime on the same inputs with explicit tolerances (`Comparator`,
`SimpleCompareFunc`), so none of that is re-implemented here on CUDA torch tensors.

The engine is built from the same explicit Q/DQ ONNX lowering the export ships (`quant.onnx.lower_int8` with
symmetric int8 activations: `tensorrt-int8` artifacts and `tensorrt-cuda-int8` LUT blocks). The network is
strongly typed and no precision flag is set: TensorRT 11 removed the weak-typing flags (BuilderFlag.INT8/FP16)
and implicit calibration (so Polygraphy's `Calibrator` has no role); the Q/DQ nodes alone say what runs in
int8, the rest runs in the ONNX file's fp32. Strong typing exists since TensorRT 9, so the same build works on
the 10.x and 11.x ranges of the `[tensorrt]` extra.

Engines are cached (`<cache>/tensorrt-engines/`, keyed by the ONNX file's bytes, the TensorRT version and the
GPU), because a latency table opens every block's session once per timing pass and a build takes seconds.

Nothing here imports `polygraphy`, `tensorrt` or `torch` at module level: importing this module never fails,
and using it where they are missing raises one `MissingRuntimeError` line saying what to install."""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..errors import AgdError, MissingRuntimeError
from .base import Runtime, Session, package_version

INSTALL = "pip install 'agd-deploy[tensorrt]' (polygraphy and tensorrt-cu13)"

_ONNX_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 10: np.float16}  # onnx.TensorProto element types


def _require_polygraphy() -> None:
    try:
        import polygraphy  # noqa: F401
    except ImportError:
        raise MissingRuntimeError(f"TensorRT targets run through Polygraphy, which is not installed: {INSTALL}") \
            from None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Polygraphy logs INFO lines through its own logger; keep errors only for the block. Polygraphy raises
    `PolygraphyException` from `G_LOGGER.critical`: turned into one AgdError line here."""
    from polygraphy.exception import PolygraphyException
    from polygraphy.logger import G_LOGGER

    try:
        with G_LOGGER.verbosity(G_LOGGER.ERROR):
            yield
    except PolygraphyException as e:
        raise AgdError(f"TensorRT (Polygraphy): {' '.join(str(e).split())[:300]}") from None


def onnx_io(path: str | Path) -> tuple[str, tuple[int, ...], np.dtype, str]:
    """(input name, input shape, input dtype, output name) of a one-input ONNX model, read with `onnx`
    (device-independent: a quantized-boundary LUT block takes int8, a whole net float32)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1 or not model.graph.output:
        raise AgdError(f"{path}: expected one input and an output, found inputs {[i.name for i in inputs]}")
    t = inputs[0].type.tensor_type
    shape = tuple(int(d.dim_value) for d in t.shape.dim)
    if not shape or any(d <= 0 for d in shape):
        raise AgdError(f"{path}: TensorRT engines here are built for a fixed input shape, got {shape}")
    if t.elem_type not in _ONNX_DTYPES:
        raise AgdError(f"{path}: unsupported input element type {t.elem_type}")
    return inputs[0].name, shape, np.dtype(_ONNX_DTYPES[t.elem_type]), model.graph.output[0].name


def tensorrt_version() -> str:
    """TensorRT's version: the module's own (the wheel is `tensorrt-cu13`, not `tensorrt`), else 'missing'."""
    try:
        import tensorrt

        return str(tensorrt.__version__)
    except Exception:
        return "missing"


@dataclass(frozen=True)
class BuildConfig:
    """How an engine is built. `workspace_gb`: the builder's scratch memory limit."""

    workspace_gb: float = 2.0
    strongly_typed: bool = True


def engine_key(onnx_path: str | Path, cfg: BuildConfig = BuildConfig()) -> str:
    """Cache key of an engine: the ONNX bytes, the TensorRT version, the GPU, the build settings (an engine
    is only valid for the TensorRT version and GPU it was built with)."""
    from ..device import identify

    gpu = identify().gpu or {}
    how = {"onnx": hashlib.sha256(Path(onnx_path).read_bytes()).hexdigest(), "tensorrt": tensorrt_version(),
           "gpu": [gpu.get("name"), gpu.get("compute_capability")], "build": asdict(cfg)}
    return hashlib.sha256(json.dumps(how, sort_keys=True).encode()).hexdigest()[:24]


def build_engine(onnx_path: str | Path, cfg: BuildConfig = BuildConfig()) -> bytes:
    """Serialized engine of an ONNX model, built by Polygraphy: strongly typed, no precision flags (the Q/DQ
    nodes decide), the workspace limited to `cfg.workspace_gb`."""
    _require_polygraphy()
    import tensorrt as trt
    from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork, NetworkFromOnnxPath

    with _quiet():
        network = NetworkFromOnnxPath(str(onnx_path), strongly_typed=cfg.strongly_typed)
        config = CreateConfig(memory_pool_limits={trt.MemoryPoolType.WORKSPACE: int(cfg.workspace_gb * (1 << 30))})
        blob = EngineBytesFromNetwork(network, config=config)()
    if not blob:
        raise AgdError(f"TensorRT could not build an engine from {onnx_path}")
    return bytes(blob)


def engine_bytes(artifact: str | Path, cfg: BuildConfig = BuildConfig()) -> bytes:
    """The engine of an artifact: a serialized engine file (.engine/.plan) as is; an ONNX file's engine from
    the cache, built once under a file lock (two processes profiling the same blocks build each engine once)."""
    from ..utils import atomic_path, cache_dir, file_lock

    p = Path(artifact)
    if p.suffix in (".engine", ".plan"):
        return p.read_bytes()
    cached = cache_dir("tensorrt-engines") / f"{engine_key(p, cfg)}.engine"
    if cached.is_file():
        return cached.read_bytes()
    with file_lock(cached, "building a TensorRT engine"):
        if cached.is_file():
            return cached.read_bytes()
        blob = build_engine(p, cfg)
        with atomic_path(cached, suffix=".engine") as tmp:
            Path(tmp).write_bytes(blob)
    return blob


def trt_runner(artifact: str | Path, cfg: BuildConfig = BuildConfig()):
    """A Polygraphy `TrtRunner` (not yet activated) on the artifact's engine."""
    _require_polygraphy()
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    blob = engine_bytes(artifact, cfg)
    return TrtRunner(EngineFromBytes(blob), name=f"trt:{Path(artifact).name}")


class TensorRtSession(Session):
    """One engine in an active `TrtRunner`. `run` copies in and out; the timer feeds a `DeviceArray` that
    already holds the input and leaves the output on the GPU, so a timed call is the engine's execution (the
    runner synchronises its stream before `infer` returns, so the host clock brackets the GPU work)."""

    def __init__(self, path: Path, cfg: BuildConfig = BuildConfig()):
        self.path = Path(path)
        if self.path.suffix == ".onnx":
            self.input_name, self.input_shape, self.input_dtype, self.output_name = onnx_io(self.path)
            from ..quant.onnx import read_metadata

            meta = read_metadata(self.path)  # a quantized-boundary LUT block: its int8 tensors' scales
            if meta.get("agd.boundary") == "quantized":
                self.io_quant = {k: (float(meta[f"agd.{k}_scale"]), int(meta[f"agd.{k}_zero_point"]))
                                 for k in ("input", "output") if f"agd.{k}_scale" in meta}
        self._buffers: list[Any] = []
        self.runner = trt_runner(self.path, cfg)
        with _quiet():
            self.runner.activate()
        if self.path.suffix != ".onnx":  # a bare engine: ask it
            meta = self.runner.get_input_metadata()
            self.input_name = next(iter(meta))
            from polygraphy.datatype import DataType

            self.input_shape = tuple(int(s) for s in meta[self.input_name].shape)
            self.input_dtype = np.dtype(DataType.to_dtype(meta[self.input_name].dtype, "numpy"))
            self.output_name = ""

    def _output(self, outputs: dict) -> np.ndarray:
        return np.asarray(outputs[self.output_name] if self.output_name else next(iter(outputs.values())))

    def run(self, x: np.ndarray) -> np.ndarray:
        with _quiet():
            out = self.runner.infer({self.input_name: np.ascontiguousarray(x, dtype=self.input_dtype)})
        return self._output(out).copy()

    def timer(self, x: np.ndarray | None = None) -> Callable[[], Any]:
        from polygraphy import cuda
        from polygraphy.datatype import DataType

        x = np.ascontiguousarray(self.example_input() if x is None else x, dtype=self.input_dtype)
        dev = cuda.DeviceArray(shape=x.shape, dtype=DataType.from_dtype(x.dtype)).copy_from(x)
        self._buffers.append(dev)
        feed, runner = {self.input_name: dev}, self.runner

        def call() -> None:
            runner.infer(feed, copy_outputs_to_host=False)
        with _quiet():
            call()  # first run sets shapes and addresses
        return call

    def close(self) -> None:
        for b in self._buffers:
            b.free()
        self._buffers.clear()
        if getattr(self.runner, "is_active", False):
            self.runner.deactivate()


# --- ORT vs TensorRT through Polygraphy's Comparator --------------------------------------------------------

@dataclass(frozen=True)
class Tolerance:
    """What "TensorRT matches onnxruntime" means for one artifact, passed explicitly to Polygraphy's
    `SimpleCompareFunc(atol, rtol, check_error_stat)`: |a - b| <= atol + rtol * |b| on `stat` of the error
    ("elemwise": every element; "max", "mean", "median"). Default: the mean absolute error of an SR output in
    [0, 1] within 0.01 (about one int8 step at scale 1/127: the two runtimes run the same Q/DQ graph, and
    differ by rounding where they fuse differently), and no element off by more than 0.1 (`max_abs`)."""

    atol: float = 0.01
    rtol: float = 0.0
    stat: str = "mean"
    max_abs: float = 0.1


@dataclass
class Comparison:
    """The verdict of one comparison and the errors behind it (computed from the runners' outputs)."""

    passed: bool
    runners: list[str]
    max_abs: float
    mean_abs: float
    tolerance: Tolerance
    inputs: int

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["max_abs"], d["mean_abs"] = round(self.max_abs, 6), round(self.mean_abs, 6)
        return d

    def describe(self) -> str:
        ok = "match" if self.passed else "DIFFER"
        t = self.tolerance
        return (f"{self.runners[0]} vs {self.runners[1]}: {ok} on {self.inputs} input(s): mean |diff| "
                f"{self.mean_abs:.4g}, max |diff| {self.max_abs:.4g} (tolerance: {t.stat} <= {t.atol} + {t.rtol}"
                f"*|ref|, max <= {t.max_abs})")


def _compare_func(tol: Tolerance):
    from polygraphy import comparator

    simple = getattr(comparator, "SimpleCompareFunc", None)  # Polygraphy 0.53+; CompareFunc.simple before
    kw = {"atol": tol.atol, "rtol": tol.rtol, "check_error_stat": tol.stat}
    return simple(**kw) if simple is not None else comparator.CompareFunc.simple(**kw)


def compare_runners(runners: Sequence[Any], inputs: Sequence[np.ndarray], tol: Tolerance = Tolerance(),
                    input_name: str = "input") -> Comparison:
    """Run two Polygraphy runners on the same inputs (`Comparator.run`) and compare the first with the second
    (`Comparator.compare_accuracy` with `tol`); the verdict also requires max |diff| <= `tol.max_abs`.
    Device-independent: two `OnnxrtRunner`s compare on a CPU."""
    _require_polygraphy()
    from polygraphy.comparator import Comparator

    if len(runners) != 2:
        raise ValueError("compare two runners")
    if not inputs:
        raise ValueError("no inputs to compare on")
    feeds = [{input_name: np.ascontiguousarray(x)} for x in inputs]
    with _quiet():
        results = Comparator.run(list(runners), data_loader=feeds)
        verdict = bool(Comparator.compare_accuracy(results, compare_func=_compare_func(tol)))
    (name_a, iters_a), (name_b, iters_b) = list(results.items())
    diffs = []
    for ia, ib in zip(iters_a, iters_b):
        for key in ia.keys():
            a, b = np.asarray(ia[key], np.float64), np.asarray(ib[key], np.float64)
            if a.shape != b.shape:
                raise AgdError(f"{name_a} and {name_b} disagree on the shape of {key!r}: {a.shape} vs {b.shape}")
            diffs.append(np.abs(a - b).ravel())
    d = np.concatenate(diffs) if diffs else np.zeros(1)
    max_abs, mean_abs = float(d.max()), float(d.mean())
    return Comparison(verdict and max_abs <= tol.max_abs, [name_a, name_b], max_abs, mean_abs, tol, len(feeds))


def compare_with_ort(onnx_path: str | Path, inputs: Sequence[np.ndarray], tol: Tolerance = Tolerance(),
                     cfg: BuildConfig = BuildConfig()) -> Comparison:
    """TensorRT's engine of `onnx_path` vs onnxruntime (CPU EP) on the same file and inputs."""
    TensorRtRuntime().require("cuda")
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

    name, _, dtype, _ = onnx_io(onnx_path)
    ort = OnnxrtRunner(SessionFromOnnx(str(onnx_path), providers=["cpu"]), name=f"ort:{Path(onnx_path).name}")
    return compare_runners([trt_runner(onnx_path, cfg), ort], [np.asarray(x, dtype) for x in inputs], tol, name)


class TensorRtRuntime(Runtime):
    name = "tensorrt"
    package = "tensorrt"

    def available(self, device: str = "cuda") -> tuple[bool, str]:
        try:
            import polygraphy  # noqa: F401
        except ImportError:
            return False, "polygraphy is not installed"
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            return False, "the tensorrt package is not installed"
        except Exception as e:  # a wheel whose CUDA libraries do not load
            return False, f"tensorrt does not import ({type(e).__name__}: {' '.join(str(e).split())[:160]})"
        try:
            import torch

            if not torch.cuda.is_available():
                return False, "no CUDA GPU visible"
        except ImportError:
            return False, "torch is not installed"
        return True, ""

    def versions(self) -> dict[str, str]:
        return {"tensorrt": tensorrt_version(), "polygraphy": package_version("polygraphy")}

    def load(self, artifact: str | Path, threads: int = 1, device: str = "cuda", **options: Any) -> Session:
        self.require(device)
        return TensorRtSession(Path(artifact))
