"""`onnx` (fp32) and `onnx-int8` (static QDQ: s8 per-channel weights, u8 activations) exporters.

Both go through `agd_deploy.quant.onnx`, the same lowering the `ort-cpu-fp32` / `ort-cpu-int8` latency tables
were measured with, so a LUT predicts the file that ships."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import AgdError
from ..utils import atomic_path
from .base import Artifact, ExportConfig, Exporter, ModelInfo


def export_fp32_onnx(model: nn.Module, example: np.ndarray, info: ModelInfo, out: Path) -> Path:
    """The one torch -> ONNX step every ONNX-based format starts from (single file, opset >= 17, checked)."""
    import onnx

    from ..quant.onnx import export_onnx

    export_onnx(model, torch.from_numpy(np.ascontiguousarray(example, dtype=np.float32)), out,
                metadata=info.metadata())
    onnx.checker.check_model(str(out))
    return out


def fp32_onnx_in(cfg: ExportConfig, model: nn.Module, example: np.ndarray, info: ModelInfo) -> Path:
    """An fp32 ONNX of the model in the scratch folder, made once and shared by the int8 exporters."""
    if cfg.work_dir is None:
        raise AgdError("internal: exporters need a scratch folder (ExportConfig.work_dir)")
    path = Path(cfg.work_dir) / "fp32.onnx"
    if not path.is_file():
        export_fp32_onnx(model, example, info, path)
    return path


def module_path(node_name: str) -> str:
    """ONNX node name from the TorchScript exporter -> torch module path.

    '/cells.0/cells.0.3/expand/expand.0/Conv' -> 'cells.0.3.expand.0' (each scope repeats its parent's last
    segment as a prefix: 'expand.0' is child '0' of 'expand')."""
    segs = [s for s in node_name.split("/") if s][:-1]
    parts: list[str] = []
    last = ""
    for s in segs:
        parts.append(s[len(last) + 1:] if last and s.startswith(last + ".") else s)
        last = s
    return ".".join(parts)


def conv_nodes(onnx_path: Path) -> list[tuple[str, str]]:
    """(node name, module path) of every Conv / ConvTranspose, in graph order: the layers --keep-fp32 can name."""
    import onnx

    g = onnx.load(str(onnx_path), load_external_data=False).graph
    return [(n.name, module_path(n.name)) for n in g.node if n.op_type in ("Conv", "ConvTranspose")]


def resolve_layers(onnx_path: Path, layers: list[str]) -> list[str]:
    """User layer names (torch module paths like `last` or `cells.0`, or ONNX node names) -> ONNX node names.
    A module path keeps every node inside that module. Unknown names are an error naming valid ones."""
    import onnx

    g = onnx.load(str(onnx_path), load_external_data=False).graph
    nodes = [(n.name, module_path(n.name)) for n in g.node if n.op_type not in ("Constant",)]
    out: list[str] = []
    for layer in layers:
        hit = [name for name, mod in nodes if name == layer or mod == layer or mod.startswith(layer + ".")]
        if not hit:
            known = sorted({mod for _, mod in conv_nodes(onnx_path)})
            raise AgdError(f"--keep-fp32: no layer {layer!r} in the model; layers are e.g. "
                           f"{', '.join(known[:3] + known[-2:])}")
        out += [h for h in hit if h not in out]
    return out


class OnnxFp32(Exporter):
    name, target = "onnx", "ort-cpu-fp32"
    from_onnx = True

    def export(self, model, example, info, out_dir, cfg) -> Artifact:
        import onnx

        path = self.lower(model, example, info, out_dir, cfg)
        onnx.checker.check_model(str(path))
        return self.artifact(path, extra={"opset": _opset(path)})

    def export_from_onnx(self, fp32_onnx, info, out_dir, cfg) -> Artifact:
        """The normalised copy of the user's graph (input/output names, fixed shape, agd metadata)."""
        import shutil

        path = Path(out_dir) / self.filename(info.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, suffix=".onnx") as tmp:
            shutil.copyfile(fp32_onnx, tmp)
        return self.artifact(path, extra={"opset": _opset(path)})


class OnnxInt8(Exporter):
    """Static QDQ int8: u8 activations (per-tensor), s8 per-channel weights, calibrated on `cfg.calib`;
    `cfg.keep_fp32` layers stay float."""

    name, target = "onnx-int8", "ort-cpu-int8"
    symmetric = False
    from_onnx = True

    def int8_config(self, cfg: ExportConfig, keep_nodes: list[str]):
        return ort_int8_config(cfg, keep_nodes, symmetric=self.symmetric)

    def export(self, model, example, info, out_dir, cfg) -> Artifact:
        keep = resolve_layers(fp32_onnx_in(cfg, model, example, info), cfg.keep_fp32) if cfg.keep_fp32 else []
        qcfg = self.int8_config(cfg, keep)
        path = self.lower(model, example, info, out_dir, cfg, int8_config=qcfg)
        return self._finish(path, qcfg, cfg, keep)

    def export_from_onnx(self, fp32_onnx, info, out_dir, cfg) -> Artifact:
        """The same ORT static QDQ lowering, straight from the fp32 graph: no torch export step."""
        from ..quant.onnx import quantize_qdq
        from .base import move_artifact

        keep = resolve_layers(Path(fp32_onnx), cfg.keep_fp32) if cfg.keep_fp32 else []
        qcfg = self.int8_config(cfg, keep)
        if not cfg.calib:
            raise AgdError(f"{self.name}: int8 quantization needs calibration inputs")
        scratch = Path(cfg.work_dir or out_dir) / self.name
        made = quantize_qdq(fp32_onnx, scratch / self.filename(info.name), cfg.calib, qcfg)
        path = move_artifact(made, Path(out_dir) / self.filename(info.name))
        return self._finish(path, qcfg, cfg, keep)

    def _finish(self, path: Path, qcfg, cfg: ExportConfig, keep: list[str]) -> Artifact:
        import onnx

        saved = compact_names(path)
        onnx.checker.check_model(str(path))
        quant = {k: v for k, v in qcfg.to_dict().items() if k != "keep_fp32"}
        return self.artifact(path, extra={"opset": _opset(path), "keep_fp32": list(cfg.keep_fp32),
                                          "keep_fp32_nodes": len(keep), "calibration": qcfg.calibration,
                                          "calib_images": len(cfg.calib), "reduce_range": qcfg.reduce_range,
                                          "quantization": quant, "names_compacted_bytes": saved})


def compact_names(path) -> int:
    """Rename the nodes and intermediate tensors of an ONNX file to short ids (n0, t0, ...), in place.
    Why: a QDQ graph has ~4 nodes per conv, each named after the torch scope ('/cells.0/cells.0.1/conv/
    Conv_output_0_QuantizeLinear'): in a 0.3 M-parameter student those names were ~90 KB of a 420 KB file.
    Graph inputs/outputs keep their names (the runtime contract); returns the bytes saved."""
    import onnx

    path = Path(path)
    before = path.stat().st_size
    model = onnx.load(str(path))
    g = model.graph
    keep = {v.name for v in g.input} | {v.name for v in g.output}
    rename: dict[str, str] = {}

    def new(name: str, prefix: str) -> str:
        if not name or name in keep:
            return name
        if name not in rename:
            rename[name] = f"{prefix}{len(rename)}"
        return rename[name]

    for init in g.initializer:
        init.name = new(init.name, "w")
    for i, node in enumerate(g.node):
        node.name = f"n{i}"
        node.doc_string = ""
        for j, x in enumerate(node.input):
            node.input[j] = new(x, "t")
        for j, x in enumerate(node.output):
            node.output[j] = new(x, "t")
    for vi in g.value_info:
        vi.name = new(vi.name, "t")
    with atomic_path(path, suffix=".onnx") as tmp:
        onnx.save(model, str(tmp))
    return before - path.stat().st_size


def ort_int8_config(cfg: ExportConfig, keep_nodes: list[str], symmetric: bool = False):
    """The OrtInt8Config an export uses: the resolved one of the export (`cfg.int8`; its default: the safe
    no-dot-product lowering) with these kept nodes; TensorRT's fixed scheme (symmetric s8 activations, s8
    per-channel full-range weights: GPU int8 units have no u8s8 saturation) when `symmetric`."""
    import dataclasses

    from ..quant.onnx import OrtInt8Config

    base = cfg.int8 or OrtInt8Config()
    if symmetric:
        return OrtInt8Config(calibration=base.calibration, percentile=base.percentile, keep_fp32=keep_nodes,
                             symmetric_activations=True, per_channel=True, reduce_range=False)
    return dataclasses.replace(base, keep_fp32=list(keep_nodes))


def _opset(path: Path) -> int:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return max((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), default=0)
