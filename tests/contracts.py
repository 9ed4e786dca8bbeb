"""Key sets users' scripts read (docs/ARCHITECTURE.md, "Contracts"), stored from a run before the refactor of
the deployment wing: a new run must still have every stored key (keys may be added, never dropped)."""

from __future__ import annotations

import json
from pathlib import Path

STORED = Path(__file__).parent / "fixtures" / "contracts"
OPTIONAL = {"predicted_ms", "predicted_by", "prediction_note"}


def _keys(o):
    return {k: _keys(v) for k, v in o.items()} if isinstance(o, dict) else None


def structure(obj: dict, lists: tuple[str, ...] = ("artifacts", "exports")) -> dict:
    """Nested key sets; lists of manifest entries keyed by format (their extras differ by format)."""
    out = _keys(obj)
    for k in lists:
        if isinstance(obj.get(k), list):
            out[k] = {e["format"]: {x: _keys(v) for x, v in e.items() if x not in OPTIONAL} for e in obj[k]}
    return out


def missing(stored, new, where="") -> list[str]:
    """Stored keys the new object lacks (formats the new run did not make are not compared)."""
    if not isinstance(stored, dict):
        return []
    if not isinstance(new, dict):
        return [where or "<root>"]
    out = []
    for k, v in stored.items():
        if k not in new:
            if where.endswith(("artifacts", "exports")):
                continue  # a format this run did not export
            out.append(f"{where}.{k}".lstrip("."))
        else:
            out += missing(v, new[k], f"{where}.{k}")
    return out


def stored(name: str) -> dict:
    return json.loads((STORED / f"{name}.keys.json").read_text())["keys"]


def schema_errors(kind: str, obj) -> list[str]:
    """Mismatches of `obj` (or the JSON file at a path) with the shipped schema `kind` (agd_deploy/schemas):
    lut, arch, manifest, summary, eval. Empty when it validates."""
    from agd_deploy.schemas import errors

    if isinstance(obj, (str, Path)):
        obj = json.loads(Path(obj).read_text())
    return errors(kind, obj)


def check(kind: str, obj) -> None:
    """Assert `obj` validates against its shipped schema and, for manifest/summary, still has every stored key."""
    errs = schema_errors(kind, obj)
    assert not errs, f"{kind} does not match agd_deploy/schemas/{kind}.schema.json: " + "; ".join(errs[:5])
    if isinstance(obj, (str, Path)):
        obj = json.loads(Path(obj).read_text())
    if (STORED / f"{kind}.keys.json").is_file():
        lost = missing(stored(kind), structure(obj))
        assert not lost, f"{kind} lost stored key(s): {lost}"
