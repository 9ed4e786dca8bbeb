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

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import AgdError
from ..utils import find_resource, parse_shape, read_yaml

DEFAULT_THRESHOLDS = {"fp32": 60.0, "fp16": 45.0, "int8": 35.0}
Auto = Literal["auto"]


# What a profile file may say, key by key (`agd_deploy.config.load` refuses anything else). `None` = not set:
# the loader below fills the default, and the int8 settings left unset are chosen per device (`resolve_int8`).
@dataclass
class CalibrationSection:
    method: str | None = None                  # minmax | percentile | entropy (checked by OrtInt8Config)
    crops: int | None = None
    reduce_range: bool | Auto | None = None
    percentile: float | None = None


@dataclass
class OnnxInt8Section:
    weights: str | None = None                 # auto | int8 | uint8 (checked by OrtInt8Config)
    activations: str | None = None             # uint8 | uint16
    per_channel: bool | Auto | None = None
    op_types: list[str] | Auto | None = None
    reduce_range: bool | Auto | None = None
    without_dot: Literal["u8s8", "u8u8"] | None = None


@dataclass
class VerifySection:
    heldout_per_image: int | None = None
    rounds: int | None = None


@dataclass
class ProfileFile:
    formats: list[str] | None = None
    input: str | list[int] | None = None       # 1x3x64x64 or [1, 3, 64, 64]
    threads: int | None = None
    calibration: CalibrationSection = field(default_factory=CalibrationSection)
    onnx_int8: OnnxInt8Section = field(default_factory=OnnxInt8Section)
    verify: VerifySection = field(default_factory=VerifySection)
    thresholds: dict[str, float] | None = None
    keep_fp32_target_db: float | None = None
    keep_fp32_max: int | None = None


@dataclass
class Profile:
    name: str = "default"
    formats: list[str] = field(default_factory=lambda: ["onnx", "onnx-int8"])
    input_shape: list[int] | None = None
    threads: int = 1
    calib_crops: int = 24
    # onnx-int8: the OrtInt8Config fields this profile sets explicitly; everything else is chosen per device
    # (`resolve_int8`). `without_dot`: what the device choice is on x86 without int8 dot products.
    onnx_int8: dict[str, Any] = field(default_factory=dict)
    without_dot: str = "u8s8"
    heldout_per_image: int = 2
    rounds: int = 20
    thresholds: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    keep_fp32_target_db: float = 40.0
    keep_fp32_max: int = 8

    @property
    def calibration(self) -> str:
        return self.onnx_int8.get("calibration", "minmax")

    def min_psnr(self, fmt: str, precision: str) -> float:
        if fmt in self.thresholds:
            return float(self.thresholds[fmt])
        return float(self.thresholds.get(precision, DEFAULT_THRESHOLDS.get(precision, 35.0)))

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _default(v, default):
    return default if v is None else v


def _int8_fields(cal: dict[str, Any], q: dict[str, Any]) -> dict[str, Any]:
    """The profile's explicit OrtInt8Config fields (YAML names -> field names; `auto` = not set)."""
    out: dict[str, Any] = {}
    for key, src, name in (("method", cal, "calibration"), ("percentile", cal, "percentile"),
                           ("weights", q, "weight"), ("activations", q, "activation"),
                           ("per_channel", q, "per_channel"), ("op_types", q, "op_types")):
        if src.get(key) not in (None, "auto"):
            out[name] = src[key]
    rr = q.get("reduce_range", cal.get("reduce_range"))
    if rr not in (None, "auto"):
        if not isinstance(rr, bool):
            raise ValueError(f"reduce_range must be true, false or auto, got {rr!r}")
        out["reduce_range"] = rr
    if out.get("weight") == "uint8":
        out.setdefault("weight_symmetric", True)  # ORT's QLinearConv needs one zero point for per-channel uint8
    if "op_types" in out:
        out["op_types"] = [str(t) for t in out["op_types"]]
    return out


def load_profile(spec: str | Path | None) -> Profile:
    """A profile by path or shipped name (`default`, `mobile`, `server`, `teacher`); None = the shipped default.
    Strict (`agd_deploy.config.load` over `ProfileFile`): unknown keys and wrong types are a ConfigError (exit 2)
    naming the key; the int8 settings are validated by the one int8 config (`OrtInt8Config`)."""
    from ..config import load
    from ..quant.onnx import OrtInt8Config
    from . import parse_formats

    path = find_resource("export", str(spec or "default"))
    if path is None:
        if spec is None:
            return Profile()
        raise AgdError(f"--profile: no export profile {spec!r} "
                       f"(a YAML path, or a shipped one: default, mobile, server, teacher)")
    where = f"--profile {path}"
    d = read_yaml(path, "export profile")
    f = load(ProfileFile, {} if d is None else d, where)  # unknown keys, wrong types: exit 2, naming the key
    cal, q, ver = dataclasses.asdict(f.calibration), dataclasses.asdict(f.onnx_int8), f.verify
    try:
        if f.formats is not None:
            try:
                parse_formats(f.formats)
            except AgdError as e:
                raise AgdError(f"formats: {e}") from None
        shape = None
        if f.input is not None:
            shape = parse_shape(f.input) if isinstance(f.input, str) else list(f.input)
            if len(shape) != 4 or min(shape) < 1:
                raise ValueError(f"input must be 4 positive integers like 1x3x64x64, got {f.input!r}")
        prof = Profile(name=Path(path).stem, formats=list(f.formats or Profile().formats), input_shape=shape,
                       threads=_default(f.threads, 1), calib_crops=_default(cal["crops"], 24),
                       onnx_int8=_int8_fields(cal, q), without_dot=_default(q["without_dot"], "u8s8"),
                       heldout_per_image=_default(ver.heldout_per_image, 2), rounds=_default(ver.rounds, 20),
                       keep_fp32_target_db=_default(f.keep_fp32_target_db, 40.0),
                       keep_fp32_max=_default(f.keep_fp32_max, 8))
        prof.thresholds.update(f.thresholds or {})
        OrtInt8Config(**prof.onnx_int8)  # validates types, calibration method
    except (TypeError, ValueError, AttributeError) as e:
        raise AgdError(f"{where}: bad value ({e})") from None
    except AgdError as e:  # the int8 config's own words, with the YAML's key names
        msg = (str(e).replace("calibration must", "calibration.method must")
               .replace("int8 config: weights", "onnx_int8.weights").replace("and activations", "and onnx_int8.activations"))
        raise AgdError(f"{where}: {msg}") from None
    if prof.without_dot not in ("u8s8", "u8u8"):
        raise AgdError(f"{where}: onnx_int8.without_dot must be u8s8 or u8u8")
    if prof.threads < 1 or prof.rounds < 1 or prof.calib_crops < 1 or prof.heldout_per_image < 1:
        raise AgdError(f"{where}: threads, rounds, crops and heldout_per_image must be >= 1")
    return prof


def resolve_int8(prof: Profile, table_int8: dict | None, identity, table: str | None = None):
    """(OrtInt8Config, where it came from) of onnx-int8 for this export.

    The ISA decides whether u8s8 needs 7-bit weights (`quant.onnx.OrtInt8Config.for_device`), so: the lowering
    of the table the model was searched with (the table predicts the shipped file only if it is the same
    lowering), else the one chosen for `identity` (the device exporting it, which is the device it is
    verified and timed on). What the profile sets explicitly wins, field by field."""
    from ..quant.onnx import OrtInt8Config

    if table_int8:
        base = OrtInt8Config.from_dict(table_int8)
        how = f"the latency table it was searched with ({table})"
    else:  # explicit weights pick the matching no-dot-product scheme (int8 weights -> 7-bit there)
        w = prof.onnx_int8.get("weight")
        base = OrtInt8Config.for_device(identity, without_dot={"int8": "u8s8", "uint8": "u8u8"}.get(w, prof.without_dot))
        how = f"chosen for this device ({identity.device_class})"
    if prof.onnx_int8:
        how += "; the export profile sets " + ", ".join(sorted(prof.onnx_int8))
    return dataclasses.replace(base, **prof.onnx_int8), how
