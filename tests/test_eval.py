"""`agd eval` and `agd upscale`: bicubic against an independent computation, teachers, CKPTs, artifacts."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from agd_deploy.nets import RRDBNet
from agd_deploy.space import Arch, build
from agd_deploy.train import evaluate, load_ckpt, save_ckpt
from agd_deploy.data import ImageFolder
from cli_helpers import run_cli as _cli  # noqa: E402

AGD = [str(Path(sys.executable).parent / "agd")]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from skimage import data

    d = tmp_path_factory.mktemp("eval")
    hr = d / "hr"
    hr.mkdir()
    Image.fromarray(data.coffee()[50:150, 200:322]).save(hr / "coffee.png")   # 100x122: cropped to 100x120
    Image.fromarray(data.camera()[100:181, 100:181]).save(hr / "camera.png")   # grayscale, 81x81 -> 80x80
    torch.manual_seed(0)
    teacher = d / "teacher.pth"
    torch.save(RRDBNet(nf=8, nb=1, gc=4).state_dict(), teacher)
    arch = Arch.extreme("sr", largest=False)
    torch.manual_seed(0)
    ckpt = save_ckpt(build(arch), arch, d / "ckpt")
    return {"dir": d, "hr": hr, "teacher": f"esrgan-pth:{teacher}", "ckpt": ckpt, "arch": arch}


def _independent_bicubic(path, scale=4):
    """Bicubic x4 by the published protocol, computed without agd_deploy."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    im = Image.open(path).convert("RGB")
    w, h = im.size
    im = im.crop((0, 0, w - w % scale, h - h % scale))
    lr = im.resize((im.width // scale, im.height // scale), Image.BICUBIC)
    sr = lr.resize(im.size, Image.BICUBIC)

    def y(img):
        a = np.asarray(img, np.float64) / 255
        return (16 + a @ np.array([65.481, 128.553, 24.966]))[scale:-scale, scale:-scale]

    return (peak_signal_noise_ratio(y(im), y(sr), data_range=255),
            structural_similarity(y(im), y(sr), gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                  data_range=255))


def test_eval_bicubic_matches_independent(env, capsys):
    r = _cli(capsys, "eval", "bicubic", "--data", env["hr"], "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    from contracts import check

    check("eval", res)
    want = {n: _independent_bicubic(env["hr"] / n) for n in ("camera.png", "coffee.png")}
    assert [i["name"] for i in res["images"]] == ["camera.png", "coffee.png"]
    for row in res["images"]:
        assert row["psnr"] == pytest.approx(want[row["name"]][0], abs=1e-6)
        assert row["ssim"] == pytest.approx(want[row["name"]][1], abs=1e-6)
    assert res["psnr"] == pytest.approx(np.mean([v[0] for v in want.values()]))
    assert 20 < res["psnr"] < 35 and "psnr_vs_teacher" not in res


def test_eval_teacher_and_ckpt(env, tmp_path, capsys):
    images = ImageFolder(env["hr"])
    t = evaluate(env["teacher"], images, teacher=env["teacher"], cache_root=tmp_path, progress=False)
    assert t["psnr_vs_teacher"] == 100.0 and t["ssim_vs_teacher"] == pytest.approx(1.0)
    r = _cli(capsys, "eval", env["ckpt"], "--data", env["hr"], "--teacher", env["teacher"], "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    from contracts import check

    check("eval", res)
    assert set(res) >= {"psnr", "ssim", "psnr_vs_teacher", "ssim_vs_teacher", "images"}
    assert set(res["images"][0]) >= {"name", "psnr", "ssim", "psnr_vs_teacher", "ssim_vs_teacher"}
    assert res["psnr_vs_teacher"] < 60  # an untrained student is not its teacher


def test_eval_bad_checkpoints(env, tmp_path, capsys):
    bad = tmp_path / "corrupt"
    bad.mkdir()
    (bad / "arch.json").write_text(env["arch"].to_json())
    (bad / "generator.safetensors").write_bytes(b"\x00" * 20)
    r = _cli(capsys, "eval", bad, "--data", env["hr"])
    assert r.returncode == 1 and "corrupt checkpoint" in r.stderr and "Traceback" not in r.stderr
    other = tmp_path / "other"
    other.mkdir()
    a2 = Arch.extreme("sr", largest=True)
    (other / "arch.json").write_text(a2.to_json())
    (other / "generator.safetensors").write_bytes((env["ckpt"] / "generator.safetensors").read_bytes())
    r = _cli(capsys, "eval", other, "--data", env["hr"])
    assert r.returncode == 1 and "do not match the arch" in r.stderr
    r = _cli(capsys, "eval", "bicubic", "--data", tmp_path / "nothing")
    assert r.returncode == 1 and "does not exist" in r.stderr


def test_upscale_image_folder_and_onnx(env, tmp_path, capsys):
    r = _cli(capsys, "upscale", env["ckpt"], env["hr"] / "camera.png", tmp_path / "cam_x4.png", "--tile", 32)
    assert r.returncode == 0, r.stderr
    out = np.asarray(Image.open(tmp_path / "cam_x4.png"))
    assert out.shape == (324, 324, 3)
    # tiles (with overlap) give nearly the whole-image result
    model, _ = load_ckpt(env["ckpt"])
    from agd_deploy.data import load_image, to_tensor, to_uint8

    with torch.no_grad():
        whole = to_uint8(model(to_tensor(load_image(env["hr"] / "camera.png"))))
    assert np.mean(np.abs(whole.astype(int) - out.astype(int))) < 1.0
    r = _cli(capsys, "upscale", "bicubic", env["hr"], tmp_path / "folder_out")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "folder_out").iterdir()) == ["camera.png", "coffee.png"]
    # an exported fixed-shape ONNX artifact
    onnx_path = tmp_path / "student.onnx"
    torch.onnx.export(model, torch.rand(1, 3, 32, 32), str(onnx_path), input_names=["input"],
                      output_names=["output"], dynamo=False)
    r = _cli(capsys, "upscale", onnx_path, env["hr"] / "coffee.png", tmp_path / "coffee_x4.png")
    assert r.returncode == 0, r.stderr
    assert np.asarray(Image.open(tmp_path / "coffee_x4.png")).shape == (400, 488, 3)
    r = _cli(capsys, "upscale", env["ckpt"], tmp_path / "missing.png", tmp_path / "x.png")
    assert r.returncode == 1 and "does not exist" in r.stderr


@pytest.mark.slow  # converting with litert-torch takes tens of seconds
def test_upscale_tflite(env, tmp_path, capsys):
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed")
    litert_torch = pytest.importorskip("litert_torch", reason="no TFLite converter (litert-torch) to make a .tflite")
    model, _ = load_ckpt(env["ckpt"])
    edge = litert_torch.convert(model.eval(), (torch.rand(1, 3, 32, 32),))
    path = tmp_path / "student.tflite"
    edge.export(str(path))
    r = _cli(capsys, "upscale", path, env["hr"] / "camera.png", tmp_path / "cam_tfl.png")
    assert r.returncode == 0, r.stderr
    assert np.asarray(Image.open(tmp_path / "cam_tfl.png")).shape == (324, 324, 3)
