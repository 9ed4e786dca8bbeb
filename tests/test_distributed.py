"""`agd train` and `agd search` under the real launcher (`python -m torch.distributed.run --nproc_per_node 2
--standalone`, gloo on the CPU): identical weights on every rank, SIGKILL of one rank + relaunch resumes,
world 1 and world 2 agree; `--device`, and bad input (more ranks than the batch, an unreachable rendezvous);
rank shards, the lazy image folder and memory-mapped teacher-cache entries; the teacher cache built in shards
(one per rank, polling for the rest, per-entry locks); `--workers` batches. CUDA tests run where CUDA exists.

Each rank writes a hash of its final parameters when AGD_DEBUG_PARAM_HASH=DIR is set (train/loop.py,
search/run.py), so "identical weights" compares what every rank really holds, not rank 0's files."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cli_helpers import run_cli

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny ESRGAN teacher (.pth), two small crops of built-in images, the smallest SR arch, and for the
    search a synthetic LUT of this device plus a tiny recipe (tests/test_search.py's)."""
    import yaml
    from PIL import Image
    from skimage import data

    from agd_deploy.nets import RRDBNet
    from agd_deploy.space import Arch
    from test_search import TINY, synthetic_lut

    d = tmp_path_factory.mktemp("dist")
    torch.manual_seed(0)
    torch.save({"params": RRDBNet(nf=8, nb=1, gc=4).state_dict()}, d / "teacher.pth")
    (d / "imgs").mkdir()
    Image.fromarray(data.astronaut()[100:196, 150:246]).save(d / "imgs" / "astronaut.png")
    Image.fromarray(data.rocket()[200:280, 300:396]).save(d / "imgs" / "rocket.png")
    (d / "arch.json").write_text(Arch.extreme("sr", largest=False).to_json())
    synthetic_lut().save(d / "lut.json")
    (d / "tiny.yaml").write_text(yaml.safe_dump({**TINY, "batch": 2, "steps": 4, "ckpt_every": 2}))
    return d


def _env(tmp_path, **extra):
    return {**os.environ, "AGD_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
            "AGD_DEBUG_PARAM_HASH": str(tmp_path / "hash"), **extra}


def _train_args(s, out, steps):
    return ["train", s / "arch.json", "--teacher", f"esrgan-pth:{s / 'teacher.pth'}", "--data", s / "imgs",
            "--steps", steps, "--patch", 8, "--batch", 4, "--ckpt-every", 5, "--threads", 1, "--device", "cpu",
            "--out", out, "--json"]


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _hashes(d: Path) -> dict[str, str]:
    return {p.name: p.read_text().strip() for p in sorted(d.glob("rank*.sha256"))}


def test_train_two_ranks_sigkill_resume_identical_and_agrees_with_world_1(setup, tmp_path):
    """torchrun -n 2 agd train: SIGKILL one rank after a checkpoint (torchrun tears the other down), relaunch
    the same command: it resumes (resumed_from > 0), both ranks end with identical weights, and the result
    agrees with a world-1 run of the same command (same effective batch, same patches)."""
    out, steps = tmp_path / "ck", 60
    env = _env(tmp_path)
    cmd = TORCHRUN + ["-m", "agd_deploy"] + [str(a) for a in _train_args(setup, out, steps)]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    state = out.with_name("ck.partial") / "state.pt"
    _kill_one_rank_after(p, state, "training")
    assert not out.exists()
    saved = torch.load(state, weights_only=True)["step"]
    assert 5 <= saved < steps and saved % 5 == 0

    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1  # rank 0 alone reports
    res = json.loads(lines[0])
    assert res["resumed_from"] == saved > 0 and res["steps"] == steps
    assert res["world_size"] == 2 and res["per_rank_batch"] == 2 and res["effective_batch"] == 4
    assert "world 2 (gloo)" in r.stderr and "effective batch 4" in r.stderr and "lr 0.001" in r.stderr
    h = _hashes(tmp_path / "hash")
    assert set(h) == {"rank0.sha256", "rank1.sha256"} and len(set(h.values())) == 1, h
    log2 = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in log2] == list(range(10, steps + 1, 10))

    # world 1, the same command in-process: same effective batch, the same patches per step
    from agd_deploy.data import ImageFolder
    from agd_deploy.space import Arch
    from agd_deploy.teachers import load_teacher
    from agd_deploy.train import TrainConfig, train

    cfg = TrainConfig(steps=steps, patch=8, batch=4, ckpt_every=5, threads=1, device="cpu")
    one = train(Arch.load(setup / "arch.json"), load_teacher(f"esrgan-pth:{setup / 'teacher.pth'}"),
                ImageFolder(setup / "imgs"), cfg, tmp_path / "ck1", cache_root=tmp_path / "cache" / "teacher_outputs",
                progress=False)
    log1 = [json.loads(x) for x in (tmp_path / "ck1" / "log.jsonl").read_text().splitlines()]
    first1, first2 = log1[0]["loss"], log2[0]["loss"]
    # agree in kind: both improve on the first logged loss, and end within 10% of each other (the same
    # batches; only the all-reduce's float order and the resume differ)
    assert res["final_loss"] < first2 and one["final_loss"] < first1
    assert abs(res["final_loss"] - one["final_loss"]) <= 0.10 * one["final_loss"], (res["final_loss"], one["final_loss"])
    assert abs(first1 - first2) <= 0.02 * first1


def test_search_two_ranks_identical_supernets(setup, tmp_path):
    out = tmp_path / "s"
    env = _env(tmp_path)
    cmd = TORCHRUN + ["-m", "agd_deploy", "search", str(setup / "tiny.yaml"), "--table", str(setup / "lut.json"),
                      "--teacher", f"esrgan-pth:{setup / 'teacher.pth'}", "--data", str(setup / "imgs"),
                      "--out", str(out), "--device", "cpu", "--json"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads((out / "arch.json").read_text())
    assert d["search"]["world_size"] == 2 and d["search"]["effective_batch"] == 4
    assert d["predicted_ms"] <= d["budget_ms"]
    assert [json.loads(x)["step"] for x in (out / "log.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    h = _hashes(tmp_path / "hash")
    assert set(h) == {"rank0.sha256", "rank1.sha256"} and len(set(h.values())) == 1, h


def _kill_one_rank_after(p: subprocess.Popen, ready: Path, what: str) -> str:
    """Wait for `ready` to appear, SIGKILL the launcher's last rank; returns the launcher's stderr."""
    deadline = time.time() + 240
    while not ready.exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert p.poll() is None, f"{what} ended before its first checkpoint: " + p.communicate()[1][-1500:]
    ranks = _children(p.pid)
    assert len(ranks) == 2, ranks
    os.kill(ranks[-1], signal.SIGKILL)
    try:
        _, err = p.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        raise
    assert p.returncode != 0
    return err


def test_search_two_ranks_sigkill_resume(setup, tmp_path):
    """torchrun -n 2 agd search: SIGKILL one rank after a checkpoint, relaunch with --resume: the search
    records that it continued from the checkpoint's step, log.jsonl has every step once, both ranks agree."""
    out, steps = tmp_path / "s", 8
    env = _env(tmp_path)
    cmd = TORCHRUN + ["-m", "agd_deploy", "search", str(setup / "tiny.yaml"), "--table", str(setup / "lut.json"),
                      "--teacher", f"esrgan-pth:{setup / 'teacher.pth'}", "--data", str(setup / "imgs"),
                      "--out", str(out), "--device", "cpu", "--steps", str(steps), "--json"]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    _kill_one_rank_after(p, out / "search_ckpt.pt", "the search")
    assert not (out / "arch.json").exists()
    saved = torch.load(out / "search_ckpt.pt", weights_only=True)["step"]
    assert 2 <= saved < steps and saved % 2 == 0  # tiny.yaml: ckpt_every 2

    r = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads((out / "arch.json").read_text())
    assert d["search"]["resumed_from"] == saved and d["search"]["steps"] == steps and d["search"]["world_size"] == 2
    assert [json.loads(x)["step"] for x in (out / "log.jsonl").read_text().splitlines()] == list(range(1, steps + 1))
    h = _hashes(tmp_path / "hash")
    assert set(h) == {"rank0.sha256", "rank1.sha256"} and len(set(h.values())) == 1, h


def test_train_two_ranks_shard_the_teacher_cache(setup, tmp_path):
    """torchrun -n 2 agd train on an empty cache: each rank computes its half of the (image, variant) entries
    (teacher_computed_per_rank), and the cache ends complete and identical to a world-1 build. (With a
    DataLoader worker per rank: both ranks still end with identical weights.)"""
    import numpy as np

    from agd_deploy.data import ImageFolder, TeacherCache
    from agd_deploy.data.entries import load_arrays
    from agd_deploy.teachers import load_teacher

    env = _env(tmp_path)
    args = [str(a) for a in _train_args(setup, tmp_path / "ck", 3)] + ["--degradation", "realesrgan", "--variants", "2",
                                                                       "--workers", "1"]  # + a loader per rank
    r = subprocess.run(TORCHRUN + ["-m", "agd_deploy"] + args, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("{")][0])
    assert res["teacher_computed_per_rank"] == [2, 2], res["teacher_computed_per_rank"]  # 2 images x 2 variants
    assert res["config"]["workers"] == 1 and len(set(_hashes(tmp_path / "hash").values())) == 1
    two = tmp_path / "cache" / "teacher_outputs"
    torch.set_num_threads(1)  # as the ranks ran (--threads 1)
    one = TeacherCache(load_teacher(f"esrgan-pth:{setup / 'teacher.pth'}"), ImageFolder(setup / "imgs"),
                       tmp_path / "one", max_side=512, progress=False, degradation="realesrgan", variants=2)
    assert one.computed == 4
    names = sorted(p.relative_to(one.dir.parent) for p in one.dir.glob("*.npz"))
    assert len(names) == 4 and sorted(p.relative_to(two) for p in two.glob("*/*.npz")) == names
    for n in names:
        a, b = load_arrays(tmp_path / "one" / n), load_arrays(two / n)
        for k in ("hr", "lr", "teacher"):
            assert np.array_equal(a[k], b[k]), (n, k)
    again = TeacherCache(load_teacher(f"esrgan-pth:{setup / 'teacher.pth'}"), ImageFolder(setup / "imgs"),
                         two, max_side=512, progress=False, degradation="realesrgan", variants=2)
    assert again.computed == 0 and len(again) == 4  # world 1 reuses what the two ranks wrote


def test_teacher_cache_shard_waits_for_the_others_then_one_line(setup, tmp_path):
    """A shard computes only its entries, then polls for the rest: when no other shard writes them, it gives
    up after wait_s with one line naming how many are missing; once they exist every shard loads the set."""
    from agd_deploy.data import ImageFolder, TeacherCache
    from agd_deploy.errors import AgdError
    from agd_deploy.teachers import load_teacher

    t, imgs = load_teacher(f"esrgan-pth:{setup / 'teacher.pth'}"), ImageFolder(setup / "imgs")
    t0 = time.time()
    with pytest.raises(AgdError) as e:
        TeacherCache(t, imgs, tmp_path / "c", progress=False, shard=(1, 2), wait_s=1.0)
    msg = str(e.value)
    assert "\n" not in msg and "1 of 2 entries" in msg and "AGD_DIST_TIMEOUT" in msg, msg
    assert 1.0 <= time.time() - t0 < 30
    c0 = TeacherCache(t, imgs, tmp_path / "c", progress=False, shard=(0, 2), wait_s=1.0)
    c1 = TeacherCache(t, imgs, tmp_path / "c", progress=False, shard=(1, 2), wait_s=1.0)
    assert (c0.computed, c1.computed, len(c0), len(c1)) == (1, 0, 2, 2)  # shard 1's entry was kept from the first try


def test_teacher_cache_entry_locked_by_another_process_is_not_computed_twice(setup, tmp_path, caplog):
    """An entry whose lock another agd process holds is skipped (one warning), the others are computed; the
    builder uses that process's file when it appears, or computes the entry itself if the holder let go
    without writing it. (This test holds the lock: flock conflicts between two open files, as between
    processes.)"""
    import threading

    from filelock import FileLock

    from agd_deploy.data import ImageFolder, TeacherCache
    from agd_deploy.teachers import load_teacher

    t, imgs = load_teacher(f"esrgan-pth:{setup / 'teacher.pth'}"), ImageFolder(setup / "imgs")
    kw = dict(progress=False, degradation="realesrgan", variants=2)
    ref = TeacherCache(t, imgs, tmp_path / "ref", **kw)
    entry = ref._paths[2].name  # image 1, variant 0
    d = tmp_path / "c" / ref.dir.name
    (d / ".locks").mkdir(parents=True)
    held = FileLock(str(d / ".locks" / entry) + ".lock")
    held.acquire()
    box = {}
    th = threading.Thread(target=lambda: box.update(c=TeacherCache(t, imgs, tmp_path / "c", **kw)))
    th.start()
    deadline = time.time() + 60
    while len(list(d.glob("*.npz"))) < 3 and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    others = sorted(p.name for p in ref._paths if p.name != entry)
    assert th.is_alive() and sorted(p.name for p in d.glob("*.npz")) == others  # all but the held one
    held.release()  # the holder died without writing its entry: the builder computes it
    th.join(60)
    c = box["c"]
    assert not th.is_alive() and c.computed == 4 and len(c) == 4 and (d / entry).is_file()
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert sum("another agd process is computing 1 teacher output(s)" in m for m in warned) == 1, warned


def test_train_workers_give_bit_identical_weights(setup, tmp_path, capsys, monkeypatch):
    """--workers 2 (a DataLoader over step-indexed batches) trains the very same weights as --workers 0."""
    monkeypatch.setenv("AGD_CACHE_DIR", str(tmp_path / "cache"))
    from safetensors.torch import load_file

    w = {}
    for n in (0, 2):
        args = [str(a) for a in _train_args(setup, tmp_path / f"ck{n}", 12)] + ["--workers", str(n)]
        # a subprocess, as a user runs it: DataLoader workers are forks of the calling process, and forking
        # pytest's (threads of ORT, OpenVINO, ... loaded by earlier tests) was followed by a segfault later on
        r = subprocess.run([sys.executable, "-m", "agd_deploy", *args], capture_output=True, text=True,
                           timeout=600, env={**os.environ, "AGD_CACHE_DIR": str(tmp_path / "cache")})
        assert r.returncode == 0, r.stderr[-2000:]
        assert json.loads(r.stdout.strip().splitlines()[-1])["config"]["workers"] == n
        w[n] = load_file(str(tmp_path / f"ck{n}" / "generator.safetensors"))
    assert w[0].keys() == w[2].keys() and all(torch.equal(w[0][k], w[2][k]) for k in w[0])
    assert any(not torch.equal(v, torch.zeros_like(v)) for v in w[0].values())


@pytest.mark.parametrize("cmd", ["train", "search", "eval", "upscale", "demo"])
def test_device_cuda_without_cuda_is_one_line_exit_2(cmd, capsys, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    args = {"train": ["train", "arch.json"], "search": ["search", "sr_x4_tiny"], "eval": ["eval", "bicubic"],
            "upscale": ["upscale", "bicubic", "in.png", "out.png"], "demo": ["demo", "--out", tmp_path]}[cmd]
    r = run_cli(capsys, *args, "--device", "cuda")
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith(("Usage:", "Try "))]
    assert len(lines) == 1 and "no CUDA device" in lines[0] and "--device" in lines[0], r.stderr


def test_device_resolution():
    from agd_deploy.train.device import DeviceError, resolve

    c = resolve("cpu", "fp16")  # fp16 autocast is CUDA-only: off on the CPU (with a warning); bf16: test_cpu_amp.py
    assert c.device.type == "cpu" and c.amp is None and not c.channels_last
    assert resolve("auto", "auto").device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceError, match="expected auto, cpu"):
        resolve("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA device"):
            resolve("cuda:0")


@pytest.mark.parametrize("rank", [0, 1])
def test_more_ranks_than_the_batch_is_one_line_on_every_rank(setup, tmp_path, capsys, monkeypatch, rank):
    """WORLD_SIZE 8 > --batch 4: every rank refuses before the rendezvous (no rank hangs)."""
    for k, v in {"RANK": rank, "LOCAL_RANK": rank, "WORLD_SIZE": 8, "MASTER_ADDR": "127.0.0.1",
                 "MASTER_PORT": 1}.items():
        monkeypatch.setenv(k, str(v))
    r = run_cli(capsys, *_train_args(setup, tmp_path / "ck", 3))
    assert r.returncode == 1 and not r.stdout
    assert r.stderr.strip().count("\n") == 0 and "8 ranks but --batch 4" in r.stderr, r.stderr


def test_unreachable_rendezvous_times_out_with_one_line(setup, tmp_path, capsys, monkeypatch):
    """A rank whose peers never come: one line naming the endpoint and the limit, after AGD_DIST_TIMEOUT
    (c10d's own retry logs are held back)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for k, v in {"RANK": 1, "LOCAL_RANK": 1, "WORLD_SIZE": 2, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port,
                 "AGD_DIST_TIMEOUT": 3}.items():
        monkeypatch.setenv(k, str(v))
    t0 = time.time()
    r = run_cli(capsys, *_train_args(setup, tmp_path / "ck", 3))
    assert r.returncode == 1
    err = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and "could not join the process group" in err[0] and f"127.0.0.1:{port}" in err[0], err
    assert "AGD_DIST_TIMEOUT" in err[0] and "within 3 s" in err[0]
    assert time.time() - t0 < 120


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CUDA PyTorch and a visible device)")
def test_train_on_cuda(setup, tmp_path):
    """The CUDA paths: the model, the batches and the teacher on the GPU, AMP, channels-last."""
    from agd_deploy.data import ImageFolder
    from agd_deploy.space import Arch
    from agd_deploy.teachers import load_teacher
    from agd_deploy.train import TrainConfig, load_ckpt, train

    cfg = TrainConfig(steps=20, patch=8, batch=4, ckpt_every=5, threads=1, device="cuda", amp="auto")
    res = train(Arch.load(setup / "arch.json"), load_teacher(f"esrgan-pth:{setup / 'teacher.pth'}"),
                ImageFolder(setup / "imgs"), cfg, tmp_path / "ck", cache_root=tmp_path / "cache", progress=False)
    assert res["device"].startswith("cuda") and res["amp"] in ("bf16", "fp16") and res["channels_last"]
    assert res["final_loss"] == res["final_loss"]  # not NaN
    load_ckpt(tmp_path / "ck")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CUDA PyTorch and a visible device)")
def test_search_and_upscale_on_cuda(setup, tmp_path, capsys):
    """The supernet and its batches on the GPU (AMP), and a CKPT upscaling on CUDA like on the CPU."""
    import numpy as np

    from agd_deploy.data import load_image
    from agd_deploy.train import load_upscaler

    r = run_cli(capsys, "search", setup / "tiny.yaml", "--table", setup / "lut.json", "--teacher",
                f"esrgan-pth:{setup / 'teacher.pth'}", "--data", setup / "imgs", "--out", tmp_path / "s",
                "--device", "cuda", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["search"]["device"].startswith("cuda") and d["search"]["amp"] in ("bf16", "fp16")
    from agd_deploy.data import ImageFolder
    from agd_deploy.space import Arch
    from agd_deploy.teachers import load_teacher
    from agd_deploy.train import TrainConfig, train

    train(Arch.load(setup / "arch.json"), load_teacher(f"esrgan-pth:{setup / 'teacher.pth'}"),
          ImageFolder(setup / "imgs"), TrainConfig(steps=5, patch=8, batch=4, device="cpu"), tmp_path / "ck",
          cache_root=tmp_path / "cache", progress=False)
    img = load_image(setup / "imgs" / "rocket.png")
    cpu = load_upscaler(str(tmp_path / "ck"), device="cpu").upscale(img)
    gpu = load_upscaler(str(tmp_path / "ck"), device="cuda", amp="off").upscale(img)
    assert gpu.shape == cpu.shape and np.abs(gpu.astype(int) - cpu.astype(int)).max() <= 2


@pytest.mark.slow
def test_torchrun_more_ranks_than_the_batch(setup, tmp_path):
    """The real launcher with 3 ranks and --batch 2: non-zero exit, and every rank said why."""
    args = _train_args(setup, tmp_path / "ck", 3)
    args[args.index("--batch") + 1] = 2
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "3", "--standalone", "-m",
           "agd_deploy"] + [str(a) for a in args]
    r = subprocess.run(cmd, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert r.stderr.count("3 ranks but --batch 2") == 3, r.stderr[-2000:]


def test_rank_shards_are_the_world_1_batch(setup, tmp_path):
    """Each rank cuts its shard of the same draws: the shards, concatenated, are the world-1 batch."""
    from agd_deploy.data import ImageFolder, PatchDataset, TeacherCache
    from agd_deploy.data.patches import shard_bounds
    from agd_deploy.teachers import load_teacher

    cache = TeacherCache(load_teacher(f"esrgan-pth:{setup / 'teacher.pth'}"), ImageFolder(setup / "imgs"),
                         tmp_path / "cache", progress=False)
    ds = PatchDataset(cache, 8, seed=3)
    whole = ds.batch(7, 5)
    for world in (2, 3):
        parts = [ds.batch(7, 5, r, world) for r in range(world)]
        assert [p[0].shape[0] for p in parts] == [b - a for a, b in (shard_bounds(5, r, world) for r in range(world))]
        for k in range(3):
            assert torch.equal(torch.cat([p[k] for p in parts]), whole[k])
    assert shard_bounds(5, 0, 2) == (0, 3) and shard_bounds(5, 1, 2) == (3, 5)


def test_folder_is_lazy_and_cache_entries_are_memory_maps(setup, tmp_path, monkeypatch):
    """Opening a folder decodes nothing; the teacher cache holds memory-maps into its .npz entries, not arrays."""
    import numpy as np

    import agd_deploy.data.images as images_mod
    from agd_deploy.data import ImageFolder, TeacherCache
    from agd_deploy.teachers import load_teacher

    calls = []
    real = images_mod.load_image
    monkeypatch.setattr(images_mod, "load_image", lambda p: calls.append(p) or real(p))
    folder = ImageFolder(setup / "imgs")
    assert calls == [] and len(folder) == 2 and folder.shape(0) == (96, 96, 3)
    assert folder[0][1].shape == (96, 96, 3) and len(calls) == 1
    t = load_teacher(f"esrgan-pth:{setup / 'teacher.pth'}")
    c1 = TeacherCache(t, folder, tmp_path / "cache", progress=False)  # computes, then maps what it wrote
    c2 = TeacherCache(t, folder, tmp_path / "cache", progress=False)  # finds the entries
    for c in (c1, c2):
        for s in c:
            assert isinstance(s.teacher, np.memmap) and isinstance(s.hr, np.memmap) and not s.teacher.flags.writeable
    assert np.array_equal(c1[1].teacher, c2[1].teacher) and c1[1].lr.shape == (20, 24, 3)


def test_patch_dataset_pickles_memory_maps_by_reference(setup, tmp_path):
    """What a spawn/forkserver DataLoader worker receives: the entries' file names and offsets, not their pixels;
    mapped again, they cut the same batches."""
    import pickle

    import numpy as np

    from agd_deploy.data import ImageFolder, PatchDataset, TeacherCache
    from agd_deploy.teachers import load_teacher

    cache = TeacherCache(load_teacher(f"esrgan-pth:{setup / 'teacher.pth'}"), ImageFolder(setup / "imgs"),
                         tmp_path / "cache", progress=False)
    ds = PatchDataset(cache, 8, seed=3)
    blob = pickle.dumps(ds)
    pixels = sum(s.hr.nbytes + s.lr.nbytes + s.teacher.nbytes for s in ds.samples)
    assert len(blob) < pixels / 10, (len(blob), pixels)
    back = pickle.loads(blob)
    assert all(isinstance(s.teacher, np.memmap) and not s.teacher.flags.writeable for s in back.samples)
    for a, b in zip(ds.batch(5, 4), back.batch(5, 4)):
        assert torch.equal(a, b)


def test_batched_tiles_match_one_at_a_time():
    import torch.nn.functional as F

    from agd_deploy.data import tiled_apply

    conv = torch.nn.Conv2d(3, 3, 3, padding=1)
    fn = lambda t: F.interpolate(conv(t), scale_factor=2)  # noqa: E731
    x = torch.rand(1, 3, 77, 130)
    with torch.no_grad():
        for fixed in (False, True):
            a = tiled_apply(fn, x, 2, tile=32, overlap=4, fixed=fixed)
            b = tiled_apply(fn, x, 2, tile=32, overlap=4, fixed=fixed, batch=5)
            assert a.shape == (1, 3, 154, 260) and torch.allclose(a, b, atol=1e-5)
