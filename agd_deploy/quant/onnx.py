"""torch -> ONNX (fp32, one file) and ONNX -> int8 QDQ with onnxruntime's static quantizer.

The int8 path used by both the `ort-cpu-int8` latency tables and the exported `onnx-int8` artifact, so a LUT
predicts the file that ships:

    export_onnx(module, example, "net.onnx")                         # fp32, input `input`, output `output`
    quantize_qdq("net.onnx", "net.int8.onnx", calib, OrtInt8Config())  # u8 activations, s8 per-channel weights

Quantized boundaries for LUT blocks. A whole int8 net quantizes once at its input and dequantizes once at its
output; inside it, blocks pass uint8 tensors to each other. A block timed with float in/out would pay a
QuantizeLinear + DequantizeLinear (and ORT's layout changes) that the net does not, so

    strip_boundary_qdq("block.int8.onnx", "block.u8io.onnx")

removes the leading QuantizeLinear(s) fed by `input` and the trailing DequantizeLinear that makes `output`: the
model then takes and returns uint8 (int8 with symmetric activations) tensors, and their (scale, zero_point) are
stored in the model's metadata (`agd.input_scale`, `agd.input_zero_point`, `agd.output_scale`, ...). Time it with
uint8 input (`Session.example_input()` does that).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import AgdError
from ..utils import atomic_path

OPSET = 17
CALIBRATIONS = ("minmax", "percentile", "entropy")


def _set_metadata(model, metadata: dict[str, Any] | None) -> None:
    if not metadata:
        return
    existing = {p.key: p for p in model.metadata_props}
    for k, v in metadata.items():
        text = v if isinstance(v, str) else json.dumps(v)
        if k in existing:
            existing[k].value = text
        else:
            p = model.metadata_props.add()
            p.key, p.value = k, text


def export_onnx(module, example, out: str | Path, opset: int = OPSET, metadata: dict[str, Any] | None = None) -> Path:
    """Export `module` (eval mode) at the fixed shape of `example` to ONE .onnx file: input `input`, output
    `output`, opset >= 17. Uses the TorchScript exporter (`dynamo=False`), deprecated since torch 2.9: the dynamo
    exporter gives bit-equal outputs and equal int8 PSNR on these nets but exports several times slower (the
    profiler exports every block) and names nodes `node_conv2d_3` instead of the module paths (`/cells.0/...`)
    that keep_fp32, the sensitivity sweep and per-layer profiles map back to (benchmarks/onnx_exporters.py).
    Its DeprecationWarning is left visible on purpose. `metadata` goes into metadata_props (strings; other values
    as JSON)."""
    import onnx
    import torch

    out = Path(out)
    module = module.eval()
    with atomic_path(out, suffix=".onnx") as tmp, torch.no_grad():
        torch.onnx.export(module, (example,), str(tmp), input_names=["input"], output_names=["output"],
                          opset_version=max(opset, 17), dynamo=False, do_constant_folding=True)
        model = onnx.load(str(tmp))
        _set_metadata(model, metadata)
        onnx.save(model, str(tmp))
    return out


@dataclass
class OrtInt8Config:
    """How `quantize_qdq` quantizes.

    activation: "uint8" (x86 default, fastest with ORT), "int8", or "uint16" / "int16" (16-bit activations:
    ORT runs those convs as DequantizeLinear + float Conv, so accurate but no faster than fp32).
    weight: "int8" (per-channel by default) or "uint8" (U8U8: on x86 without VNNI, ORT's u8u8 GEMM widens to
    int16 x int16 -> int32 (vpmaddwd) and cannot saturate, so full 8-bit weights are exact where u8s8 needs
    reduce_range). calibration: "minmax" | "percentile" | "entropy". keep_fp32: ONNX node names left in float.
    symmetric_activations: s8 activations with zero point 0 (what TensorRT wants; sets activation to int8).
    op_types: the op types quantized (None: all; see the field). weight_symmetric: None = ORT's default
    (symmetric for signed weights, asymmetric for uint8); True gives uint8 weights one zero point (128) per
    tensor, which ORT's QLinearConv needs for per-channel uint8 weights.

    `to_dict()` is every field; `cache_key()` adds CACHE_VERSION, bumped when a field's meaning changes, so
    cached artifacts made under the old meaning are not reused. Validated once, here."""

    activation: str = "uint8"
    weight: str = "int8"
    per_channel: bool = True
    calibration: str = "minmax"
    percentile: float = 99.999
    keep_fp32: list[str] = field(default_factory=list)
    symmetric_activations: bool = False
    # The plain default is the safe lowering for x86 without int8 dot products (7-bit weights); what a device
    # gets is chosen by `for_device`. TensorRT (symmetric s8 activations) takes full-range weights.
    reduce_range: bool = True
    weight_symmetric: bool | None = None
    # ONNX op types to quantize (None: all ORT can). E.g. leaving out Add and Mul keeps a residual trunk
    # (x + 0.2 * block(x)) in float: it is then not re-quantized at every block, only where a Conv reads it.
    op_types: list[str] | None = None

    CACHE_VERSION = 3  # a class constant, not a field (3: shared weights/biases unshared before quantizing)

    def __post_init__(self) -> None:
        if self.symmetric_activations:
            self.reduce_range = False
        types = ("uint8", "int8", "uint16", "int16")
        if self.activation not in types or self.weight not in ("int8", "uint8"):
            raise AgdError(f"int8 config: weights must be int8 or uint8 and activations one of {', '.join(types)} "
                           f"(got {self.weight!r}, {self.activation!r})")
        if self.calibration not in CALIBRATIONS:
            raise AgdError(f"calibration must be one of {', '.join(CALIBRATIONS)}, got {self.calibration!r}")

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def cache_key(self) -> dict[str, Any]:
        return {"version": self.CACHE_VERSION, **self.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "OrtInt8Config":
        """The config a table or manifest recorded (`to_dict`); unknown keys are refused."""
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise AgdError(f"int8 config: unknown field(s) {', '.join(sorted(unknown))}")
        return cls(**d)

    @classmethod
    def for_device(cls, identity, without_dot: str = "u8s8", **fields: Any) -> "OrtInt8Config":
        """The u8s8 lowering chosen from the ISA of the device that will run the file (`device.DeviceIdentity`).

        Full 8-bit s8 weights where int8 dot-product instructions exist (x86 VNNI / AMX, Arm dotprod / i8mm:
        products are summed in int32, nothing saturates). On x86 without them, ORT's u8s8 kernel sums pairs of
        u8 x s8 products in int16 (vpmaddubsw) and saturates, so either 7-bit weights (`without_dot="u8s8"`,
        ONNX Runtime's documented remedy: reduce_range) or U8U8 (`"u8u8"`: full 8-bit uint8 weights, a kernel
        that widens to int16 first and cannot saturate, slower on VNNI machines). An unknown device (None) is
        treated as x86 without dot products: accurate everywhere. `fields` override (an export profile's)."""
        x86 = identity is None or identity.arch in ("x86_64", "amd64", "i386", "i686", "x86")
        dot = identity is not None and identity.int8_dot
        if dot or not x86:
            base: dict[str, Any] = {"reduce_range": False}
        elif without_dot == "u8u8":
            base = {"weight": "uint8", "weight_symmetric": True, "reduce_range": False}
        elif without_dot == "u8s8":
            base = {"reduce_range": True}
        else:
            raise AgdError(f"int8 config: without_dot must be u8s8 or u8u8, got {without_dot!r}")
        base.update(fields)
        return cls(**base)


@contextlib.contextmanager
def _quiet():
    """Silence ORT's quantizer chatter for this call only: its "consider pre-processing" notes go to the root
    logger (dropped there by log.quiet, root level untouched), and the percentile and entropy calibrators'
    print()s would otherwise land in `agd export --json`'s stdout. ORT's C++ logger is left alone (calibration
    sessions print nothing at its default severity)."""
    import io

    from ..log import quiet

    with quiet("", "onnxruntime"), contextlib.redirect_stdout(io.StringIO()):
        yield


class _ArrayReader:
    """onnxruntime CalibrationDataReader over a list of NCHW float arrays."""

    def __init__(self, arrays: Sequence[np.ndarray], input_name: str = "input"):
        self._it = iter([{input_name: np.ascontiguousarray(a, dtype=np.float32)} for a in arrays])

    def get_next(self):
        return next(self._it, None)

    def rewind(self):  # pragma: no cover - newer ORT may call it; one pass is all we need
        pass


def _qtype(name: str):
    from onnxruntime.quantization import QuantType

    try:
        return {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8, "uint16": QuantType.QUInt16,
                "int16": QuantType.QInt16}[name]
    except KeyError:
        raise AgdError(f"int8 config: type must be 'uint8', 'int8', 'uint16' or 'int16', got {name!r}") from None


def quantize_qdq(fp32_onnx: str | Path, out: str | Path, calib_arrays: Sequence[np.ndarray],
                 config: OrtInt8Config | None = None) -> Path:
    """Static int8 QDQ quantization of an fp32 ONNX model, calibrated on `calib_arrays` (each a full input,
    NCHW float32 of the model's shape). Metadata of the fp32 model is kept, plus `agd.int8_config`."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

    cfg = config or OrtInt8Config()
    if not calib_arrays:
        raise AgdError("int8 quantization needs at least one calibration input")
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    act = "int8" if cfg.symmetric_activations else cfg.activation
    # ForceQuantizeNoInputCheck: data-movement ops (Resize, Pad, ...) fed by the graph input get quantized
    # inputs too, as they do inside a whole net, where their producer is quantized.
    extra: dict[str, Any] = {"ActivationSymmetric": cfg.symmetric_activations, "ForceQuantizeNoInputCheck": True}
    if cfg.calibration == "percentile":
        extra["CalibPercentile"] = cfg.percentile
    if cfg.weight_symmetric is not None:
        extra["WeightSymmetric"] = cfg.weight_symmetric
    out = Path(out)
    fp32_model = onnx.load(str(fp32_onnx))
    with atomic_path(out, suffix=".onnx") as tmp, _quiet():
        src = str(fp32_onnx)
        if unshare_weights(fp32_model):
            src = str(tmp) + ".unshared.onnx"
            onnx.save(fp32_model, src)
        try:
            quantize_static(src, str(tmp), _ArrayReader(calib_arrays), quant_format=QuantFormat.QDQ,
                            activation_type=_qtype(act), weight_type=_qtype(cfg.weight), per_channel=cfg.per_channel,
                            reduce_range=cfg.reduce_range, calibrate_method=methods[cfg.calibration],
                            nodes_to_exclude=list(cfg.keep_fp32), extra_options=extra,
                            op_types_to_quantize=list(cfg.op_types) if cfg.op_types is not None else None)
        finally:
            if src != str(fp32_onnx):
                Path(src).unlink(missing_ok=True)
        model = onnx.load(str(tmp))
        meta = {p.key: p.value for p in fp32_model.metadata_props}
        meta["agd.int8_config"] = cfg.to_dict()
        _set_metadata(model, meta)
        onnx.save(model, str(tmp))
    return out


WEIGHT_INPUTS = {"Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (1, 2), "MatMul": (1,)}


def unshare_weights(model) -> int:
    """Give every Conv/ConvTranspose/Gemm/MatMul its own weight and bias initializers, in place; returns how
    many copies were made. Why: the TorchScript exporter deduplicates equal initializers (one tensor, the
    others `Identity` nodes of it), so the zero biases of a freshly initialised net (or any equal tensors) end up
    shared by several convs. A bias is quantized with its conv's input scale x weight scale, so a shared one
    cannot be, and ONNX Runtime then runs each of those convs as DequantizeLinear + float Conv (docs/
    ARCHITECTURE.md, "Known pitfalls": whole int8 nets up to 1.3x slower than their blocks)."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    copies = 0

    def copy_of(src: str, name: str) -> str:
        nonlocal copies
        while name in inits:
            name += "_"
        dup = g.initializer.add()
        dup.CopyFrom(inits[src])
        dup.name = name
        inits[name] = dup
        copies += 1
        return name

    # Identity(initializer) -> an initializer of its own under the Identity's output name
    for node in [n for n in g.node if n.op_type == "Identity" and n.input[0] in inits]:
        out = node.output[0]
        if out in {o.name for o in g.output}:
            continue
        g.node.remove(node)
        copy_of(node.input[0], out)
    seen: set[str] = set()
    for node in g.node:
        for k in WEIGHT_INPUTS.get(node.op_type, ()):
            if k < len(node.input) and node.input[k] in inits:
                if node.input[k] in seen:
                    node.input[k] = copy_of(node.input[k], f"{node.input[k]}__{node.name or copies}")
                seen.add(node.input[k])
    return copies


def _init_value(model, name: str) -> np.ndarray | None:
    from onnx import numpy_helper

    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in model.graph.node:  # scale/zero-point folded into Constant nodes
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t)
    return None


def strip_boundary_qdq(qdq_onnx: str | Path, out: str | Path) -> Path:
    """Make a QDQ model take and return quantized tensors (see the module docstring).

    The graph input `input` must feed only QuantizeLinear nodes with the same scale and zero point (AgdError
    otherwise). The output becomes quantized when a DequantizeLinear makes it, else it stays float (metadata then
    has no `agd.output_scale`)."""
    import onnx
    from onnx import TensorProto

    model = onnx.load(str(qdq_onnx))
    g = model.graph
    in_name, out_name = g.input[0].name, g.output[0].name
    elem = {np.dtype(np.uint8): TensorProto.UINT8, np.dtype(np.int8): TensorProto.INT8}
    if all(n.op_type == "Identity" for n in g.node):  # e.g. `skip` with equal widths: nothing to quantize
        g.input[0].type.tensor_type.elem_type = g.output[0].type.tensor_type.elem_type = TensorProto.UINT8
        _set_metadata(model, {"agd.boundary": "quantized", "agd.input_scale": 1 / 255, "agd.input_zero_point": 0,
                              "agd.output_scale": 1 / 255, "agd.output_zero_point": 0})
        return _save(model, out)
    consumers = [n for n in g.node if in_name in n.input]
    if not consumers or any(n.op_type != "QuantizeLinear" or n.input[0] != in_name for n in consumers):
        raise AgdError(f"{qdq_onnx}: input is not quantized first; cannot give this block uint8 boundaries")
    qparams = [(float(_init_value(model, n.input[1])), int(_init_value(model, n.input[2]))) for n in consumers]
    if len(set(qparams)) != 1:
        raise AgdError(f"{qdq_onnx}: input quantized with different parameters by different nodes")
    in_zp_type = _init_value(model, consumers[0].input[2]).dtype
    # input: the Q nodes go; what they fed now reads the graph input directly
    q_outs = {n.output[0] for n in consumers}
    for n in consumers:
        g.node.remove(n)
    for n in g.node:
        for i, name in enumerate(n.input):
            if name in q_outs:
                n.input[i] = in_name
    g.input[0].type.tensor_type.elem_type = elem[np.dtype(in_zp_type)]
    meta: dict[str, Any] = {"agd.boundary": "quantized", "agd.input_scale": qparams[0][0],
                            "agd.input_zero_point": qparams[0][1]}
    # output: the DQ node goes and the graph output is the quantized tensor (renamed to `output`). A block
    # whose last op ORT keeps in float (e.g. Tanh of the ST frame's last conv) keeps a float output: the whole
    # net's output is float there too.
    producer = [n for n in g.node if out_name in n.output]
    if len(producer) == 1 and producer[0].op_type == "DequantizeLinear":
        dq = producer[0]
        out_scale, out_zp_arr = _init_value(model, dq.input[1]), _init_value(model, dq.input[2])
        out_q_name = dq.input[0]
        g.node.remove(dq)
        for n in g.node:
            for i, name in enumerate(n.output):
                if name == out_q_name:
                    n.output[i] = out_name
            for i, name in enumerate(n.input):
                if name == out_q_name:
                    n.input[i] = out_name
        g.output[0].type.tensor_type.elem_type = elem[np.dtype(out_zp_arr.dtype)]
        meta.update({"agd.output_scale": float(out_scale), "agd.output_zero_point": int(out_zp_arr)})
    _set_metadata(model, meta)
    return _save(model, out)


def _save(model, out: str | Path) -> Path:
    import onnx

    onnx.checker.check_model(model)
    out = Path(out)
    with atomic_path(out, suffix=".onnx") as tmp:
        onnx.save(model, str(tmp))
    return out


def read_metadata(onnx_path: str | Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}


# -- lowering handlers (runtimes.targets.LOWERINGS) -------------------------------------------------------------

def lower_fp32(target, module, example, out: Path, *, metadata=None, **_: Any) -> Path:
    """`onnx-fp32`: one fp32 .onnx file."""
    return export_onnx(module, example, out, metadata=metadata)


def lower_int8(target, module, example, out: Path, *, calib, quantized_io=False, metadata=None,
               int8_config: OrtInt8Config | None = None, **_: Any) -> Path:
    """`onnx-int8`: fp32 export, then QDQ with `int8_config` (default: TensorRT's symmetric scheme for a
    TensorRT target, else the u8s8 lowering chosen for this machine's ISA); `quantized_io` strips the boundary
    Q/DQ of a LUT block."""
    import tempfile

    from ..utils import move_file

    if int8_config is None and target.runtime == "tensorrt":
        int8_config = OrtInt8Config(symmetric_activations=True)
    if int8_config is None:  # the device a CPU artifact is lowered on is the one it is profiled and verified on
        from ..device import identify

        int8_config = OrtInt8Config.for_device(identify())
    with tempfile.TemporaryDirectory(prefix="agd-lower-") as tmp:
        fp32 = export_onnx(module, example, Path(tmp) / "fp32.onnx", metadata=metadata)
        qdq = quantize_qdq(fp32, Path(tmp) / "qdq.onnx", calib, int8_config)
        if quantized_io:
            return strip_boundary_qdq(qdq, out)
        return move_file(qdq, out)
