"""`agd bench MODEL.onnx`: time any ONNX generator on onnxruntime through the timing service.

The same loop and clock as every other measurement (`runtimes.timing.time_artifacts` on `ort-cpu-fp32`:
interleaved rounds, an untimed run before each timed one, the thread CPU clock at one thread), so the number is
comparable with `agd export`'s manifests and the latency tables. A file with dynamic H/W is timed at `--input`
through its fixed-shape copy (`onnx_source.prepare_onnx`: same graph, names and shape pinned)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

TARGET = "ort-cpu-fp32"


def run_bench_onnx(path: str | Path, input_shape: list[int] | None = None, threads: int = 1, rounds: int = 20,
                   progress: bool = True) -> dict[str, Any]:
    """Time MODEL.onnx (one image generator: NCHW RGB in, scale x larger out) -> a JSON-able result."""
    from ..export.onnx_source import inspect_onnx, prepare_onnx
    from ..runtimes import device_fingerprint
    from ..runtimes.targets import runtime_for
    from ..runtimes.timing import Stats, target_clock, time_artifacts
    from ..utils import sha256_file

    graph, info = inspect_onnx(path, input_shape, threads=threads)
    static = all(isinstance(d, int) for d in graph.graph_input)
    work = Path(tempfile.mkdtemp(prefix="agd-bench-onnx-"))
    try:
        timed = graph.path if static else prepare_onnx(graph, info, work / "fixed.onnx")
        clock = target_clock(TARGET, threads)
        samples = time_artifacts(TARGET, {"model": timed}, rounds, threads=threads, clock=clock,
                                 progress="timing" if progress else False)["model"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    s = Stats.from_samples(samples)
    dev = device_fingerprint()
    return {"model": str(graph.path), "kind": "onnx", "runtime": TARGET, "sha256": sha256_file(graph.path),
            "bytes": graph.path.stat().st_size, "input_shape": info.input_shape, "output_shape": graph.output_shape,
            "scale": info.scale, "timed": "the file" if static else "a fixed-shape copy (dynamic input dims)",
            "threads": threads, "rounds": s.n, "clock": clock, "min_ms": round(s.min_ms, 3),
            "p10_ms": round(s.p10_ms, 3), "p50_ms": round(s.p50_ms, 3), "p90_ms": round(s.p90_ms, 3),
            "versions": runtime_for(TARGET).versions(),
            "device": {"device_key": dev.get("device_key"), "device_class": dev.get("device_class")}}


def describe(result: dict[str, Any]) -> str:
    """The one-line summary `agd bench MODEL.onnx` prints."""
    shape = "x".join(map(str, result["input_shape"]))
    return (f"{Path(result['model']).name} on {result['runtime']} at {shape} (x{result['scale']}): "
            f"min {result['min_ms']:.2f} ms, p50 {result['p50_ms']:.2f} ms, p90 {result['p90_ms']:.2f} ms "
            f"({result['rounds']} rounds, {result['threads']} thread(s), {result['clock']} clock)")
