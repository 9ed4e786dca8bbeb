"""The end of the data flow: plots and a self-contained HTML report built only from a run folder's files."""

from __future__ import annotations

from pathlib import Path

from ..errors import AgdError
from ..utils import atomic_write_text
from .html import RunData, load_run, render

__all__ = ["RunData", "load_run", "render", "write_report"]


def write_report(run: str | Path, out: str | Path | None = None) -> Path:
    """Write RUN/report.html (or `out`) atomically and return its path."""
    run = Path(run)
    if not run.is_dir():
        raise AgdError(f"{run}: not a run folder (no such directory)")
    path = Path(out) if out else run / "report.html"
    try:
        atomic_write_text(path, render(load_run(run)))
    except OSError as e:
        raise AgdError(f"cannot write {path}: {e.strerror or e}") from None
    return path
