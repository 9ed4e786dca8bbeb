"""Data: image folders, the SR protocol, tiling, the teacher-output cache and patches."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from agd_deploy.data import (BUILTIN_HELDOUT, BUILTIN_TRAIN, ImageFolder, PatchDataset, TeacherCache,
                             builtin_images, make_lr, psnr_y, rgb_to_y, ssim_y, tiled_apply)
from agd_deploy.errors import AgdError
from agd_deploy.teachers import Teacher


class NearestTeacher(Teacher):
    """A cheap stand-in where only the cache's bookkeeping is under test: nearest x4, counting calls."""

    def __init__(self, fingerprint="nearest"):
        super().__init__("nearest", 4, (0.0, 1.0), fingerprint)
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        return F.interpolate(x, scale_factor=4, mode="nearest")


@pytest.fixture
def folder(tmp_path):
    from skimage import data

    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(data.coffee()[:90, :130]).save(d / "coffee.png")
    Image.fromarray(data.camera()[:64, :80]).save(d / "camera.jpg")  # grayscale
    rgba = np.dstack([data.chelsea()[:40, :48], np.full((40, 48), 255, np.uint8)])
    Image.fromarray(rgba).save(d / "cat.png")
    (d / "notes.txt").write_text("not an image")
    (d / "broken.png").write_bytes(b"\x89PNG garbage")
    return d


def test_image_folder(folder, caplog):
    imgs = ImageFolder(folder)
    err = caplog.text  # warnings go through the agd_deploy logger
    assert "notes.txt" in err and "broken.png" in err
    assert imgs.names == ["camera.jpg", "cat.png", "coffee.png"]
    for _, a in imgs:
        assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3
    cam = imgs[0][1]
    assert np.array_equal(cam[..., 0], cam[..., 1])  # grayscale replicated
    h1 = imgs.data_hash
    assert ImageFolder(folder).data_hash == h1
    assert imgs.subset(60).names == ["camera.jpg", "coffee.png"]


def test_image_folder_errors(tmp_path):
    with pytest.raises(AgdError, match="does not exist"):
        ImageFolder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AgdError, match="is empty"):
        ImageFolder(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.jpg").write_bytes(b"nope")
    with pytest.raises(AgdError, match="no readable images"):
        ImageFolder(tmp_path / "bad")


def test_builtin_split():
    tr, ho = builtin_images("train"), builtin_images("heldout")
    assert not set(tr.names) & set(ho.names)
    assert tr.names == list(BUILTIN_TRAIN) and ho.names == list(BUILTIN_HELDOUT)
    with pytest.raises(AgdError):
        builtin_images("nope")


def test_protocol_lr_and_metrics():
    from skimage import data
    from skimage.metrics import peak_signal_noise_ratio

    hr0 = data.chelsea()[:103, :150]
    hr, lr = make_lr(hr0, 4)
    assert hr.shape == (100, 148, 3) and lr.shape == (25, 37, 3)
    assert np.array_equal(lr, np.asarray(Image.fromarray(hr).resize((37, 25), Image.BICUBIC)))
    y = rgb_to_y(np.array([[[255, 255, 255], [0, 0, 0]]], np.uint8))
    assert y[0, 0] == pytest.approx(235.0, abs=1e-3) and y[0, 1] == 16.0
    noisy = np.clip(hr.astype(int) + np.random.default_rng(0).integers(-6, 7, hr.shape), 0, 255).astype(np.uint8)
    ref = peak_signal_noise_ratio(rgb_to_y(hr)[4:-4, 4:-4], rgb_to_y(noisy)[4:-4, 4:-4], data_range=255)
    assert psnr_y(noisy, hr, 4) == pytest.approx(ref, abs=1e-9)
    assert psnr_y(hr, hr, 4) == 100.0
    assert ssim_y(hr, hr, 4) == pytest.approx(1.0)
    assert 0.3 < ssim_y(noisy, hr, 4) < 0.99


@pytest.mark.parametrize("fixed", [False, True])
def test_tiled_apply_matches_whole(fixed):
    x = torch.rand(1, 3, 37, 50)
    up = lambda t: F.interpolate(t, scale_factor=2, mode="nearest")  # noqa: E731  (pixel-local: tiles == whole)
    y = tiled_apply(up, x, 2, tile=16, overlap=3, fixed=fixed)
    assert torch.equal(y, up(x))
    if fixed:  # smaller than one tile: padded then cropped back
        small = torch.rand(1, 3, 9, 7)
        assert torch.equal(tiled_apply(up, small, 2, tile=16, overlap=3, fixed=True), up(small))


def test_teacher_cache_runs_teacher_once(folder, tmp_path):
    imgs = ImageFolder(folder)
    t = NearestTeacher()
    c1 = TeacherCache(t, imgs, tmp_path / "cache", progress=False)
    assert t.calls == 3 and len(c1) == 3
    s = c1[2]
    assert s.hr.shape == (88, 128, 3) and s.lr.shape == (22, 32, 3) and s.teacher.shape == s.hr.shape
    assert np.array_equal(s.teacher, s.lr.repeat(4, 0).repeat(4, 1))
    t2 = NearestTeacher()
    c2 = TeacherCache(t2, imgs, tmp_path / "cache", progress=False)
    assert t2.calls == 0 and c2.key == c1.key
    c_sub = TeacherCache(t2, imgs.subset(60), tmp_path / "cache", progress=False)  # entries are per image
    assert t2.calls == 0 and c_sub.key != c1.key and len(c_sub) == 2
    c3 = TeacherCache(NearestTeacher("other-weights"), imgs, tmp_path / "cache", progress=False)
    assert c3.key != c1.key
    c4 = TeacherCache(NearestTeacher(), imgs, tmp_path / "cache", max_side=40, progress=False)
    assert c4.key != c1.key and max(c4[2].hr.shape[:2]) <= 40


def test_patches_aligned_and_deterministic(folder, tmp_path):
    cache = TeacherCache(NearestTeacher(), ImageFolder(folder), tmp_path / "cache", progress=False)
    ds = PatchDataset(cache, patch=8, seed=3)
    x, t, hr = ds.batch(5, 6)
    assert x.shape == (6, 3, 8, 8) and t.shape == hr.shape == (6, 3, 32, 32)
    # the teacher patch is the teacher's output on exactly this LR patch, after the same flips/turns
    assert torch.equal(t, F.interpolate(x, scale_factor=4, mode="nearest"))
    x2, _, _ = ds.batch(5, 6)
    x3, _, _ = ds.batch(6, 6)
    assert torch.equal(x, x2) and not torch.equal(x, x3)
    assert float(x.min()) >= 0 and float(x.max()) <= 1


def test_patches_too_small(folder, tmp_path, caplog):
    cache = TeacherCache(NearestTeacher(), ImageFolder(folder), tmp_path / "cache", progress=False)
    ds = PatchDataset(cache, patch=20)  # only coffee's LR (22x32) holds a 20x20 patch
    assert [s.name for s in ds.samples] == ["coffee.png"]
    assert "smaller than the patch" in caplog.text
    with pytest.raises(AgdError, match="large enough"):
        PatchDataset(cache, patch=64)
