"""One strict, typed loader for the YAML files users write (search recipes, export profiles).

A verification tool must not run with defaults because a key was misspelled (`calibraton:`) or a value has the
wrong type (`lr_arch: fast`), so every file goes through `load(cls, data, where)`: `cls` is a dataclass whose
field annotations are the file's schema, nested dataclasses are nested mappings. It refuses unknown keys
(suggesting the closest known key, difflib) and wrong types, always naming the key's full path:

    search/x.yaml: lr_arch: expected a number, got 'fast'
    --profile p.yaml: onnx_int8: unknown setting(s) reduce_rang (did you mean reduce_range?); known: ...

Both are `ConfigError` (exit 2: the file does not match its schema, a usage error). Range checks that need
several fields (`max_side >= 4*patch`) stay with each config's own `validate`.

Why dataclasses and not pydantic: the configs already are dataclasses (the project's convention), this is
~150 lines of stdlib over the few types the files use (str, int, float, bool, lists, string-keyed mappings,
Literal choices, optional values, nested sections), and its messages are exactly the tool's one-line style.
pydantic v2 (`extra="forbid"`, strict mode) would add a second model of every config, a dependency that the
wheel does not otherwise need, and multi-line error texts to rewrite; its strict mode also refuses int for
float, which YAML users write (`rounds: 20`, `thresholds: {int8: 35}`).

Coercions that are allowed on purpose: an int where a float is expected (YAML `35` for `35.0`), and a string
that spells a number where a float is expected (PyYAML follows YAML 1.1, which reads `1e-3` as a string).
A bool is never a number, a number never a string, and floats must be finite."""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from typing import Any, Literal, TypeVar, Union

from .errors import ConfigError

T = TypeVar("T")
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _show(v: Any, limit: int = 60) -> str:
    r = repr(v)
    return r if len(r) <= limit else r[:limit - 3] + "..."


def _where(where: str, path: str) -> str:
    return f"{where}: {path}" if path else where


def suggest(key: str, known: typing.Iterable[str]) -> str | None:
    """The closest known key to a misspelled one (difflib), or None."""
    m = difflib.get_close_matches(str(key), [str(k) for k in known], n=1, cutoff=0.6)
    return m[0] if m else None


def _kind(tp: Any) -> str:
    """A type as the message names it: 'a number', 'a list of integers', 'one of minmax, entropy'."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return "any value"
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (Union, types.UnionType):
        parts = []
        for a in args:
            if typing.get_origin(a) is Literal:
                parts += [str(x) for x in typing.get_args(a)]
            elif a is not type(None):
                parts.append(_kind(a))
        parts += ["null"] * (type(None) in args)
        return ", ".join(parts[:-1]) + " or " + parts[-1] if len(parts) > 1 else parts[0]
    if origin is list:
        return f"a list of {_plural(args[0])}" if args else "a list"
    if origin is dict:
        return f"a mapping of {_plural(args[1])}" if args else "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping of settings"
    return {str: "a string", int: "an integer", float: "a number", bool: "true/false",
            type(None): "null"}.get(tp, getattr(tp, "__name__", str(tp)))


def _plural(tp: Any) -> str:
    return {str: "strings", int: "integers", float: "numbers", bool: "booleans"}.get(tp, _kind(tp))


def _convert(tp: Any, v: Any, path: str, where: str) -> Any:
    """v checked against (and converted to) type tp; raises ConfigError naming `path`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return v
    if origin in (Union, types.UnionType):
        if v is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(a, v, path, where)
            except ConfigError as e:  # a nested error inside the matching alternative is the useful one
                errors.append((a, e))
        nested = [e for a, e in errors if _matches_shape(a, v)]
        if nested:
            raise nested[0]
        raise ConfigError(f"{_where(where, path)}: expected {_kind(tp)}, got {_show(v)}")
    if origin is Literal:
        if any(v == a and type(v) is type(a) for a in args):
            return v
        raise ConfigError(f"{_where(where, path)}: expected {_kind(tp)}, got {_show(v)}")
    if dataclasses.is_dataclass(tp):
        return load(tp, {} if v is None else v, where, path)
    if origin is list:
        if not isinstance(v, list):
            raise ConfigError(f"{_where(where, path)}: expected {_kind(tp)}, got {_show(v)}")
        item = args[0] if args else Any
        return [_convert(item, x, f"{path}[{i}]", where) for i, x in enumerate(v)]
    if origin is dict:
        if not isinstance(v, dict):
            raise ConfigError(f"{_where(where, path)}: expected {_kind(tp)}, got {_show(v)}")
        kt, vt = args if args else (Any, Any)
        out = {}
        for k, x in v.items():
            sub = f"{path}.{k}" if path else str(k)
            if kt is str and not isinstance(k, str):
                raise ConfigError(f"{_where(where, sub)}: keys must be strings, got {_show(k)}")
            out[k] = _convert(vt, x, sub, where)
        return out
    if tp is bool:
        if isinstance(v, bool):
            return v
    elif tp is int:
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    elif tp is float:
        if isinstance(v, str) and _NUMBER.match(v.strip()):
            v = float(v)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if not math.isfinite(v):
                raise ConfigError(f"{_where(where, path)}: expected a finite number, got {_show(v)}")
            return float(v)
    elif tp is str:
        if isinstance(v, str):
            return v
    elif isinstance(tp, type) and isinstance(v, tp):
        return v
    raise ConfigError(f"{_where(where, path)}: expected {_kind(tp)}, got {_show(v)}")


def _matches_shape(tp: Any, v: Any) -> bool:
    """Whether v has the container shape of tp (so an error inside it beats 'expected X or Y')."""
    origin = typing.get_origin(tp)
    if origin is list:
        return isinstance(v, list)
    if origin is dict or dataclasses.is_dataclass(tp):
        return isinstance(v, dict)
    return tp is float and isinstance(v, float)  # a float of the wrong kind (nan, inf)


def load(cls: type[T], data: Any, where: str, path: str = "") -> T:
    """An instance of dataclass `cls` from a parsed YAML mapping, strictly: unknown keys and wrong types are a
    ConfigError that names the key's path in the file `where`; missing keys take the field defaults."""
    if not isinstance(data, dict):
        raise ConfigError(f"{_where(where, path)}: expected a mapping of settings, got {_show(data)}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")}
    unknown = [k for k in data if not isinstance(k, str) or k not in known]
    if unknown:
        names = ", ".join(str(k) for k in unknown)
        close = [(str(k), suggest(str(k), known)) for k in unknown]
        hint = "; ".join(f"did you mean {s}?" if len(unknown) == 1 else f"{k}: did you mean {s}?"
                         for k, s in close if s)
        raise ConfigError(f"{_where(where, path)}: unknown setting(s) {names}" + (f" ({hint})" if hint else "")
                          + f"; known: {', '.join(known)}")
    kw = {k: _convert(hints[k], v, f"{path}.{k}" if path else k, where) for k, v in data.items()}
    return cls(**kw)
