"""The HTML report: built from a run folder's files only, every section present, images inlined,
graceful 'not run' for missing parts, and (slow) it renders in a real browser."""

from __future__ import annotations

import base64
import io
import json
import random
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agd_deploy.report import load_run, write_report
from agd_deploy.space import Arch, get_space

SECTIONS = ("overview", "profile", "search", "arch", "exports", "quality", "crops")


def _lut_for(arch: Arch) -> dict:
    """A LUT with the contract keys whose entries cover the arch's blocks (values: MACs-like, deterministic)."""
    sp = get_space("sr")
    entries = {}
    for b in sp.all_blocks(64, 64):
        ms = 1e-6 * b.cin * b.cout * b.h * b.w + 0.05
        entries[b.key] = {"min_ms": ms, "p10_ms": ms * 1.02, "p50_ms": ms * 1.05, "p90_ms": ms * 1.2, "n": 20}
    return {"schema": 1, "target": "ort-cpu-int8", "space": "sr", "space_hash": sp.space_hash,
            "input_shape": [1, 3, 64, 64], "threads": 1, "device": {"cpu": "test cpu", "gpu": None, "host": "h"},
            "runtime": {"onnxruntime": "1.x"}, "created": "2025-01-01T00:00:00+00:00", "overhead_ms": 0.5,
            "statistic": "min_ms", "entries": entries}


def _png(seed: int, size: int = 48) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def make_run(root: Path) -> Path:
    """A complete run folder with the Contracts' files and keys."""
    arch = Arch.sample("sr", 7)
    lut = _lut_for(arch)
    pred = lut["overhead_ms"] + sum(lut["entries"][b.key]["min_ms"] for b in arch.blocks())
    (root / "profile").mkdir(parents=True)
    (root / "profile" / "ort-cpu-int8-sr-64x64-t1.json").write_text(json.dumps(lut))
    rng = random.Random(0)
    points = [{"predicted_ms": p, "measured_ms": p * rng.uniform(0.9, 1.1), "gmacs": p / 30} for p in
              (rng.uniform(20, 90) for _ in range(12))]
    (root / "profile" / "validation.json").write_text(json.dumps(
        {"n": 12, "lut": {"mape": 0.04, "within_10pct": 0.9, "spearman": 0.93, "kendall": 0.8},
         "flops": {"mape": 0.3, "within_10pct": 0.2, "spearman": 0.5, "kendall": 0.4},
         "repeatability": {"spearman": 0.95}, "points": points}))
    d = arch.to_dict()
    d.update(target="ort-cpu-int8", lut="profile/x.json", lut_sha256="0" * 64, budget_ms=45.0, predicted_ms=pred,
             gmacs=0.8, params=120000)
    (root / "search").mkdir()
    (root / "search" / "arch.json").write_text(json.dumps(d))
    lines = [json.dumps({"step": s, "loss": 1 / (s + 1), "lambda": 0.01 * 2 ** (s % 4), "expected_ms": 90 - s})
             for s in range(40)]
    (root / "search" / "log.jsonl").write_text("\n".join(lines) + "\n{\"step\": 40, \"lo")  # cut last line
    (root / "train").mkdir()
    (root / "train" / "generator.safetensors").write_bytes(b"x")
    (root / "export").mkdir()
    arts = [{"format": "onnx", "precision": "fp32", "file": "model.onnx", "sha256": "a" * 64, "bytes": 480000,
             "input_shape": [1, 3, 64, 64], "runtime": {"onnxruntime": "1.x"}, "psnr_db": 99.0, "ssim": 1.0,
             "p50_ms": 60.0, "p90_ms": 63.0, "min_ms": 58.0, "speedup_vs_fp32": 1.0, "status": "ok"},
            {"format": "onnx-int8", "precision": "int8", "file": "model.int8.onnx", "sha256": "b" * 64,
             "bytes": 130000, "input_shape": [1, 3, 64, 64], "runtime": {"onnxruntime": "1.x"}, "psnr_db": 41.37,
             "ssim": 0.991, "p50_ms": 31.0, "p90_ms": 33.0, "min_ms": 30.12, "speedup_vs_fp32": 1.93,
             "predicted_ms": pred, "status": "ok"},
            {"format": "coreml-int8", "precision": "int8", "file": "model.mlpackage", "sha256": "c" * 64,
             "bytes": 140000, "input_shape": [1, 3, 64, 64], "runtime": {}, "psnr_db": None, "ssim": None,
             "p50_ms": None, "p90_ms": None, "min_ms": None, "speedup_vs_fp32": None,
             "status": "not verified: CoreML prediction needs macOS"},
            {"format": "tflite-int8", "precision": "int8", "file": "model.tflite", "sha256": "", "bytes": 0,
             "input_shape": [1, 3, 64, 64], "runtime": {}, "psnr_db": None, "ssim": None, "p50_ms": None,
             "p90_ms": None, "min_ms": None, "speedup_vs_fp32": None, "status": "failed: <converter> crashed"}]
    (root / "export" / "manifest.json").write_text(json.dumps({"artifacts": arts}))
    summary = {"budget_ms": 45.0, "predicted_ms": pred, "measured_ms": 30.12,
               "student": {"psnr": 27.5, "ssim": 0.81, "psnr_vs_teacher": 31.2},
               "student_int8": {"psnr": 27.4, "ssim": 0.80, "psnr_vs_teacher": 30.9},
               "bicubic": {"psnr": 26.1, "ssim": 0.77, "psnr_vs_teacher": 28.4},
               "teacher": {"psnr": 25.9, "ssim": 0.76}, "exports": arts,
               "seconds": {"profile": 61.0, "search": 120.5, "train": 300.0, "export": 90.0}}
    (root / "summary.json").write_text(json.dumps(summary))
    for i, kind in enumerate(("lr", "bicubic", "student", "student_int8", "teacher", "hr")):
        (root / "crops" / "baboon").mkdir(parents=True, exist_ok=True)
        (root / "crops" / "baboon" / f"{kind}.png").write_bytes(_png(i))
    return root


def _section(html: str, sid: str) -> str:
    m = re.search(rf'<section id="{sid}">(.*?)</section>', html, re.S)
    assert m, f"section {sid} missing"
    return m.group(1)


def test_full_run_has_every_section_and_inline_images(tmp_path):
    run = make_run(tmp_path / "run")
    path = write_report(run)
    assert path == run / "report.html"
    html = path.read_text()
    for sid in SECTIONS:
        assert "not run" not in _section(html, sid), sid
    # self-contained: no external references at all
    assert not re.search(r'(src|href)="(?!data:|#)', html)
    assert "<link" not in html and "<script" not in html
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    # validation scatter, trajectory, block latency, quality bars, 6 crops
    assert len(imgs) == 10
    for b64 in imgs:
        im = Image.open(io.BytesIO(base64.b64decode(b64)))
        assert im.size[0] > 10 and im.size[1] > 10
    # numbers from the files show up, formatted
    assert "30.12 ms" in _section(html, "overview") and "within budget" in html
    exp = _section(html, "exports")
    assert "41.37 dB" in exp and "1.93x" in exp and "0.130 MB" in exp
    assert "not verified: CoreML prediction needs macOS" in exp
    assert "failed: &lt;converter&gt; crashed" in exp  # escaped, not injected
    q = _section(html, "quality")
    assert "+2.80 dB" in q and "31.20 dB" in q
    arch = _section(html, "arch")
    assert arch.count("<tr>") >= 5 + 2  # 5 cells + header + head widths
    prof = _section(html, "profile")
    assert "4.0%" in prof and "0.930" in prof


def test_arch_table_matches_arch_json(tmp_path):
    run = make_run(tmp_path / "run")
    arch = Arch.load(run / "search" / "arch.json")
    html = write_report(run).read_text()
    sec = _section(html, "arch")
    cells = re.findall(r'<span class="op-\w+">(\w+)<br><small>(\d+)</small>', sec)
    assert [c[0] for c in cells] == arch.ops
    want = [b.cout for b in arch.blocks() if b.kind == "cell"]
    assert [int(c[1]) for c in cells] == want


def test_pooled_validation_wins_over_the_brief_one(tmp_path):
    """The demo keeps its brief 8-net check beside the pooled one (validation.brief.json sorts first): the
    report shows the validation that decided."""
    from agd_deploy.report.html import load_run

    run = make_run(tmp_path / "run")
    pooled = json.loads((run / "profile" / "validation.json").read_text())
    (run / "profile" / "validation.brief.json").write_text(json.dumps({**pooled, "n": 8,
                                                                         "points": pooled["points"][:8]}))
    assert load_run(run).validation["n"] == 12


def test_empty_run_degrades_to_not_run(tmp_path):
    run = tmp_path / "empty"
    run.mkdir()
    html = write_report(run).read_text()
    for sid in SECTIONS:
        assert "not run" in _section(html, sid), sid
    assert "base64" not in html


def test_partial_and_corrupt_files(tmp_path):
    run = make_run(tmp_path / "run")
    (run / "summary.json").write_text("{broken")
    shutil.rmtree(run / "crops")
    html = write_report(run).read_text()
    assert "summary.json: unreadable" in html
    assert "not run" in _section(html, "crops")
    assert "not run" not in _section(html, "search")
    # exports still come from the manifest
    assert "41.37 dB" in _section(html, "exports")


def test_report_cli_writes_atomically_and_errors_one_line(tmp_path):
    from click.testing import CliRunner
    from agd_deploy.cli import cli

    run = make_run(tmp_path / "run")
    res = CliRunner().invoke(cli, ["report", str(run)])
    assert res.exit_code == 0, res.output
    assert (run / "report.html").stat().st_size > 10000
    assert not [p for p in run.iterdir() if p.name.startswith(".report.html")]  # no temp left behind
    r = subprocess.run([str(Path(__import__("sys").executable).parent / "agd"), "report", str(tmp_path / "nope")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_report_renders_in_chromium(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("no chromium here (Debian: apt-get install -y chromium)")
    run = make_run(tmp_path / "run")
    html = write_report(run)
    shot = tmp_path / "shot.png"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'prof'}",
           "--hide-scrollbars", f"--screenshot={shot}", "--window-size=1200,3000", html.as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120)
    assert shot.is_file(), "chromium wrote no screenshot"
    px = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert px.shape == (3000, 1200)
    assert px.std() > 20  # text, tables and plots: far from a blank page
    # the plots render: many distinct grey levels, not just text on white
    assert len(np.unique(px.astype(np.uint8))) > 50
