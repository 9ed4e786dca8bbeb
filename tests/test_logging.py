"""Logging: one `agd_deploy` logger and one warning style; third-party noise hidden per call, never process-wide
(importing agd_deploy as a library must leave the caller's logging as it was)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from agd_deploy import log
from cli_helpers import run_cli

THIRD_PARTY = ("onnxruntime", "nncf", "coremltools", "absl", "torch.utils._pytree", "litert_torch")


def _state() -> dict:
    root = logging.getLogger()
    return {"disable": logging.root.manager.disable, "root_level": root.level, "root_handlers": list(root.handlers),
            "root_filters": list(root.filters),
            **{n: logging.getLogger(n).level for n in THIRD_PARTY}}


def _tiny_onnx(tmp_path):
    import torch

    from agd_deploy.quant.onnx import export_onnx

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 3, padding=1))
    x = torch.rand(1, 3, 16, 16)
    return export_onnx(net.eval(), x, tmp_path / "fp32.onnx"), [np.random.default_rng(0).random((1, 3, 16, 16),
                                                                                             np.float32)]


def test_quantization_leaves_global_logging_alone(tmp_path, capfd):
    import nncf  # noqa: F401  (imported first: a library sets its own logger's level on import)
    import onnxruntime  # noqa: F401

    from agd_deploy.quant import coreml, litert
    from agd_deploy.quant.onnx import OrtInt8Config, quantize_qdq
    from agd_deploy.quant.openvino import quantize_openvino

    fp32, calib = _tiny_onnx(tmp_path)
    logging.disable(logging.DEBUG)  # the caller's own setting: it must survive (a reset to NOTSET would clobber it)
    try:
        before = _state()
        capfd.readouterr()
        for method in ("minmax", "percentile"):
            assert quantize_qdq(fp32, tmp_path / f"{method}.onnx", calib, OrtInt8Config(calibration=method)).exists()
        assert quantize_openvino(fp32, tmp_path / "ov.xml", calib).exists()
        for quiet in (coreml._quiet, litert._quiet):  # their converters are slow; their scopes are what matters
            with quiet():
                logging.warning("a library logging on the root logger")   # would call basicConfig() if unguarded
                logging.getLogger("coremltools").warning("Failed to load _MLModelProxy")
        cap = capfd.readouterr()
        assert cap.out == "" and "WARNING" not in cap.err and "Please consider" not in cap.err, cap
        assert _state() == before and before["disable"] == logging.DEBUG
    finally:
        logging.disable(logging.NOTSET)
    assert logging.root.manager.disable == 0


def test_quiet_is_scoped_and_root_level_untouched():
    root = logging.getLogger()
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    h = Keep()
    root.addHandler(h)
    try:
        with log.quiet("", "nncf"):
            assert root.level == logging.WARNING and logging.getLogger("nncf").level >= logging.ERROR
            logging.warning("dropped")                       # logged on the root itself
            logging.getLogger("mylib").warning("kept")       # another library's logger still reaches root
        logging.warning("after")
    finally:
        root.removeHandler(h)
    assert seen == ["kept", "after"]


@pytest.fixture(scope="module")
def arch_with_unreadable_table(tmp_path_factory):
    """An arch whose search table is gone: `agd export` warns once (the lowering falls back to this device's)."""
    from test_export import small_arch

    d = tmp_path_factory.mktemp("lg")
    a = small_arch()
    a.meta.update({"lut": str(d / "gone.json"), "target": "ort-cpu-int8"})
    (d / "arch.json").write_text(a.to_json())
    return d / "arch.json"


def test_cli_warning_style_quiet_and_verbose(arch_with_unreadable_table, tmp_path, capsys):
    args = ["export", arch_with_unreadable_table, "--formats", "onnx", "--rounds", "2", "--out", tmp_path / "o"]
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    warns = [ln for ln in err.splitlines() if "warning:" in ln.lower()]
    assert len(warns) == 1 and warns[0].startswith("warning: the latency table the arch was searched with"), err
    assert "exporting" not in err.replace("exporting:", "")  # info lines need -v (the tqdm bar is 'exporting:')
    assert "| onnx |" in out                                 # the primary output stays on stdout
    code, out, err = run_cli(capsys, "-q", *args)
    assert code == 0 and "warning" not in err.lower(), err
    code, out, err = run_cli(capsys, "-v", *args)
    assert code == 0 and any(ln.startswith("exporting ") and "to onnx" in ln for ln in err.splitlines()), err
    assert len([ln for ln in err.splitlines() if ln.startswith("warning:")]) == 1
