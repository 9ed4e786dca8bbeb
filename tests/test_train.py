"""Distillation training: a real (tiny) ESRGAN teacher checkpoint, real images, the real CLI; resume after
SIGKILL; bad inputs end with one line and exit 1."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from agd_deploy.data import ImageFolder
from agd_deploy.errors import AgdError
from agd_deploy.nets import RRDBNet
from agd_deploy.space import Arch
from agd_deploy.teachers import load_teacher
from agd_deploy.train import TrainConfig, load_ckpt, train
from cli_helpers import run_cli as _cli  # noqa: E402

AGD = [str(Path(sys.executable).parent / "agd")]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny ESRGAN teacher (.pth, BasicSR layout), a folder of image crops and the smallest SR arch."""
    from skimage import data

    d = tmp_path_factory.mktemp("train")
    torch.manual_seed(0)
    teacher = d / "teacher.pth"
    torch.save({"params": RRDBNet(nf=8, nb=1, gc=4).state_dict()}, teacher)
    imgs = d / "imgs"
    imgs.mkdir()
    Image.fromarray(data.astronaut()[100:196, 150:246]).save(imgs / "astronaut.png")
    Image.fromarray(data.rocket()[200:280, 300:396]).save(imgs / "rocket.png")
    arch = d / "arch.json"
    arch.write_text(Arch.extreme("sr", largest=False).to_json())
    return {"dir": d, "teacher": f"esrgan-pth:{teacher}", "data": imgs, "arch": arch}


def _run(args, env=None):
    """The CLI in a subprocess (used where a real process matters: SIGKILL and resume)."""
    return subprocess.run(AGD + [str(a) for a in args], capture_output=True, text=True, env=env)


def test_train_learns_and_writes_ckpt(setup, tmp_path):
    arch = Arch.load(setup["arch"])
    t = load_teacher(setup["teacher"])
    images = ImageFolder(setup["data"])
    cfg = TrainConfig(steps=40, patch=8, batch=4, lr=2e-3, ckpt_every=10)
    res = train(arch, t, images, cfg, tmp_path / "ckpt", cache_root=tmp_path / "cache", progress=False)
    out = Path(res["ckpt"])
    assert sorted(p.name for p in out.iterdir()) == ["arch.json", "generator.safetensors", "log.jsonl", "train.json"]
    assert not (tmp_path / "ckpt.partial").exists()
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [10, 20, 30, 40]
    model, arch2 = load_ckpt(out)
    assert arch2 == arch
    # it learned: closer to the teacher than the same arch untrained (same init seed)
    from agd_deploy.data import PatchDataset, TeacherCache
    from agd_deploy.space import build

    ds = PatchDataset(TeacherCache(t, images, tmp_path / "cache", max_side=cfg.max_side, progress=False), 8)
    x, tt, _ = ds.batch(10_000, 8)
    torch.manual_seed(0)
    init = build(arch).eval()
    with torch.no_grad():
        assert float((model(x) - tt).abs().mean()) < 0.7 * float((init(x) - tt).abs().mean())
    # a rerun with resume finds the finished CKPT and does nothing
    again = train(arch, t, images, cfg, out, cache_root=tmp_path / "cache", progress=False)
    assert again.get("skipped") is True


def test_mse_loss_trains_on_the_squared_error_and_is_a_new_run(setup, tmp_path):
    """--loss mse: the logged loss is the squared error to the teacher (well below the L1 run's: the errors are
    under 1), a finished L1 CKPT is not taken for it, and a bad name is one line."""
    arch, t, images = Arch.load(setup["arch"]), load_teacher(setup["teacher"]), ImageFolder(setup["data"])
    kw = dict(cache_root=tmp_path / "cache", progress=False)
    l1 = train(arch, t, images, TrainConfig(steps=20, patch=8, batch=4, lr=2e-3), tmp_path / "ckpt", **kw)
    mse = train(arch, t, images, TrainConfig(steps=20, patch=8, batch=4, lr=2e-3, loss="mse"), tmp_path / "ckpt",
                **kw)
    assert not mse.get("skipped") and mse["config"]["loss"] == "mse" and l1["config"]["loss"] == "l1"
    assert 0 < mse["final_loss"] < 0.6 * l1["final_loss"]  # an ignored --loss would log about the same L1
    with pytest.raises(AgdError, match="unknown loss"):
        train(arch, t, images, TrainConfig(steps=1, patch=8, batch=1, loss="l3"), tmp_path / "bad", **kw)


def test_psnr_loss_weighs_each_patch_by_its_relative_error():
    """--loss psnr is the batch mean of log(per-patch MSE): a patch 10x further off moves the loss as much as the
    others by the same factor, where MSE lets it dominate (the gradient per pixel scales with 1/error, not error)."""
    from agd_deploy.train.loop import PSNR_EPS, psnr_loss

    t = torch.zeros(2, 3, 8, 8)
    y = torch.cat([torch.full((1, 3, 8, 8), 0.01), torch.full((1, 3, 8, 8), 0.1)]).requires_grad_(True)
    loss = psnr_loss(y, t)
    want = (np.log(0.01 ** 2 + PSNR_EPS) + np.log(0.1 ** 2 + PSNR_EPS)) / 2
    assert abs(float(loss) - want) < 1e-5
    loss.backward()
    g_small, g_big = float(y.grad[0].abs().mean()), float(y.grad[1].abs().mean())
    y2 = y.detach().clone().requires_grad_(True)
    torch.nn.functional.mse_loss(y2, t).backward()
    m_small, m_big = float(y2.grad[0].abs().mean()), float(y2.grad[1].abs().mean())
    assert m_big / m_small == pytest.approx(10, rel=1e-4)        # MSE: the far patch pulls 10x harder
    # log: d/dy log(e^2 + eps) ~ e / (e^2 + eps), so the near patch pulls ~10x harder (a bit less: the eps floor)
    want_ratio = (0.01 / (0.01 ** 2 + PSNR_EPS)) / (0.1 / (0.1 ** 2 + PSNR_EPS))
    assert g_small / g_big == pytest.approx(want_ratio, rel=1e-3) and 8 < want_ratio < 10
    # the same value for one patch or for it repeated: a per-patch mean, not a batch-pooled MSE
    assert abs(float(psnr_loss(y[:1], t[:1])) - float(psnr_loss(y[:1].repeat(3, 1, 1, 1), t[:1].repeat(3, 1, 1, 1)))) < 1e-6


def test_cli_loss_choices_are_the_losses():
    """`agd train --loss` spells LOSSES' keys out (no torch at CLI start-up): the two lists must agree."""
    from agd_deploy.commands.train import train as train_cmd
    from agd_deploy.train.loop import LOSSES

    opt = next(p for p in train_cmd.params if p.name == "loss")
    assert list(opt.type.choices) == list(LOSSES)


def test_psnr_loss_trains_and_is_recorded(setup, tmp_path):
    """A --loss psnr run learns (closer to the teacher than at init, in per-patch dB) and says so in train.json."""
    from agd_deploy.data import PatchDataset, TeacherCache
    from agd_deploy.space import build
    from agd_deploy.train.loop import psnr_loss

    arch, t, images = Arch.load(setup["arch"]), load_teacher(setup["teacher"]), ImageFolder(setup["data"])
    cfg = TrainConfig(steps=30, patch=8, batch=4, lr=2e-3, loss="psnr")
    res = train(arch, t, images, cfg, tmp_path / "ckpt", cache_root=tmp_path / "cache", progress=False)
    assert res["config"]["loss"] == "psnr" and np.isfinite(res["final_loss"]) and res["final_loss"] < 0
    model, _ = load_ckpt(Path(res["ckpt"]))
    ds = PatchDataset(TeacherCache(t, images, tmp_path / "cache", max_side=cfg.max_side, progress=False), 8)
    x, tt, _ = ds.batch(10_000, 8)
    torch.manual_seed(0)
    init = build(arch).eval()
    with torch.no_grad():
        assert float(psnr_loss(model(x), tt)) < float(psnr_loss(init(x), tt)) - 0.5  # at least ~2 dB closer


def test_perceptual_term_from_user_vgg(setup, tmp_path):
    from agd_deploy.train.vgg import VGG19Features

    vgg = tmp_path / "vgg19.pth"
    torch.manual_seed(0)
    torch.save(VGG19Features().state_dict(), vgg)  # torchvision layout: features.N.weight
    assert "features.34.weight" in torch.load(vgg, weights_only=True)
    cfg = TrainConfig(steps=2, patch=8, batch=2, vgg=str(vgg), perceptual_weight=0.01, style_weight=1.0)
    res = train(Arch.load(setup["arch"]), load_teacher(setup["teacher"]), ImageFolder(setup["data"]), cfg,
                tmp_path / "ckpt", cache_root=tmp_path / "cache", progress=False)
    assert np.isfinite(res["final_loss"])


def test_resume_after_sigkill(setup, tmp_path):
    out = tmp_path / "ckpt"
    env = {**os.environ, "AGD_CACHE_DIR": str(tmp_path / "cache")}
    args = ["train", setup["arch"], "--teacher", setup["teacher"], "--data", setup["data"], "--steps", 30,
            "--patch", 16, "--batch", 4, "--ckpt-every", 5, "--out", out, "--json"]
    proc = subprocess.Popen(AGD + [str(a) for a in args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    state = out.with_name("ckpt.partial") / "state.pt"
    deadline = time.time() + 300
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "training ended before its first checkpoint"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # nothing looking complete
    saved = torch.load(state, weights_only=True)["step"]
    assert 5 <= saved < 30 and saved % 5 == 0
    r = _run(args, env=env)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["resumed_from"] == saved and res["steps"] == 30
    load_ckpt(out)
    assert not state.exists()


def test_bad_inputs(setup, tmp_path, capsys):
    base = ["train", setup["arch"], "--teacher", setup["teacher"], "--steps", 2, "--patch", 8, "--batch", 2]
    r = _cli(capsys, *base + ["--data", tmp_path / "missing", "--out", tmp_path / "o1"])
    assert r.returncode == 1 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "empty").mkdir()
    r = _cli(capsys, *base + ["--data", tmp_path / "empty", "--out", tmp_path / "o2"])
    assert r.returncode == 1 and "is empty" in r.stderr
    r = _cli(capsys, *base[:-4] + ["--patch", 200, "--batch", 2, "--data", setup["data"], "--out", tmp_path / "o3"])
    assert r.returncode == 1 and "large enough" in r.stderr.splitlines()[-1] and "Traceback" not in r.stderr
    assert not (tmp_path / "o3").exists()
    # a corrupt training checkpoint, and one made for another arch
    part = tmp_path / "o4.partial"
    part.mkdir()
    (part / "state.pt").write_bytes(b"garbage")
    r = _cli(capsys, *base + ["--data", setup["data"], "--out", tmp_path / "o4"])
    assert r.returncode == 1 and "corrupt training checkpoint" in r.stderr and "Traceback" not in r.stderr
    other = Arch.extreme("sr", largest=False)
    other.ops[0] = "conv3x3"
    from agd_deploy.space import build

    torch.save({"model": build(other).state_dict(), "optimizer": {}, "step": 1, "total": 2,
                "torch_rng": torch.get_rng_state(), "arch": other.to_json(), "config": "{}", "loss": 0.0},
               part / "state.pt")
    r = _cli(capsys, *base + ["--data", setup["data"], "--out", tmp_path / "o4"])
    assert r.returncode == 1 and "another arch" in r.stderr
    bad_arch = tmp_path / "bad.json"
    bad_arch.write_text('{"space": "sr", "ops": ["skip"], "widths": {}}')
    r = _cli(capsys, *["train", bad_arch, "--data", setup["data"]])
    assert r.returncode == 1 and "positions" in r.stderr


def test_library_errors(setup, tmp_path):
    with pytest.raises(AgdError, match="not x1|is x4"):
        st_arch = Arch.extreme("st", largest=False)
        train(st_arch, load_teacher(setup["teacher"]), ImageFolder(setup["data"]), TrainConfig(steps=1),
              tmp_path / "x", cache_root=tmp_path / "cache", progress=False)


def test_lr_warms_up_then_follows_the_cosine():
    """Adam's first steps at full rate blew a full-width residual student up; the schedule ramps in first."""
    from agd_deploy.train.loop import TrainConfig, _lr_at

    cfg = TrainConfig(lr=2e-3, warmup=0.05)
    lrs = [_lr_at(cfg, s, 1000) for s in range(1000)]
    assert lrs[0] == pytest.approx(2e-3 / 50) and lrs[49] == pytest.approx(2e-3)
    assert all(a < b for a, b in zip(lrs[:49], lrs[1:50]))            # ramp
    assert all(a >= b for a, b in zip(lrs[50:-1], lrs[51:]))           # then only down
    assert lrs[-1] < 1e-4
    assert _lr_at(TrainConfig(lr=1e-3, warmup=0.0), 0, 100) == pytest.approx(1e-3)
