"""runtimes/: the timing loop, targets, and each runtime adapter on real runtimes (skipped with a reason where a
runtime cannot run here)."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_quant import CALIB, HW, photo, psnr, realistic_sr_net  # noqa: E402

from agd_deploy.errors import AgdError, MissingRuntimeError  # noqa: E402
from agd_deploy.quant.onnx import OrtInt8Config  # noqa: E402
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
                            "openvino-cpu-fp32", "openvino-cpu-int8", "torch-cuda-fp16", "torch-cuda-fp32", "tensorrt-cuda-int8",
                            "litert-android-int8", "coreml-mac-fp16", "coreml-mac-int8"}
    # every record names a registered lowering and adapter, and an fp32 partner of the same runtime
    from agd_deploy.runtimes.targets import ADAPTERS, LOWERINGS

    for t in TARGETS.values():
        assert t.lowering in LOWERINGS and t.runtime in ADAPTERS, t.name
        if t.fp32:
            assert TARGETS[t.fp32].runtime == t.runtime and TARGETS[t.fp32].precision != "int8", t.name
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
            # 8-bit weights: the default 7-bit ones (against AVX2 u8 x s8 saturation) resolve this synthetic
            # identity-plus-noise net coarsely (43.2 -> 29.4 dB); see test_quant.test_int8_qdq_psnr_on_real_photo.
            lower("ort-cpu-int8", net, x, d, calib=[photo(n) for n in CALIB], name="sr",
                  int8_config=OrtInt8Config(reduce_range=False)))


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


def test_torch_cpu_fp32(tmp_path):
    from test_quant import small_sr_net

    net, x = small_sr_net(seed=0), torch.from_numpy(photo())
    with torch.no_grad():
        ref = net(x).numpy()
    p = lower("torch-cpu-fp32", net, x, tmp_path, name="sr")
    s = load_session("torch-cpu-fp32", p)
    assert s.input_shape == (1, 3, HW, HW)
    assert np.abs(s.run(photo()) - ref).max() < 1e-5
    assert measure({"t": s.timer()}, rounds=2)["t"].n == 2


# ------------------------------------------------------------------------------------------------ LiteRT

def _litert_converter() -> None:
    try:
        import litert_torch  # noqa: F401
    except ImportError:
        pytest.skip("litert-torch is not installed (pip install 'agd-deploy[litert]')")


@pytest.fixture(scope="module")
def litert_artifacts(tmp_path_factory):
    _litert_converter()
    from test_quant import small_sr_net

    d = tmp_path_factory.mktemp("litert")
    net = small_sr_net(seed=0)
    x = torch.from_numpy(photo())
    with torch.no_grad():
        ref = net(x).numpy()
    t0 = time.perf_counter()
    p32 = lower("litert-cpu-fp32", net, x, d, name="small", metadata={"scale": 4})
    t1 = time.perf_counter()
    p8 = lower("litert-cpu-int8", net, x, d, calib=[photo(n) for n in CALIB], name="small")
    t2 = time.perf_counter()
    print(f"\nLiteRT conversion of an 8-block net: fp32 {t1 - t0:.1f}s, int8 {t2 - t1:.1f}s")
    return ref, p32, p8


@pytest.mark.slow  # ~80 s: two whole-net conversions
def test_litert_fp32_matches_torch(litert_artifacts):
    from agd_deploy.quant.litert import read_metadata

    ref, p32, _ = litert_artifacts
    assert read_metadata(p32) == {"layout": "NCHW", "boundary": "float", "precision": "fp32", "scale": 4}
    s = load_session("litert-cpu-fp32", p32, threads=1)
    assert s.input_shape == (1, 3, HW, HW) and s.input_dtype == np.float32
    y = s.run(photo())
    assert y.shape == ref.shape and np.abs(y - ref).max() < 1e-4


@pytest.mark.slow
def test_litert_int8_psnr_and_float_boundaries(litert_artifacts):
    from ai_edge_litert.interpreter import Interpreter

    _, p32, p8 = litert_artifacts
    s32, s8 = load_session("litert-cpu-fp32", p32), load_session("litert-cpu-int8", p8)
    assert s8.input_dtype == np.float32 and not s8.io_quant  # the contract: float in, float out
    ops = [o["op_name"] for o in Interpreter(model_path=str(p8))._get_ops_details()]
    assert ops[0] == "QUANTIZE" and ops[-1] == "DEQUANTIZE"
    assert ops.count("DEQUANTIZE") == 1  # LeakyReLU, upsampling and the cell sum all stay int8
    db = psnr(s8.run(photo()), s32.run(photo()))
    print(f"litert-cpu-int8 vs fp32: {db:.2f} dB")
    assert db >= 35.0
    st = measure({"fp32": s32.timer(), "int8": s8.timer()}, rounds=3, warmup=1)
    assert all(s.min_ms > 0 for s in st.values())


def test_litert_int8_block_has_int8_nhwc_boundaries(tmp_path):
    _litert_converter()
    from agd_deploy.space import BlockSpec, get_space

    spec = BlockSpec.from_key("up1:up2conv3x3:cin64:cout40:h16:w16")
    m = get_space("sr").build_block(spec)
    p = lower("litert-cpu-int8", m, torch.rand(1, 64, 16, 16), tmp_path, name="blk", quantized_io=True)
    s = load_session("litert-cpu-int8", p)
    assert s.meta["layout"] == "NHWC" and s.meta["boundary"] == "quantized"
    assert s.input_dtype == np.int8 and s.input_shape == (1, 64, 16, 16) and set(s.io_quant) == {"input", "output"}
    y = s.run(s.example_input())
    assert y.dtype == np.int8 and y.shape == (1, 40, 32, 32)
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(p))
    ops = [o["op_name"] for o in it._get_ops_details()]
    assert ops == ["RESIZE_NEAREST_NEIGHBOR", "CONV_2D", "LEAKY_RELU"]  # no QUANTIZE/TRANSPOSE at the edges
    # tensor names are compacted (the converter's torch scope names were ~3% of a small int8 file); I/O keep theirs
    io = {d["name"] for d in [*it.get_input_details(), *it.get_output_details()]}
    inner = {d["name"] for d in it.get_tensor_details()} - io
    assert inner and all(re.fullmatch(r"t\d+", n) for n in inner)
    assert not any("agd_deploy" in n for n in io)  # I/O names are the converter's serving names, not scopes
    # and the fp32 conversion of the same block computes what torch computes
    x = torch.rand(1, 64, 16, 16)
    s32 = load_session("litert-cpu-fp32", lower("litert-cpu-fp32", m, x, tmp_path, name="blk"))
    with torch.no_grad():
        assert np.abs(s32.run(x.numpy()) - m.eval()(x).numpy()).max() < 1e-4


# ------------------------------------------------------------------------------------------------ OpenVINO

def test_openvino_int8_runs(tmp_path):
    if not available("openvino-cpu-int8")[0]:
        pytest.skip(available("openvino-cpu-int8")[1])
    pytest.importorskip("nncf", reason="nncf is not installed (pip install 'agd-deploy[openvino]')")
    from test_quant import small_sr_net

    net, x = small_sr_net(seed=0), torch.from_numpy(photo())
    with torch.no_grad():
        ref = net(x).numpy()
    p = lower("openvino-cpu-int8", net, x, tmp_path, calib=[photo(n) for n in CALIB], name="sr")
    assert p.suffix == ".xml" and p.with_suffix(".bin").exists()
    s = load_session("openvino-cpu-int8", p, threads=1)
    y = s.run(photo())
    db = psnr(y, ref)
    print(f"openvino-cpu-int8 vs torch fp32: {db:.2f} dB")
    assert y.shape == ref.shape and db >= 30.0
    assert measure({"ov": s.timer()}, rounds=2)["ov"].n == 2


def test_openvino_fp32_target_profiles_a_block(tmp_path, monkeypatch):
    """The target added as one record: it lowers (fp32 IR), runs as the fp32 net does, and profiles."""
    if not available("openvino-cpu-fp32")[0]:
        pytest.skip(available("openvino-cpu-fp32")[1])
    from test_quant import small_sr_net

    from agd_deploy.profiling.profile import ProfileConfig, profile

    net, x = small_sr_net(seed=0), torch.from_numpy(photo())
    with torch.no_grad():
        ref = net(x).numpy()
    p = lower("openvino-cpu-fp32", net, x, tmp_path, name="sr")
    assert p.name == "sr.xml" and p.with_suffix(".bin").exists()
    with load_session("openvino-cpu-fp32", p, threads=1) as s:
        assert psnr(s.run(photo()), ref) >= 60.0
    monkeypatch.setenv("AGD_CACHE_DIR", str(tmp_path / "cache"))
    res = profile(ProfileConfig(target="openvino-cpu-fp32", rounds=2, ref_nets=0,
                                only=["cell:conv3x3:cin64:cout24:h64:w64"]), tmp_path / "t.json", progress=False)
    from agd_deploy.profiling.lut import LUT

    lut = LUT.load(res.table)
    assert lut.clock == "wall" and lut.entries["cell:conv3x3:cin64:cout24:h64:w64"]["min_ms"] > 0


# ------------------------------------------------------------------------------------------------ Android (adb)

FIXTURES = Path(__file__).parent / "fixtures"


def test_adb_parses_benchmark_model_output():
    """Fixtures written by hand in benchmark_model's documented output formats (see tests/fixtures/README.md)."""
    from agd_deploy.runtimes.adb import parse_benchmark_output, stats_from_benchmark

    p = parse_benchmark_output((FIXTURES / "benchmark_model_android.txt").read_text())
    assert p["count"] == 50 and p["min"] == 22904 and p["median"] == 23388 and p["p95"] == 24910
    assert p["init"] == 24117 and p["first_inference"] == 31522 and p["inference_avg"] == 23550.2
    st = stats_from_benchmark(p)
    assert (st.min_ms, st.p10_ms, st.p50_ms, st.p90_ms, st.n) == pytest.approx((22.904, 22.951, 23.388, 24.910, 50))
    old = parse_benchmark_output((FIXTURES / "benchmark_model_old.txt").read_text())
    assert old["count"] == 50 and old["avg"] == pytest.approx(132518) and old["inference_avg"] == 132518
    st = stats_from_benchmark(old)
    assert st.min_ms == pytest.approx(129.877) and st.p50_ms == pytest.approx(132.518) and st.p90_ms == pytest.approx(152.34)
    with pytest.raises(AgdError, match="no timed runs"):
        parse_benchmark_output("error: /data/local/tmp/benchmark_model: not found")


def test_adb_needs_shell_prefix():
    from agd_deploy.runtimes.adb import _push_prefix

    assert _push_prefix(["adb", "-s", "X", "shell"]) == ["adb", "-s", "X"]
    with pytest.raises(AgdError, match="must end in 'shell'"):
        _push_prefix(["ssh", "phone"])


# ------------------------------------------------------------------------------------------------ not runnable here

def test_coreml_unavailable_off_macos():
    if sys.platform == "darwin":
        pytest.skip("on macOS CoreML prediction is available")
    with pytest.raises(MissingRuntimeError, match="CoreML prediction needs macOS"):
        load_session("coreml-mac-int8", __file__)


@pytest.mark.skipif(not available("tensorrt-cuda-int8")[0], reason="TensorRT needs the 'tensorrt' package and a CUDA GPU")
def test_tensorrt_int8(sr, tmp_path):
    _, net, x, ref = sr
    p = lower("tensorrt-cuda-int8", net, x, tmp_path, calib=[photo(n) for n in CALIB], name="sr")
    s = load_session("tensorrt-cuda-int8", p)
    assert psnr(s.run(photo()), ref) >= 30.0


@pytest.mark.slow  # ~30 s, mostly importing coremltools
def test_coreml_int8_converts_on_linux(tmp_path):
    ct = pytest.importorskip("coremltools", reason="coremltools is not installed (pip install 'agd-deploy[coreml]')")
    from test_quant import small_sr_net

    p = lower("coreml-mac-int8", small_sr_net(), torch.from_numpy(photo()), tmp_path, name="small",
              metadata={"scale": 4})
    spec = ct.utils.load_spec(str(p))
    assert p.name == "small.int8.mlpackage" and spec.description.input[0].name == "input"
    assert spec.description.output[0].name == "output"
    meta = spec.description.metadata.userDefined
    assert meta["precision"] == "int8-weights" and meta["layout"] == "NCHW" and meta["agd.quantization"] == "W8"
