"""Verify exported artifacts: run each on its own runtime over held-out inputs, compare with the fp32 PyTorch
model, time it through the shared timing loop beside its fp32 counterpart on the same runtime, and decide its
status against explicit thresholds (a small Polygraphy-like comparator).

Status: `ok`; `untrained` (seeded random weights: conversion and timing verified, int8 PSNR not gated);
`failed: <why>` (conversion error, runtime error, PSNR under the threshold, file changed);
`not verified: <why>` (its runtime cannot run here, e.g. CoreML off macOS)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..export.base import Artifact, artifact_files
from .metrics import compare


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


def reference_outputs(module: torch.nn.Module, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """The fp32 PyTorch model's outputs: what every artifact is compared with."""
    with torch.no_grad():
        return [module(torch.from_numpy(x)).float().numpy() for x in inputs]


@dataclass
class Job:
    """One requested artifact on its way through verification."""

    art: Artifact | None
    format: str
    precision: str
    error: str = ""  # conversion failure
    entry: dict[str, Any] = field(default_factory=dict)
    timer_key: str | None = None
    partner_key: str | None = None


def _one_line(e: BaseException, limit: int = 240) -> str:
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return f"{type(e).__name__}: {text}"[:limit]


def verify(jobs: list[Job], partners: dict[str, Artifact], inputs: list[np.ndarray], refs: list[np.ndarray],
           value_range, min_psnr: Callable[[str, str], float], trained: bool, threads: int, rounds: int,
           base_dir: Path, progress: bool = True) -> list[dict[str, Any]]:
    """Fill each job's manifest entry. `partners` maps an fp32 format to its artifact (requested or made in
    scratch) for speedups; `base_dir` is where `file` paths are relative to."""
    from ..runtimes import load_session
    from ..runtimes.targets import runtime_for

    timers: dict[str, Callable[[], Any]] = {}
    sizes: dict[str, int] = {}
    sessions = []
    for job in jobs:
        e = job.entry
        e.update({"format": job.format, "precision": job.precision, "file": None, "sha256": None, "bytes": None,
                  "input_shape": list(inputs[0].shape), "runtime": None, "psnr_db": None, "ssim": None,
                  "p50_ms": None, "p90_ms": None, "min_ms": None, "speedup_vs_fp32": None, "status": ""})
        if job.error:
            e["status"] = job.error if job.error.startswith("not verified") else f"failed: {job.error}"
            continue
        art = job.art
        assert art is not None
        if not Path(art.path).exists():
            e["status"] = f"failed: artifact {art.path} is missing"
            continue
        sha, size = digest(art.path)
        e.update({"file": _rel(art.path, base_dir), "sha256": sha, "bytes": size, "runtime": art.target})
        e.update({k: v for k, v in art.extra.items() if k not in ("check_target",)})
        if e.get("expected_sha256") and e["expected_sha256"] != sha:
            e["status"] = "failed: sha256 mismatch: the file changed since it was exported"
            continue
        e.pop("expected_sha256", None)
        if art.skip_reason:
            e["status"] = f"not verified: {art.skip_reason}"
            continue
        run_target, check_only = art.target, False
        ok, why = available(art.target)
        if not ok and art.extra.get("check_target"):
            run_target, check_only = art.extra["check_target"], True
            e["checked_on"] = run_target
            e["not_verified_reason"] = why
        elif not ok:
            e["status"] = f"not verified: {why}"
            continue
        e["versions"] = runtime_for(run_target).versions()
        try:
            sess = load_session(run_target, art.path, threads=threads)
            sessions.append(sess)
            outs = [np.asarray(sess.run(x), dtype=np.float32) for x in inputs]
            cmp = compare(refs, outs, value_range)
        except Exception as ex:  # a runtime refusing the file is a verification result, not a crash
            e["status"] = f"failed: {run_target} could not run it ({_one_line(ex)})"
            continue
        e.update(cmp.to_dict())
        need = min_psnr(job.format, job.precision)
        e["min_psnr_db"] = need
        gated = trained or job.precision == "fp32"
        if cmp.psnr_db < need and gated:
            e["status"] = f"failed: PSNR {cmp.psnr_db:.2f} dB vs fp32 is under the {need:g} dB threshold"
        elif check_only:
            e["status"] = f"not verified: {why}; the Q/DQ graph matches fp32 on {run_target}"
            continue
        else:
            e["status"] = "ok" if trained else "untrained"
        job.timer_key = f"{job.format}@{run_target}"
        timers[job.timer_key] = sess.timer(inputs[0])
        sizes[job.timer_key] = size
        fp32_fmt = get_exporter_fp32(job.format)
        partner = partners.get(fp32_fmt) if fp32_fmt else None
        if partner is not None:
            pkey = f"{fp32_fmt}@{run_target}"
            if pkey not in timers:
                try:
                    ps = load_session(run_target, partner.path, threads=threads)
                    sessions.append(ps)
                    timers[pkey] = ps.timer(inputs[0])
                    sizes[pkey] = digest(partner.path)[1]
                except Exception as ex:
                    e["speedup_note"] = f"fp32 {fp32_fmt} could not run on {run_target}: {_one_line(ex)}"
                    pkey = None
            job.partner_key = pkey
    if timers:
        stats, clocks = _time(timers, rounds, threads, progress)
        for job in jobs:
            if job.timer_key is None:
                continue
            s = stats[job.timer_key]
            job.entry.update({"p50_ms": round(s.p50_ms, 3), "p90_ms": round(s.p90_ms, 3), "min_ms": round(s.min_ms, 3),
                              "clock": clocks[job.timer_key], "timing_rounds": s.n})
            if job.partner_key and job.partner_key in stats:
                p = stats[job.partner_key]
                job.entry["speedup_vs_fp32"] = round(p.min_ms / s.min_ms, 3)
                job.entry["speedup_p50_vs_fp32"] = round(p.p50_ms / s.p50_ms, 3)
                job.entry["fp32_min_ms"] = round(p.min_ms, 3)
                job.entry["smaller_than_fp32"] = round(sizes[job.partner_key] / sizes[job.timer_key], 3)
            elif job.precision == "fp32":
                job.entry["speedup_vs_fp32"] = 1.0
    for s in sessions:
        try:
            s.close()
        except Exception:
            pass
    return [j.entry for j in jobs]


CPU_CLOCK_RUNTIMES = ("ort", "litert")  # with 1 thread these run the model in the calling thread


def _time(timers: dict[str, Callable[[], Any]], rounds: int, threads: int, progress: bool):
    """Time all artifacts interleaved through the shared loop, taking samples the way latency tables do
    (`runtimes.timing.timed_rounds`): with 1 thread, runtimes that compute in the calling thread are timed by
    that thread's CPU time (immune to other processes preempting it on a shared box); others by wall clock.
    Returns ({key: Stats}, {key: clock})."""
    from ..runtimes.timing import timed_rounds
    from ..runtimes import Stats, pinned

    def clock(key: str) -> str:
        runtime = key.split("@", 1)[1].split("-", 1)[0]
        return "cpu" if threads == 1 and runtime in CPU_CLOCK_RUNTIMES else "wall"

    groups: dict[str, dict[str, Callable[[], Any]]] = {}
    for k, fn in timers.items():
        groups.setdefault(clock(k), {})[k] = fn
    samples: dict[str, list[float]] = {k: [] for k in timers}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=rounds * len(groups), desc="timing", unit="round", leave=False)
    with pinned(threads):
        for clk, runs in groups.items():
            for _, ms in timed_rounds(runs, range(rounds), clock=clk):
                for k, v in ms.items():
                    samples[k].append(v)
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    return ({k: Stats.from_samples(v) for k, v in samples.items()},
            {k: clock(k) for k in timers})


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
