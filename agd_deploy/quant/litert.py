"""torch -> LiteRT (.tflite) with litert-torch: fp32, and static int8 through PT2E (torchao) quantization.

int8 scheme: per-channel symmetric int8 weights, per-tensor affine int8 activations (HistogramObserver),
calibrated on the given inputs. litert-torch's own PT2EQuantizer annotates conv/linear/add/pooling only; its
LeakyReLU, nearest upsampling and `x*0.2` would stay float (a DEQUANTIZE/QUANTIZE pair around each), so
`_Int8Quantizer` also annotates those (upsampling shares its input's scale, as TFLite's int8 RESIZE requires).

Boundaries. The converter folds a QuantizeLinear that directly follows the graph input into an int8 *input*,
and likewise an int8 output. So:
  * whole nets (`quantized_io=False`) keep the artifact contract, float32 NCHW in and out: when the converter
    made the input/output int8, a QUANTIZE / DEQUANTIZE op is added back by editing the flatbuffer;
  * LUT blocks (`quantized_io=True`) keep int8 in/out and are converted channels-last (NHWC) in and out
    (`litert_torch.to_channel_last_io`), since inside a whole LiteRT net every tensor is NHWC int8 and a block
    timed with NCHW or float I/O would pay TRANSPOSE / QUANTIZE ops the net does not run.
Each .tflite carries an "agd" metadata entry (JSON): layout ("NCHW" | "NHWC"), boundary ("float" |
"quantized"), plus caller metadata; `runtimes.litert` reads it to feed NCHW numpy arrays either way.

Conversion takes seconds per model (measured in the test suite and reported by `agd profile`).
Pitfall: ConvTranspose k3/s2/p1/op1 failed to convert in a trial; k4/s2/p1 converts (the ST frame uses it)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import AgdError, MissingRuntimeError
from ..utils import atomic_path

METADATA_NAME = "agd"


def _require():
    try:
        import litert_torch  # noqa: F401
    except ImportError as e:
        raise MissingRuntimeError("LiteRT conversion needs litert-torch: pip install 'agd-deploy[litert]' "
                                  f"({e.msg if hasattr(e, 'msg') else e})") from None


# loggers that litert-torch's conversion chatters on (absl's, torch.export's, jax's); "" = the root logger
_NOISY = ("", "absl", "litert_torch", "torchao", "torch._export", "torch.export", "torch._dynamo", "jax", "tensorflow")


@contextlib.contextmanager
def _quiet():
    """litert-torch prints progress lines and absl/TF logs on stdout/stderr for every conversion: hidden for this
    call only, by logger name (log.quiet), never process-wide. TF's C++ log level is set only if the user has
    not set it, and put back after."""
    from ..log import quiet

    env = {k: os.environ.get(k) for k in ("TF_CPP_MIN_LOG_LEVEL", "GLOG_minloglevel")}
    for k, v in env.items():
        if v is None:
            os.environ[k] = "3"
    try:
        with quiet(*_NOISY), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)


def _int8_quantizer():
    import torch
    from litert_torch.quantize import pt2e_quantizer as pq
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec

    aten = torch.ops.aten
    # bilinear interpolation only averages its input: its output fits the input's range (the SR skip)
    same_scale = {aten.upsample_nearest2d.vec, aten.upsample_nearest2d.default, aten.upsample_bilinear2d.vec,
                  aten.upsample_bilinear2d.default, aten.pad.default,
                  aten.reflection_pad2d.default, aten.permute.default}
    unary = {aten.leaky_relu.default, aten.leaky_relu_.default, aten.relu.default, aten.relu_.default,
             aten.tanh.default, aten.sigmoid.default}
    binary = {aten.add.Tensor, aten.add_.Tensor, aten.mul.Tensor, aten.mul_.Tensor}

    def _is_float(node, model=None) -> bool:
        val = node.meta.get("val")
        if val is None and node.op == "get_attr" and model is not None:  # lifted constants carry no meta
            val = getattr(model, str(node.target), None)
        return not isinstance(val, torch.Tensor) or val.dtype.is_floating_point

    class _Int8Quantizer(pq.PT2EQuantizer):
        def annotate(self, model):
            model = super().annotate(model)
            act = self.global_config.input_activation
            for n in model.graph.nodes:
                ann = n.meta.get("quantization_annotation")
                if ann is not None:  # e.g. `x + 0`: the base annotator would observe the int64 constant 0
                    for t in [t for t in ann.input_qspec_map if not _is_float(t, model)]:
                        del ann.input_qspec_map[t]
                if n.op != "call_function" or "quantization_annotation" in n.meta:
                    continue
                # only float tensors: integer index arithmetic (a decomposed resize) and integer constants
                # (the profiler's `x + 0`) are not quantized
                tensors = [a for a in n.args if isinstance(a, torch.fx.Node) and _is_float(a, model)]
                if not tensors or not _is_float(n, model):
                    continue
                if n.target in same_scale:
                    ann = QuantizationAnnotation(input_qspec_map={tensors[0]: act},
                                                 output_qspec=SharedQuantizationSpec((tensors[0], n)), _annotated=True)
                elif n.target in unary:
                    ann = QuantizationAnnotation(input_qspec_map={tensors[0]: act}, output_qspec=act, _annotated=True)
                elif n.target in binary:
                    ann = QuantizationAnnotation(input_qspec_map={t: act for t in tensors}, output_qspec=act,
                                                 _annotated=True)
                else:
                    continue
                n.meta["quantization_annotation"] = ann
            return model

    return _Int8Quantizer().set_global(pq.get_symmetric_quantization_config(is_per_channel=True))


def to_tflite_fp32(module, example, out: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """fp32 .tflite, float32 NCHW in/out (the converter inserts the layout transposes)."""
    _require()
    import litert_torch
    import torch

    module = module.eval()
    with _quiet(), torch.no_grad():
        edge = litert_torch.convert(module, (example,))
        buf = bytes(edge.model_content())
    return _write(buf, out, {"layout": "NCHW", "boundary": "float", "precision": "fp32", **(metadata or {})})


def to_tflite_int8(module, example, out: str | Path, calib: Sequence[np.ndarray], quantized_io: bool = False,
                   metadata: dict[str, Any] | None = None) -> Path:
    """Static int8 .tflite calibrated on `calib` (NCHW float arrays of the example's shape). See the module
    docstring for `quantized_io`."""
    _require()
    import litert_torch
    import torch
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import quantize_pt2e

    if not calib:
        raise AgdError("int8 conversion needs at least one calibration input")
    module = module.eval()
    nhwc = bool(quantized_io)
    if nhwc:
        module = litert_torch.to_channel_last_io(module, args=[0], outputs=[0])
        example = example.permute(0, 2, 3, 1).contiguous()

    def prep(a: np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
        return t.permute(0, 2, 3, 1).contiguous() if nhwc else t

    with _quiet(), torch.no_grad():
        gm = torch.export.export(module, (example,)).module()
        quantizer = _int8_quantizer()
        gm = quantize_pt2e.prepare_pt2e(gm, quantizer)
        for a in calib:
            gm(prep(a))
        gm = quantize_pt2e.convert_pt2e(gm, fold_quantize=False)
        edge = litert_torch.convert(gm, (example,), quant_config=QuantConfig(pt2e_quantizer=quantizer))
        buf = bytes(edge.model_content())
    if not quantized_io:
        buf = float_boundaries(buf)
    meta = {"layout": "NHWC" if nhwc else "NCHW", "boundary": "quantized" if quantized_io else "float",
            "precision": "int8", **(metadata or {})}
    return _write(buf, out, meta)


# ------------------------------------------------------------------------------------------- flatbuffer edits

def _schema():
    from ai_edge_litert import schema_py_generated as s

    return s


def _load(buf: bytes):
    s = _schema()
    return s.ModelT.InitFromPackedBuf(bytearray(buf), 0)


def _pack(model) -> bytes:
    import flatbuffers

    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _opcode(model, builtin: int) -> int:
    s = _schema()
    for i, oc in enumerate(model.operatorCodes):
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == builtin:
            return i
    oc = s.OperatorCodeT()
    oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = builtin, min(builtin, 127), 1
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1


def float_boundaries(buf: bytes) -> bytes:
    """Give a .tflite float32 graph inputs/outputs: a QUANTIZE op in front of an int8 input, a DEQUANTIZE op
    after an int8 output (the tensors keep their quantization parameters)."""
    s = _schema()
    model = _load(buf)
    sg = model.subgraphs[0]
    changed = False
    for kind in ("inputs", "outputs"):
        ios = list(getattr(sg, kind))
        for pos, ti in enumerate(ios):
            t = sg.tensors[ti]
            if t.type not in (s.TensorType.INT8, s.TensorType.UINT8):
                continue
            ft = s.TensorT()
            ft.shape, ft.type, ft.buffer = list(t.shape), s.TensorType.FLOAT32, 0
            ft.name = t.name + (b"_float" if isinstance(t.name, bytes) else "_float")
            if t.shapeSignature is not None:
                ft.shapeSignature = list(t.shapeSignature)
            sg.tensors.append(ft)
            fi = len(sg.tensors) - 1
            op = s.OperatorT()
            if kind == "inputs":
                op.opcodeIndex, op.inputs, op.outputs = _opcode(model, s.BuiltinOperator.QUANTIZE), [fi], [ti]
                op.builtinOptionsType, op.builtinOptions = s.BuiltinOptions.QuantizeOptions, s.QuantizeOptionsT()
                sg.operators.insert(0, op)
            else:
                op.opcodeIndex, op.inputs, op.outputs = _opcode(model, s.BuiltinOperator.DEQUANTIZE), [ti], [fi]
                op.builtinOptionsType, op.builtinOptions = s.BuiltinOptions.DequantizeOptions, s.DequantizeOptionsT()
                sg.operators.append(op)
            ios[pos] = fi
            for sd in model.signatureDefs or []:
                for tm in getattr(sd, kind) or []:
                    if tm.tensorIndex == ti:
                        tm.tensorIndex = fi
            changed = True
        setattr(sg, kind, ios)
    return _pack(model) if changed else buf


def compact_names(model) -> None:
    """Rename the intermediate tensors of a loaded model (ModelT) to short ids (t0, t1, ...), in place.
    Why: the converter names every tensor after its torch scope ('agd_deploy.space.derived.SRNet/...;1'), ~16 KB
    of a 0.46 MB int8 student. Graph inputs/outputs keep their names (signatures and runners use them)."""
    for sg in model.subgraphs or []:
        keep = set(sg.inputs or []) | set(sg.outputs or [])
        for i, t in enumerate(sg.tensors or []):
            if i not in keep:
                t.name = f"t{i}".encode()


def add_metadata(buf: bytes, meta: dict[str, Any], compact: bool = False) -> bytes:
    """Store `meta` as JSON in the model's metadata list under the name "agd" (replacing an older one);
    `compact`: also shorten tensor names (`compact_names`)."""
    s = _schema()
    model = _load(buf)
    if compact:
        compact_names(model)
    data = json.dumps(meta, sort_keys=True).encode()
    b = s.BufferT()
    b.data = np.frombuffer(data, dtype=np.uint8)
    model.buffers.append(b)
    md = s.MetadataT()
    md.name, md.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if _name(m.name) != METADATA_NAME] + [md]
    return _pack(model)


def _name(n) -> str:
    return n.decode() if isinstance(n, bytes) else str(n)


def read_metadata(path_or_buf: str | Path | bytes) -> dict[str, Any]:
    """The "agd" metadata of a .tflite ({} if absent)."""
    buf = path_or_buf if isinstance(path_or_buf, (bytes, bytearray)) else Path(path_or_buf).read_bytes()
    s = _schema()
    m = s.Model.GetRootAs(buf, 0)
    for i in range(m.MetadataLength()):
        md = m.Metadata(i)
        if _name(md.Name()) == METADATA_NAME:
            data = m.Buffers(md.Buffer()).DataAsNumpy()
            return json.loads(bytes(data).decode()) if not isinstance(data, int) else {}
    return {}


def _write(buf: bytes, out: str | Path, meta: dict[str, Any]) -> Path:
    out = Path(out)
    buf = add_metadata(buf, meta, compact=True)
    with atomic_path(out, suffix=".tflite") as tmp:
        tmp.write_bytes(buf)
    return out


def lower(target, module, example, out: str | Path, *, calib, quantized_io=False, metadata=None, **_) -> Path:
    """`litert` lowering handler (runtimes.targets.LOWERINGS): int8 PT2E or fp32 .tflite by the target."""
    if target.is_int8:
        return to_tflite_int8(module, example, out, calib, quantized_io=quantized_io, metadata=metadata)
    return to_tflite_fp32(module, example, out, metadata=metadata)
