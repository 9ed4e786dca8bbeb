"""The latency lookup table (LUT): one JSON file per (target, space, input shape, threads).

Schema 1 (docs/ARCHITECTURE.md, "LUT JSON schema"):

    {"schema": 1, "target": "ort-cpu-int8", "space": "sr", "space_hash": "...", "input_shape": [1,3,64,64],
     "threads": 1, "device": {...}, "runtime": {...}, "created": "ISO-8601", "overhead_ms": 0.0,
     "statistic": "min_ms", "entries": {"<block key>": {"min_ms", "p10_ms", "p50_ms", "p90_ms", "n"}}}

A LUT is only meaningful for the space version, target and input size it was measured for, so `check`
refuses any mismatch with one line instead of silently predicting nonsense."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import AgdError
from ..utils import atomic_write_json, format_shape

SCHEMA = 1
STATISTICS = ("min_ms", "p10_ms", "p50_ms", "p90_ms")
REQUIRED = ("schema", "target", "space", "space_hash", "input_shape", "threads", "overhead_ms", "statistic", "entries")


class LUTError(AgdError):
    """A latency table that cannot be used (corrupt, other schema, other space/target/shape)."""


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


@dataclass
class LUT:
    target: str
    space: str
    space_hash: str
    input_shape: list[int]
    threads: int
    entries: dict[str, dict[str, float]] = field(default_factory=dict)
    overhead_ms: float = 0.0
    statistic: str = "min_ms"
    device: dict[str, Any] = field(default_factory=dict)
    runtime: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=now_iso)
    extra: dict[str, Any] = field(default_factory=dict)  # unknown top-level keys, kept on round-trip
    path: Path | None = None  # where it was loaded from (not serialised)

    # -- (de)serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = {"schema": SCHEMA, "target": self.target, "space": self.space, "space_hash": self.space_hash,
             "input_shape": list(self.input_shape), "threads": self.threads, "device": self.device,
             "runtime": self.runtime, "created": self.created, "overhead_ms": self.overhead_ms,
             "statistic": self.statistic, "entries": self.entries}
        d.update({k: v for k, v in self.extra.items() if k not in d})
        return d

    @classmethod
    def from_dict(cls, d: Any, source: str = "LUT") -> "LUT":
        if not isinstance(d, dict):
            raise LUTError(f"{source}: not a latency table (expected a JSON object)")
        if d.get("schema") != SCHEMA:
            raise LUTError(f"{source}: latency table schema {d.get('schema')!r} is not supported (expected {SCHEMA})")
        missing = [k for k in REQUIRED if k not in d]
        if missing:
            raise LUTError(f"{source}: latency table lacks key(s) {', '.join(missing)}")
        if d["statistic"] not in STATISTICS:
            raise LUTError(f"{source}: statistic {d['statistic']!r} is not one of {', '.join(STATISTICS)}")
        entries = d["entries"]
        if not isinstance(entries, dict):
            raise LUTError(f"{source}: 'entries' must be an object")
        for k, e in entries.items():
            if not isinstance(e, dict) or not isinstance(e.get(d["statistic"]), (int, float)):
                raise LUTError(f"{source}: entry {k!r} lacks a number for {d['statistic']}")
        shape = d["input_shape"]
        if not isinstance(shape, list) or len(shape) != 4 or not all(isinstance(s, int) for s in shape):
            raise LUTError(f"{source}: input_shape must be a list of 4 integers")
        if not isinstance(d["overhead_ms"], (int, float)):
            raise LUTError(f"{source}: overhead_ms must be a number")
        if not isinstance(d["threads"], int) or isinstance(d["threads"], bool) or d["threads"] < 1:
            raise LUTError(f"{source}: threads must be a positive integer, got {str(d['threads'])[:40]!r}")
        known = set(REQUIRED) | {"device", "runtime", "created"}
        return cls(target=str(d["target"]), space=str(d["space"]), space_hash=str(d["space_hash"]),
                   input_shape=list(shape), threads=int(d["threads"]), entries=entries,
                   overhead_ms=float(d["overhead_ms"]), statistic=d["statistic"], device=d.get("device") or {},
                   runtime=d.get("runtime") or {}, created=str(d.get("created", "")),
                   extra={k: v for k, v in d.items() if k not in known})

    @classmethod
    def load(cls, path: str | Path) -> "LUT":
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as e:
            raise LUTError(f"cannot read latency table {p}: {e.strerror or e}") from None
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise LUTError(f"{p}: latency table is not valid JSON ({e.msg} at line {e.lineno})") from None
        lut = cls.from_dict(d, str(p))
        lut.path = p
        return lut

    def save(self, path: str | Path) -> Path:
        """Write atomically (readers never see half a table)."""
        atomic_write_json(path, self.to_dict())
        self.path = Path(path)
        return self.path

    # -- use ----------------------------------------------------------------------------------
    @property
    def clock(self) -> str:
        """How entries were timed: "cpu" (the timing thread's CPU time) or "wall" (tables without the key)."""
        return str(self.extra.get("clock", "wall"))

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.input_shape[2]), int(self.input_shape[3])

    def ms(self, key: str) -> float:
        """The table's estimate for one block (its `statistic`)."""
        try:
            return float(self.entries[key][self.statistic])
        except KeyError:
            where = f" ({self.path})" if self.path else ""
            raise LUTError(f"latency table{where} has no entry for block {key}; re-profile the target") from None

    def check(self, space=None, target: str | None = None, input_shape=None, source: str = "") -> None:
        """Refuse (one line) a table made for another space version, target or input shape.
        `space` is a Space object or a space name."""
        src = source or (str(self.path) if self.path else "latency table")
        if space is not None:
            from ..space import get_space

            sp = get_space(space) if isinstance(space, str) else space
            if sp.name != self.space:
                raise LUTError(f"{src}: table is for the {self.space} space, not {sp.name}")
            if sp.space_hash != self.space_hash:
                raise LUTError(f"{src}: table was measured on another version of the {sp.name} space "
                               f"(space_hash {self.space_hash} != {sp.space_hash}); re-profile the target")
        if target is not None and target != self.target:
            raise LUTError(f"{src}: table is for target {self.target}, not {target}")
        if input_shape is not None and [int(x) for x in input_shape] != [int(x) for x in self.input_shape]:
            raise LUTError(f"{src}: table was measured at input {format_shape(self.input_shape)}, "
                           f"not {format_shape(input_shape)}")
