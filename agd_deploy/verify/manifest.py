"""manifest.json (Contracts) and the Markdown benchmark table (like Ultralytics' `benchmark` output)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import AgdError
from ..utils import atomic_write_json, atomic_write_text
from .status import Kind, Status

MANIFEST = "manifest.json"
TABLE = "benchmark.md"


def exit_code(artifacts: list[dict[str, Any]], strict: bool = False) -> int:
    """1 if any artifact failed (conversion, runtime, threshold, changed file); `not verified` is not a failure
    unless `strict` (`--strict`: a CI job must not pass with an artifact that nothing checked)."""
    return 1 if failure_line(artifacts, strict) else 0


def failure_line(artifacts: list[dict[str, Any]], strict: bool = False) -> str:
    """The one line that says why the exit is 1 ("" when it is 0): the failed formats and, with `strict`, the
    ones not verified (with why)."""
    st = [(a.get("format", "?"), Status.parse(a.get("status"))) for a in artifacts]
    failed = [f for f, s in st if s.failed]
    unchecked = [f"{f} ({s.reason})" if s.reason else f for f, s in st if strict and s.kind is Kind.NOT_VERIFIED]
    parts = ([f"{len(failed)} artifact(s) failed verification: {', '.join(failed)}"] if failed else []) + (
        [f"--strict: {len(unchecked)} artifact(s) not verified: {', '.join(unchecked)}"] if unchecked else [])
    return "; ".join(parts)


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def markdown_table(manifest: dict[str, Any]) -> str:
    m = manifest.get("model", {})
    lines = [f"Benchmarks: {m.get('name', '?')} ({m.get('space', '?')}, x{m.get('scale', '?')}) at "
             f"{'x'.join(map(str, manifest.get('input_shape', [])))}, {manifest.get('threads', 1)} thread(s), "
             f"PSNR/SSIM vs the fp32 {'ONNX file (onnxruntime)' if m.get('kind') == 'onnx' else 'PyTorch model'} "
             f"on {len(manifest.get('heldout', []))} held-out crops",
             "",
             "| Format | Precision | Status | Size (MB) | PSNR vs fp32 (dB) | SSIM | max abs err | min ms | p50 ms "
             "| p90 ms | Speedup vs fp32 | Smaller |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for a in manifest.get("artifacts", []):
        status = str(a.get("status", ""))
        st = Status.parse(status)
        ok = "✅" if st.ran else ("❎" if st.kind is Kind.NOT_VERIFIED else "❌")
        size = None if a.get("bytes") is None else a["bytes"] / 1e6
        lines.append("| " + " | ".join([
            a["format"], a["precision"], f"{ok} {status}", _fmt(size, ".2f"), _fmt(a.get("psnr_db"), ".2f"),
            _fmt(a.get("ssim"), ".4f"), _fmt(a.get("max_abs_err"), ".4f"), _fmt(a.get("min_ms"), ".2f"),
            _fmt(a.get("p50_ms"), ".2f"), _fmt(a.get("p90_ms"), ".2f"),
            "-" if a.get("speedup_vs_fp32") is None else f"{a['speedup_vs_fp32']:.2f}x",
            "-" if a.get("smaller_than_fp32") is None else f"{a['smaller_than_fp32']:.2f}x"]) + " |")
    sens = manifest.get("sensitivity")
    if sens:
        lines += ["", f"Per-layer int8 sensitivity ({sens.get('method', '')}), most sensitive first; kept in fp32: "
                  f"{', '.join(sens.get('kept', [])) or 'none'}", "",
                  "| Layer | PSNR vs fp32 when only it is int8 (dB) |", "|---|---:|"]
        lines += [f"| {r['layer']} | {r['psnr_db']:.2f} |" for r in sens.get("ranking", [])[:15]]
    return "\n".join(lines) + "\n"


def write(out_dir: Path, manifest: dict[str, Any]) -> None:
    atomic_write_json(Path(out_dir) / MANIFEST, manifest)
    atomic_write_text(Path(out_dir) / TABLE, markdown_table(manifest))


def read(out_dir: str | Path) -> dict[str, Any]:
    p = Path(out_dir)
    f = p / MANIFEST if p.is_dir() else p
    if not f.is_file():
        raise AgdError(f"no {MANIFEST} in {p} (run `agd export ... --out {p}` first)")
    try:
        d = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise AgdError(f"{f}: not a readable manifest ({e})") from None
    if not isinstance(d, dict) or not isinstance(d.get("artifacts"), list):
        raise AgdError(f"{f}: not an agd manifest (no 'artifacts' list)")
    return d
