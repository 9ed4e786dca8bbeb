"""`agd export` / `agd bench` end to end on a tiny derived generator with real runtimes (ORT, onnx checker,
LiteRT, coremltools conversion). Each test exports at 1x3x16x16 to stay fast on a small CPU."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from agd_deploy.cli import main
from cli_helpers import run_cli  # noqa: E402
from agd_deploy.space import Arch

CONTRACT_KEYS = {"format", "precision", "file", "sha256", "bytes", "input_shape", "runtime", "psnr_db", "ssim",
                 "p50_ms", "p90_ms", "min_ms", "speedup_vs_fp32", "status"}


def agd(args, capsys):
    """Run the CLI in-process -> (exit code, stdout, stderr)."""
    return tuple(run_cli(capsys, *args))


def small_arch(space="sr", shape=(1, 3, 16, 16)) -> Arch:
    a = Arch.extreme(space, largest=False, input_shape=list(shape))
    a.ops = ["conv3x3" if i % 5 == 0 else "skip" for i in range(len(a.ops))]
    return a


@pytest.fixture(scope="module")
def arch_json(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("arch") / "arch.json"
    p.write_text(small_arch().to_json())
    return p


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A CKPT folder (seeded weights, saved as a trained model would be)."""
    from agd_deploy.space import build
    from agd_deploy.train.ckpt import save_ckpt

    torch.manual_seed(1)
    arch = small_arch()
    return save_ckpt(build(arch), arch, tmp_path_factory.mktemp("ck") / "ckpt")


@pytest.fixture(scope="module")
def exported(ckpt, tmp_path_factory):
    """onnx + onnx-int8 + tensorrt-int8 of the CKPT, exported once for several tests."""
    out = tmp_path_factory.mktemp("exp") / "out"
    code = 0
    try:
        main(["export", str(ckpt), "--formats", "onnx,onnx-int8,tensorrt-int8", "--rounds", "2", "--out", str(out),
              "--json"])
    except SystemExit as e:
        code = e.code
    return out, code


def test_export_ckpt_manifest_and_artifacts(exported):
    import onnx

    out, code = exported
    assert code in (0, None)
    m = json.loads((out / "manifest.json").read_text())
    arts = {a["format"]: a for a in m["artifacts"]}
    assert list(arts) == ["onnx", "onnx-int8", "tensorrt-int8"]
    for a in arts.values():
        assert CONTRACT_KEYS <= set(a), CONTRACT_KEYS - set(a)
        assert a["input_shape"] == [1, 3, 16, 16]
        assert (out / a["file"]).is_file()
        assert a["bytes"] == (out / a["file"]).stat().st_size
    # only the requested artifacts + manifest + table are left
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["manifest.json", "benchmark.md", "model.onnx", "model.int8.onnx", "model.qdq.onnx"])
    fp32, int8, trt = arts["onnx"], arts["onnx-int8"], arts["tensorrt-int8"]
    assert fp32["status"] == "ok" and fp32["psnr_db"] >= 60 and fp32["speedup_vs_fp32"] == 1.0
    assert int8["status"] == "ok" and 35 <= int8["psnr_db"] < 100 and int8["speedup_vs_fp32"] > 0
    assert int8["min_ms"] <= int8["p50_ms"] <= int8["p90_ms"]
    assert int8["bytes"] < fp32["bytes"]
    from agd_deploy.device import identify

    # 7-bit weights only where u8s8 saturates: an x86 CPU without int8 dot products (VNNI); never for TensorRT
    me = identify()
    assert int8["reduce_range"] is (me.arch == "x86_64" and not me.int8_dot) and trt["reduce_range"] is False
    # the file is a valid single-file ONNX with the contract's names and metadata
    for name in ("model.onnx", "model.int8.onnx", "model.qdq.onnx"):
        mo = onnx.load(str(out / name))
        onnx.checker.check_model(mo)
        assert [i.name for i in mo.graph.input] == ["input"] and [o.name for o in mo.graph.output] == ["output"]
        assert max(o.version for o in mo.opset_import if o.domain in ("", "ai.onnx")) >= 17
        meta = {p.key: p.value for p in mo.metadata_props}
        assert meta["scale"] == "4" and json.loads(meta["value_range"]) == [0.0, 1.0]
        assert meta["layout"] == "NCHW" and meta["color_order"] == "RGB"
    # int8: QDQ with s8 per-channel weights and u8 activations
    q = onnx.load(str(out / "model.int8.onnx"))
    ops = {n.op_type for n in q.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    from onnx import numpy_helper
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    dtypes = {inits[n.input[0]].dtype for n in q.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits}
    assert np.dtype(np.int8) in dtypes  # weights
    zps = [inits[n.input[2]] for n in q.graph.node if n.op_type == "QuantizeLinear" and n.input[2] in inits]
    assert any(z.dtype == np.uint8 for z in zps)  # activations
    # tensorrt-int8: symmetric int8 activations (zero point 0), checked on ORT here
    t = onnx.load(str(out / "model.qdq.onnx"))
    tzp = {i.name: numpy_helper.to_array(i) for i in t.graph.initializer}
    qz = [tzp[n.input[2]] for n in t.graph.node if n.op_type == "QuantizeLinear" and n.input[2] in tzp]
    assert qz and all(z.dtype == np.int8 and not z.any() for z in qz)
    assert trt["status"].startswith("not verified") and trt["psnr_db"] >= 35 and trt["checked_on"] == "ort-cpu-int8"
    assert "| onnx-int8 | int8 |" in (out / "benchmark.md").read_text()


def test_export_and_bench_keep_the_manifest_keys(exported, tmp_path, capsys):
    """`agd export` and `agd bench` write every manifest key a stored run before the refactor had."""
    from contracts import check, missing, stored, structure

    src, _ = exported
    m = json.loads((src / "manifest.json").read_text())
    assert not missing(stored("manifest"), structure(m)), missing(stored("manifest"), structure(m))
    check("manifest", m)  # and it matches agd_deploy/schemas/manifest.schema.json
    d = tmp_path / "copy"
    shutil.copytree(src, d)
    code, out, err = agd(["bench", d, "--rounds", "2", "--json"], capsys)
    assert code == 0, err
    assert not missing(stored("manifest"), structure(json.loads(out)))
    check("manifest", json.loads(out))
    check("manifest", d / "manifest.json")
    # and the comparison can fail: a dropped key is reported
    m["artifacts"][0].pop("sha256")
    assert missing(stored("manifest"), structure(m)) == ["artifacts.onnx.sha256"]


def test_bench_reverifies_and_gate_fails_on_corruption(exported, tmp_path, capsys):
    import onnx
    from onnx import numpy_helper

    src, _ = exported
    d = tmp_path / "copy"
    shutil.copytree(src, d)
    code, out, err = agd(["bench", d, "--rounds", "2", "--json"], capsys)
    assert code == 0, err
    res = json.loads(out)
    assert [a["status"] for a in res["artifacts"]][:2] == ["ok", "ok"]
    # 1) bytes changed behind the manifest's back: sha256 check fails, exit 1
    f = d / "model.int8.onnx"
    f.write_bytes(f.read_bytes()[:-10] + b"0123456789")
    code, out, err = agd(["bench", d, "--rounds", "2", "--json"], capsys)
    assert code == 1
    assert json.loads(out)["artifacts"][1]["status"].startswith("failed: sha256 mismatch")
    # 2) a wrong output with a consistent manifest: the PSNR gate fails, exit 1
    shutil.copy(src / "model.int8.onnx", f)
    mo = onnx.load(str(d / "model.onnx"))
    # shift the last conv's bias: every output pixel moves by 0.1 (an SR net's bilinear skip would hide a
    # change deep inside a briefly trained branch)
    last = [n for n in mo.graph.node if n.op_type == "Conv"][-1]
    w = next(i for i in mo.graph.initializer if i.name == last.input[2])
    w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) + 0.1, w.name))
    onnx.save(mo, str(d / "model.onnx"))
    man = json.loads((d / "manifest.json").read_text())
    from agd_deploy.utils import sha256_file
    man["artifacts"][0]["sha256"] = sha256_file(d / "model.onnx")
    man["artifacts"][0]["bytes"] = (d / "model.onnx").stat().st_size
    (d / "manifest.json").write_text(json.dumps(man))
    code, out, err = agd(["bench", d, "--rounds", "2"], capsys)
    assert code == 1
    assert "PSNR" in out and "under the 60 dB threshold" in out
    assert err.strip().splitlines()[-1].startswith("Error: 1 artifact(s) failed verification: onnx")


def test_arch_json_is_untrained(arch_json, tmp_path, capsys):
    code, out, err = agd(["export", arch_json, "--formats", "onnx-int8", "--rounds", "2", "--out", tmp_path / "o",
                          "--json"], capsys)
    assert code == 0, err
    m = json.loads(out)
    assert m["model"]["trained"] is False and m["model"]["kind"] == "arch"
    (a,) = m["artifacts"]
    assert a["status"] == "untrained" and a["psnr_db"] is not None and a["speedup_vs_fp32"] > 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["benchmark.md", "manifest.json", "model.int8.onnx"]
    # a new export into the same folder drops the artifacts the old manifest listed, and nothing else
    (tmp_path / "o" / "notes.txt").write_text("mine")
    code, out, err = agd(["export", arch_json, "--formats", "onnx", "--rounds", "2", "--out", tmp_path / "o"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["benchmark.md", "manifest.json", "model.onnx",
                                                                  "notes.txt"]


def test_keep_fp32_named_layers(ckpt, tmp_path, capsys):
    import onnx

    code, out, err = agd(["export", ckpt, "--formats", "onnx-int8", "--keep-fp32", "last,stem", "--rounds", "2",
                          "--out", tmp_path / "o", "--json"], capsys)
    assert code == 0, err
    (a,) = json.loads(out)["artifacts"]
    assert a["keep_fp32"] == ["last", "stem"] and a["keep_fp32_nodes"] >= 2
    g = onnx.load(str(tmp_path / "o" / a["file"])).graph
    convs = [n for n in g.node if n.op_type == "Conv"]  # graph order: stem first, last conv last
    inits = {i.name for i in g.initializer}
    # kept convs read their float weights directly, the others through DequantizeLinear (names are compacted
    # in the shipped file, so the layers are found by position)
    assert convs[0].input[1] in inits and convs[-1].input[1] in inits
    assert all(c.input[1] not in inits for c in convs[1:-1])
    code, out, err = agd(["export", ckpt, "--formats", "onnx-int8", "--keep-fp32", "nosuchlayer",
                          "--out", tmp_path / "o2"], capsys)
    assert code == 1 and "no layer 'nosuchlayer'" in err and "Traceback" not in err


def test_keep_fp32_auto_records_sensitivity(ckpt, tmp_path, capsys):
    code, out, err = agd(["export", ckpt, "--formats", "onnx-int8", "--keep-fp32", "auto:2", "--rounds", "2",
                          "--out", tmp_path / "o", "--json"], capsys)
    assert code == 0, err
    m = json.loads(out)
    sens = m["sensitivity"]
    assert len(sens["kept"]) == 2 and sens["kept"] == [r["layer"] for r in sens["ranking"][:2]]
    assert m["artifacts"][0]["keep_fp32"] == sens["kept"]
    assert "Per-layer int8 sensitivity" in (tmp_path / "o" / "benchmark.md").read_text()


def test_keep_fp32_auto_keeps_the_best_set_when_the_target_is_out_of_reach(ckpt, tmp_path, capsys):
    """An unreachable target: `auto` tries 0, 1, 2 float layers and keeps the best-scoring set, not the largest."""
    prof = tmp_path / "p.yaml"
    prof.write_text("formats: [onnx-int8]\nkeep_fp32_target_db: 500\nkeep_fp32_max: 2\n")
    code, out, err = agd(["export", ckpt, "--formats", "onnx-int8", "--keep-fp32", "auto", "--profile", prof,
                          "--rounds", "2", "--out", tmp_path / "o", "--json"], capsys)
    assert code == 0, err
    sens = json.loads(out)["sensitivity"]
    tried = sens["tried"]
    assert [t["kept"] for t in tried] == [0, 1, 2]
    best = max(tried, key=lambda t: t["psnr_db"])  # first of equals: the fewest layers
    assert len(sens["kept"]) == best["kept"]
    assert sens["kept"] == [r["layer"] for r in sens["ranking"] if r["psnr_db"] is not None][:best["kept"]]


@pytest.mark.parametrize("args,needle", [
    (["--formats", "onnx,bogus"], "unknown format 'bogus'"),
    (["--formats", "onnx-int8", "--calib", "/nonexistent/calib"], "calibration folder"),
    (["--formats", "onnx", "--input", "1x3x3"], "bad shape"),
])
def test_bad_input_is_one_line(arch_json, tmp_path, capsys, args, needle):
    code, out, err = agd(["export", arch_json, "--out", tmp_path / "o", *args], capsys)
    assert code != 0
    assert needle in err and "Traceback" not in err
    assert len([ln for ln in err.strip().splitlines() if ln.startswith(("Error", "Usage"))]) >= 1


def test_out_not_writable_and_ckpt_mismatch(arch_json, ckpt, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = agd(["export", arch_json, "--formats", "onnx", "--out", blocker / "sub"], capsys)
    assert code == 1 and "cannot write there" in err and "Traceback" not in err
    bad = tmp_path / "bad_ckpt"
    shutil.copytree(ckpt, bad)
    other = Arch.extreme("sr", largest=True, input_shape=[1, 3, 16, 16])
    (bad / "arch.json").write_text(other.to_json())
    code, _, err = agd(["export", bad, "--formats", "onnx", "--out", tmp_path / "o"], capsys)
    assert code == 1 and "do not match" in err and "Traceback" not in err
    code, _, err = agd(["bench", tmp_path / "nothing"], capsys)
    assert code == 1 and "no manifest.json" in err


@pytest.mark.slow
def test_tflite_openvino_coreml(ckpt, tmp_path, capsys):
    code, out, err = agd(["export", ckpt, "--formats", "tflite-fp32,tflite-int8,openvino-int8,coreml-fp16,coreml-int8",
                          "--rounds", "2", "--out", tmp_path / "o", "--json"], capsys)
    m = json.loads(out)
    arts = {a["format"]: a for a in m["artifacts"]}
    assert code == 0, err
    assert arts["tflite-fp32"]["status"] == "ok" and arts["tflite-fp32"]["psnr_db"] >= 60
    assert arts["tflite-int8"]["status"] == "ok" and arts["tflite-int8"]["psnr_db"] >= 35
    assert arts["tflite-int8"]["speedup_vs_fp32"] > 0
    ov = arts["openvino-int8"]
    assert ov["status"] == "ok" and ov["psnr_db"] >= 35 and ov["speedup_vs_fp32"] > 0
    assert (tmp_path / "o" / "model.int8.bin").is_file()  # the IR's weights travel with its .xml
    import openvino

    ir = openvino.Core().read_model(str(tmp_path / "o" / "model.int8.xml"))
    assert ir.get_rt_info(["agd", "scale"]).astype(str) == "4" and ir.get_rt_info(["agd", "layout"]).astype(str) == "NCHW"
    import platform
    if platform.system() != "Darwin":
        for f in ("coreml-fp16", "coreml-int8"):
            assert arts[f]["status"] == "not verified: CoreML prediction needs macOS"
            assert (tmp_path / "o" / arts[f]["file"]).is_dir() and arts[f]["bytes"] > 0
        assert arts["coreml-int8"]["bytes"] < arts["coreml-fp16"]["bytes"]
    from agd_deploy.quant.litert import read_metadata
    meta = read_metadata(tmp_path / "o" / arts["tflite-int8"]["file"])
    assert meta["scale"] == "4" and meta["layout"] == "NCHW" and meta["color_order"] == "RGB"
    assert json.loads(meta["value_range"]) == [0.0, 1.0]


@pytest.mark.slow
def test_st_frame_exports(tmp_path, capsys):
    a = small_arch("st", (1, 3, 32, 32))
    p = tmp_path / "st.json"
    p.write_text(a.to_json())
    code, out, err = agd(["export", p, "--formats", "onnx,onnx-int8,tflite-int8", "--rounds", "2",
                          "--out", tmp_path / "o", "--json"], capsys)
    m = json.loads(out)
    assert code == 0, err
    for a in m["artifacts"]:
        assert a["status"] == "untrained" or a["status"].startswith("failed: tflite-int8 conversion failed (op")


def test_tensorrt_engine_builds_where_available(exported):
    from agd_deploy.runtimes.targets import available

    ok, why = available("tensorrt-cuda-int8")
    if not ok:
        pytest.skip(why)
    from agd_deploy.runtimes import load_session

    out, _ = exported
    sess = load_session("tensorrt-cuda-int8", out / "model.qdq.onnx")
    y = sess.run(np.zeros((1, 3, 16, 16), np.float32))
    assert y.shape == (1, 3, 64, 64)


def _no_vnni() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx2" in flags and "vnni" not in flags


def test_u8u8_weights_do_not_saturate_where_u8s8_does(tmp_path):
    """A conv whose u8 x s8 pair sums overflow int16 (inputs near the top of their range, large positive
    weights): ORT's u8s8 kernel on AVX2 without VNNI (vpmaddubsw) saturates them with full 8-bit weights; the
    U8U8 lowering (uint8 symmetric weights, what `onnx_int8: {weights: uint8}` selects) stays exact."""
    from agd_deploy.quant.onnx import OrtInt8Config, export_onnx, quantize_qdq
    from agd_deploy.runtimes import load_session
    from agd_deploy.verify.metrics import psnr

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(16, 16, 3, padding=1)
    with torch.no_grad():
        conv.weight.uniform_(0.5, 1.0)
        conv.bias.zero_()
    g = np.random.default_rng(0)
    calib = [g.uniform(0.9, 1.0, (1, 16, 12, 12)).astype(np.float32) for _ in range(4)]
    x = g.uniform(0.9, 1.0, (1, 16, 12, 12)).astype(np.float32)
    fp32 = export_onnx(conv, torch.from_numpy(calib[0]), tmp_path / "c.onnx")
    with torch.no_grad():
        ref = conv(torch.from_numpy(x)).numpy()
    peak = (float(ref.min()), float(ref.max()))

    def db(name, **kw):
        cfg = OrtInt8Config(**kw)
        q = quantize_qdq(fp32, tmp_path / f"{name}.onnx", calib, cfg)
        meta = json.loads({p.key: p.value for p in __import__("onnx").load(str(q)).metadata_props}["agd.int8_config"])
        assert meta["weight"] == cfg.weight and meta["reduce_range"] == cfg.reduce_range
        return psnr(ref, load_session("ort-cpu-int8", q).run(x), peak)

    u8u8 = db("u8u8", weight="uint8", weight_symmetric=True, reduce_range=False)
    u8s8 = db("u8s8", reduce_range=False)
    assert u8u8 > 40, u8u8
    if _no_vnni():  # the saturation this lowering exists for
        assert u8s8 < u8u8 - 10, (u8s8, u8u8)


def test_int8_config_defaults_unchanged():
    """The default OrtInt8Config is the lowering the first shipped ort-cpu-int8 tables record; its defaults stay,
    new options appear at neutral values, and caches key on an explicit version (`cache_key`)."""
    from agd_deploy.quant.onnx import OrtInt8Config

    d = OrtInt8Config().to_dict()
    assert {k: d[k] for k in ("activation", "weight", "per_channel", "calibration", "percentile", "keep_fp32",
                              "symmetric_activations", "reduce_range")} == {
        "activation": "uint8", "weight": "int8", "per_channel": True, "calibration": "minmax", "percentile": 99.999,
        "keep_fp32": [], "symmetric_activations": False, "reduce_range": True}
    assert d["weight_symmetric"] is None and d["op_types"] is None
    assert OrtInt8Config().cache_key() == {"version": OrtInt8Config.CACHE_VERSION, **d}
    assert OrtInt8Config.from_dict({"reduce_range": True}).to_dict() == d  # a table's older, shorter record


def test_profile_onnx_int8_types_reach_artifact_and_manifest(ckpt, tmp_path, capsys):
    """A profile's `onnx_int8:` section picks onnx-int8's integer types; the manifest records them (profile and
    artifact) and the file's metadata holds the config that made it."""
    import onnx

    prof = tmp_path / "u8u8.yaml"
    prof.write_text("formats: [onnx, onnx-int8]\ncalibration: {method: minmax, crops: 4}\n"
                    "onnx_int8: {weights: uint8, reduce_range: false}\nverify: {heldout_per_image: 1, rounds: 2}\n")
    out = tmp_path / "out"
    code, stdout, _ = agd(["export", str(ckpt), "--profile", str(prof), "--out", str(out), "--json"], capsys)
    assert code == 0, stdout
    m = json.loads((out / "manifest.json").read_text())
    assert {k: v for k, v in m["profile"]["onnx_int8"].items() if k != "lowering_from"} == {
        "weights": "uint8", "activations": "uint8", "per_channel": True, "reduce_range": False, "op_types": None}
    assert "export profile sets" in m["profile"]["onnx_int8"]["lowering_from"]
    a = {x["format"]: x for x in m["artifacts"]}["onnx-int8"]
    assert a["status"] == "ok" and a["psnr_db"] >= 35
    assert a["quantization"]["weight"] == "uint8" and a["quantization"]["weight_symmetric"] is True
    assert a["reduce_range"] is False
    q = onnx.load(str(out / a["file"]))
    meta = json.loads({p.key: p.value for p in q.metadata_props}["agd.int8_config"])
    assert meta["weight"] == "uint8"
    from onnx import numpy_helper
    weights = [a for a in (numpy_helper.to_array(i) for i in q.graph.initializer) if a.ndim == 4]
    assert weights and all(w.dtype == np.uint8 for w in weights)  # conv weights stored as uint8
    bad = tmp_path / "bad.yaml"
    bad.write_text("onnx_int8: {weights: int4}\n")
    code, stdout, err = agd(["export", str(ckpt), "--profile", str(bad), "--out", str(tmp_path / "o2")], capsys)
    assert code != 0 and "onnx_int8.weights" in (stdout + err)


def test_compact_names_shrinks_an_int8_file_and_keeps_its_outputs(tmp_path):
    """QDQ graphs name ~4 nodes per conv after torch scopes; the shipped file gets short ids instead."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from agd_deploy.export.onnx import compact_names
    from agd_deploy.quant.onnx import OrtInt8Config, export_onnx, quantize_qdq

    net = torch.nn.Sequential(*[torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, 1, 1), torch.nn.LeakyReLU(0.2))
                                for _ in range(6)]).eval()
    x = np.random.default_rng(0).random((1, 8, 16, 16), dtype=np.float32)
    fp32 = export_onnx(net, torch.from_numpy(x), tmp_path / "m.onnx")
    q = quantize_qdq(fp32, tmp_path / "m.int8.onnx", [x], OrtInt8Config())
    ref = ort.InferenceSession(str(q)).run(None, {"input": x})[0]
    before = q.stat().st_size
    saved = compact_names(q)
    assert saved > 0 and q.stat().st_size == before - saved
    out = ort.InferenceSession(str(q)).run(None, {"input": x})[0]
    np.testing.assert_array_equal(out, ref)
    import onnx

    m = onnx.load(str(q))
    assert [i.name for i in m.graph.input] == ["input"] and [o.name for o in m.graph.output] == ["output"]
    assert all(len(n.name) <= 4 for n in m.graph.node)
    assert any(p.key == "agd.int8_config" for p in m.metadata_props)
