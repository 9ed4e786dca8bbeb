"""Exporters: one per deployable format, all behind the small protocol in `base`.

    exp = get_exporter("onnx-int8")
    art = exp.export(model, example, info, out_dir, ExportConfig(calib=[...], work_dir=tmp))

Exporters only convert; `agd_deploy.verify` runs, compares and times what they made."""

from __future__ import annotations

from ..errors import AgdError
from .base import Artifact, ExportConfig, Exporter, ModelInfo, artifact_files
from .coreml import CoremlFp16, CoremlInt8
from .onnx import OnnxFp32, OnnxInt8
from .openvino import OpenvinoFp32, OpenvinoInt8
from .tensorrt import TensorRTInt8
from .tflite import TfliteFp32, TfliteInt8

EXPORTERS: dict[str, type[Exporter]] = {c.name: c for c in (
    OnnxFp32, OnnxInt8, TfliteFp32, TfliteInt8, CoremlFp16, CoremlInt8, OpenvinoFp32, OpenvinoInt8, TensorRTInt8)}
FORMATS: tuple[str, ...] = tuple(EXPORTERS)


def get_exporter(name: str) -> Exporter:
    try:
        return EXPORTERS[name]()
    except KeyError:
        raise AgdError(f"unknown format {name!r}; formats are {', '.join(FORMATS)}") from None


def parse_formats(text: str | list[str]) -> list[str]:
    """'onnx,onnx-int8' -> ['onnx', 'onnx-int8'] (order kept, duplicates dropped, unknown names an error)."""
    names = text if isinstance(text, list) else [t.strip() for t in str(text).split(",")]
    out: list[str] = []
    for n in names:
        if not n:
            continue
        get_exporter(n)
        if n not in out:
            out.append(n)
    if not out:
        raise AgdError("no formats given; formats are " + ", ".join(FORMATS))
    return out


__all__ = ["Artifact", "EXPORTERS", "ExportConfig", "Exporter", "FORMATS", "ModelInfo", "artifact_files",
           "get_exporter", "parse_formats"]
