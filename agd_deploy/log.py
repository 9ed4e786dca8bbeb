"""The `agd_deploy` logger: one warning style for the whole tool, verbosity set by the CLI (-v / -q), and
third-party noise silenced by logger name for the duration of one call only (never process-wide), so
importing agd_deploy as a library leaves the caller's logging alone."""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Iterator

LOG = logging.getLogger("agd_deploy")


def get(name: str) -> logging.Logger:
    """A child logger, e.g. get(__name__) inside agd_deploy (names already under agd_deploy are kept)."""
    return logging.getLogger(name if name.startswith("agd_deploy") else f"agd_deploy.{name}")


def warn(msg: str) -> None:
    """The one warning style: `warning: <msg>` on stderr (through the agd_deploy logger)."""
    LOG.warning(msg)


class _Format(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.levelno >= logging.ERROR:
            return f"error: {msg}"
        if record.levelno >= logging.WARNING:
            return f"warning: {msg}"
        if record.levelno <= logging.DEBUG:
            return f"debug: {record.name}: {msg}"
        return msg


class _Stderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (a test's capture, a redirect), not the one at setup()."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup(verbosity: int = 0) -> None:
    """Called by the CLI only: -q (-1) shows errors, default (0) warnings, -v (1) info, -vv (2) debug.
    A library user configures logging the usual way; until then Python's last-resort handler shows warnings."""
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    for h in list(LOG.handlers):
        if getattr(h, "_agd", False):
            LOG.removeHandler(h)
    h = _Stderr()
    h._agd = True  # type: ignore[attr-defined]
    h.setFormatter(_Format())
    LOG.addHandler(h)
    LOG.setLevel(level)
    LOG.propagate = False


def reset() -> None:
    """Undo setup(): the agd_deploy logger back to a library's defaults (no handler of ours, level unset,
    propagating), e.g. between tests that run the CLI in-process."""
    for h in list(LOG.handlers):
        if getattr(h, "_agd", False):
            LOG.removeHandler(h)
    LOG.setLevel(logging.NOTSET)
    LOG.propagate = True


def verbosity() -> int:
    """The level setup() chose, as -1/0/1/2 (0 when setup() was not called)."""
    lvl = LOG.getEffectiveLevel()
    return -1 if lvl >= logging.ERROR else 0 if lvl >= logging.WARNING else 1 if lvl >= logging.INFO else 2


class _Below(logging.Filter):
    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level


@contextlib.contextmanager
def quiet(*names: str, level: int = logging.ERROR) -> Iterator[None]:
    """Raise the named third-party loggers to `level` for the block, then put back what they had.

    `""` names the root logger, which libraries such as onnxruntime.quantization log on directly
    (`logging.warning(...)`): its level is inherited by every logger, so it is left alone; a filter drops only
    the records logged on the root itself, and a NullHandler keeps `logging.warning()` from installing
    basicConfig's handler on it for good."""
    saved = [(lg, lg.level) for lg in (logging.getLogger(n) for n in names if n)]
    root_filter, root_guard = _Below(level), logging.NullHandler()
    if "" in names:
        logging.root.addFilter(root_filter)
        logging.root.addHandler(root_guard)
    for lg, _ in saved:
        lg.setLevel(max(level, lg.level))
    try:
        yield
    finally:
        for lg, old in saved:
            lg.setLevel(old)
        if "" in names:
            logging.root.removeFilter(root_filter)
            logging.root.removeHandler(root_guard)
