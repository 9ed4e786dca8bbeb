"""JSON Schemas (Draft 2020-12) of the files agd-deploy writes and users' scripts read: the machine-checkable
form of docs/ARCHITECTURE.md, "Contracts". Shipped in the wheel beside this module, so an outside checker can
use them without the code:

    lut       a latency table (profiling/lut.py)        arch      arch.json (space/arch.py, agd search)
    manifest  manifest.json (agd export, deploy/)       summary   RUN/summary.json (agd demo)
    eval      agd eval --json, RUN/eval.json

Required keys are the Contracts; every object allows extra keys (adding a key never breaks a reader). The
tests validate every file the tool writes against these (tests/contracts.py)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from ..errors import AgdError

HERE = Path(__file__).parent
KINDS = ("lut", "arch", "manifest", "summary", "eval")


class SchemaError(AgdError):
    """An object that does not match its shipped schema (the message names the JSON path)."""


def path(kind: str) -> Path:
    """The shipped schema file of `kind`."""
    if kind not in KINDS:
        raise ValueError(f"unknown schema {kind!r}; schemas are {', '.join(KINDS)}")
    return HERE / f"{kind}.schema.json"


@functools.cache
def load(kind: str) -> dict[str, Any]:
    return json.loads(path(kind).read_text())


@functools.cache
def _registry():
    """All shipped schemas by their $id, so `manifest.schema.json#/$defs/artifact` resolves offline."""
    from referencing import Registry, Resource

    return Registry().with_resources((load(k)["$id"], Resource.from_contents(load(k))) for k in KINDS)


@functools.cache
def validator(kind: str):
    from jsonschema import Draft202012Validator

    return Draft202012Validator(load(kind), registry=_registry())


def errors(kind: str, obj: Any) -> list[str]:
    """Every mismatch of `obj` with schema `kind`, one line each: `$.artifacts[0].status: ... `."""
    out = []
    for e in sorted(validator(kind).iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
        out.append(f"{e.json_path}: {_short(e)}")
    return out


def validate(kind: str, obj: Any, source: str | None = None) -> None:
    """Raise SchemaError (one line, with the JSON path of the first mismatch) if `obj` does not match."""
    from jsonschema.exceptions import best_match

    err = best_match(validator(kind).iter_errors(obj))
    if err is not None:
        raise SchemaError(f"{source or kind}: {err.json_path}: {_short(err)} (schema {path(kind).name})")


def _short(e) -> str:
    msg = " ".join(str(e.message).split())
    return msg if len(msg) <= 200 else msg[:197] + "..."
