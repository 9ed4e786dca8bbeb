"""GPU targets: `torch-cuda-fp16` / `torch-cuda-fp32` (CUDA-event clock) and `tensorrt-cuda-int8` (Polygraphy).

Two halves. CPU tests run everywhere and cover what does not need a GPU: the target records and their clocks,
the GPU part of the device identity and the table folder it selects, the Q/DQ lowering TensorRT builds from,
the one-line errors where CUDA or Polygraphy is missing, and Polygraphy's comparator on two onnxruntime
runners (where polygraphy is installed). CUDA tests are skipped with a reason where torch sees no GPU (or,
for TensorRT, where the `[tensorrt]` extra is missing); they never fake a device."""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import pytest
import torch

from agd_deploy.errors import AgdError, MissingRuntimeError
from agd_deploy.runtimes.targets import TARGETS, available, get_target, load_session, lower
from agd_deploy.runtimes.timing import target_clock, time_runs, timed_rounds
from cli_helpers import run_cli

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs CUDA PyTorch and a CUDA GPU (torch.cuda.is_available() is "
                                                 "False here)")
TRT_OK, TRT_WHY = available("tensorrt-cuda-int8")
needs_trt = pytest.mark.skipif(not TRT_OK, reason=f"TensorRT: {TRT_WHY}")


def _one_line(err: str, *needles: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.clip(a, 0, 1) - np.clip(b, 0, 1)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(1.0 / mse)


def _gpu_identity(name="NVIDIA H200", cc="9.0", driver="570.86.15"):
    from agd_deploy.device import identify

    return dataclasses.replace(identify(with_gpu=False),
                               gpu={"name": name, "compute_capability": cc, "driver": driver, "count": 1,
                                    "cuda": "13.0", "torch": "2.13.0"})


# ------------------------------------------------------------------------------------------------ CPU: records

def test_gpu_target_records_and_clocks():
    fp16, fp32, trt = TARGETS["torch-cuda-fp16"], TARGETS["torch-cuda-fp32"], TARGETS["tensorrt-cuda-int8"]
    assert (fp16.runtime, fp16.device, fp16.precision, fp16.lowering) == ("torch", "cuda", "fp16", "torch-pt2")
    assert (fp32.runtime, fp32.device, fp32.precision, fp32.lowering) == ("torch", "cuda", "fp32", "torch-pt2")
    assert fp16.fp32 == "torch-cuda-fp32" and fp16.suffix != fp32.suffix != TARGETS["torch-cpu-fp32"].suffix
    assert (trt.runtime, trt.lowering, trt.suffix) == ("tensorrt", "onnx-int8", ".qdq.onnx")
    # CUDA events for the torch GPU targets at any thread count; TensorRT's runner is synchronous (wall);
    # the CPU targets keep theirs
    for threads in (1, 4):
        assert target_clock("torch-cuda-fp16", threads) == target_clock("torch-cuda-fp32", threads) == "cuda"
        assert target_clock("tensorrt-cuda-int8", threads) == "wall"
    assert target_clock("ort-cpu-int8", 1) == "cpu" and target_clock("torch-cpu-fp32", 1) == "wall"
    from agd_deploy.profiling.profile import ProfileConfig, default_lowering

    assert ProfileConfig(target="torch-cuda-fp16").clock == "cuda"
    with pytest.raises(AgdError, match="cuda clock.*ort-cpu-int8 does not run on CUDA"):
        ProfileConfig(target="ort-cpu-int8", clock="cuda")
    assert default_lowering("torch-cuda-fp16") is None
    assert default_lowering("tensorrt-cuda-int8")["symmetric_activations"] is True


def test_cuda_clock_without_cuda_is_one_line_before_any_run():
    if CUDA:
        pytest.skip("CUDA is available here: the cuda clock works (see test_cuda_event_clock_orders_work)")
    calls = []
    with pytest.raises(MissingRuntimeError, match="cuda clock needs CUDA PyTorch"):
        next(timed_rounds({"a": lambda: calls.append(1)}, range(2), clock="cuda"))
    with pytest.raises(MissingRuntimeError):
        time_runs({"a": lambda: calls.append(1)}, 2, clock="cuda")
    assert calls == []


def test_shared_stopwatch_path_on_the_cpu_clock():
    """The cuda clock is the cpu clock's wrapper with another stopwatch: one sample per model per round, the
    timed call being the last of each round; a model that does ~4x the work measures ~4x (wide bounds: a
    shared machine)."""
    def work(n):
        def f():
            s = 0
            for i in range(n):
                s += i * i
            return s
        return f

    got = list(timed_rounds({"small": work(20_000), "big": work(80_000)}, range(5), clock="cpu"))
    assert [r for r, _ in got] == list(range(5))
    small = min(s["small"] for _, s in got)
    big = min(s["big"] for _, s in got)
    assert small > 0 and 2.0 < big / small < 8.0


# ------------------------------------------------------------------------------------------------ CPU: identity

def test_gpu_identity_fields_key_and_folder(tmp_path, monkeypatch):
    from agd_deploy.device import DeviceIdentity, parse_nvidia_version
    from agd_deploy.profiling import tables

    assert parse_nvidia_version("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 "
                                "01:15:15 UTC 2023\nGCC version:  gcc version 12") == "535.104.05"
    assert parse_nvidia_version("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.86.15  Release "
                                "Build  (dvs-builder@U16)  Thu Jan 16 2025") == "570.86.15"
    assert parse_nvidia_version("no driver here") is None

    gpu = _gpu_identity()
    cpu = dataclasses.replace(gpu, gpu=None)
    assert gpu.device_class.endswith("-gpu-nvidia-h200-sm90") and gpu.device_key != cpu.device_key
    # driver, CUDA and torch versions are recorded but are not the device: same key
    other_driver = _gpu_identity(driver="580.1.2")
    assert dataclasses.replace(other_driver, gpu={**other_driver.gpu, "cuda": "12.8"}).device_key == gpu.device_key
    assert _gpu_identity(cc="8.0").device_key != gpu.device_key  # another compute capability: another device
    d = gpu.to_dict()
    assert d["gpu"]["driver"] == "570.86.15" and d["gpu"]["cuda"] == "13.0" and d["gpu"]["torch"] == "2.13.0"
    assert DeviceIdentity.from_dict(json.loads(json.dumps(d))).device_key == gpu.device_key  # survives a table

    # a torch-cuda-fp16 table stamped with this identity is filed in (and found from) its own device folder
    monkeypatch.setenv("AGD_CACHE_DIR", str(tmp_path))
    from test_lut import synthetic_lut

    lut = synthetic_lut("sr")
    lut.target, lut.device, lut.extra = "torch-cuda-fp16", d, {"clock": "cuda", "profile": {"complete": True}}
    path = tables.user_path("torch-cuda-fp16", "sr", lut.input_shape, 1, identity=gpu)
    assert path.parent.name == f"{gpu.device_class}-{gpu.device_key[:8]}" and path.parent.parent.name == \
        "torch-cuda-fp16"
    lut.save(path)
    here = tables.find("torch-cuda-fp16", "sr", lut.input_shape, 1, identity=gpu)
    assert here is not None and here.this_device and here.path == path and here.lut.clock == "cuda"
    elsewhere = tables.find("torch-cuda-fp16", "sr", lut.input_shape, 1, identity=cpu)
    assert elsewhere is not None and not elsewhere.this_device  # the CPU-only identity must check it first


@needs_cuda
def test_this_gpu_is_in_the_identity():
    from agd_deploy.device import identify
    from agd_deploy.runtimes.base import device_fingerprint

    g = identify().gpu
    assert g and g["name"] == torch.cuda.get_device_name(0)
    assert g["compute_capability"] == "%d.%d" % torch.cuda.get_device_capability(0)
    assert g["cuda"] == torch.version.cuda and g["torch"] == torch.__version__ and g["memory_mb"] > 0
    assert "-gpu-" in device_fingerprint()["device_class"]


# ------------------------------------------------------------------------------------------------ CPU: errors

@pytest.mark.parametrize("target", ["torch-cuda-fp16", "torch-cuda-fp32"])
def test_profile_gpu_target_without_cuda_is_one_line(target, tmp_path, capsys):
    if CUDA:
        pytest.skip("CUDA is available here")
    out = tmp_path / "t.json"
    code, _, err = run_cli(capsys, "profile", "--target", target, "--out", out)
    assert code == 1
    _one_line(err, target, "CUDA")
    assert not out.exists()
    with pytest.raises(MissingRuntimeError, match=f"target {target} needs CUDA PyTorch and a CUDA GPU"):
        lower(target, torch.nn.Conv2d(3, 3, 3, padding=1), torch.rand(1, 3, 8, 8), tmp_path)


def test_tensorrt_without_polygraphy_is_one_line(monkeypatch, tmp_path, capsys):
    """Importing the adapter never needs polygraphy or tensorrt; using it without them is one line that says
    what to install. (polygraphy is made absent for the test the way a missing package is: its import fails.)"""
    import importlib

    monkeypatch.setitem(sys.modules, "polygraphy", None)
    trt_mod = importlib.import_module("agd_deploy.runtimes.tensorrt")
    ok, why = available("tensorrt-cuda-int8")
    assert not ok and "polygraphy" in why and "pip install 'agd-deploy[tensorrt]'" in why
    with pytest.raises(MissingRuntimeError, match=r"agd-deploy\[tensorrt\].*polygraphy is not installed"):
        get_target("tensorrt-cuda-int8")
    with pytest.raises(MissingRuntimeError, match="Polygraphy, which is not installed"):
        trt_mod.compare_runners([None, None], [np.zeros((1, 3, 4, 4), np.float32)])
    with pytest.raises(MissingRuntimeError, match="polygraphy"):
        load_session("tensorrt-cuda-int8", __file__)
    out = tmp_path / "t.json"
    code, _, err = run_cli(capsys, "profile", "--target", "tensorrt-cuda-int8", "--out", out)
    assert code == 1 and not out.exists()
    _one_line(err, "tensorrt-cuda-int8", "polygraphy", "agd-deploy[tensorrt]")


# ------------------------------------------------------------------------------------------------ CPU: lowering

@pytest.fixture(scope="module")
def trt_artifacts(tmp_path_factory):
    """The tensorrt-cuda-int8 lowering (made on the CPU: ORT's quantizer): a whole net (float in/out, as
    exported) and a LUT block with quantized (int8) boundaries, plus the net's fp32 ONNX and a photo."""
    from agd_deploy.profiling.profile import default_lowering
    from agd_deploy.quant.onnx import OrtInt8Config
    from agd_deploy.space import BlockSpec, get_space
    from test_quant import CALIB, photo, realistic_sr_net

    d = tmp_path_factory.mktemp("trt")
    net, x = realistic_sr_net(seed=1), torch.from_numpy(photo())
    cfg = OrtInt8Config.from_dict(default_lowering("tensorrt-cuda-int8"))
    whole = lower("tensorrt-cuda-int8", net, x, d, calib=[photo(n) for n in CALIB], name="net", int8_config=cfg)
    fp32 = lower("ort-cpu-fp32", net, x, d, name="net")
    key = "cell:conv3x3:cin40:cout64:h32:w32"
    block = get_space("sr").build_block(BlockSpec.from_key(key))
    blk = lower("tensorrt-cuda-int8", block, torch.rand(1, 40, 32, 32), d, name="block", quantized_io=True,
                int8_config=cfg)
    with torch.no_grad():
        ref = net(x).numpy()
    return whole, blk, fp32, photo(), ref


def test_tensorrt_lowering_is_symmetric_qdq_with_fixed_io(trt_artifacts):
    import onnx

    from agd_deploy.runtimes.tensorrt import onnx_io

    whole, blk, _, x, ref = trt_artifacts
    name, shape, dtype, out = onnx_io(whole)
    assert (name, shape, dtype, out) == ("input", tuple(x.shape), np.dtype(np.float32), "output")
    assert onnx_io(blk)[2] == np.dtype(np.int8)  # a LUT block takes the int8 tensor a net passes inside
    m = onnx.load(str(whole))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in m.graph.initializer}
    q = [n for n in m.graph.node if n.op_type == "QuantizeLinear"]
    assert q, "no Q/DQ nodes: TensorRT would build an fp32 engine"
    for n in q:  # TensorRT takes symmetric int8 activations only
        zp = inits[n.input[2]]
        assert zp.dtype == np.int8 and not zp.any(), n.name
    # the same file on ORT still computes the net (the export's check target for tensorrt-int8)
    y = load_session("ort-cpu-int8", whole).run(x)
    assert _psnr(y, ref) >= 30.0


def test_polygraphy_comparator_on_two_ort_runners(trt_artifacts):
    """The comparison code TensorRT is checked with, on two onnxruntime runners (CPU): the int8 Q/DQ net vs
    its fp32 ONNX. A loose tolerance passes, a tight one fails, and the errors reported are the real ones."""
    pytest.importorskip("polygraphy", reason="polygraphy is not installed (pip install 'agd-deploy[tensorrt]')")
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

    from agd_deploy.runtimes.tensorrt import Tolerance, compare_runners

    whole, _, fp32, x, _ = trt_artifacts
    runners = lambda: [OnnxrtRunner(SessionFromOnnx(str(whole)), name="int8"),  # noqa: E731
                       OnnxrtRunner(SessionFromOnnx(str(fp32)), name="fp32")]
    y8, y32 = (load_session(t, p).run(x) for t, p in (("ort-cpu-int8", whole), ("ort-cpu-fp32", fp32)))
    ok = compare_runners(runners(), [x], Tolerance(atol=0.05, stat="mean", max_abs=1.0))
    assert ok.passed and ok.runners == ["int8", "fp32"] and ok.inputs == 1
    assert ok.mean_abs == pytest.approx(float(np.abs(y8 - y32).mean()), rel=1e-4)
    assert ok.max_abs == pytest.approx(float(np.abs(y8 - y32).max()), rel=1e-4)
    tight = compare_runners(runners(), [x], Tolerance(atol=1e-6, stat="mean"))
    assert not tight.passed and "DIFFER" in tight.describe()
    capped = compare_runners(runners(), [x], Tolerance(atol=0.05, stat="mean", max_abs=ok.max_abs / 2))
    assert not capped.passed  # polygraphy's verdict passed; the max-error cap did not


# ------------------------------------------------------------------------------------------------ CUDA

@needs_cuda
def test_cuda_event_clock_orders_work():
    a, b = torch.rand(512, 512, device="cuda"), torch.rand(4096, 4096, device="cuda")
    runs = {"small": lambda: a @ a, "big": lambda: b @ b}
    cuda = time_runs(runs, 5, clock="cuda")
    assert all(len(v) == 5 and min(v) > 0 for v in cuda.values())
    assert min(cuda["big"]) > 10 * min(cuda["small"])  # 512x the FLOPs


@needs_cuda
@pytest.mark.parametrize("target,dtype,min_db", [("torch-cuda-fp32", torch.float32, 45.0),
                                                 ("torch-cuda-fp16", torch.float16, 35.0)])
def test_torch_cuda_targets_run_on_the_gpu(target, dtype, min_db, tmp_path):
    from agd_deploy.runtimes.timing import time_artifacts
    from test_quant import photo, realistic_sr_net

    net, x = realistic_sr_net(seed=1), photo()
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    p = lower(target, net, torch.from_numpy(x), tmp_path, name="net")
    assert next(net.parameters()).device.type == "cpu"  # the caller's module stays where it was
    s = load_session(target, p)
    assert s.dtype == dtype and tuple(s.input_shape) == x.shape
    assert _psnr(s.run(x), ref) >= min_db
    ms = time_artifacts(target, {"net": p}, 4)["net"]
    assert len(ms) == 4 and min(ms) > 0


@needs_cuda
def test_torch_cuda_fp16_partial_table(tmp_path, monkeypatch):
    """A partial torch-cuda-fp16 table: timed with CUDA events, stamped with this GPU, filed in its folder."""
    from agd_deploy.profiling import tables
    from agd_deploy.profiling.lut import LUT
    from agd_deploy.profiling.profile import ProfileConfig, profile

    monkeypatch.setenv("AGD_CACHE_DIR", str(tmp_path))
    keys = ["cell:conv3x3:cin40:cout64:h64:w64", "cell:residual:cin40:cout64:h64:w64"]
    res = profile(ProfileConfig(target="torch-cuda-fp16", rounds=4, passes=2, only=keys), progress=False)
    lut = LUT.load(res.table)
    assert lut.clock == "cuda" and set(lut.entries) == set(keys)
    assert lut.device["gpu"]["name"] == torch.cuda.get_device_name(0) and "cuda" in lut.runtime
    assert res.table.parent.name.startswith(lut.device["device_class"]) and "-gpu-" in res.table.parent.name
    assert res.table == tables.user_path("torch-cuda-fp16", "sr", [1, 3, 64, 64], 1)


@needs_trt
def test_tensorrt_engine_matches_ort_through_polygraphy(trt_artifacts, tmp_path, monkeypatch):
    from agd_deploy.runtimes.tensorrt import Tolerance, compare_with_ort, engine_bytes
    from agd_deploy.runtimes.timing import time_artifacts

    monkeypatch.setenv("AGD_CACHE_DIR", str(tmp_path))
    whole, blk, _, x, ref = trt_artifacts
    cmp = compare_with_ort(whole, [x], Tolerance())
    assert cmp.passed, cmp.describe()
    s = load_session("tensorrt-cuda-int8", whole)
    assert _psnr(s.run(x), ref) >= 30.0
    s.close()
    assert engine_bytes(whole) == engine_bytes(whole)  # built once, then from the cache
    ms = time_artifacts("tensorrt-cuda-int8", {"net": whole, "block": blk}, 4)
    assert all(len(v) == 4 and min(v) > 0 for v in ms.values())
