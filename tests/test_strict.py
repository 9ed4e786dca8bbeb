"""`--strict` on agd export / bench: an artifact that is "not verified" fails the run (exit 1, one line naming the
formats); without it the exit stays 0. tensorrt-int8 is not verified without CUDA + TensorRT (its Q/DQ graph is
checked on ORT), coreml-int8 is not verified off macOS."""

from __future__ import annotations

import json
import platform

import pytest

from cli_helpers import run_cli


@pytest.fixture(scope="module")
def arch_json(tmp_path_factory):
    from test_export import small_arch

    p = tmp_path_factory.mktemp("strict") / "arch.json"
    p.write_text(small_arch().to_json())
    return p


def test_strict_fails_a_not_verified_artifact(arch_json, tmp_path, capsys):
    from agd_deploy.runtimes.targets import available

    if available("tensorrt-cuda-int8")[0]:
        pytest.skip("TensorRT runs here: tensorrt-int8 is verified")
    args = ["export", arch_json, "--formats", "onnx,tensorrt-int8", "--rounds", "2", "--out", tmp_path / "o"]
    code, out, err = run_cli(capsys, *args, "--strict")
    assert code == 1 and (tmp_path / "o" / "manifest.json").is_file()
    st = {a["format"]: a["status"] for a in json.loads((tmp_path / "o" / "manifest.json").read_text())["artifacts"]}
    assert st["onnx"] == "untrained" and st["tensorrt-int8"].startswith("not verified")
    errors = [ln for ln in err.splitlines() if ln.startswith("Error")]
    assert errors == [f"Error: --strict: 1 artifact(s) not verified: tensorrt-int8 ({st['tensorrt-int8'][14:]})"]
    # without --strict nothing changes: the same artifacts exit 0 (bench re-verifies them; export is the same call)
    code, _, err = run_cli(capsys, "bench", tmp_path / "o", "--rounds", "2")
    assert code == 0, err
    code, _, err = run_cli(capsys, "bench", tmp_path / "o", "--rounds", "2", "--strict")
    assert code == 1 and "--strict: 1 artifact(s) not verified: tensorrt-int8" in err


@pytest.mark.slow
@pytest.mark.skipif(platform.system() == "Darwin", reason="CoreML is verified on macOS")
def test_strict_fails_coreml_off_macos(arch_json, tmp_path, capsys):
    """~50 s here: the coremltools conversion."""
    args = ["export", arch_json, "--formats", "onnx,coreml-int8", "--rounds", "2", "--out", tmp_path / "o"]
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err
    code, _, err = run_cli(capsys, *args, "--strict")
    assert code == 1 and "--strict: 1 artifact(s) not verified: coreml-int8 (CoreML prediction needs macOS)" in err


def test_demo_strict_exit_names_the_unverified_exports(capsys):
    """`agd demo --strict`'s last step on a summary's `exports` (the whole demo is the slow test_demo run)."""
    from agd_deploy.commands.demo import _strict_exit

    exports = [{"format": "onnx-int8", "status": "ok"},
               {"format": "coreml-int8", "status": "not verified: CoreML prediction needs macOS"}]
    _strict_exit({"exports": exports}, strict=False)  # without --strict: unchanged, exit 0
    with pytest.raises(SystemExit) as e:
        _strict_exit({"exports": exports}, strict=True)
    assert e.value.code == 1
    assert capsys.readouterr().err.strip() == ("Error: --strict: 1 artifact(s) not verified: coreml-int8 "
                                               "(CoreML prediction needs macOS)")
    _strict_exit({"exports": exports[:1]}, strict=True)
