"""Verify exported artifacts: run each on its own runtime over held-out inputs, compare with the fp32 PyTorch
model, time it through the shared timing loop beside its fp32 counterpart on the same runtime, and decide its
status against explicit thresholds (a small Polygraphy-like comparator).

Status: `verify.status.Status` (ok, untrained, failed: why, not verified: why), written as the manifest's
string. Verification only checks: exporting and writing the manifest is `agd_deploy.deploy`'s job."""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..export.base import Artifact, artifact_files
from .metrics import compare
from .status import Kind, Status, failed, not_verified, ok


def digest(path: Path) -> tuple[str, int]:
    """(sha256, bytes) of an artifact. A multi-file artifact (OpenVINO .xml + .bin, .mlpackage folder) hashes
    the sorted list of its files' relative names and sha256s."""
    from ..utils import sha256_file

    files = artifact_files(path)
    size = sum(f.stat().st_size for f in files)
    if len(files) == 1 and files[0] == path:
        return sha256_file(path), size
    base = path if path.is_dir() else path.parent
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relative_to(base)}\0{sha256_file(f)}\n".encode())
    return h.hexdigest(), size


def reference_outputs(module: torch.nn.Module | str | Path, inputs: list[np.ndarray],
                      threads: int = 1) -> list[np.ndarray]:
    """The fp32 model's outputs: what every artifact is compared with. `module` is the torch module, or the
    path of a user's fp32 ONNX generator (an ONNX source), run by onnxruntime."""
    if isinstance(module, (str, Path)):  # plain ORT session: the user's file may have dynamic dims
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads, so.log_severity_level = max(1, threads), 3
        sess = ort.InferenceSession(str(module), so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return [np.asarray(sess.run(None, {name: x})[0], dtype=np.float32) for x in inputs]
    with torch.no_grad():
        return [module(torch.from_numpy(x)).float().numpy() for x in inputs]


@dataclass
class Job:
    """One requested artifact on its way through verification."""

    art: Artifact | None
    format: str
    precision: str
    error: Status | None = None  # a conversion that did not produce an artifact (failed / not verified)
    entry: dict[str, Any] = field(default_factory=dict)
    timer_key: str | None = None
    partner_key: str | None = None


def _one_line(e: BaseException, limit: int = 240) -> str:
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return f"{type(e).__name__}: {text}"[:limit]


@dataclass
class Bench:
    """What verification times at the end, all together: prepared runs by key, their clocks, file sizes."""

    threads: int
    runs: dict[str, Callable[[], Any]] = field(default_factory=dict)
    clocks: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, target: str, session, x: np.ndarray, size: int) -> None:
        from ..runtimes.timing import target_clock

        self.runs[key], self.clocks[key], self.sizes[key] = session.timer(x), target_clock(target, self.threads), size

    def time(self, rounds: int, progress: bool):
        """{key: Stats}: each clock's group timed interleaved through the timing service."""
        from ..runtimes.timing import Stats, time_runs

        samples: dict[str, list[float]] = {}
        for clk in sorted(set(self.clocks.values())):
            group = {k: fn for k, fn in self.runs.items() if self.clocks[k] == clk}
            samples.update(time_runs(group, rounds, threads=self.threads, clock=clk,
                                     progress="timing" if progress else False))
        return {k: Stats.from_samples(v) for k, v in samples.items()}


def verify(jobs: list[Job], partners: dict[str, Artifact], inputs: list[np.ndarray], refs: list[np.ndarray],
           value_range, min_psnr: Callable[[str, str], float], trained: bool, threads: int, rounds: int,
           base_dir: Path, progress: bool = True) -> list[dict[str, Any]]:
    """Fill each job's manifest entry. `partners` maps an fp32 format to its artifact (requested or made in
    scratch) for speedups; `base_dir` is where `file` paths are relative to."""
    bench = Bench(threads)
    with contextlib.ExitStack() as sessions:
        for job in jobs:
            status = _check_file(job, inputs, base_dir)
            if status is None:
                status = _run(job, partners, inputs, refs, value_range, min_psnr, trained, bench, sessions)
            job.entry["status"] = str(status)
        if bench.runs:
            _fill_times(jobs, bench, bench.time(rounds, progress))
    return [j.entry for j in jobs]


def _check_file(job: Job, inputs: list[np.ndarray], base_dir: Path) -> Status | None:
    """The entry's file fields; a Status when there is nothing to run (no file, changed file, skipped)."""
    e = job.entry
    e.update({"format": job.format, "precision": job.precision, "file": None, "sha256": None, "bytes": None,
              "input_shape": list(inputs[0].shape), "runtime": None, "psnr_db": None, "ssim": None,
              "p50_ms": None, "p90_ms": None, "min_ms": None, "speedup_vs_fp32": None, "status": ""})
    if job.error is not None:
        return job.error
    art = job.art
    if not Path(art.path).exists():
        return failed(f"artifact {art.path} is missing")
    sha, size = digest(art.path)
    e.update({"file": _rel(art.path, base_dir), "sha256": sha, "bytes": size, "runtime": art.target})
    e.update({k: v for k, v in art.extra.items() if k not in ("check_target",)})
    if e.get("expected_sha256") and e["expected_sha256"] != sha:
        return failed("sha256 mismatch: the file changed since it was exported")
    e.pop("expected_sha256", None)
    return not_verified(art.skip_reason) if art.skip_reason else None


def _run(job: Job, partners, inputs, refs, value_range, min_psnr, trained: bool, bench: Bench,
         sessions: contextlib.ExitStack) -> Status:
    """Run the artifact on its runtime (or, for a file whose runtime is absent, on its `check_target`),
    compare with fp32 and queue it (and its fp32 partner) for timing."""
    from ..runtimes import load_session
    from ..runtimes.targets import runtime_for
    from ..runtimes.timing import closing

    art, e = job.art, job.entry
    run_target, check_only = art.target, False
    ok_here, why = available(art.target)
    if not ok_here and art.extra.get("check_target"):
        run_target, check_only = art.extra["check_target"], True
        e["checked_on"], e["not_verified_reason"] = run_target, why
    elif not ok_here:
        return not_verified(why)
    e["versions"] = runtime_for(run_target).versions()
    try:
        sess = sessions.enter_context(closing(load_session(run_target, art.path, threads=bench.threads)))
        cmp = compare(refs, [np.asarray(sess.run(x), dtype=np.float32) for x in inputs], value_range)
    except Exception as ex:  # a runtime refusing the file is a verification result, not a crash
        return failed(f"{run_target} could not run it ({_one_line(ex)})")
    e.update(cmp.to_dict())
    need = e["min_psnr_db"] = min_psnr(job.format, job.precision)
    if cmp.psnr_db < need and (trained or job.precision == "fp32"):
        return failed(f"PSNR {cmp.psnr_db:.2f} dB vs fp32 is under the {need:g} dB threshold")
    if check_only:
        return not_verified(f"{why}; the Q/DQ graph matches fp32 on {run_target}")
    job.timer_key = f"{job.format}@{run_target}"
    bench.add(job.timer_key, run_target, sess, inputs[0], e["bytes"])
    job.partner_key = _partner(job, partners, run_target, inputs[0], bench, sessions)
    return ok() if trained else Status(Kind.UNTRAINED)


def _partner(job: Job, partners, run_target: str, x: np.ndarray, bench: Bench, sessions) -> str | None:
    """Queue the fp32 artifact the job's speed-up is measured against, on the same runtime."""
    from ..runtimes import load_session
    from ..runtimes.timing import closing

    fp32_fmt = get_exporter_fp32(job.format)
    partner = partners.get(fp32_fmt) if fp32_fmt else None
    if partner is None:
        return None
    key = f"{fp32_fmt}@{run_target}"
    if key not in bench.runs:
        try:
            ps = sessions.enter_context(closing(load_session(run_target, partner.path, threads=bench.threads)))
            bench.add(key, run_target, ps, x, digest(partner.path)[1])
        except Exception as ex:
            job.entry["speedup_note"] = f"fp32 {fp32_fmt} could not run on {run_target}: {_one_line(ex)}"
            return None
    return key


def _fill_times(jobs: list[Job], bench: Bench, stats) -> None:
    for job in jobs:
        if job.timer_key is None:
            continue
        s = stats[job.timer_key]
        job.entry.update({"p50_ms": round(s.p50_ms, 3), "p90_ms": round(s.p90_ms, 3), "min_ms": round(s.min_ms, 3),
                          "clock": bench.clocks[job.timer_key], "timing_rounds": s.n})
        if job.partner_key and job.partner_key in stats:
            p = stats[job.partner_key]
            job.entry["speedup_vs_fp32"] = round(p.min_ms / s.min_ms, 3)
            job.entry["speedup_p50_vs_fp32"] = round(p.p50_ms / s.p50_ms, 3)
            job.entry["fp32_min_ms"] = round(p.min_ms, 3)
            job.entry["smaller_than_fp32"] = round(bench.sizes[job.partner_key] / bench.sizes[job.timer_key], 3)
        elif job.precision == "fp32":
            job.entry["speedup_vs_fp32"] = 1.0


def available(target: str) -> tuple[bool, str]:
    """runtimes.available, with an adapter that is missing or broken reported as a reason, not a crash."""
    from ..runtimes.targets import available as rt_available

    try:
        return rt_available(target)
    except Exception as e:
        return False, f"target {target} cannot be loaded here ({_one_line(e)})"


def get_exporter_fp32(fmt: str) -> str | None:
    from ..export import get_exporter

    return get_exporter(fmt).fp32_format


def _rel(path: Path, base: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(base).resolve()))
    except ValueError:
        return str(path)
