"""Small helpers shared by every layer: atomic file writes, shape parsing, resource lookup."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

_PKG = Path(__file__).resolve().parent


def parse_shape(text: str) -> list[int]:
    """'1x3x64x64' -> [1, 3, 64, 64]; ValueError with a one-line message otherwise."""
    parts = str(text).lower().replace(",", "x").split("x")
    try:
        shape = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"bad shape {text!r}: expected NxCxHxW like 1x3x64x64") from None
    if len(shape) != 4 or any(s <= 0 for s in shape):
        raise ValueError(f"bad shape {text!r}: expected four positive integers NxCxHxW like 1x3x64x64")
    return shape


def format_shape(shape) -> str:
    return "x".join(str(int(s)) for s in shape)


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside `path`; on success rename it over `path`, on error remove it.
    Readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.is_file():  # mkstemp makes 0600 files; give the final file the usual umask-based mode
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            if tmp_path.is_dir():
                import shutil
                shutil.rmtree(tmp_path)
            else:
                tmp_path.unlink()
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def check_writable(out: Path, flag: str = "--out") -> None:
    """Create `out` and prove a file can be written there: an unwritable output is one line, before any work."""
    from .errors import AgdError

    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".agd-write-test.", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise AgdError(f"{flag} {out}: cannot write there ({e.strerror or e})") from None


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resource_dir(kind: str) -> Path:
    """Shipped data folder ('latency_tables', 'search', 'export'): inside the wheel, or the source tree."""
    installed = _PKG / "_data" / kind
    if installed.is_dir():
        return installed
    return _PKG.parent / kind


def find_resource(kind: str, name: str, suffixes: tuple[str, ...] = (".yaml", ".yml", ".json")) -> Path | None:
    """A user's path if it exists, else a shipped resource by name (with or without suffix)."""
    p = Path(name)
    if p.exists():
        return p
    base = resource_dir(kind)
    for cand in [base / name, *(base / (name + s) for s in suffixes)]:
        if cand.is_file():
            return cand
    return None


def cache_dir(*parts: str) -> Path:
    """agd-deploy's user cache (converted teachers, teacher outputs): env AGD_CACHE_DIR, else the platform's."""
    root = os.environ.get("AGD_CACHE_DIR")
    if not root:
        import platformdirs
        root = platformdirs.user_cache_dir("agd-deploy")
    p = Path(root).joinpath(*parts)
    p.mkdir(parents=True, exist_ok=True)
    return p


def move_file(src: str | Path, dst: str | Path) -> Path:
    """Move a finished file into place (a rename where it can be one; across file systems a copy, then delete)."""
    import shutil

    try:
        os.replace(src, dst)
    except OSError:
        shutil.move(str(src), str(dst))
    return Path(dst)


def read_yaml(path: str | Path, what: str, error: type | None = None) -> Any:
    """A user's YAML file (recipes, export profiles), with one-line errors (`what` names it in them) of class
    `error` (default AgdError)."""
    import yaml

    from .errors import AgdError

    AgdError = error or AgdError  # noqa: N806
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise AgdError(f"cannot read {what} {p}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise AgdError(f"{what} {p}: not UTF-8 text (byte {e.start})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise AgdError(f"{what} {p}: not valid YAML{where}") from None
    except (ValueError, OverflowError) as e:  # PyYAML's scanner: an escape such as "\UFFFFFFFF" is no character
        raise AgdError(f"{what} {p}: not valid YAML ({e})") from None
    except RecursionError:
        raise AgdError(f"{what} {p}: not valid YAML (nested too deeply)") from None


SPAWN_HINT = ("a worker process re-ran this script's top-level code: agd starts its conversion workers with "
              "'spawn', which imports the main script; put that code under `if __name__ == \"__main__\":`")


@contextlib.contextmanager
def file_lock(path: str | Path, what: str, timeout: float | None = None) -> Iterator[float]:
    """Hold `<path>.lock` (filelock) while a shared cache entry or work folder is built, so two processes
    sharing a cache never interleave: the second one says it is waiting, then (having the lock) finds the
    first one's finished result. Yields the seconds spent waiting."""
    import multiprocessing
    import time

    from filelock import FileLock, Timeout

    from .errors import AgdError
    from .log import warn

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path) + ".lock")
    t0 = time.monotonic()
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if getattr(multiprocessing.current_process(), "_inheriting", False):  # held by the parent that spawned us
            raise AgdError(SPAWN_HINT) from None  # (waiting would be forever)
        warn(f"waiting for another agd process to finish {what} ({path})")
        try:
            lock.acquire(timeout=-1 if timeout is None else timeout)
        except Timeout:
            raise AgdError(f"{what}: still locked by another process after {timeout:.0f} s "
                           f"({path}.lock)") from None
        from .log import get

        get(__name__).info(f"waited {time.monotonic() - t0:.1f} s for {what}")
    try:
        yield time.monotonic() - t0
    finally:
        lock.release()
