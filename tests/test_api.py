"""The public Python API: the README's example runs as it stands (real table, search, training, export)."""

from __future__ import annotations

import re
from pathlib import Path

import agd_deploy

README = Path(__file__).resolve().parent.parent / "README.md"


def test_api_names_load_lazily():
    import subprocess
    import sys

    code = "import sys, agd_deploy; assert 'agd_deploy.api' not in sys.modules; agd_deploy.check; " \
           "assert 'agd_deploy.api' in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    assert set(agd_deploy.__all__) >= {"profile", "check", "transfer", "search", "train", "export", "bench"}


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    block = re.search(r"## From Python.*?```python\n(.*?)```", README.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md (From Python)", "exec"), {})
    out = capsys.readouterr().out
    assert re.search(r"^(fits|rescaled-fits|stale)$", out, re.M), out
    m = re.search(r"budget ([\d.]+) ms, predicted ([\d.]+) ms, onnx-int8 ([\d.]+) ms, ([\d.]+) dB vs fp32, "
                  r"status (\w+)", out)
    assert m, out
    budget, predicted = float(m.group(1)), float(m.group(2))
    assert predicted <= budget and m.group(5) in ("ok", "failed")  # 30 training steps: PSNR not guaranteed
    manifest = tmp_path / "runs" / "py" / "export" / "manifest.json"
    assert manifest.is_file() and (tmp_path / "runs" / "py" / "search" / "arch.json").is_file()
