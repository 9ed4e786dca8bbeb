"""The public Python API: the jobs the `agd` commands run, as functions that take the dataclass configs and
return typed results (the CLI commands are thin wrappers over the same library calls).

    import agd_deploy.api as agd

    table = agd.find_table("ort-cpu-int8") or agd.profile(agd.ProfileConfig(target="ort-cpu-int8")).table
    agd.check(table)                                     # CheckResult: fits / rescaled-fits / stale
    s = agd.search(agd.SearchConfig.load("sr_x4_tiny"), table=table, budget_frac=0.5, out="runs/s")
    ckpt = agd.train(s.arch_path, agd.TrainConfig(steps=200), out="runs/t")
    x = agd.export(ckpt, ["onnx", "onnx-int8"], out="runs/x")       # ExportResult(manifest, exit_code)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import AgdError
from .profiling.check import CheckResult
from .profiling.profile import ProfileConfig, ProfileResult
from .profiling.transfer import TransferResult
from .search.config import SearchConfig
from .train import TrainConfig


@dataclass
class SearchResult:
    arch_path: Path
    arch: dict[str, Any]   # arch.json's object (budget_ms, predicted_ms, ops, widths, ...)


@dataclass
class ExportResult:
    manifest: dict[str, Any]   # manifest.json's object
    exit_code: int             # 1 when an artifact failed (as `agd export` exits)

    @property
    def artifacts(self) -> dict[str, dict[str, Any]]:
        return {a["format"]: a for a in self.manifest["artifacts"]}


def find_table(target: str, space: str = "sr", input_shape=(1, 3, 64, 64), threads: int = 1,
               any_device: bool = False) -> Path | None:
    """The table measured on (or checked or transferred to) this device, if there is one; with `any_device`,
    else the best one of another device (check or transfer it before trusting its milliseconds)."""
    from .profiling import tables

    found = tables.find(target, space, list(input_shape), threads, this_device_only=not any_device)
    return found.path if found else None


def profile(config: ProfileConfig, out: str | Path | None = None, progress: bool = False) -> ProfileResult:
    """Measure a latency table of this device (default: its folder of the user's tables)."""
    from .profiling.profile import profile as run

    return run(config, out, progress=progress)


def check(table: str | Path, budget_s: float = 25.0, progress: bool = False) -> CheckResult:
    """Does `table` predict this machine? (`agd profile check`)"""
    from .profiling.check import check_table
    from .profiling.lut import LUT

    return check_table(LUT.load(table), budget_s=budget_s, progress=progress)


def transfer(table: str | Path, probes: int = 10, out: str | Path | None = None,
             progress: bool = False) -> TransferResult:
    """Few-shot transfer of another device's table to this one, saved (default: this device's folder)."""
    from .profiling import tables
    from .profiling.lut import LUT
    from .profiling.transfer import transfer as run

    src = LUT.load(table)
    res = run(src, probes=probes, progress=progress)
    res.table.save(out or tables.user_path(src.target, src.space, src.input_shape, src.threads))
    return res


def search(config: SearchConfig, *, target: str | None = None, table: str | Path | None = None,
           budget_ms: float | None = None, budget_frac: float | None = None, out: str | Path = "agd-search",
           teacher: str | None = None, data: str | None = None, steps: int | None = None,
           allow_other_device: bool = False, progress: bool = False) -> SearchResult:
    """The AGD search under a latency budget; a table of another device is checked first (as `agd search`)."""
    from .profiling.check import usable_table
    from .profiling.lut import LUT
    from .search.run import search as run

    target = target or (LUT.load(table).target if table else config.target)
    lut = usable_table(table, target, config.space, config.input_shape, 1, allow_other_device, progress)
    if lut is None:
        raise AgdError(f"no latency table for {target}: profile it (agd_deploy.api.profile) or pass table=")
    arch = run(config, target=target, table=str(lut.path), budget_ms=budget_ms, budget_frac=budget_frac,
               teacher=teacher, data=data, out=str(out), steps=steps, progress=progress)
    return SearchResult(Path(out) / "arch.json", arch)


def train(arch: str | Path, config: TrainConfig | None = None, *, teacher: str = "realesrgan-x4plus",
          data: str | None = None, out: str | Path = "ckpt", progress: bool = False) -> Path:
    """Distil a derived arch (arch.json or a CKPT folder) from the teacher; returns the CKPT folder."""
    from .data import open_images
    from .space import Arch
    from .teachers import load_teacher
    from .train import train as run

    run(Arch.load(arch), load_teacher(teacher), open_images(data), config or TrainConfig(), out, progress=progress)
    return Path(out)


def export(model: str | Path, formats: list[str] | None = None, *, out: str | Path = "agd-export",
           progress: bool = False, **options: Any) -> ExportResult:
    """Export, verify and write manifest.json (as `agd export`); `options` as `deploy.run_export`'s."""
    from .deploy import run_export

    manifest, code = run_export(str(model), formats, out, progress=progress, log=lambda m: None, **options)
    return ExportResult(manifest, code)


def bench(directory: str | Path, progress: bool = False) -> ExportResult:
    """Re-verify and re-time the artifacts of a manifest on this machine (as `agd bench`)."""
    from .deploy import run_bench

    manifest, code = run_bench(directory, progress=progress)
    return ExportResult(manifest, code)
