"""Teachers: Real-ESRGAN x4plus converted from the shipped ncnn files matches the ncnn runtime, and the key
mappings of ESRGAN/BasicSR/CycleGAN checkpoints. No such .pth files are available offline, so those tests save
checkpoints from our own nets in the original key layouts and load them back."""

import re

import numpy as np
import pytest
import torch

from agd_deploy.errors import AgdError
from agd_deploy.nets import ResnetGenerator, RRDBNet
from agd_deploy.teachers import load_teacher
from agd_deploy.teachers.checkpoints import basicsr_to_esrgan


def _psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((a - b) ** 2))


def test_realesrgan_x4plus_matches_ncnn():
    ncnn = pytest.importorskip("ncnn", reason="the ncnn Python runtime is not installed")
    from skimage import data

    from agd_deploy.teachers.realesrgan import ncnn_files

    t = load_teacher("realesrgan-x4plus")
    assert (t.scale, t.value_range) == (4, (0.0, 1.0)) and t.fingerprint.startswith("realesrgan-x4plus:")
    crop = data.astronaut()[180:212, 200:232]  # 32x32: the teacher costs ~18 M MACs per LR pixel
    x = torch.from_numpy(crop.copy()).permute(2, 0, 1)[None].float() / 255
    ours = t(x)[0].numpy().clip(0, 1)
    param, bin_ = ncnn_files()
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = 2
    net.load_param(str(param))
    net.load_model(str(bin_))
    arr = np.ascontiguousarray(x[0].numpy())  # ncnn.Mat wraps without copying: keep `arr` alive
    ex = net.create_extractor()
    ex.input("data", ncnn.Mat(arr))
    _, out = ex.extract("output")
    ref = np.array(out).copy().clip(0, 1)
    assert ref.shape == ours.shape == (3, 128, 128)
    assert _psnr(ours, ref) >= 45.0
    # the output is an image, not noise: close to a bicubic upscale of the input
    assert _psnr(ours, torch.nn.functional.interpolate(x, scale_factor=4, mode="bicubic")[0].numpy().clip(0, 1)) > 18
    # a second load comes from the safetensors cache and gives the same weights
    t2 = load_teacher("realesrgan-x4plus")
    assert torch.equal(t2.module.conv_last.weight, t.module.conv_last.weight)


def _tiny_rrdb():
    torch.manual_seed(0)
    return RRDBNet(nf=8, nb=2, gc=4).eval()


def _legacy_layout(sd):
    """BasicSR -> the original ESRGAN repo's pre-2019 'model.N' layout."""
    nb = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"body\.(\d+)\.", k)))
    out = {}
    top = {"conv_first.": "model.0.", "conv_body.": f"model.1.sub.{nb}.", "conv_up1.": "model.3.",
           "conv_up2.": "model.6.", "conv_hr.": "model.8.", "conv_last.": "model.10."}
    for k, v in sd.items():
        m = re.match(r"body\.(\d+)\.rdb(\d)\.(conv\d)\.(weight|bias)", k)
        if m:
            k = f"model.1.sub.{m.group(1)}.RDB{m.group(2)}.{m.group(3)}.0.{m.group(4)}"
        else:
            for a, b in top.items():
                k = b + k[len(a):] if k.startswith(a) else k
        out[k] = v
    return out


@pytest.mark.parametrize("layout", ["basicsr_params_ema", "esrgan", "esrgan_legacy", "dataparallel"])
def test_esrgan_pth_layouts(tmp_path, layout):
    net = _tiny_rrdb()
    sd = net.state_dict()
    obj = {"basicsr_params_ema": {"params_ema": sd, "params": {k: v * 0 for k, v in sd.items()}},
           "esrgan": basicsr_to_esrgan(sd), "esrgan_legacy": _legacy_layout(sd),
           "dataparallel": {f"module.{k}": v for k, v in basicsr_to_esrgan(sd).items()}}[layout]
    if layout == "esrgan":
        assert "RRDB_trunk.1.RDB3.conv5.weight" in obj and "HRconv.bias" in obj and "trunk_conv.weight" in obj
    p = tmp_path / "teacher.pth"
    torch.save(obj, p)
    t = load_teacher(f"esrgan-pth:{p}")
    assert t.scale == 4 and t.fingerprint.startswith("esrgan-pth:")
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        assert torch.equal(t(x), net(x))


def test_cyclegan_pth(tmp_path):
    torch.manual_seed(1)
    net = ResnetGenerator(ngf=8, n_blocks=3).eval()
    sd = dict(net.state_dict())
    sd["model.2.running_mean"] = torch.zeros(8)  # old checkpoints carry InstanceNorm stats; they are dropped
    p = tmp_path / "latest_net_G.pth"
    torch.save(sd, p)
    t = load_teacher(f"cyclegan-pth:{p}")
    assert (t.scale, t.value_range) == (1, (-1.0, 1.0))
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(t(x), net(x))


def test_onnx_teacher(tmp_path):
    pytest.importorskip("onnxruntime")
    net = _tiny_rrdb()
    p = tmp_path / "teacher.onnx"
    torch.onnx.export(net, torch.rand(1, 3, 16, 16), str(p), input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {2: "h", 3: "w"}, "output": {2: "H", 3: "W"}}, dynamo=False)
    t = load_teacher(str(p))
    assert t.scale == 4 and t.fixed_hw is None
    x = torch.rand(1, 3, 20, 12)
    with torch.no_grad():
        np.testing.assert_allclose(t(x).numpy(), net(x).numpy(), atol=1e-4)
    # a fixed-shape model serves other sizes by tiling
    p2 = tmp_path / "fixed.onnx"
    torch.onnx.export(net, torch.rand(1, 3, 16, 16), str(p2), input_names=["input"], output_names=["output"],
                      dynamo=False)
    t2 = load_teacher(str(p2))
    assert t2.fixed_hw == (16, 16)
    assert t2(torch.rand(1, 3, 24, 20)).shape == (1, 3, 96, 80)


def test_bad_teachers(tmp_path):
    with pytest.raises(AgdError, match="unknown teacher"):
        load_teacher("esrgan-x9")
    with pytest.raises(AgdError, match="not found"):
        load_teacher(f"esrgan-pth:{tmp_path / 'missing.pth'}")
    bad = tmp_path / "corrupt.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(AgdError, match="cannot read checkpoint"):
        load_teacher(f"esrgan-pth:{bad}")
    wrong = tmp_path / "cyclegan.pth"
    torch.save(ResnetGenerator(ngf=8, n_blocks=1).state_dict(), wrong)
    with pytest.raises(AgdError, match="not an ESRGAN"):
        load_teacher(f"esrgan-pth:{wrong}")
