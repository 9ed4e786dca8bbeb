"""A user's own ONNX generator as an export source (`agd export MODEL.onnx`, `agd bench MODEL.onnx`).

ONNX is the format most users already have, and the int8 lowerings of three formats start from an ONNX graph
anyway (onnx-int8 and tensorrt-int8: ORT's static QDQ quantizer; openvino-int8: `ov.convert_model` + NNCF), so
those formats skip the torch export step and quantize the user's file, which is the fp32 partner every artifact
is verified against (on ORT). Formats whose converters read torch (tflite-*, coreml-*) are refused in one line.

What the model is comes from the graph itself, never guessed silently:
- input shape: the graph's fixed NCHW input, or `--input` where H/W are dynamic (a dynamic batch is taken as 1);
- scale: output H / input H of one probe run (must be an integer, the same for W, output 3 channels);
- value range: `--value-range LO,HI`, else the file's `value_range` metadata (agd's own exports carry it), else 0..1.

`inspect_onnx` reads and probes the file; `prepare_onnx` writes the normalised fp32 copy that the ONNX formats
start from: input `input`, output `output` (the runtime contract), the fixed input shape, opset >= 13 (QDQ
per-channel), agd's metadata. The renames go through onnx_ir, whose values carry their uses (subgraphs too), so
no hand-kept name map can miss one."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AgdError, AgdUsageError
from ..utils import atomic_path, format_shape
from .base import ModelInfo

MIN_OPSET = 13  # QDQ with per-channel weights (axis) needs opset 13


@dataclass
class OnnxGraph:
    """What `inspect_onnx` found: the file, its I/O names, the shape it will be exported at, the probe's output."""

    path: Path
    input_name: str
    output_name: str
    graph_input: list[int | str]  # the graph's own input dims (str: dynamic)
    input_shape: list[int]
    output_shape: list[int]
    opset: int
    metadata: dict[str, str] = field(default_factory=dict)


def _dims(value_info) -> list[int | str]:
    dims: list[int | str] = []
    for d in value_info.type.tensor_type.shape.dim:
        dims.append(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or "?"))
    return dims


def _fmt(dims) -> str:
    return "x".join(str(d) for d in dims)


def _choose_shape(name: str, dims: list[int | str], input_shape: list[int] | None) -> list[int]:
    """The fixed NCHW shape to export at: the graph's, or `--input` where its H/W (or C) are dynamic."""
    if len(dims) != 4:
        raise AgdError(f"{name} is not an image generator: its input has shape {_fmt(dims) or 'scalar'} "
                       "(agd export needs one NCHW RGB image input)")
    if input_shape is not None:
        shape = [int(v) for v in input_shape]
        if len(shape) != 4 or shape[1] != 3:
            raise AgdUsageError(f"--input {format_shape(shape)}: models take Nx3xHxW RGB input")
        clash = [i for i, d in enumerate(dims) if isinstance(d, int) and d != shape[i]]
        if clash:
            raise AgdUsageError(f"--input {format_shape(shape)} does not fit {name}, whose input is fixed at "
                                f"{_fmt(dims)}; drop --input or give a matching one")
        return shape
    if isinstance(dims[1], int) and dims[1] != 3:
        raise AgdError(f"{name} is not an RGB image generator: its input has {dims[1]} channels (agd export "
                       "needs Nx3xHxW)")
    dynamic = [("channels", "height", "width")[i - 1] for i in (1, 2, 3) if not isinstance(dims[i], int)]
    if dynamic:
        raise AgdUsageError(f"{name} has a dynamic input shape ({_fmt(dims)}: {', '.join(dynamic)}); give the "
                            "shape to export at with --input NxCxHxW, e.g. --input 1x3x64x64")
    return [1 if not isinstance(dims[0], int) else dims[0], 3, int(dims[2]), int(dims[3])]


def parse_value_range(text: Any) -> tuple[float, float]:
    """'0,1' / '-1,1' / '[0, 255]' / (lo, hi) -> (lo, hi) with lo < hi; AgdUsageError otherwise."""
    try:
        if isinstance(text, (list, tuple)):
            lo, hi = (float(v) for v in text)
        else:
            lo, hi = (float(v) for v in str(text).strip("[]() ").replace("..", ",").split(","))
    except (TypeError, ValueError):
        raise AgdUsageError(f"--value-range {text!r}: give LO,HI, e.g. 0,1 or -1,1") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise AgdUsageError(f"--value-range {text!r}: LO must be below HI and both finite")
    return lo, hi


def inspect_onnx(path: str | Path, input_shape: list[int] | None = None, value_range=None,
                 threads: int = 1) -> tuple[OnnxGraph, ModelInfo]:
    """Read MODEL.onnx, choose its export shape, probe it once (scale), and say what it is as a ModelInfo."""
    import onnx

    p = Path(path)
    name = p.name
    if not p.is_file():
        raise AgdError(f"ONNX model {p} not found")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:
        raise AgdError(f"cannot read ONNX model {p}: {(str(e).splitlines() or [type(e).__name__])[0][:200]}") from None
    g = model.graph
    inits = {i.name for i in g.initializer}
    inputs = [v for v in g.input if v.name not in inits]
    if len(inputs) != 1 or len(g.output) != 1:
        raise AgdError(f"{name} is not an image generator: it has {len(inputs)} input(s) and {len(g.output)} "
                       "output(s) (agd export needs one NCHW RGB image in and one out)")
    inp, out = inputs[0], g.output[0]
    if inp.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise AgdError(f"{name}: input {inp.name!r} is not float32 "
                       f"({onnx.TensorProto.DataType.Name(inp.type.tensor_type.elem_type)}); agd export needs an fp32 "
                       "generator")
    dims = _dims(inp)
    shape = _choose_shape(name, dims, input_shape)
    meta = {m.key: m.value for m in model.metadata_props}
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    y = _probe(p, inp.name, shape, threads)
    if y.ndim != 4 or y.shape[1] != 3 or y.shape[0] != shape[0]:
        raise AgdError(f"{name} is not an image generator: for input {format_shape(shape)} its output "
                       f"{out.name!r} has shape {format_shape(list(y.shape))} (agd export needs an Nx3xH'xW' image)")
    h, w = shape[2:]
    scale = y.shape[2] // h
    if scale < 1 or y.shape[2] != scale * h or y.shape[3] != scale * w:
        raise AgdError(f"{name} is not a generator agd can verify: output {format_shape(list(y.shape))} is not an "
                       f"integer multiple (the same for H and W) of the input {format_shape(shape)}")
    if value_range is not None:
        vr = parse_value_range(value_range)
    elif "value_range" in meta:
        try:
            vr = parse_value_range(json.loads(meta["value_range"]))
        except (ValueError, AgdError):
            vr = (0.0, 1.0)
    else:
        vr = (0.0, 1.0)
    graph = OnnxGraph(p.resolve(), inp.name, out.name, dims, shape, list(y.shape), opset, meta)
    info = ModelInfo(name=_stem(p), space="sr" if scale > 1 else "st", scale=scale, value_range=vr,
                     input_shape=shape)
    return graph, info


def _stem(p: Path) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "-", p.name[: -len(".onnx")] if p.name.lower().endswith(".onnx")
                  else p.stem).strip("-.") or "model"


def _probe(p: Path, input_name: str, shape: list[int], threads: int) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = max(1, threads)
    try:
        sess = ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
        return np.asarray(sess.run(None, {input_name: np.zeros(shape, np.float32)})[0])
    except Exception as e:
        text = " ".join(str(e).split())[:200]
        raise AgdError(f"onnxruntime cannot run {p.name} at {format_shape(shape)}: {text}") from None


def prepare_onnx(graph: OnnxGraph, info: ModelInfo, out: str | Path) -> Path:
    """The normalised fp32 copy of the user's file that the ONNX formats start from (see the module doc)."""
    import onnx
    import onnx_ir as ir

    out = Path(out)
    model = ir.load(str(graph.path))
    g = model.graph
    x, y = g.inputs[0], g.outputs[0]
    taken = {v.name for v in _values(g)} - {x.name, y.name}
    for v in _values(g):  # another tensor already called input/output would collide after the renames
        if v is not x and v is not y and v.name in ("input", "output"):
            v.name = _unique(f"{v.name}_", taken)
            taken.add(v.name)
    x.name, y.name = "input", "output"
    x.shape = ir.Shape(list(graph.input_shape))
    y.shape = ir.Shape(list(graph.output_shape))
    meta = dict(model.metadata_props)
    meta.update(info.metadata())
    meta["agd.source_onnx"] = graph.path.name
    model.metadata_props.clear()
    model.metadata_props.update(meta)
    proto = ir.to_proto(model)
    if graph.opset < MIN_OPSET:
        from onnx import version_converter

        proto = version_converter.convert_version(proto, 17)
    proto = onnx.shape_inference.infer_shapes(proto)
    with atomic_path(out, suffix=".onnx") as tmp:
        onnx.save(proto, str(tmp))
        onnx.checker.check_model(str(tmp))
    return out


def _values(g):
    """Every value of a graph: its inputs, initializers and node outputs (one level; subgraphs keep theirs)."""
    seen = list(g.inputs) + [v for v in g.initializers.values() if v not in g.inputs]
    for node in g:
        seen.extend(node.outputs)
    return seen


def _unique(prefix: str, taken: set[str]) -> str:
    i = 0
    while f"{prefix}{i}" in taken:
        i += 1
    return f"{prefix}{i}"


def onnx_formats() -> list[str]:
    """The export formats that start from an ONNX graph (their exporters implement `export_from_onnx`)."""
    from . import EXPORTERS

    return [n for n, c in EXPORTERS.items() if c.from_onnx]


def check_formats(fmts: list[str], model: str) -> None:
    """One line for formats whose converters need a torch model (exit 2), naming the ones that work."""
    ok = onnx_formats()
    bad = [f for f in fmts if f not in ok]
    if bad:
        raise AgdUsageError(f"{', '.join(bad)} need{'s' if len(bad) == 1 else ''} a torch model (a checkpoint, an "
                            f"arch or a teacher); from an ONNX file ({Path(model).name}) agd export makes "
                            f"{', '.join(ok)}")
