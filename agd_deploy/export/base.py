"""The exporter protocol: one small class per format turns a torch generator into one deployable file.

An exporter only converts. Running the file on its runtime, comparing it with the fp32 model and timing it is
`agd_deploy.verify`'s job, so every format is checked the same way."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn


@dataclass
class ModelInfo:
    """What every artifact records about the model it holds (written into the artifact's metadata)."""

    name: str
    space: str  # "sr" or "st"
    scale: int
    value_range: tuple[float, float]
    input_shape: list[int]

    def metadata(self) -> dict[str, str]:
        """String key/values for ONNX metadata_props, TFLite metadata and CoreML user-defined metadata."""
        lo, hi = self.value_range
        return {"agd.model": self.name, "scale": str(self.scale), "value_range": json.dumps([lo, hi]),
                "layout": "NCHW", "color_order": "RGB", "input_name": "input", "output_name": "output",
                "input_shape": json.dumps(list(self.input_shape)), "input_dtype": "float32",
                "producer": "agd-deploy"}


@dataclass
class ExportConfig:
    """Knobs shared by exporters. `keep_fp32`: layer (ONNX node / torch module) names left in float."""

    calib: list[np.ndarray] = field(default_factory=list)  # NCHW float32 inputs of the model's shape
    keep_fp32: list[str] = field(default_factory=list)
    # onnx-int8 / tensorrt-int8: the one int8 config (`quant.onnx.OrtInt8Config`), resolved for the device by
    # `export.profile.resolve_int8`; its keep_fp32 is set per export from `keep_fp32` above.
    int8: Any = None
    threads: int = 1
    work_dir: Path | None = None  # scratch space (intermediate fp32 files); never the output folder
    fp32_onnx: Path | None = None  # an ONNX source: its normalised fp32 copy in work_dir (`onnx_source.prepare_onnx`)


@dataclass
class Artifact:
    """One exported file (or .mlpackage folder) and how to run it.

    `target` names the runtime target that runs it (`ort-cpu-int8`); `skip_reason` is set when it cannot be
    run here (it then becomes `not verified: <reason>`); `extra` lands in the manifest entry."""

    format: str
    precision: str
    path: Path
    target: str
    skip_reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Exporter:
    """Subclasses set `name` (the format) and `target` (the runtime target whose record gives the artifact's
    suffix, precision and fp32 partner); most need nothing else, because `export` hands the model to the
    target's lowering (`runtimes.lower`): the file that ships is the file a LUT measured. Exporters keep only
    what is theirs: metadata, skip reasons, manifest extras."""

    name: str = ""
    target: str = ""
    from_onnx: bool = False  # it can start from a user's ONNX file (`export_from_onnx`; export/onnx_source.py)

    @property
    def record(self):
        from ..runtimes.targets import get_target

        return get_target(self.target, require=False)

    @property
    def precision(self) -> str:
        return self.record.precision

    @property
    def suffix(self) -> str:
        return self.record.suffix

    @property
    def fp32_format(self) -> str | None:
        """The format (same runtime) speed-ups are measured against: the one whose target is this target's fp32
        partner (None: this is fp32, or there is none)."""
        from . import EXPORTERS

        partner = self.record.fp32
        return next((n for n, c in EXPORTERS.items() if partner and c.target == partner), None)

    def filename(self, stem: str) -> str:
        return f"{stem}{self.suffix}"

    def export(self, model: nn.Module, example: np.ndarray, info: ModelInfo, out_dir: Path,
               cfg: ExportConfig) -> Artifact:
        path = self.lower(model, example, info, out_dir, cfg)
        return self.artifact(path)

    def lower(self, model: nn.Module, example: np.ndarray, info: ModelInfo, out_dir: Path, cfg: ExportConfig,
              int8_config: Any = None) -> Path:
        """Run the target's lowering into the scratch folder, then move the result to `out_dir`."""
        import torch

        from ..runtimes.targets import lower

        scratch = Path(cfg.work_dir or out_dir) / self.name
        x = torch.from_numpy(np.ascontiguousarray(example, dtype=np.float32))
        made = lower(self.target, model, x, scratch, calib=cfg.calib or None, name=info.name,
                     metadata=info.metadata(), int8_config=int8_config)
        return move_artifact(Path(made), Path(out_dir) / self.filename(info.name))

    def export_from_onnx(self, fp32_onnx: Path, info: ModelInfo, out_dir: Path, cfg: ExportConfig) -> Artifact:
        """The artifact made from an fp32 ONNX graph (a user's generator, normalised by
        `onnx_source.prepare_onnx`) instead of a torch module. Only formats whose converters read ONNX have it."""
        from ..errors import AgdUsageError

        raise AgdUsageError(f"{self.name} needs a torch model; it cannot be made from an ONNX file")

    def artifact(self, path: Path, **kw: Any) -> Artifact:
        return Artifact(self.name, self.precision, Path(path), self.target, **kw)


def artifact_files(path: Path) -> list[Path]:
    """Every file that makes up an artifact: the file itself, an OpenVINO IR's .bin beside its .xml, or all
    files inside a folder artifact (.mlpackage)."""
    path = Path(path)
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    files = [path]
    if path.suffix == ".xml" and path.with_suffix(".bin").is_file():
        files.append(path.with_suffix(".bin"))
    return files


def move_artifact(src: Path, dst: Path) -> Path:
    """Move an artifact (and its companion files) to `dst`, replacing what was there."""
    import os
    import shutil

    dst.parent.mkdir(parents=True, exist_ok=True)
    pairs = [(src, dst)]
    if src.suffix == ".xml" and src.with_suffix(".bin").is_file():
        pairs.append((src.with_suffix(".bin"), dst.with_suffix(".bin")))
    for a, b in pairs:
        if b.is_dir():
            shutil.rmtree(b)
        try:
            os.replace(a, b)
        except OSError:
            shutil.move(str(a), str(b))
    return dst
