"""Export profiles: YAML files in the top-level `export/` folder (shipped with the wheel) or the user's own.

    formats: [onnx, onnx-int8, tflite-int8]   # default formats when --formats is not given
    input: 1x3x64x64                          # optional; else the arch's input shape
    threads: 1
    calibration: {method: minmax, crops: 24}  # ORT calibration for onnx-int8 / tensorrt-int8
    onnx_int8: {weights: auto, activations: uint8, per_channel: true, without_dot: u8s8}  # see below
    verify: {heldout_per_image: 2, rounds: 20}
    thresholds:                               # minimum PSNR vs the fp32 PyTorch model, dB
      fp32: 60                                # per precision ...
      int8: 35
      tflite-int8: 38                         # ... or per format (wins)
    keep_fp32_target_db: 40                   # what `--keep-fp32 auto` aims for

onnx_int8.weights and reduce_range: `auto` (default) takes the lowering of the latency table the model was
searched with, else the one chosen for this device's ISA (`resolve_int8`): u8s8 with full 8-bit weights where
int8 dot products exist (VNNI, AMX, Arm dotprod), and on x86 without them `without_dot`: `u8s8` (7-bit weights,
reduce_range) or `u8u8` (uint8 weights: ORT's u8u8 kernel widens to int16 x int16 and cannot saturate).
Explicit `int8` / `uint8` and `true` / `false` override. onnx_int8.activations: `uint8`, or `uint16` (accurate, but ORT then runs convs in float: slower).
onnx_int8.op_types: the ONNX op types to quantize (default: all ORT can; `[Conv]`: only convolutions, so
activations, concats and residual adds between them stay float and are not re-quantized).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import AgdError
from ..utils import find_resource, parse_shape

DEFAULT_THRESHOLDS = {"fp32": 60.0, "fp16": 45.0, "int8": 35.0}


@dataclass
class Profile:
    name: str = "default"
    formats: list[str] = field(default_factory=lambda: ["onnx", "onnx-int8"])
    input_shape: list[int] | None = None
    threads: int = 1
    calibration: str = "minmax"
    calib_crops: int = 24
    reduce_range: bool | None = None   # None ("auto"): chosen by `resolve_int8`
    weight_type: str | None = None     # None ("auto"): chosen by `resolve_int8`
    without_dot: str = "u8s8"          # what "auto" picks on x86 without int8 dot products: u8s8 (7-bit) | u8u8
    activation_type: str = "uint8"
    per_channel: bool = True
    op_types: list[str] | None = None
    heldout_per_image: int = 2
    rounds: int = 20
    thresholds: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    keep_fp32_target_db: float = 40.0
    keep_fp32_max: int = 8

    def min_psnr(self, fmt: str, precision: str) -> float:
        if fmt in self.thresholds:
            return float(self.thresholds[fmt])
        return float(self.thresholds.get(precision, DEFAULT_THRESHOLDS.get(precision, 35.0)))

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def load_profile(spec: str | Path | None) -> Profile:
    """A profile by path or shipped name (`default`, `mobile`); None = the shipped default."""
    import yaml

    path = find_resource("export", str(spec or "default"))
    if path is None:
        if spec is None:
            return Profile()
        raise AgdError(f"--profile: no export profile {spec!r} "
                       f"(a YAML path, or a shipped one: default, mobile, server, teacher)")
    try:
        d = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise AgdError(f"--profile {path}: cannot read it ({str(e).splitlines()[0]})") from None
    if not isinstance(d, dict):
        raise AgdError(f"--profile {path}: expected a mapping of settings")
    try:
        prof = Profile(name=Path(path).stem)
        if "formats" in d:
            prof.formats = list(d["formats"])
        if d.get("input"):
            prof.input_shape = parse_shape(d["input"])
        prof.threads = int(d.get("threads", prof.threads))
        cal = d.get("calibration") or {}
        prof.calibration = str(cal.get("method", prof.calibration))
        prof.calib_crops = int(cal.get("crops", prof.calib_crops))
        prof.reduce_range = _auto_bool(cal.get("reduce_range", prof.reduce_range))
        q = d.get("onnx_int8") or {}
        w = q.get("weights", "auto")
        prof.weight_type = None if w in (None, "auto") else str(w)
        prof.without_dot = str(q.get("without_dot", prof.without_dot))
        prof.activation_type = str(q.get("activations", prof.activation_type))
        prof.per_channel = bool(q.get("per_channel", prof.per_channel))
        if q.get("op_types") is not None:
            prof.op_types = [str(t) for t in q["op_types"]]
        if "reduce_range" in q:
            prof.reduce_range = _auto_bool(q["reduce_range"])
        ver = d.get("verify") or {}
        prof.heldout_per_image = int(ver.get("heldout_per_image", prof.heldout_per_image))
        prof.rounds = int(ver.get("rounds", prof.rounds))
        prof.thresholds.update({str(k): float(v) for k, v in (d.get("thresholds") or {}).items()})
        prof.keep_fp32_target_db = float(d.get("keep_fp32_target_db", prof.keep_fp32_target_db))
        prof.keep_fp32_max = int(d.get("keep_fp32_max", prof.keep_fp32_max))
    except (TypeError, ValueError, AttributeError) as e:
        raise AgdError(f"--profile {path}: bad value ({e})") from None
    if prof.calibration not in ("minmax", "percentile", "entropy"):
        raise AgdError(f"--profile {path}: calibration.method must be minmax, percentile or entropy")
    if prof.weight_type not in (None, "int8", "uint8"):
        raise AgdError(f"--profile {path}: onnx_int8.weights must be auto, int8 or uint8")
    if prof.without_dot not in ("u8s8", "u8u8"):
        raise AgdError(f"--profile {path}: onnx_int8.without_dot must be u8s8 or u8u8")
    if prof.activation_type not in ("uint8", "int8", "uint16", "int16"):
        raise AgdError(f"--profile {path}: onnx_int8.activations must be uint8, int8, uint16 or int16")
    if prof.threads < 1 or prof.rounds < 1 or prof.calib_crops < 1 or prof.heldout_per_image < 1:
        raise AgdError(f"--profile {path}: threads, rounds, crops and heldout_per_image must be >= 1")
    return prof


def _auto_bool(v: Any) -> bool | None:
    if v is None or v == "auto":
        return None
    if isinstance(v, bool):
        return v
    raise ValueError(f"reduce_range must be true, false or auto, got {v!r}")


def resolve_int8(prof: Profile, table_int8: dict | None, identity, table: str | None = None
                 ) -> tuple[str, bool, str]:
    """(weight type, reduce_range, where they came from) of onnx-int8 for this export.

    The ISA decides whether u8s8 needs 7-bit weights (`quant.onnx.OrtInt8Config.for_device`), so: the lowering
    of the table the model was searched with (the table predicts the shipped file only if it is the same
    lowering), else the one chosen for `identity` (the device exporting it, which is the device it is
    verified and timed on). What the profile sets explicitly wins, field by field."""
    from ..quant.onnx import OrtInt8Config

    if table_int8:
        base = OrtInt8Config.from_dict(table_int8)
        how = f"the latency table it was searched with ({table})"
    else:
        base = OrtInt8Config.for_device(identity, without_dot=prof.without_dot)
        how = f"chosen for this device ({identity.device_class})"
    weight = prof.weight_type or base.weight
    reduce = base.reduce_range if prof.reduce_range is None else prof.reduce_range
    if prof.weight_type is not None or prof.reduce_range is not None:
        how += "; the export profile sets " + ", ".join(
            k for k, v in (("weights", prof.weight_type), ("reduce_range", prof.reduce_range)) if v is not None)
    return weight, bool(reduce), how
