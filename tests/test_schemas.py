"""The shipped JSON Schemas (agd_deploy/schemas) and the strict config loader (agd_deploy/config.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from agd_deploy import schemas
from agd_deploy.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "contracts"


@pytest.mark.parametrize("kind", schemas.KINDS)
def test_schemas_are_valid_draft_2020_12(kind):
    s = schemas.load(kind)
    Draft202012Validator.check_schema(s)
    assert s["$schema"].endswith("2020-12/schema") and s["$id"].endswith(f"{kind}.schema.json")
    assert schemas.path(kind).parent == Path(schemas.__file__).parent  # inside the package: in the wheel


def test_every_shipped_lut_validates():
    root = ROOT / "latency_tables"  # not a profile's work folder (`.<table>.work/`) left by a run in progress
    files = sorted(f for f in root.rglob("*.json") if not any(p.startswith(".") for p in f.relative_to(root).parts))
    assert len(files) >= 6
    for f in files:
        assert not schemas.errors("lut", json.loads(f.read_text())), f


def _required(s: dict, *path: str) -> set[str]:
    for p in path:
        s = s["properties"][p]
    return set(s.get("required", ()))


@pytest.mark.parametrize("kind,nested", [("manifest", ["model", "profile"]),
                                         ("summary", ["teacher", "lut_validation"])])
def test_required_keys_are_the_stored_contract(kind, nested):
    """The schema requires only keys a stored run had (tests/fixtures/contracts), and at least the ones the
    Contracts prose names; so it is tested against the code's real output, not written from memory."""
    keys = json.loads((FIXTURES / f"{kind}.keys.json").read_text())["keys"]
    s = schemas.load(kind)
    assert _required(s) <= set(keys), _required(s) - set(keys)
    for k in nested:
        assert _required(s, k) <= set(keys[k]), (k, _required(s, k) - set(keys[k]))
    art = schemas.load("manifest")["$defs"]["artifact"]
    formats = keys["artifacts" if kind == "manifest" else "exports"]
    for fmt, entry in formats.items():  # every format's stored entry has every required artifact key
        assert set(art["required"]) <= set(entry), (fmt, set(art["required"]) - set(entry))
    contract = {"manifest": {"artifacts"},
                "summary": {"budget_ms", "predicted_ms", "measured_ms", "student", "student_int8", "bicubic",
                            "teacher", "exports", "seconds", "device", "lut_check", "lut_validation"}}[kind]
    assert contract <= _required(s)
    assert {"format", "precision", "file", "sha256", "bytes", "input_shape", "runtime", "psnr_db", "ssim", "p50_ms",
            "p90_ms", "min_ms", "speedup_vs_fp32", "status"} == set(art["required"])


def test_written_files_validate_and_a_broken_one_does_not(tmp_path):
    """What the code writes validates (a LUT saved by LUT.save, an arch by Arch.to_json); the checks can fail
    and name the JSON path."""
    from agd_deploy.profiling.lut import LUT
    from agd_deploy.space import Arch

    lut = LUT.load(next((ROOT / "latency_tables").rglob("*.json")))
    p = lut.save(tmp_path / "t.json")
    assert not schemas.errors("lut", json.loads(p.read_text()))
    a = json.loads(Arch.sample("sr", 0).to_json())
    assert not schemas.errors("arch", a)
    bad = {**a, "widths": {**a["widths"], "c0p0": "wide"}}
    with pytest.raises(schemas.SchemaError, match=r"\$\.widths\.c0p0: 'wide' is not of type 'integer'"):
        schemas.validate("arch", bad, "arch.json")
    d = json.loads(p.read_text())
    d["entries"][next(iter(d["entries"]))] = {"p50_ms": 1.0}
    assert any("min_ms" in e for e in schemas.errors("lut", d))
    assert schemas.errors("eval", {"psnr": 1.0, "ssim": 0.5, "images": []})  # minItems 1
    with pytest.raises(ValueError, match="unknown schema"):
        schemas.path("nope")


def test_demo_run_folder_validates_when_present():
    """The real demo run in a checkout (runs/demo, not tracked): every JSON it wrote matches its schema."""
    run = ROOT / "runs" / "demo"
    if not (run / "summary.json").is_file():
        pytest.skip("no runs/demo in this checkout (made by `agd demo --out runs/demo`)")
    from contracts import check

    check("summary", run / "summary.json")
    check("manifest", run / "export" / "manifest.json")
    check("eval", run / "eval.json")
    check("arch", run / "search" / "arch.json")


# -- the strict config loader ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text,needle", [
    ("lr_arch: fast\n", "lr_arch: expected a number, got 'fast'"),
    ("stepz: 3\n", "unknown setting(s) stepz (did you mean steps?)"),
    ("input_shape: [1, 3, x, 4]\n", "input_shape[2]: expected an integer, got 'x'"),
    ("steps: 2.5\n", "steps: expected an integer, got 2.5"),
    ("fill: 1\n", "fill: expected true/false, got 1"),
    ("teacher: 7\n", "teacher: expected a string or null, got 7"),
    ("margin: .nan\n", "margin: expected a finite number, got nan"),
    ("sandwich: max\n", "sandwich: expected a list of strings, got 'max'"),
])
def test_recipe_type_and_key_errors_name_the_key(tmp_path, text, needle):
    from agd_deploy.search.config import SearchConfig

    p = tmp_path / "x.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        SearchConfig.load(p)
    assert str(e.value) == f"{p}: {needle}" or str(e.value).startswith(f"{p}: {needle}"), str(e.value)
    assert e.value.exit_code == 2


def test_recipe_numbers_as_yaml_writes_them(tmp_path):
    """YAML 1.1 reads `1e-3` as a string and `20` as an int: both are numbers where a float is expected."""
    from agd_deploy.search.config import SearchConfig

    p = tmp_path / "x.yaml"
    p.write_text("lr_arch: 1e-3\ntau_start: 5\nbudget_ms: null\n")
    cfg = SearchConfig.load(p)
    assert cfg.lr_arch == 0.001 and isinstance(cfg.tau_start, float) and cfg.budget_ms is None


@pytest.mark.parametrize("text,needle", [
    ("calibraton: {method: percentile}\n", "unknown setting(s) calibraton (did you mean calibration?)"),
    ("onnx_int8: {reduce_rang: false}\n", "onnx_int8: unknown setting(s) reduce_rang (did you mean reduce_range?)"),
    ("verify: {rounds: many}\n", "verify.rounds: expected an integer or null, got 'many'"),
    ("thresholds: {int8: high}\n", "thresholds.int8: expected a number, got 'high'"),
    ("onnx_int8: {without_dot: u4u4}\n", "onnx_int8.without_dot: expected u8s8, u8u8 or null, got 'u4u4'"),
    ("formats: onnx\n", "formats: expected a list of strings or null, got 'onnx'"),
])
def test_profile_type_and_key_errors_exit_2(tmp_path, capsys, text, needle):
    from cli_helpers import run_cli

    p = tmp_path / "p.yaml"
    p.write_text(text)
    code, out, err = run_cli(capsys, "export", tmp_path / "none.json", "--profile", p, "--out", tmp_path / "o")
    assert code == 2 and needle in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1


def test_misspelled_recipe_key_exits_2(tmp_path, capsys):
    from cli_helpers import run_cli

    p = tmp_path / "r.yaml"
    p.write_text("budget_fracc: 0.4\n")
    code, _, err = run_cli(capsys, "search", p, "--dry-run")
    assert code == 2 and "budget_fracc (did you mean budget_frac?)" in err, err


def test_search_dry_run_prints_the_resolved_recipe(tmp_path, capsys):
    from cli_helpers import run_cli

    code, out, err = run_cli(capsys, "search", "sr_x4_tiny", "--dry-run")
    assert code == 0, err
    d = json.loads(out)
    assert d["recipe"]["name"] == "sr_x4_tiny" and d["recipe"]["steps"] == 30 and d["table"] is None
    table = next((ROOT / "latency_tables" / "ort-cpu-int8").glob("*.json"))
    code, out, err = run_cli(capsys, "search", "sr_x4_tiny", "--table", table, "--dry-run")
    assert code == 0, err
    assert json.loads(out)["table"] == str(table)
    assert not (tmp_path / "agd-search").exists()
