"""Verification pieces: the PSNR/SSIM comparator, manifest table and gate, export profiles, sensitivity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from agd_deploy.errors import AgdError
from agd_deploy.export.profile import load_profile
from agd_deploy.verify import manifest as mf
from agd_deploy.verify.metrics import MAX_PSNR, compare, psnr, ssim


def test_psnr_matches_definition_and_clips_to_range():
    ref = np.zeros((1, 3, 8, 8), np.float32)
    out = ref + 0.1
    assert psnr(ref, out, (0.0, 1.0)) == pytest.approx(20.0, abs=1e-6)  # 10*log10(1/0.01)
    # range [-1, 1]: peak 2 -> +6.02 dB for the same error
    assert psnr(ref, out, (-1.0, 1.0)) == pytest.approx(20 + 20 * math.log10(2), abs=1e-6)
    # values outside the range are clipped first: 1.5 vs 1.0 is no error in [0, 1]
    assert psnr(np.ones_like(ref), np.full_like(ref, 1.5), (0.0, 1.0)) == MAX_PSNR
    assert psnr(ref, ref, (0.0, 1.0)) == MAX_PSNR


def test_compare_reports_worst_and_max_error():
    rng = np.random.default_rng(0)
    refs = [rng.random((1, 3, 16, 16), dtype=np.float32) for _ in range(2)]
    outs = [refs[0].copy(), np.clip(refs[1] + 0.05, 0, 1)]
    c = compare(refs, outs, (0.0, 1.0))
    assert c.psnr_min_db < c.psnr_db < MAX_PSNR
    assert c.max_abs_err == pytest.approx(0.05, abs=1e-5)
    assert ssim(refs[0], refs[0], (0.0, 1.0)) == pytest.approx(1.0)
    assert c.ssim < 1.0
    nan = [refs[0], np.full_like(refs[1], np.nan)]
    assert compare(refs, nan, (0.0, 1.0)).max_abs_err > 1


def test_gate_and_table():
    arts = [{"format": "onnx", "precision": "fp32", "status": "ok", "bytes": 2_000_000, "psnr_db": 100.0,
             "ssim": 1.0, "min_ms": 10.0, "p50_ms": 11.0, "p90_ms": 12.0, "speedup_vs_fp32": 1.0},
            {"format": "coreml-int8", "precision": "int8", "status": "not verified: CoreML prediction needs macOS",
             "bytes": 500_000}]
    assert mf.exit_code(arts) == 0
    table = mf.markdown_table({"model": {"name": "m"}, "input_shape": [1, 3, 8, 8], "artifacts": arts})
    assert "| onnx | fp32 |" in table and "2.00" in table and "not verified" in table
    arts.append({"format": "onnx-int8", "precision": "int8", "status": "failed: PSNR 20 dB ..."})
    assert mf.exit_code(arts) == 1


def test_profiles(tmp_path):
    d = load_profile(None)
    assert d.min_psnr("onnx", "fp32") == 60 and d.min_psnr("onnx-int8", "int8") == 35
    m = load_profile("mobile")
    assert m.min_psnr("tflite-int8", "int8") == 38 and "tflite-int8" in m.formats
    p = tmp_path / "p.yaml"
    p.write_text("formats: [onnx]\nthresholds: {onnx-int8: 41}\ncalibration: {method: entropy}\n")
    q = load_profile(str(p))
    assert q.min_psnr("onnx-int8", "int8") == 41 and q.calibration == "entropy" and q.formats == ["onnx"]
    p.write_text("calibration: {method: magic}\n")
    with pytest.raises(AgdError, match="calibration.method"):
        load_profile(str(p))
    with pytest.raises(AgdError, match="no export profile"):
        load_profile(str(tmp_path / "missing.yaml"))


def test_profile_refuses_unknown_keys_and_bad_int8_values(tmp_path):
    """A misspelled key must not silently run with defaults; int8 values are checked by the one int8 config."""
    p = tmp_path / "p.yaml"
    p.write_text("calibraton: {method: percentile}\n")
    with pytest.raises(AgdError, match="unknown setting.*calibraton"):
        load_profile(str(p))
    p.write_text("onnx_int8: {weights: int8, reduce_rang: false}\n")
    with pytest.raises(AgdError, match="onnx_int8: unknown setting.*reduce_rang"):
        load_profile(str(p))
    p.write_text("onnx_int8: {weights: int4}\n")
    with pytest.raises(AgdError, match="onnx_int8.weights must be int8 or uint8"):
        load_profile(str(p))
    p.write_text("onnx_int8: {weights: uint8, reduce_range: false, without_dot: u8u8}\n")
    q = load_profile(str(p))
    assert q.onnx_int8 == {"weight": "uint8", "reduce_range": False, "weight_symmetric": True}


def test_sensitivity_finds_the_layer_with_an_outlier():
    from agd_deploy.verify.sensitivity import rank_layers

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 3, 3, padding=1))
    with torch.no_grad():  # one huge weight in the middle conv: per-channel s8 crushes the rest of its channel
        net[1].weight[0, 0, 1, 1] = 500.0
        net[1].weight[0, 1:] *= 0.001
    x = [np.random.default_rng(i).random((1, 3, 12, 12), dtype=np.float32) for i in range(2)]
    rows = rank_layers(net, x, (0.0, 1.0), progress=False)
    assert {r["layer"] for r in rows} == {"0", "1", "2"}
    psnrs = [r["psnr_db"] for r in rows]
    assert psnrs == sorted(psnrs)
    assert rows[0]["layer"] == "1"
