"""Fuzz cases for user inputs fed through the `agd` CLI in-process (tests/test_fuzz.py, benchmarks/fuzz.py).

Five kinds of input, each mutated by hypothesis from a valid file, each through the cheapest CLI path that
parses it exactly as the real command does:

    arch     agd info A.json --input 1x3x16x16 --json            (Arch.load, build, count)
    lut      agd search sr_x4_tiny --table T.json --dry-run      (LUT.load, LUT.check)
    recipe   agd search R.yaml --dry-run                         (SearchConfig.load: the strict loader)
    profile  agd export none.json --profile P.yaml --out O       (load_profile; a valid one stops at the model)
    image    agd upscale bicubic IN OUT --scale 2                (data.images.load_image, atomic write)

The oracle (`Tally.run`): the exit code is 0, 1 or 2; nothing escapes `cli.main` but AgdError/ClickException
(anything else is a traceback: a finding); "Traceback" never appears in the output; after any run no temp file
(`.<name>.*`, what `utils.atomic_path` writes) is left in the output folder, and after a failed one no output
file exists."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import shutil
import struct
import tempfile
import traceback
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("arch", "lut", "recipe", "profile", "image")


# -- the oracle -------------------------------------------------------------------------------------------------

@dataclass
class Finding:
    kind: str
    args: list[str]
    problem: str
    detail: str
    sample: str = ""  # the input file's first bytes (repr), to reproduce


@dataclass
class Tally:
    cases: Counter = field(default_factory=Counter)
    codes: Counter = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)

    @property
    def tracebacks(self) -> int:
        return sum(f.problem == "traceback" for f in self.findings)

    def run(self, kind: str, args: list[str], out_dir: Path | None = None, out_file: Path | None = None,
            sample: bytes = b"") -> int | None:
        """One CLI call in-process, judged; returns the exit code (None for a traceback)."""
        from agd_deploy.cli import main

        self.cases[kind] += 1
        buf = io.StringIO()
        code: int | None
        tb = None
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            try:
                main([str(a) for a in args])
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except Exception:  # noqa: BLE001 - anything but AgdError/ClickException escaping main is a finding
                code, tb = None, traceback.format_exc()
        text = buf.getvalue()
        self.codes["traceback" if code is None else code] += 1
        snip = repr(sample[:300])

        def find(problem, detail):
            self.findings.append(Finding(kind, [str(a) for a in args], problem, detail[-3000:], snip))

        if tb is not None:
            find("traceback", tb)
        elif code not in (0, 1, 2):
            find("exit code", f"exit {code}: {text[-500:]}")
        if tb is None and "Traceback (most recent call last)" in text:
            find("traceback in output", text)
        if out_dir is not None and out_dir.is_dir():
            left = [p.name for p in out_dir.rglob("*") if p.name.startswith(".") and not p.name.endswith(".lock")]
            if left:
                find("temp file left", f"{left} after exit {code}: {text[-300:]}")
        if out_file is not None and code not in (0, None) and out_file.exists():
            find("output after an error", f"{out_file} exists after exit {code}: {text[-300:]}")
        return code

    def summary(self) -> dict[str, Any]:
        return {"cases": sum(self.cases.values()), "cases_by_kind": dict(self.cases),
                "tracebacks": self.tracebacks, "findings": len(self.findings),
                "exit_codes": {str(k): v for k, v in sorted(self.codes.items(), key=str)},
                "first_findings": [f.__dict__ for f in self.findings[:5]]}


# -- base documents ---------------------------------------------------------------------------------------------

def base_arch() -> dict:
    from agd_deploy.space import Arch

    return json.loads(Arch.sample("sr", 3).to_json())


def base_lut() -> dict:
    """A shipped table cut to a few entries (dry-run reads all keys, not every entry)."""
    d = json.loads(next(iter(sorted((ROOT / "latency_tables" / "ort-cpu-int8").glob("*.json")))).read_text())
    d["entries"] = dict(list(d["entries"].items())[:6])
    d["profile"]["reference_nets"] = d["profile"].get("reference_nets", [])[:1]
    return d


def base_yaml(kind: str) -> dict:
    path = ROOT / ("search/sr_x4_tiny.yaml" if kind == "recipe" else "export/teacher.yaml")
    return yaml.safe_load(path.read_text())


# -- mutations --------------------------------------------------------------------------------------------------

scalars = (st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.sampled_from([0, -1, 1, 2**63, 10**30])
           | st.floats(allow_nan=True, allow_infinity=True, width=64) | st.text(max_size=12)
           | st.sampled_from(["auto", "1x3x64x64", "1e-3", "nan", "yes", "", "sr", "st", "onnx", "min_ms",
                              "ort-cpu-int8", "skip", "residual", "u8u8"]))
values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                      max_leaves=6)


def _paths(obj, prefix=()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:6]):
            out += _paths(v, prefix + (i,))
    return out


def _typo(data, key: str) -> str:
    ops = data.draw(st.sampled_from(["drop", "double", "swap", "case", "suffix"]))
    if not key:
        return "x"
    i = data.draw(st.integers(0, len(key) - 1))
    if ops == "drop":
        return key[:i] + key[i + 1:] or "x"
    if ops == "double":
        return key[:i] + key[i] + key[i:]
    if ops == "swap" and len(key) > 1:
        j = min(i + 1, len(key) - 1)
        k = list(key)
        k[i], k[j] = k[j], k[i]
        return "".join(k)
    if ops == "case":
        return key.upper()
    return key + "_"


def mutate(data, doc: Any, n_max: int = 4) -> Any:
    """Up to n_max structural mutations of a JSON/YAML document: delete, replace, retype, misspell a key, wrap."""
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, n_max))):
        paths = _paths(doc)
        if data.draw(st.booleans()):  # half the time a top-level key: where the loaders look first
            paths = [p for p in paths if len(p) <= 1]
        path = data.draw(st.sampled_from(paths))
        op = data.draw(st.sampled_from(["replace", "delete", "typo", "wrap", "emptied", "numeric-edge"]))
        if not path:
            if op in ("replace", "wrap"):
                doc = data.draw(values) if op == "replace" else [doc]
            continue
        parent = doc
        for p in path[:-1]:
            parent = parent[p]
        last = path[-1]
        if isinstance(parent, dict):
            if op == "delete":
                del parent[last]
            elif op == "typo" and isinstance(last, str):
                parent[_typo(data, last)] = parent.pop(last)
            elif op == "wrap":
                parent[last] = [parent[last]]
            elif op == "emptied":
                parent[last] = type(parent[last])() if isinstance(parent[last], (dict, list, str)) else None
            elif op == "numeric-edge":
                parent[last] = data.draw(st.sampled_from([0, -1, 0.5, 1e308, -0.0, True, "3", 2**64]))
            else:
                parent[last] = data.draw(values)
        elif isinstance(parent, list):
            if op == "delete":
                parent.pop(last)
            elif op == "wrap":
                parent[last] = [parent[last]]
            else:
                parent[last] = data.draw(values)
    return doc


def text_mutate(data, text: str) -> str:
    """Byte-level damage of a file's text: truncation, an inserted or flipped character, or nothing."""
    op = data.draw(st.sampled_from(["none", "none", "truncate", "insert", "flip"]))
    if op == "none" or not text:
        return text
    i = data.draw(st.integers(0, len(text) - 1))
    if op == "truncate":
        return text[:i]
    if op == "insert":
        return text[:i] + data.draw(st.sampled_from(list("{}[]:,\"'\\\n\t#&*!%@`|>-?\x00"))) + text[i:]
    return text[:i] + chr((ord(text[i]) + 1) % 0x10000 if ord(text[i]) < 0xD7FF else 65) + text[i + 1:]


def dump_json(doc) -> str:
    return json.dumps(doc, allow_nan=True)


def dump_yaml(doc) -> str:
    try:
        return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    except yaml.YAMLError:
        return str(doc)


# -- images -----------------------------------------------------------------------------------------------------

MODES = ["RGB", "RGBA", "L", "LA", "P", "P-transparent", "I;16", "I", "F", "1", "CMYK"]
FORMATS = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "TIFF": ".tif", "GIF": ".gif", "WEBP": ".webp"}


def image_bytes(data) -> tuple[bytes, str]:
    """An odd image file: any mode, 1x1 up to small sizes, some formats, then maybe truncated, bit-flipped or with
    a PNG header that claims huge dimensions (the pixels are not there)."""
    import numpy as np
    from PIL import Image

    mode = data.draw(st.sampled_from(MODES))
    fmt = data.draw(st.sampled_from(list(FORMATS)))
    w, h = data.draw(st.integers(1, 24)), data.draw(st.integers(1, 24))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    if mode in ("RGB", "RGBA", "CMYK", "LA"):
        im = Image.frombytes(mode, (w, h), rng.integers(0, 256, (h, w, len(mode)), dtype=np.uint8).tobytes())
    elif mode == "I;16":
        im = Image.frombytes("I;16", (w, h), rng.integers(0, 65536, (h, w), dtype="<u2").tobytes())
    elif mode == "I":
        im = Image.frombytes("I", (w, h), rng.integers(-2**20, 2**20, (h, w), dtype="<i4").tobytes())
    elif mode == "F":
        im = Image.frombytes("F", (w, h), rng.standard_normal((h, w)).astype("<f4").tobytes())
    else:
        im = Image.frombytes("L", (w, h), rng.integers(0, 256, (h, w), dtype=np.uint8).tobytes())
        if mode == "1":
            im = im.convert("1")
        elif mode.startswith("P"):
            im = im.convert("P")
            if mode == "P-transparent":
                im.info["transparency"] = 0
    buf = io.BytesIO()
    try:
        kw = {"transparency": 0} if mode == "P-transparent" and fmt in ("PNG", "GIF") else {}
        im.save(buf, format=fmt, **kw)
    except (OSError, ValueError, KeyError, TypeError):  # this mode cannot be written in this format: fall back
        buf = io.BytesIO()
        im.convert("RGB").save(buf, format="PNG")
        fmt = "PNG"
    raw = buf.getvalue()
    damage = data.draw(st.sampled_from(["none", "none", "truncate", "flip", "huge-header", "empty", "not-image"]))
    if damage == "truncate":
        raw = raw[:data.draw(st.integers(0, max(0, len(raw) - 1)))]
    elif damage == "flip" and raw:
        i = data.draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([raw[i] ^ (1 << data.draw(st.integers(0, 7)))]) + raw[i + 1:]
    elif damage == "huge-header":
        raw, fmt = huge_png(data.draw(st.sampled_from([(100_000, 100_000), (2**31 - 1, 1), (3000, 3000), (40_000, 2)])),
                            data.draw(st.booleans())), "PNG"
    elif damage == "empty":
        raw = b""
    elif damage == "not-image":
        raw = data.draw(st.binary(max_size=64))
    return raw, FORMATS[fmt]


def huge_png(wh: tuple[int, int], fix_crc: bool) -> bytes:
    """A tiny PNG whose IHDR claims w x h pixels (the IDAT holds almost nothing)."""
    w, h = wh
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    crc = zlib.crc32(b"IHDR" + ihdr) if fix_crc else 0
    idat = zlib.compress(b"\x00" * 16)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", crc)
            + struct.pack(">I", len(idat)) + b"IDAT" + idat + struct.pack(">I", zlib.crc32(b"IDAT" + idat))
            + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND")))


# -- one case per kind ------------------------------------------------------------------------------------------

class Cases:
    """Builds each kind's input file in a fresh folder under `root` and runs it through the CLI."""

    def __init__(self, root: Path, tally: Tally):
        self.root, self.tally = Path(root), tally
        self._arch, self._lut = base_arch(), base_lut()
        self._yaml = {k: base_yaml(k) for k in ("recipe", "profile")}

    def _dir(self) -> Path:
        return Path(tempfile.mkdtemp(dir=self.root))

    def arch(self, data) -> int | None:
        d = self._dir()
        text = text_mutate(data, dump_json(mutate(data, self._arch)))
        (d / "a.json").write_text(text)
        return self.tally.run("arch", ["info", d / "a.json", "--input", "1x3x16x16", "--json"], d, sample=text.encode())

    def lut(self, data) -> int | None:
        d = self._dir()
        text = text_mutate(data, dump_json(mutate(data, self._lut)))
        (d / "t.json").write_text(text)
        return self.tally.run("lut", ["search", "sr_x4_tiny", "--table", d / "t.json", "--dry-run"], d,
                              sample=text.encode())

    def recipe(self, data) -> int | None:
        d = self._dir()
        text = text_mutate(data, dump_yaml(mutate(data, self._yaml["recipe"])))
        (d / "r.yaml").write_text(text)
        return self.tally.run("recipe", ["search", d / "r.yaml", "--dry-run"], d, sample=text.encode())

    def profile(self, data) -> int | None:
        d = self._dir()
        text = text_mutate(data, dump_yaml(mutate(data, self._yaml["profile"])))
        (d / "p.yaml").write_text(text)
        out = d / "out"
        return self.tally.run("profile", ["export", d / "none.json", "--profile", d / "p.yaml", "--out", out],
                              out, sample=text.encode())

    def image(self, data) -> int | None:
        d = self._dir()
        raw, suffix = image_bytes(data)
        src = d / f"in{suffix}"
        src.write_bytes(raw)
        out = d / "out"
        dst = out / "up.png"
        return self.tally.run("image", ["upscale", "bicubic", src, dst, "--scale", "2"], out, dst, sample=raw)

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
