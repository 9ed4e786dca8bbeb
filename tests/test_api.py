"""The public Python API (`agd_deploy.api`): the README's example runs as it stands (real table, search,
training, export)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def test_api_names_survive_importing_the_subpackages():
    """`agd.search`, `agd.train`, `agd.export` stay the API's functions after the subpackages are imported."""
    import agd_deploy.api as agd
    import agd_deploy.export  # noqa: F401
    import agd_deploy.search  # noqa: F401
    import agd_deploy.train  # noqa: F401

    for name in ("profile", "check", "transfer", "find_table", "search", "train", "export", "bench"):
        assert callable(getattr(agd, name)) and getattr(agd, name).__module__ == "agd_deploy.api", name


@pytest.mark.slow  # the whole chain (check, search, train, export): minutes, the suite's longest test
def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    block = re.search(r"## From Python.*?```python\n(.*?)```", README.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md (From Python)", "exec"), {})
    out = capsys.readouterr().out
    assert re.search(r"^(fits|rescaled-fits|stale)$", out, re.M), out
    m = re.search(r"budget ([\d.]+) ms, predicted ([\d.]+) ms, onnx-int8 ([\d.]+) ms, ([\d.]+) dB vs fp32, "
                  r"status ([\w ]+)", out)
    assert m, out
    assert float(m.group(2)) <= float(m.group(1))   # derive keeps the arch under the budget
    assert m.group(5) in ("ok", "failed")           # 30 training steps: the PSNR gate may fail, the chain ran
    assert (tmp_path / "runs" / "py" / "export" / "manifest.json").is_file()
    assert (tmp_path / "runs" / "py" / "search" / "arch.json").is_file()
