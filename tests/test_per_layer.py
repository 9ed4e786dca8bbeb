"""`agd bench DIR --per-layer`: per-node profiles from the runtimes' own profilers (ONNX Runtime, OpenVINO),
mapped to the derived net's blocks, with the float-fallback list; in the bench JSON, the manifest and the report.
One tiny SR export (1x3x16x16) is made and benched once for the module."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agd_deploy.space import Arch
from agd_deploy.verify import layers

KEYS = {"available", "rows", "blocks", "float_fallback", "sum_ms", "whole_ms", "sum_over_whole", "runs", "profiler",
        "float_share", "whole_min_ms", "sum_min_ms"}
ROW_KEYS = {"node", "op", "ms", "min_ms", "share", "precision", "block", "kernel"}


def small_arch(space="sr", shape=(1, 3, 16, 16)) -> Arch:
    a = Arch.extreme(space, largest=False, input_shape=list(shape))
    a.ops = ["conv3x3" if i % 5 == 0 else "skip" for i in range(len(a.ops))]
    return a


def _has_openvino() -> bool:
    try:
        import openvino  # noqa: F401
        import nncf  # noqa: F401
    except ImportError:
        return False
    return True


FORMATS = "onnx,onnx-int8" + (",openvino-int8" if _has_openvino() else "")


@pytest.fixture(scope="module")
def benched(tmp_path_factory):
    """(export folder, arch, `agd bench --per-layer --json` result)."""
    root = tmp_path_factory.mktemp("pl")
    arch = small_arch()
    (root / "arch.json").write_text(arch.to_json())
    out = root / "run" / "export"
    code, _, err = _cli(["export", str(root / "arch.json"), "--formats", FORMATS, "--rounds", "2", "--out", str(out),
                         "--json"])
    assert code == 0, err
    code, stdout, err = _cli(["bench", str(out), "--per-layer", "--rounds", "2", "--json"])
    assert code == 0, err
    return out, arch, json.loads(stdout)


def _cli(args):
    """Run the CLI in-process with stdout/stderr captured -> (code, stdout, stderr)."""
    import contextlib
    import io

    from agd_deploy.cli import main

    o, e = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
        try:
            main(args)
        except SystemExit as ex:
            code = ex.code or 0
    return code, o.getvalue(), e.getvalue()


def _entry(result, fmt):
    return next(a for a in result["artifacts"] if a["format"] == fmt)


@pytest.mark.parametrize("fmt", ["onnx", "onnx-int8"])
def test_onnx_rows_sum_and_keys(benched, fmt):
    _, arch, result = benched
    pl = _entry(result, fmt)["per_layer"]
    assert KEYS <= set(pl), KEYS - set(pl)
    assert pl["available"] and pl["rows"], pl
    assert all(ROW_KEYS <= set(r) for r in pl["rows"])
    assert pl["sum_ms"] > 0 and pl["whole_ms"] > 0
    assert abs(sum(r["ms"] for r in pl["rows"]) - pl["sum_ms"]) < 1e-3 * len(pl["rows"]) + 1e-6
    assert abs(sum(r["share"] for r in pl["rows"]) - 1) < 0.01
    # nodes run one after another inside each timed run: their sum cannot exceed those runs end to end
    assert pl["sum_ms"] <= pl["whole_ms"] * 1.02
    assert pl["sum_over_whole"] == pytest.approx(pl["sum_ms"] / pl["whole_ms"], rel=1e-3)
    assert pl["bench_p50_ms"] == _entry(result, fmt)["p50_ms"]


@pytest.mark.parametrize("fmt", FORMATS.split(","))
def test_every_row_maps_to_a_block(benched, fmt):
    _, arch, result = benched
    pl = _entry(result, fmt)["per_layer"]
    labels = {label for label, _ in layers.arch_blocks(arch)}
    blocks = {r["block"] for r in pl["rows"]}
    assert blocks <= labels | {layers.IO, layers.LAYOUT}, blocks - labels
    # the heavy fixed blocks of the SR frame are where the time is, and they must be found
    assert {"stem", "up1", "up2", "hr", "last"} <= blocks
    by_block = {b["block"]: b for b in pl["blocks"]}
    assert abs(sum(b["measured_ms"] for b in pl["blocks"]) - pl["sum_ms"]) < 1e-3 * len(pl["blocks"]) + 1e-6
    assert by_block["stem"]["lut_key"].startswith("stem:conv3x3:")


def _executed_float_nodes(path: Path) -> set[str]:
    """Nodes of ORT's optimized graph (names = profile rows) that run in float: fed by a DequantizeLinear or by
    the float graph input, and not a quantized kernel (QLinear*, *Integer) or a Q/DQ itself."""
    import onnx
    import onnxruntime as ort

    opt = path.parent / "opt.onnx"
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.optimized_model_filepath = str(opt)
    so.log_severity_level = 3
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    g = onnx.load(str(opt)).graph
    opt.unlink()
    producer = {o: n for n in g.node for o in n.output}
    inputs = {i.name for i in g.input}
    out = set()
    for n in g.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") or n.op_type.startswith("QLinear") \
                or n.op_type.endswith("Integer") or not n.input:
            continue
        src = producer.get(n.input[0])
        if n.input[0] in inputs or (src is not None and src.op_type == "DequantizeLinear"):
            out.add(n.name)
    return out


def test_int8_rows_and_float_fallback_match_the_graph(benched):
    out, _, result = benched
    e = _entry(result, "onnx-int8")
    pl = e["per_layer"]
    precisions = {r["precision"] for r in pl["rows"]}
    assert "int8" in precisions
    int8_ms = sum(r["ms"] for r in pl["rows"] if r["precision"] == "int8")
    assert int8_ms > 0.5 * pl["sum_ms"], "most of an int8 SR net's time is in int8 kernels"
    expected = _executed_float_nodes(out / e["file"])
    assert expected, "the SR frame's bilinear skip stays float in ORT"
    fallback = {f["node"] for f in pl["float_fallback"]}
    assert expected <= fallback, expected - fallback
    assert all(not f["op"].startswith("QLinear") for f in pl["float_fallback"])
    assert 0 < pl["float_share"] < 1
    # fp32 rows are all float and an fp32 artifact has no fallback list
    fp = _entry(result, "onnx")["per_layer"]
    assert {r["precision"] for r in fp["rows"]} == {"float"} and fp["float_fallback"] == []


@pytest.mark.skipif(not _has_openvino(), reason="openvino/nncf not installed")
def test_openvino_int8_profile(benched):
    _, _, result = benched
    pl = _entry(result, "openvino-int8")["per_layer"]
    assert pl["available"] and pl["profiler"].startswith("openvino")
    assert any(r["precision"] == "int8" for r in pl["rows"])
    assert all(r["kernel"] for r in pl["rows"])  # OpenVINO's exec type, e.g. jit_avx2_I8
    assert pl["sum_ms"] > 0 and pl["whole_ms"] > 0
    assert all(f["op"] for f in pl["float_fallback"])
    assert {f["node"] for f in pl["float_fallback"]} <= {r["node"] for r in pl["rows"] if r["precision"] == "float"}


def test_manifest_and_report_carry_the_section(benched):
    out, _, result = benched
    m = json.loads((out / "manifest.json").read_text())
    on_disk = {a["format"]: a.get("per_layer") for a in m["artifacts"]}
    assert all(on_disk[f] and on_disk[f]["available"] for f in FORMATS.split(","))
    assert on_disk["onnx-int8"]["sum_ms"] == _entry(result, "onnx-int8")["per_layer"]["sum_ms"]
    from agd_deploy.report.html import load_run, render

    html = render(load_run(out.parent))
    assert 'id="per-layer"' in html and "float fallback" in html
    assert "hr" in html and "measured ms" in html
    # without a per-layer section in the manifest the report has none
    plain = out.parent.parent / "plain"
    (plain / "export").mkdir(parents=True)
    for a in m["artifacts"]:
        a.pop("per_layer", None)
    (plain / "export" / "manifest.json").write_text(json.dumps(m))
    assert 'id="per-layer"' not in render(load_run(plain))


def test_human_table_and_tflite_note(benched):
    out, _, _ = benched
    code, stdout, err = _cli(["bench", str(out), "--per-layer", "--rounds", "1"])
    assert code == 0, err
    assert "onnx-int8: per-layer" in stdout and "sum/whole" in stdout and "float fallback" in stdout
    pl = layers.profile_artifact("tflite-int8", out / "none.tflite", np.zeros((1, 3, 16, 16), np.float32))
    assert pl == {"available": False, "reason": layers.TFLITE_NOTE}
    assert "benchmark_model --enable_op_profiling" in layers.TFLITE_NOTE


def test_block_names_of_module_paths():
    assert layers.block_of("cells.0.3.proj") == "cells.0.3"
    assert layers.block_of("cellsum_2") == "cellsum.2" and layers.block_of("cellsum") == "cellsum.0"
    assert layers.block_of("positions.4.conv.0", {"positions.4"}) == "positions.4"
    assert layers.block_of("up2.conv", {"stem"}) is None
    labels = [label for label, _ in layers.arch_blocks(small_arch())]
    assert labels[:2] == ["stem", "cells.0.0"] and labels.count("cellsum.4") == 1 and labels[-1] == "skip"
    st = [label for label, _ in layers.arch_blocks(small_arch("st", (1, 3, 32, 32)))]
    assert st[:4] == ["stem", "down1", "down2", "positions.0"] and st[-2:] == ["last", "skip"]
    # the labels are real module paths of the derived nets (cellsum is one module, called once per cell)
    from agd_deploy.space import build

    for a in (small_arch(), small_arch("st", (1, 3, 32, 32))):
        mods = {n for n, _ in build(a).named_modules()}
        for label, _ in layers.arch_blocks(a):
            assert (label.split(".")[0] if label.startswith("cellsum") else label) in mods, label


def test_int8_names_recovered_by_structure(benched):
    """The int8 file's compacted names (n0, n1, ...) are matched to the fp32 graph's scoped names."""
    import onnx

    out, arch, result = benched
    f32 = out / _entry(result, "onnx")["file"]
    i8 = out / _entry(result, "onnx-int8")["file"]
    assert all(not n.name.startswith("/") for n in onnx.load(str(i8)).graph.node)
    labels = {label for label, _ in layers.arch_blocks(arch)}
    g = layers.OnnxGraph(i8, labels, f32)
    convs = [n for n in g.model.graph.node if n.op_type == "Conv"]
    ref = layers.OnnxGraph(f32, labels)
    assert sorted(g.block[n.name] for n in convs) == sorted(ref.block[n.name] for n in ref.model.graph.node
                                                            if n.op_type == "Conv")
    assert layers.OTHER not in set(g.block.values())


@pytest.mark.slow
def test_st_frame_fallbacks_and_blocks(tmp_path):
    """The ST frame maps to its blocks too, and (frame version 3) leaves nothing of its own in float in ORT's
    int8: no InstanceNorm, reflection Pad, ConvTranspose or Tanh any more."""
    arch = small_arch("st", (1, 3, 32, 32))
    (tmp_path / "arch.json").write_text(arch.to_json())
    out = tmp_path / "export"
    code, _, err = _cli(["export", str(tmp_path / "arch.json"), "--formats", "onnx,onnx-int8", "--rounds", "2",
                         "--out", str(out), "--json"])
    assert code == 0, err
    code, stdout, err = _cli(["bench", str(out), "--per-layer", "--rounds", "2", "--json"])
    assert code == 0, err
    result = json.loads(stdout)
    labels = {label for label, _ in layers.arch_blocks(arch)}
    for fmt in ("onnx", "onnx-int8"):
        pl = _entry(result, fmt)["per_layer"]
        assert {r["block"] for r in pl["rows"]} <= labels | {layers.IO, layers.LAYOUT}
    e = _entry(result, "onnx-int8")
    fallback = {f["node"] for f in e["per_layer"]["float_fallback"]}
    expected = _executed_float_nodes(out / e["file"])
    assert expected <= fallback, expected - fallback
    ops = {f["op"] for f in e["per_layer"]["float_fallback"]}
    # those ran in float in frame version 2 (ConvTranspose: not quantized by ORT, onnxruntime issue 8988)
    assert not ops & {"InstanceNormalization", "ConvTranspose", "Pad", "Tanh"}, ops


def test_a_shared_bias_behind_an_identity_still_matches(tmp_path):
    """The TorchScript exporter feeds a bias shared by two convs to the second one through an Identity; the int8
    graph has no Identity (each conv gets its own bias before quantizing). Matching looks through it: before,
    the ST frame's int8 convs from the first shared bias on were all left unmatched, as "(other)"."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def graph(shared: bool):
        w = [numpy_helper.from_array(np.ones((4, 4, 3, 3), np.float32), f"w{i}") for i in range(2)]
        b = [numpy_helper.from_array(np.zeros(4, np.float32), "b0")]
        nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["y0"], name="/a/Conv", pads=[1, 1, 1, 1])]
        if shared:
            nodes.append(helper.make_node("Identity", ["b0"], ["b1"], name="Identity_1"))
        else:
            b.append(numpy_helper.from_array(np.zeros(4, np.float32), "b1"))
        nodes.append(helper.make_node("Conv", ["y0", "w1", "b1"], ["y"], name="/b/Conv" if shared else "n2",
                                      pads=[1, 1, 1, 1]))
        io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, 8, 8]) for n in ("x", "y")]
        p = tmp_path / ("fp32.onnx" if shared else "other.onnx")
        onnx.save(helper.make_model(helper.make_graph(nodes, "g", [io[0]], [io[1]], w + b)), str(p))
        return layers.OnnxGraph(p, None)

    ref, other = graph(True), graph(False)
    assert layers.match_by_structure(other, ref)["n2"] == "/b/Conv"
