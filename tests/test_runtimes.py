"""runtimes/: the timing loop, targets, and each runtime adapter on real runtimes (skipped with a reason where a
runtime cannot run here)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_quant import CALIB, HW, photo, psnr, realistic_sr_net  # noqa: E402

from agd_deploy.errors import AgdError, MissingRuntimeError  # noqa: E402
from agd_deploy.runtimes import (Stats, TARGETS, available, device_fingerprint, get_target, load_session,  # noqa: E402
                                 lower, measure, noise, pinned)


# ------------------------------------------------------------------------------------------------ timing loop

def test_measure_stats_order_and_interleaving():
    calls: list[str] = []

    def sleeper(name, ms):
        def f():
            calls.append(name)
            time.sleep(ms / 1000)
        return f

    st = measure({"a": sleeper("a", 1), "b": sleeper("b", 4)}, rounds=6, warmup=1, seed=3)
    for s in st.values():
        assert s.min_ms <= s.p10_ms <= s.p50_ms <= s.p90_ms and s.n == 6
    assert 0.9 <= st["a"].min_ms < st["b"].min_ms and st["b"].min_ms >= 3.9
    # warmup 1 each, then per round an untimed + a timed call of each, in a shuffled order
    assert len(calls) == 2 + 6 * 4
    rounds = [calls[2 + 4 * r: 6 + 4 * r] for r in range(6)]
    assert all(r[0] == r[1] and r[2] == r[3] and {r[0], r[2]} == {"a", "b"} for r in rounds)
    assert len({tuple(r) for r in rounds}) == 2  # both orders occur over six rounds (seeded)
    assert Stats.from_dict(st["a"].to_dict()).n == 6


def test_noise_and_fingerprint():
    a = {"x": 10.0, "y": 20.0, "z": 5.0}
    b = {"x": 11.0, "y": 20.0, "z": 5.0, "w": 1.0}
    assert noise(a, a) == 0.0
    assert noise(a, b) == pytest.approx(0.0)  # median of (0.095, 0, 0)
    b2 = {"x": 12.0, "y": 24.0, "z": 5.0}
    assert noise(a, b2) == pytest.approx(2 / 11)
    fp = device_fingerprint()
    assert fp["cpu"] and fp["cores"] >= 1 and "host" in fp and "gpu" in fp


def test_pinned_restores_affinity():
    import os

    before = os.sched_getaffinity(0)
    with pinned(1):
        assert len(os.sched_getaffinity(0)) == 1 and torch.get_num_threads() == 1
    assert os.sched_getaffinity(0) == before


# ------------------------------------------------------------------------------------------------ targets

def test_target_registry_and_errors():
    assert set(TARGETS) == {"torch-cpu-fp32", "ort-cpu-fp32", "ort-cpu-int8", "litert-cpu-int8", "litert-cpu-fp32",
                            "openvino-cpu-int8", "torch-cuda-fp16", "tensorrt-cuda-int8", "litert-android-int8",
                            "coreml-mac-int8"}
    with pytest.raises(AgdError, match="unknown target 'ort-gpu-int9'.*ort-cpu-int8"):
        get_target("ort-gpu-int9")
    t = get_target("ort-cpu-int8")
    assert (t.runtime, t.device, t.precision) == ("ort", "cpu", "int8")
    if not available("tensorrt-cuda-int8")[0]:
        with pytest.raises(MissingRuntimeError, match="tensorrt-cuda-int8 needs the 'tensorrt' package and a CUDA GPU"):
            get_target("tensorrt-cuda-int8")
    if sys.platform != "darwin":
        ok, why = available("coreml-mac-int8")
        assert not ok and "CoreML prediction needs macOS" in why
    assert get_target("coreml-mac-int8", require=False).precision == "int8"


# ------------------------------------------------------------------------------------------------ ORT

@pytest.fixture(scope="module")
def sr(tmp_path_factory):
    d = tmp_path_factory.mktemp("rt")
    net = realistic_sr_net(seed=1)
    x = torch.from_numpy(photo())
    with torch.no_grad():
        ref = net(x).numpy()
    return d, net, x, ref


@pytest.fixture(scope="module")
def ort_artifacts(sr):
    d, net, x, _ = sr
    return (lower("ort-cpu-fp32", net, x, d, name="sr"),
            lower("ort-cpu-int8", net, x, d, calib=[photo(n) for n in CALIB], name="sr"))


def test_ort_fp32_matches_torch_and_int8_psnr(sr, ort_artifacts):
    _, _, _, ref = sr
    p32, p8 = ort_artifacts
    assert p32.name == "sr.onnx" and p8.name == "sr.int8.onnx"
    s32, s8 = load_session("ort-cpu-fp32", p32, threads=1), load_session("ort-cpu-int8", p8, threads=1)
    assert s32.input_shape == (1, 3, HW, HW) and s32.input_dtype == np.float32
    y32 = s32.run(photo())
    assert np.abs(y32 - ref).max() < 1e-4
    db = psnr(s8.run(photo()), y32)
    print(f"ort-cpu-int8 vs fp32: {db:.2f} dB")
    assert db >= 35.0
    st = measure({"fp32": s32.timer(), "int8": s8.timer()}, rounds=3, warmup=1)
    assert all(0 < s.min_ms <= s.p90_ms for s in st.values())


def test_ort_uint8_boundary_block_runs(tmp_path):
    from agd_deploy.space import BlockSpec, get_space

    spec = BlockSpec.from_key("cell:dwsblock:cin40:cout56:h32:w32")
    m = get_space("sr").build_block(spec)
    path = lower("ort-cpu-int8", m, torch.rand(1, 40, 32, 32), tmp_path, name="blk", quantized_io=True)
    s = load_session("ort-cpu-int8", path)
    assert s.input_dtype == np.uint8 and set(s.io_quant) == {"input", "output"}
    x = s.example_input()
    assert x.dtype == np.uint8 and x.shape == (1, 40, 32, 32)
    y = s.run(x)
    assert y.dtype == np.uint8 and y.shape == (1, 56, 32, 32) and y.std() > 0
    st = measure({"blk": s.timer()}, rounds=3)
    assert st["blk"].min_ms > 0
    with pytest.raises(AgdError, match="int8"):
        lower("ort-cpu-fp32", m, torch.rand(1, 40, 32, 32), tmp_path, quantized_io=True)


def test_load_session_missing_artifact(tmp_path):
    with pytest.raises(AgdError, match="does not exist"):
        load_session("ort-cpu-fp32", tmp_path / "nope.onnx")


def test_torch_cpu_fp32(sr, tmp_path):
    _, net, x, ref = sr
    p = lower("torch-cpu-fp32", net, x, tmp_path, name="sr")
    s = load_session("torch-cpu-fp32", p)
    assert s.input_shape == (1, 3, HW, HW)
    assert np.abs(s.run(photo()) - ref).max() < 1e-5
    assert measure({"t": s.timer()}, rounds=2)["t"].n == 2
