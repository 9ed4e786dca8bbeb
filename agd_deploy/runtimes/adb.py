"""Android adapter: push a .tflite to a device and time it with LiteRT's `benchmark_model` through a user-given
command prefix (e.g. `adb -s SERIAL shell`). The timing loop runs on the device (benchmark_model's own warmup and
runs), so this adapter reports Stats from the tool's output instead of going through `timing.measure`:
min = min, p50 = median (avg on old tool versions), and the tool's p5/p95 stand in for p10/p90.

Outputs are not read back: accuracy of the same .tflite is verified on the host with `litert-cpu-int8`."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AgdError
from .base import Runtime, Session
from .timing import Stats

DEFAULT_DIR = "/data/local/tmp/agd"
DEFAULT_BENCHMARK = "/data/local/tmp/benchmark_model"
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_RUN_HEADER = "Running benchmark for at least"


def parse_benchmark_output(text: str) -> dict[str, float]:
    """Numbers (microseconds, and `count`) from benchmark_model's output: the statistics of the timed phase
    (the last "count=..." line after the last "Running benchmark" header) and the summary line."""
    if _RUN_HEADER not in text:
        raise AgdError("benchmark_model printed no timed runs (is the model valid and the binary on the device?)")
    tail = text.rsplit(_RUN_HEADER, 1)[1]
    m = re.search(r"count=\d+[^\n]*", tail)
    if not m:
        raise AgdError("benchmark_model output has no statistics line for its timed runs")
    out: dict[str, float] = {}
    for key, val in re.findall(rf"(\w+)=({_NUM})", m.group(0)):
        out[key] = float(val)
    summary = re.search(r"(?i)inference timings in us: ([^\n]*)", text)
    if summary:
        for label, key in (("Init", "init"), ("First inference", "first_inference"),
                           ("Warmup (avg)", "warmup_avg"), ("Inference (avg)", "inference_avg"),
                           ("Warmup", "warmup_avg"), ("no stats", "inference_avg")):
            mm = re.search(rf"(?:^|, ){re.escape(label)}: ({_NUM})", summary.group(1))
            if mm and key not in out:
                out[key] = float(mm.group(1))
    return out


def stats_from_benchmark(parsed: dict[str, float]) -> Stats:
    us = 1e-3
    mn = parsed["min"] * us
    p50 = parsed.get("median", parsed.get("avg", parsed["min"])) * us
    p10 = parsed.get("p5", parsed["min"]) * us
    p90 = parsed.get("p95", parsed.get("max", parsed["min"])) * us
    return Stats(mn, max(mn, p10), max(p10, p50), max(p50, p90), int(parsed.get("count", 0)))


def _push_prefix(shell_prefix: list[str]) -> list[str]:
    """`adb -s X shell` -> `adb -s X`: the same device, for `push`."""
    if shell_prefix and shell_prefix[-1] == "shell":
        return shell_prefix[:-1]
    raise AgdError("the adb command prefix must end in 'shell', e.g. 'adb -s SERIAL shell'")


class AdbSession(Session):
    def __init__(self, path: Path, threads: int, prefix: str, benchmark: str, remote_dir: str, timeout_s: float):
        self.prefix = shlex.split(prefix)
        self.threads, self.benchmark, self.timeout_s = threads, benchmark, timeout_s
        self.remote = f"{remote_dir.rstrip('/')}/{path.name}"
        from ..quant.litert import read_metadata

        self.meta = read_metadata(path)
        self._sh(["mkdir", "-p", remote_dir])
        self._call(_push_prefix(self.prefix) + ["push", str(path), self.remote])
        from ai_edge_litert.interpreter import Interpreter  # shape only; never invoked here

        d = Interpreter(model_path=str(path)).get_input_details()[0]
        shape = tuple(int(s) for s in d["shape"])
        nhwc = self.meta.get("layout") == "NHWC"
        self.input_shape = (shape[0], shape[3], shape[1], shape[2]) if nhwc else shape
        self.input_dtype = np.dtype(d["dtype"])

    def _call(self, cmd: list[str]) -> str:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout_s)
        except FileNotFoundError:
            raise AgdError(f"command not found: {cmd[0]}") from None
        except subprocess.TimeoutExpired:
            raise AgdError(f"timed out after {self.timeout_s:.0f}s: {' '.join(cmd)}") from None
        if r.returncode != 0:
            msg = (r.stderr or r.stdout).strip().splitlines()
            raise AgdError(f"{' '.join(cmd)} failed: {msg[-1] if msg else 'exit ' + str(r.returncode)}")
        return r.stdout + r.stderr

    def _sh(self, args: list[str]) -> str:
        return self._call(self.prefix + [" ".join(shlex.quote(a) for a in args)])

    def benchmark_stats(self, runs: int = 50, warmup: int = 5) -> Stats:
        """Time the model on the device with benchmark_model (`runs` timed runs, `threads` threads)."""
        out = self._sh([self.benchmark, f"--graph={self.remote}", f"--num_threads={self.threads}",
                        f"--num_runs={runs}", f"--warmup_runs={warmup}", "--use_xnnpack=true"])
        return stats_from_benchmark(parse_benchmark_output(out))

    def run(self, x: np.ndarray) -> np.ndarray:
        raise AgdError("outputs are not read back from Android; verify the same .tflite with litert-cpu-int8")

    def timer(self, x=None):
        raise AgdError("Android models are timed on the device: use AdbSession.benchmark_stats()")


class AdbRuntime(Runtime):
    name = "adb"
    package = "adb (Android platform-tools)"

    def available(self, device: str = "android") -> tuple[bool, str]:
        if os.environ.get("AGD_ADB"):
            return True, ""
        if shutil.which("adb") is None:
            return False, "no adb on PATH and no AGD_ADB command prefix set"
        return True, ""

    def versions(self) -> dict[str, str]:
        return {"benchmark_model": "on device"}

    def load(self, artifact: str | Path, threads: int = 1, device: str = "android", **options: Any) -> Session:
        prefix = options.get("adb") or os.environ.get("AGD_ADB") or "adb shell"
        return AdbSession(Path(artifact), threads, prefix, options.get("benchmark", DEFAULT_BENCHMARK),
                          options.get("remote_dir", DEFAULT_DIR), float(options.get("timeout_s", 600)))
