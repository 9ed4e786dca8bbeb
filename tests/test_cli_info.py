"""`agd info` reproduces the seed table, and bad input is one line with the right exit code."""

import json
import subprocess
import sys

import pytest

from agd_deploy.space import Arch


def agd(*args):
    return subprocess.run([sys.executable, "-m", "agd_deploy", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("model,gmacs,mb,tol", [("esrgan", 1176.61, 66.8, 0.01), ("vdsr", 699.36, 2.67, 0.01),
                                                ("cyclegan", 54.17, 43.51, 0.10)])
def test_info_reproduces_seed_table(model, gmacs, mb, tol):
    r = agd("info", model, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert abs(out["gmacs"] - gmacs) / gmacs < tol
    assert abs(out["size_mb"] - mb) / mb < tol
    assert isinstance(out["params"], int) and out["input_shape"] == [1, 3, 256, 256]


def test_info_arch_json_and_input(tmp_path):
    p = tmp_path / "arch.json"
    p.write_text(Arch.sample("sr", 0).to_json())
    small = json.loads(agd("info", str(p), "--input", "1x3x64x64", "--json").stdout)
    big = json.loads(agd("info", str(p), "--json").stdout)
    assert big["gmacs"] == pytest.approx(small["gmacs"] * 16, rel=1e-3)  # MACs scale with LR pixels


def _one_line_error(r, code):
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    assert len([l for l in r.stderr.splitlines() if l.startswith("Error")]) == 1


def test_bad_input(tmp_path):
    _one_line_error(agd("info", "nosuchnet"), 2)
    _one_line_error(agd("info", "esrgan", "--input", "1x3x64"), 2)
    _one_line_error(agd("info", "esrgan", "--input", "axbxcxd"), 2)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    _one_line_error(agd("info", str(bad)), 1)
    wrong = tmp_path / "wrong.json"
    d = Arch.sample("st", 0).to_dict()
    wrong.write_text(json.dumps(d))
    _one_line_error(agd("info", str(wrong), "--space", "sr"), 1)
    d["widths"]["p0"] = 7
    wrong.write_text(json.dumps(d))
    _one_line_error(agd("info", str(wrong)), 1)
    _one_line_error(agd("info", str(tmp_path / "missing.json")), 1)


def test_help_and_version():
    r = agd("--help")
    assert r.returncode == 0 and "info" in r.stdout
    r = agd("--version")
    assert r.returncode == 0 and "agd" in r.stdout
