"""A user's ONNX generator as the source of `agd export` / `agd bench` (export/onnx_source.py), with real runtimes
(onnxruntime, OpenVINO + NNCF). Small graphs at 16x16 and a lean export profile keep each test to seconds."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cli_helpers import run_cli
from contracts import check


class SkipSR(nn.Module):
    """The shape of a real small SR net (Real-ESRGAN's SRVGG family): a conv body whose pixel-shuffled output is
    added to the nearest-upsampled input. Seeded weights; the skip keeps the output an image, so int8 has a
    realistic range to keep (a random body alone is mostly quantization noise)."""

    def __init__(self, scale: int = 4, width: int = 16):
        super().__init__()
        self.scale = scale
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.PReLU(width),
                                  nn.Conv2d(width, width, 3, padding=1), nn.PReLU(width),
                                  nn.Conv2d(width, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, x):
        return nn.functional.interpolate(x, scale_factor=self.scale, mode="nearest") + 0.1 * self.body(x)


def _torch_onnx(module: nn.Module, path: Path, shape=(1, 3, 16, 16), names=("img", "sr"), dynamic=False) -> Path:
    """A plain torch.onnx export with the user's own I/O names (agd renames them to input/output)."""
    kw = {}
    if dynamic:
        kw["dynamic_axes"] = {names[0]: {0: "N", 2: "H", 3: "W"}, names[1]: {0: "N", 2: "H4", 3: "W4"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.zeros(shape),), str(path), input_names=[names[0]],
                          output_names=[names[1]], dynamo=False, opset_version=17, **kw)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("onnxsrc")
    torch.manual_seed(0)
    gen = SkipSR()
    profile = d / "lean.yaml"  # fewer calibration crops and held-out crops: seconds, not a minute
    profile.write_text("calibration:\n  crops: 6\nverify:\n  heldout_per_image: 1\n  rounds: 2\n")

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 8, 3), nn.Linear(8, 10)

        def forward(self, x):
            return self.fc(self.conv(x).mean((2, 3)))

    return {"gen": _torch_onnx(gen, d / "my_sr.onnx"),
            "dyn": _torch_onnx(gen, d / "dyn_sr.onnx", dynamic=True),
            "cls": _torch_onnx(Classifier(), d / "classifier.onnx", names=("x", "logits")),
            "profile": profile, "dir": d}


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_onnx_int8_and_openvino_int8_from_an_onnx_file(files, tmp_path, capsys):
    """Both int8 lowerings start from the user's graph and verify against it (PSNR above the profile's int8
    threshold); the fp32 file is the user's, names normalised, the input untouched."""
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    import onnx

    src = files["gen"]
    before = _sha(src)
    out = tmp_path / "x"
    r = run_cli(capsys, "export", src, "--formats", "onnx,onnx-int8,openvino-int8,tensorrt-int8", "--profile",
                files["profile"], "--out", out, "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads(r.stdout)
    assert m["model"]["kind"] == "onnx" and m["model"]["scale"] == 4 and m["model"]["value_range"] == [0.0, 1.0]
    assert m["input_shape"] == [1, 3, 16, 16]
    arts = {a["format"]: a for a in m["artifacts"]}
    for fmt in ("onnx-int8", "openvino-int8"):
        a = arts[fmt]
        assert a["status"] == "ok", a["status"]
        assert a["min_psnr_db"] == 35
        assert a["psnr_db"] > a["min_psnr_db"], (fmt, a["psnr_db"])
        assert a["psnr_db"] < 99  # a real int8 graph, not a copy of the fp32 one
    assert arts["onnx"]["psnr_db"] >= 99  # the fp32 artifact is the user's graph itself
    trt = arts["tensorrt-int8"]  # its Q/DQ graph comes from the same lowering; the engine needs TensorRT + a GPU
    assert trt["psnr_db"] > trt["min_psnr_db"]
    from agd_deploy.verify.check import available

    if not available("tensorrt-cuda-int8")[0]:
        assert trt["status"].startswith("not verified") and trt["checked_on"] == "ort-cpu-int8"
    else:
        assert trt["status"] == "ok"
    q = onnx.load(str(out / arts["onnx-int8"]["file"]))
    assert [i.name for i in q.graph.input] == ["input"] and [o.name for o in q.graph.output] == ["output"]
    assert any(n.op_type == "QuantizeLinear" for n in q.graph.node)
    meta = {p.key: p.value for p in q.metadata_props}
    assert meta["scale"] == "4" and json.loads(meta["input_shape"]) == [1, 3, 16, 16]
    assert _sha(src) == before
    assert "PSNR/SSIM vs the fp32 ONNX file" in (out / "benchmark.md").read_text()
    check("manifest", out / "manifest.json")
    # `agd bench DIR` re-verifies an ONNX-sourced export folder (the source is reloaded from model.spec)
    r = run_cli(capsys, "bench", out, "--rounds", "1", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    again = {a["format"]: a for a in json.loads(r.stdout)["artifacts"]}
    for fmt in ("onnx-int8", "openvino-int8"):
        assert again[fmt]["status"] == "ok" and again[fmt]["psnr_db"] == pytest.approx(arts[fmt]["psnr_db"], abs=1e-3)


def test_onnx_path_quantizes_like_the_torch_path(tmp_path, capsys):
    """The same net exported from torch and from its ONNX file gives the same onnx-int8 numbers: one lowering."""
    from agd_deploy.export.onnx import export_fp32_onnx
    from agd_deploy.export.source import load_source
    from agd_deploy.space import Arch

    a = Arch.extreme("sr", largest=False, input_shape=[1, 3, 16, 16])
    a.ops = ["conv3x3" if i % 5 == 0 else "skip" for i in range(len(a.ops))]
    arch = tmp_path / "arch.json"
    arch.write_text(a.to_json())
    src = load_source(str(arch))
    onnx_file = export_fp32_onnx(src.module, np.zeros((1, 3, 16, 16), np.float32), src.info, tmp_path / "net.onnx")
    psnr = {}
    for name, model in (("torch", arch), ("onnx", onnx_file)):
        r = run_cli(capsys, "export", model, "--formats", "onnx-int8", "--rounds", "1", "--out", tmp_path / name,
                    "--json")
        assert r.returncode == 0, r.stderr[-2000:]
        psnr[name] = json.loads(r.stdout)["artifacts"][0]["psnr_db"]
    assert psnr["onnx"] == pytest.approx(psnr["torch"], abs=0.01)


def test_torch_only_format_from_onnx_names_what_works(files, tmp_path, capsys):
    r = run_cli(capsys, "export", files["gen"], "--formats", "tflite-int8,onnx-int8", "--out", tmp_path / "t")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert "tflite-int8 needs a torch model" in lines[0]
    assert "onnx-int8" in lines[0] and "openvino-int8" in lines[0] and "tensorrt-int8" in lines[0]
    assert not (tmp_path / "t" / "manifest.json").exists()


def test_dynamic_shape_needs_input(files, tmp_path, capsys):
    r = run_cli(capsys, "export", files["dyn"], "--formats", "onnx", "--out", tmp_path / "d")
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "--input" in r.stderr and "dynamic" in r.stderr
    # with --input it exports at that shape; scale comes from the probed output, value range from the flag
    r = run_cli(capsys, "export", files["dyn"], "--formats", "onnx", "--input", "1x3x24x24", "--value-range",
                "-1,1", "--rounds", "1", "--out", tmp_path / "d", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads(r.stdout)
    assert m["input_shape"] == [1, 3, 24, 24] and m["model"]["scale"] == 4
    assert m["model"]["value_range"] == [-1.0, 1.0]
    assert m["artifacts"][0]["status"] == "ok"
    check("manifest", m)
    # a fixed graph refuses a different --input
    r = run_cli(capsys, "export", files["gen"], "--formats", "onnx", "--input", "1x3x32x32", "--out", tmp_path / "e")
    assert r.returncode == 2 and "fixed at 1x3x16x16" in r.stderr


def test_bench_onnx_file_json(files, capsys):
    r = run_cli(capsys, "bench", files["gen"], "--rounds", "3", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout)
    assert res["runtime"] == "ort-cpu-fp32" and res["rounds"] == 3
    assert 0 < res["min_ms"] <= res["p50_ms"] <= res["p90_ms"]
    assert res["input_shape"] == [1, 3, 16, 16] and res["output_shape"] == [1, 3, 64, 64] and res["scale"] == 4
    assert res["timed"] == "the file"
    r = run_cli(capsys, "bench", files["dyn"], "--input", "1x3x20x20", "--rounds", "2", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout)
    assert res["input_shape"] == [1, 3, 20, 20] and res["output_shape"] == [1, 3, 80, 80]
    assert res["timed"].startswith("a fixed-shape copy")


def test_non_generator_onnx_is_one_line(files, tmp_path, capsys):
    for cmd in (["export", files["cls"], "--formats", "onnx", "--out", tmp_path / "c"], ["bench", files["cls"]]):
        r = run_cli(capsys, *cmd)
        assert r.returncode == 1
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
        assert "not an image generator" in r.stderr and "1x10" in r.stderr
