"""Degradations (data/degrade.py): determinism by seed, each stage's measured effect, odd sizes and grey/RGBA
inputs, the teacher cache's variants and keys, and the evaluation protocols that use them."""

import math

import numpy as np
import pytest
import torch.nn.functional as F
from PIL import Image

from agd_deploy.data import TeacherCache, load_image, make_lr
from agd_deploy.data.degrade import (RealESRGAN, RealESRGANConfig, StageConfig, as_rgb_uint8, degrade, filter2d,
                                     gaussian_kernel, gaussian_noise, get_degradation, jpeg, poisson_noise, resize,
                                     sinc_kernel)
from agd_deploy.data.images import Images
from agd_deploy.errors import AgdError
from agd_deploy.teachers import Teacher, default_degradation, suggested_degradation


@pytest.fixture(scope="module")
def photo():
    from skimage import data

    return data.astronaut()[:128, :160]  # uint8 RGB with smooth and textured areas


class NearestTeacher(Teacher):
    def __init__(self, fingerprint="nearest"):
        super().__init__("nearest", 4, (0.0, 1.0), fingerprint)
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        return F.interpolate(x, scale_factor=4, mode="nearest")


def blockiness(img: np.ndarray) -> float:
    """Mean |horizontal + vertical step| across 8x8 block boundaries over the mean step inside blocks (1.0: no
    blocks); JPEG's blocking makes the boundary steps stand out."""
    y = img.astype(np.float64).mean(-1)
    dx, dy = np.abs(np.diff(y, axis=1)), np.abs(np.diff(y, axis=0))
    bx, by = (np.arange(dx.shape[1]) % 8) == 7, (np.arange(dy.shape[0]) % 8) == 7
    edge = (dx[:, bx].mean() + dy[by].mean()) / 2
    inner = (dx[:, ~bx].mean() + dy[~by].mean()) / 2
    return float(edge / inner)


def test_deterministic_by_seed_and_variant(photo):
    a = degrade(photo, 4, "realesrgan", seed=3, variant=0)[1]
    assert a.shape == (32, 40, 3) and a.dtype == np.uint8
    assert np.array_equal(a, degrade(photo, 4, "realesrgan", seed=3, variant=0)[1])  # same draw
    others = [degrade(photo, 4, "realesrgan", seed=3, variant=v)[1] for v in (1, 2)]
    others.append(degrade(photo, 4, "realesrgan", seed=4, variant=0)[1])
    for b in others:
        assert np.abs(a.astype(int) - b.astype(int)).mean() > 1.0  # a different draw, not a rounding difference
    assert np.array_equal(degrade(photo, 4, "bicubic")[1], make_lr(photo, 4)[1])  # bicubic is the protocol's LR


def test_jpeg_quality_vs_blockiness(photo):
    x = photo.astype(np.float32) / 255.0
    b = [blockiness((jpeg(x, q) * 255).round()) for q in (10, 30, 60, 95)]
    assert b[0] > b[1] > b[2] > b[3], b
    assert b[0] > 1.3 and b[3] < 1.1  # strong blocks at q10; almost none at q95
    lr_b = [blockiness(degrade(np.repeat(np.repeat(photo, 4, 0), 4, 1), 4, f"jpeg:{q}")[1]) for q in (10, 95)]
    assert lr_b[0] > lr_b[1] + 0.2  # jpeg:Q blocks the LR the same way


@pytest.mark.parametrize("sigma", [3.0, 10.0, 25.0])
def test_noise_sigma_vs_measured_std(sigma):
    flat = np.full((256, 256, 3), 0.5, np.float32)
    rng = np.random.default_rng(0)
    noisy = gaussian_noise(flat, rng, sigma, gray=False)
    assert np.std(noisy - flat) * 255 == pytest.approx(sigma, rel=0.1)
    grey = gaussian_noise(flat, rng, sigma, gray=True)
    assert np.array_equal(grey[..., 0], grey[..., 2]) and np.std(grey - flat) * 255 == pytest.approx(sigma, rel=0.1)
    # noise:S on a flat photo: the LR is flat, so its std is the noise's (plus uint8 rounding)
    lr = degrade(np.full((128, 128, 3), 128, np.uint8), 4, f"noise:{sigma:g}", seed=1)[1]
    assert np.std(lr.astype(np.float64)) == pytest.approx(math.sqrt(sigma ** 2 + 1 / 12), rel=0.1)


def test_poisson_noise_grows_with_scale_and_grey_is_shared():
    flat = np.full((128, 128, 3), 0.5, np.float32)
    stds = [np.std(poisson_noise(flat, np.random.default_rng(0), s, gray=False) - flat) for s in (0.1, 1.0, 3.0)]
    assert stds[0] < stds[1] < stds[2]
    # Poisson(x*vals)/vals at a flat 0.5 (vals = 2 levels -> 2) has std sqrt(0.5*2)/2 = 0.5, times the scale
    assert stds[1] == pytest.approx(0.5, rel=0.1)
    g = poisson_noise(flat, np.random.default_rng(0), 1.0, gray=True)
    assert np.array_equal(g[..., 0], g[..., 1])


@pytest.mark.parametrize("sigma", [0.8, 1.5, 3.0])
def test_blur_sigma_vs_high_frequency_loss(sigma):
    """White noise through a kernel keeps sum(k^2) of its variance; a Gaussian's is ~1/(4 pi sigma^2)."""
    noise = np.random.default_rng(0).standard_normal((256, 256, 1)).astype(np.float32)
    k = gaussian_kernel(21, sigma, sigma)
    assert k.sum() == pytest.approx(1.0)
    kept = float(np.var(filter2d(noise, k)[16:-16, 16:-16]))
    assert kept == pytest.approx(float((k ** 2).sum()), rel=0.1)
    if sigma >= 1.5:  # the continuous formula holds once the kernel spans several pixels
        assert kept == pytest.approx(1 / (4 * math.pi * sigma ** 2), rel=0.15)


def test_kernels_shapes_and_direction():
    noise = np.random.default_rng(1).standard_normal((128, 128, 1)).astype(np.float32)
    aniso = filter2d(noise, gaussian_kernel(21, 3.0, 0.3, theta=0.0))  # blurs along x only
    gx, gy = np.abs(np.diff(aniso, axis=1)).mean(), np.abs(np.diff(aniso, axis=0)).mean()
    assert gy > 3 * gx
    for kind, beta in (("generalized", 0.5), ("generalized", 4.0), ("plateau", 1.5)):
        k = gaussian_kernel(15, 2.0, 1.0, 0.7, beta, kind)
        assert k.shape == (15, 15) and k.sum() == pytest.approx(1.0) and k.argmax() == 15 * 7 + 7
    hf = [float(np.var(filter2d(noise, sinc_kernel(21, w)))) for w in (math.pi / 5, math.pi / 2, math.pi)]
    assert hf[0] < hf[1] < hf[2]  # a lower cutoff removes more
    assert resize(noise, (37, 53), "area").shape == (53, 37, 1)


def test_odd_sizes_grey_and_rgba(photo, tmp_path):
    odd = photo[:37, :53]
    for name in ("bicubic", "realesrgan", "jpeg:40", "noise:5"):
        hr, lr = degrade(odd, 4, name, seed=0)
        assert hr.shape == (36, 52, 3) and lr.shape == (9, 13, 3) and lr.dtype == np.uint8
    grey = photo[:37, :53, 1]
    for g in (grey, grey[..., None]):
        lr = degrade(g, 4, "realesrgan")[1]
        assert lr.shape == (9, 13, 3)
        assert np.array_equal(as_rgb_uint8(g)[..., 0], as_rgb_uint8(g)[..., 2])
    rgba = np.dstack([odd, np.full(odd.shape[:2], 128, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "a.png")
    assert np.array_equal(as_rgb_uint8(rgba), load_image(tmp_path / "a.png"))  # the same conversion as files
    assert degrade(rgba, 4, "realesrgan")[1].shape == (9, 13, 3)
    with pytest.raises(AgdError, match="uint8"):
        degrade(odd.astype(np.float32), 4, "bicubic")
    with pytest.raises(AgdError, match="HxWx3"):
        degrade(np.zeros((8, 8, 5), np.uint8), 4, "bicubic")
    with pytest.raises(AgdError, match="too small"):
        degrade(np.zeros((3, 40, 3), np.uint8), 4, "realesrgan")


def test_names():
    assert get_degradation(None).key == "bicubic" and get_degradation("JPEG:50").name == "jpeg:50"
    assert get_degradation("noise:7.5").name == "noise:7.5"
    for bad in ("jpeg:0", "jpeg:x", "noise:-1", "foo", "jpeg", "native"):
        with pytest.raises(AgdError):
            get_degradation(bad)
    a, b = RealESRGAN(), RealESRGAN(RealESRGANConfig(stage1=StageConfig(jpeg_range=(60.0, 95.0))))
    assert a.key.startswith("realesrgan:") and a.key != b.key  # settings change the key
    mix = get_degradation("realesrgan+clean")
    assert mix.name == "realesrgan+clean" and mix.key != a.key
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    clean = sum(np.array_equal(degrade(img, 4, mix, 0, v)[1], make_lr(img, 4)[1]) for v in range(40))
    assert 4 <= clean <= 22  # ~30% of the draws are plain bicubic; realesrgan alone never is
    assert not any(np.array_equal(degrade(img, 4, "realesrgan", 0, v)[1], make_lr(img, 4)[1]) for v in range(10))
    more = get_degradation("realesrgan+clean:0.8")  # the clean share as a name: its own key, its share drawn
    assert more.name == "realesrgan+clean:0.8" and more.key not in (mix.key, a.key)
    assert get_degradation("realesrgan+clean:0.3").key == mix.key  # the default share is the plain name
    assert sum(np.array_equal(degrade(img, 4, more, 0, v)[1], make_lr(img, 4)[1]) for v in range(40)) >= 26
    assert get_degradation("native:0.3+realesrgan+clean:0.5").name == "native:0.3+realesrgan+clean:0.5"
    for bad in ("realesrgan+clean:0", "realesrgan+clean:1", "realesrgan+clean:x", "native+realesrgan+clean:2"):
        with pytest.raises(AgdError, match="clean share|unknown degradation"):
            get_degradation(bad)
    assert default_degradation("realesrgan-x4plus") == "bicubic"  # opt-in: results/degradation.md
    assert suggested_degradation("realesrgan-x4plus") == "realesrgan"
    assert suggested_degradation("esrgan-pth:/m/RealESRGAN_x4plus.pth") == "realesrgan"
    assert suggested_degradation("esrgan-pth:/m/ESRGAN_SRx4.pth") == "bicubic"
    assert default_degradation("esrgan-pth:/m/ESRGAN_SRx4.pth") == "bicubic"
    assert default_degradation("cyclegan-pth:/m/horse2zebra.pth") == "bicubic"


def test_cache_variants_keys_and_reuse(photo, tmp_path):
    imgs = Images(["a", "b"], [photo[:96, :128], photo[32:, :96]], "test")
    root = tmp_path / "cache"
    t = NearestTeacher()
    c = TeacherCache(t, imgs, root, progress=False, degradation="realesrgan", variants=3)
    assert len(c) == 6 and t.calls == 6 and [s.image for s in c] == [0, 0, 0, 1, 1, 1]
    assert [s.variant for s in c] == [0, 1, 2] * 2 and c[0].name == "a#v0"
    lrs = [s.lr for s in c]
    assert not np.array_equal(lrs[0], lrs[1]) and not np.array_equal(lrs[1], lrs[2])
    assert np.array_equal(lrs[1], degrade(photo[:96, :128], 4, "realesrgan", seed=0, variant=1)[1])
    for s in c:  # the teacher saw exactly the student's (degraded) input
        assert np.array_equal(s.teacher, s.lr.repeat(4, 0).repeat(4, 1)) and s.hr.shape == s.teacher.shape
    t2 = NearestTeacher()
    c2 = TeacherCache(t2, imgs, root, progress=False, degradation="realesrgan", variants=3)
    assert t2.calls == 0 and c2.key == c.key and all(np.array_equal(x.lr, y.lr) for x, y in zip(c, c2))
    c_k2 = TeacherCache(t2, imgs, root, progress=False, degradation="realesrgan", variants=2)
    assert t2.calls == 0 and c_k2.key != c.key and len(c_k2) == 4  # a subset of the variants: reused
    keys = {c.key}
    for kw in (dict(), dict(degradation="bicubic"), dict(degradation="jpeg:50"), dict(degradation="noise:5"),
               dict(degradation="realesrgan", variants=3, seed=1),
               dict(degradation=RealESRGAN(RealESRGANConfig(final_sinc_prob=0.0)), variants=3)):
        keys.add(TeacherCache(NearestTeacher(), imgs, root, progress=False, **kw).key)
    assert len(keys) == 6  # bicubic == no degradation (the old keys); every other setting is its own set
    assert (TeacherCache(NearestTeacher(), imgs, root, progress=False).key
            == TeacherCache(NearestTeacher(), imgs, root, progress=False, degradation="bicubic", variants=4).key)
    nat = TeacherCache(NearestTeacher(), imgs, root, progress=False, degradation="native")
    assert nat[0].lr.shape == (96, 128, 3) and nat[0].teacher.shape == (384, 512, 3) and nat[0].hr.size == 0


def test_evaluate_protocols(photo, tmp_path):
    from agd_deploy.train import evaluate

    imgs = Images(["a", "b"], [photo[:64, :80], photo[40:104, 60:124]], "test")
    t = NearestTeacher()
    res = {p: evaluate("bicubic", imgs, 4, teacher=t, cache_root=tmp_path, progress=False, protocol=p)
           for p in ("bicubic", "degraded", "native")}
    for p, r in res.items():
        assert r["protocol"] == p and r["bicubic"]["psnr_vs_teacher"] == pytest.approx(r["psnr_vs_teacher"])
    assert res["native"]["psnr"] is None and res["native"]["images"][0]["input"] == "80x64"
    assert res["bicubic"]["images"][0]["input"] == "20x16" and res["degraded"]["psnr"] < res["bicubic"]["psnr"]
    assert res["degraded"]["degradation"].startswith("realesrgan:")
    from contracts import check

    for r in res.values():  # every protocol's JSON matches the shipped schema (native: psnr/ssim null)
        check("eval", r)
    check("eval", {"student": res["bicubic"], "protocols": {"native": {"student": res["native"]}}})  # RUN/eval.json
    with pytest.raises(AgdError, match="teacher"):
        evaluate("bicubic", imgs, 4, protocol="native", progress=False)


def test_cli_refuses_bad_degradation_and_native_without_teacher(capsys, tmp_path):
    from cli_helpers import run_cli

    code, _, err = run_cli(capsys, "train", tmp_path / "arch.json", "--degradation", "jpeg:500")
    assert code == 2 and "jpeg:Q takes a quality" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "eval", "bicubic", "--protocol", "native")
    assert code == 2 and "--teacher" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "eval", "bicubic", "--protocol", "degraded", "--degradation", "blur")
    assert code == 2 and "unknown degradation" in err


def test_calibration_and_heldout_follow_the_degradation():
    from agd_deploy.export.calib import calibration_inputs, heldout_inputs

    shape = [1, 3, 16, 16]
    clean, meta = calibration_inputs(None, shape, 4, (0.0, 1.0), 4)
    assert meta["degradation"] == "bicubic" and meta["degraded_crops"] == 0
    mixed, meta = calibration_inputs(None, shape, 4, (0.0, 1.0), 4, degradation="realesrgan")
    assert meta["degradation"].startswith("realesrgan:") and meta["degraded_crops"] == 2 and len(mixed) == 4
    assert np.array_equal(mixed[0], clean[0]) and not np.array_equal(mixed[1], clean[1])  # clean, degraded, ...
    again, _ = calibration_inputs(None, shape, 4, (0.0, 1.0), 4, degradation="realesrgan")
    assert all(np.array_equal(x, y) for x, y in zip(mixed, again))  # reproducible
    arrays, names = heldout_inputs(shape, 4, (0.0, 1.0), 1, degradation="realesrgan")
    assert len(arrays) == 8 and names[4].endswith("@realesrgan") and not names[0].endswith("@realesrgan")
    assert heldout_inputs(shape, 4, (0.0, 1.0), 1)[1] == names[:4]


def test_photo_degradation_is_mild_mixed_and_reproducible(photo):
    """`photo`: determinism by seed/variant, a clean share, and each stage's effect measured on its draws."""
    from agd_deploy.data.degrade import Photo, PhotoConfig

    d = get_degradation("photo")
    assert d.name == "photo" and d.key.startswith("photo:v1:") and d.random
    assert Photo(PhotoConfig(jpeg_range=(30.0, 60.0))).key != d.key  # settings change the key (the cache's)
    a = degrade(photo, 4, "photo", seed=2, variant=5)[1]
    assert a.shape == (32, 40, 3) and np.array_equal(a, degrade(photo, 4, "photo", seed=2, variant=5)[1])
    clean = make_lr(photo, 4)[1]
    lrs = [degrade(photo, 4, "photo", 0, v)[1] for v in range(40)]
    n_clean = sum(np.array_equal(x, clean) for x in lrs)
    assert 2 <= n_clean <= 16  # ~20% plain bicubic
    assert len({x.tobytes() for x in lrs}) > 30  # the rest are their own draws
    # milder than realesrgan: closer to the clean LR on average (PSNR on Y vs the clean bicubic LR)
    from agd_deploy.data.protocol import psnr_y

    mild = np.mean([psnr_y(x, clean, 0) for x in lrs if not np.array_equal(x, clean)])
    heavy = np.mean([psnr_y(degrade(photo, 4, "realesrgan", 0, v)[1], clean, 0) for v in range(20)])
    assert mild > heavy + 2.0, (mild, heavy)
    # each stage alone: blur sigma vs lost detail, noise sigma vs std, JPEG quality vs blockiness
    only = dict(clean_prob=0.0, blur_prob=0.0, noise_prob=0.0, jpeg_prob=0.0)
    grad = lambda x: float(np.abs(np.diff(x.astype(np.float64).mean(-1), axis=1)).mean())  # noqa: E731
    stage = lambda img, **kw: Photo(PhotoConfig(**{**only, **kw})).lr(img, 4, np.random.default_rng(0))  # noqa: E731
    g = [grad(stage(photo, blur_prob=1.0, blur_sigma=(s, s))) for s in (0.5, 2.0, 4.0)]
    assert g[0] > g[1] > g[2] and g[2] < 0.8 * grad(clean), g
    flat = np.full((256, 256, 3), 128, np.uint8)
    for s in (2.0, 6.0):
        n = stage(flat, noise_prob=1.0, noise_range=(s, s), gray_noise_prob=0.0)
        assert np.std(n.astype(np.float64)) == pytest.approx(math.sqrt(s ** 2 + 1 / 12), rel=0.15)
    big = np.repeat(np.repeat(photo, 4, 0), 4, 1)
    b = [blockiness(stage(big, jpeg_prob=1.0, jpeg_range=(q, q))) for q in (20.0, 95.0)]
    assert b[0] > b[1] + 0.1, b
    # odd sizes, grey and RGBA inputs
    hr, lr = degrade(photo[:37, :53], 4, "photo", seed=0, variant=1)
    assert hr.shape == (36, 52, 3) and lr.shape == (9, 13, 3)
    assert degrade(photo[:37, :53, 0], 4, "photo")[1].shape == (9, 13, 3)
    rgba = np.dstack([photo[:37, :53], np.full((37, 53), 200, np.uint8)])
    assert degrade(rgba, 4, "photo", variant=3)[1].shape == (9, 13, 3)
    assert degrade(np.zeros((8, 8, 3), np.uint8), 4, "photo", variant=2)[1].shape == (2, 2, 3)  # kernel fits


def test_finished_ckpt_is_not_reused_for_other_variants(photo, tmp_path):
    """A finished CKPT trained on 2 degraded variants per image is not returned as done for --variants 3 (new
    training data); the same settings are."""
    from agd_deploy.space import Arch
    from agd_deploy.train import TrainConfig, train

    arch = Arch.extreme("sr", largest=False)
    imgs = Images(["a"], [photo[:64, :64]], "test")
    kw = dict(cache_root=tmp_path / "cache", progress=False)
    cfg = TrainConfig(steps=2, patch=8, batch=2, degradation="photo", variants=2, threads=1)
    first = train(arch, NearestTeacher(), imgs, cfg, tmp_path / "ckpt", **kw)
    assert not first.get("skipped") and first["variants"] == 2
    assert train(arch, NearestTeacher(), imgs, cfg, tmp_path / "ckpt", **kw).get("skipped")
    other = train(arch, NearestTeacher(), imgs, TrainConfig(**{**cfg.__dict__, "variants": 3}), tmp_path / "ckpt", **kw)
    assert not other.get("skipped") and other["variants"] == 3


class BicubicTeacher(NearestTeacher):
    def __call__(self, x):
        self.calls += 1
        return F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)


def test_native_mix_is_the_image_itself_reproducible_and_aligned(photo, tmp_path):
    from agd_deploy.data.degrade import NATIVE_PROB, NativeMix

    mix = get_degradation("native+bicubic")
    assert isinstance(mix, NativeMix) and mix.name == "native+bicubic" and mix.random
    assert mix.key != get_degradation("native+photo").key and "native+photo" in __import__(
        "agd_deploy.data.degrade", fromlist=["NAMES"]).NAMES
    pure = get_degradation("native:1+bicubic")
    assert pure.name == "native:1+bicubic" and pure.key != mix.key
    for bad in ("native:0+bicubic", "native:x+bicubic", "native+foo", "native"):  # "native" is the eval protocol
        with pytest.raises(AgdError):
            get_degradation(bad)
    img = photo[:, :150]  # 128x150: cropped to 128x148, LR 32x37
    assert all(not degrade(img, 4, pure, 0, v)[0].any() for v in range(5))  # share 1: every draw native
    draws = [degrade(img, 4, mix, seed=0, variant=v) for v in range(40)]
    native = [(hr, lr) for hr, lr in draws if not hr.any()]
    assert abs(len(native) / 40 - NATIVE_PROB) < 0.25  # the stated share, roughly
    hr0 = img[:, :148]
    for hr, lr in draws:
        assert lr.shape == (32, 37, 3)
        if hr.any():  # the other share: bicubic LR of the HR, bit for bit
            assert np.array_equal(hr, hr0) and np.array_equal(lr, make_lr(img, 4)[1])
    offsets = set()
    for hr, lr in native:  # the image itself at its own resolution: an exact crop, no resampling; HR unknown
        assert hr.shape == hr0.shape
        win = np.lib.stride_tricks.sliding_window_view(hr0, (32, 37, 3))[:, :, 0]
        hits = np.argwhere((win == lr).all((2, 3, 4)))
        assert len(hits)
        offsets.add(tuple(hits[0]))
    assert len(offsets) > 3  # variants are different crops
    a = [degrade(img, 4, mix, seed=0, variant=v)[1] for v in range(6)]
    assert all(np.array_equal(x, y[1]) for x, y in zip(a, draws))  # same seed: same draws
    assert any(not np.array_equal(x, degrade(img, 4, mix, seed=1, variant=v)[1]) for v, x in enumerate(a))
    # through the cache (tiled teacher): the teacher's output, downscaled x4, matches the input best at zero shift
    c = TeacherCache(BicubicTeacher(), Images(["a"], [img], "t"), tmp_path, progress=False,
                     degradation="native+bicubic", variants=6, tile=16)
    nat = [s for s in c if not s.hr.any()]
    assert nat and all(s.teacher.shape == (128, 148, 3) for s in nat)
    for s in nat:
        down = s.teacher.astype(np.float64).reshape(32, 4, 37, 4, 3).mean((1, 3))
        err = {(dy, dx): np.abs(np.roll(down, (dy, dx), (0, 1))[2:-2, 2:-2] - s.lr[2:-2, 2:-2]).mean()
               for dy in (-1, 0, 1) for dx in (-1, 0, 1)}
        assert min(err, key=err.get) == (0, 0) and err[(0, 0)] < 3.0


def test_native_mix_takes_realesrgan_as_its_other_share(photo):
    """native+realesrgan(+clean): native crops beside Real-ESRGAN's degraded LR (the (b) protocol's inputs); the
    non-native draws are Real-ESRGAN's own LR of the HR for the same generator state, degraded, not the bicubic."""
    from agd_deploy.data.degrade import NativeMix, RealESRGAN, rng_for

    img = photo[:, :128]
    for name in ("native+realesrgan", "native+realesrgan+clean", "native:0.25+realesrgan"):
        mix = get_degradation(name)
        assert isinstance(mix, NativeMix) and mix.name == name and mix.key != get_degradation("native+bicubic").key
    mix, real = get_degradation("native+realesrgan"), RealESRGAN()
    others = 0
    for v in range(12):
        hr, lr = degrade(img, 4, mix, seed=0, variant=v)
        assert lr.shape == (32, 32, 3)
        if hr.any():
            rng = rng_for(0, v, img)
            rng.uniform()  # the native/other draw comes first
            assert np.array_equal(lr, real.lr(hr, 4, rng))
            assert not np.array_equal(lr, make_lr(img, 4)[1])  # degraded, not plain bicubic
            others += 1
    assert 0 < others < 12


def test_native_crops_come_from_the_whole_image_not_only_the_centre_crop(photo, tmp_path):
    """The cache centre-crops each image to max_side for the other draws; its native draws are cut anywhere in
    the whole image (the same teacher cost: content from all over the image), each an exact crop at the size
    the other draws' LR has, while the bicubic draws stay the centre crop's LR bit for bit."""
    from agd_deploy.data import center_crop

    img = photo  # 128 px high; centre crop 64: LR 16x16, native crops from the 128-px image
    c = TeacherCache(BicubicTeacher(), Images(["a"], [img], "t"), tmp_path, progress=False, max_side=64,
                     degradation="native+bicubic", variants=24, tile=16)
    centre = center_crop(img, 64)
    cy, cx = (img.shape[0] - 64) // 2, (img.shape[1] - 64) // 2
    outside = 0
    for s in c:
        assert s.lr.shape == (16, 16, 3) and s.teacher.shape == (64, 64, 3)
        if s.hr.any():
            assert np.array_equal(s.lr, make_lr(centre, 4)[1])
            continue
        win = np.lib.stride_tricks.sliding_window_view(img, (16, 16, 3))[:, :, 0]
        hits = np.argwhere((win == s.lr).all((2, 3, 4)))
        assert len(hits), "a native draw is an exact crop of the image"
        y, x = hits[0]
        outside += not (cy <= y <= cy + 48 and cx <= x <= cx + 48)
    assert outside >= 2  # some native crops lie (partly) outside the centre crop


def test_a_registered_degradation_is_a_name_everywhere_and_built_ins_stay(photo, tmp_path):
    from dataclasses import dataclass

    from agd_deploy.data.degrade import NativeMix, register_degradation

    @dataclass(frozen=True)
    class GreyNative(NativeMix):  # the native_lr seam: the native draws become grey
        @property
        def key(self) -> str:
            return "test-grey-native+" + self.other.key

        def native_lr(self, img, lh, lw, rng):
            return as_rgb_uint8(self.native_crop(img, lh, lw, rng).mean(axis=2).astype(np.uint8))

    register_degradation("Test-Grey-Native", GreyNative)
    d = get_degradation(" test-grey-native")
    assert isinstance(d, GreyNative) and d.key == "test-grey-native+bicubic"
    imgs = Images(["a"], [photo[:96, :128]], "test")
    cache = TeacherCache(NearestTeacher(), imgs, tmp_path / "c", progress=False, degradation="test-grey-native",
                         variants=8)
    is_native = [s.hr.size == 0 or not s.hr.any() for s in cache]  # a native draw has no HR
    assert 1 <= sum(is_native) <= 7  # a mix: ~half native (grey: equal channels), the rest bicubic (colour)
    grey = [np.array_equal(s.lr[..., 0], s.lr[..., 2]) for s in cache]
    assert grey == is_native
    for builtin in ("bicubic", "native+bicubic", "jpeg:50"):
        with pytest.raises(AgdError, match="built in"):
            register_degradation(builtin, GreyNative)
    assert get_degradation("native+bicubic").key.startswith("native:v2")
