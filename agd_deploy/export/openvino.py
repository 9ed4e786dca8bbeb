"""`openvino-fp32` and `openvino-int8`: OpenVINO IR (.xml + .bin), fp32 or quantized by NNCF post-training
quantization, via the shared lowering (`agd_deploy.quant.openvino`). int8's speed-up is measured against the
fp32 IR on OpenVINO itself.
The model's metadata goes into the IR's rt_info under `agd` (read back with `model.get_rt_info()`)."""

from __future__ import annotations

from pathlib import Path

from .base import Artifact, Exporter


def add_rt_info(xml: Path, meta: dict[str, str]) -> None:
    """Write `meta` into the IR's rt_info (['agd', key]) and save it back in place: saved to a temp folder
    beside it, then both files renamed over the originals (.bin first, so the .xml never names a missing one)."""
    import os
    import shutil
    import tempfile

    import openvino as ov

    model = ov.Core().read_model(str(xml))
    for k, v in meta.items():
        model.set_rt_info(str(v), ["agd", k])
    tmp = Path(tempfile.mkdtemp(prefix=".ov-", dir=xml.parent))
    try:
        ov.save_model(model, str(tmp / xml.name), compress_to_fp16=False)
        os.replace(tmp / xml.with_suffix(".bin").name, xml.with_suffix(".bin"))
        os.replace(tmp / xml.name, xml)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class OpenvinoFp32(Exporter):
    name, target = "openvino-fp32", "openvino-cpu-fp32"
    from_onnx = True

    def export(self, model, example, info, out_dir, cfg) -> Artifact:
        path = self.lower(model, example, info, out_dir, cfg)
        add_rt_info(path, info.metadata())
        return self.artifact(path)

    def export_from_onnx(self, fp32_onnx, info, out_dir, cfg) -> Artifact:
        """`ov.convert_model` of the fp32 graph (NNCF-quantized for int8): the lowering's own steps, minus the
        torch export."""
        from ..quant.openvino import quantize_openvino, to_openvino_fp32
        from .base import move_artifact

        scratch = Path(cfg.work_dir or out_dir) / self.name / self.filename(info.name)
        if self.record.is_int8:
            made = quantize_openvino(fp32_onnx, scratch, cfg.calib)
        else:
            made = to_openvino_fp32(fp32_onnx, scratch)
        path = move_artifact(made, Path(out_dir) / self.filename(info.name))
        add_rt_info(path, info.metadata())
        return self.artifact(path)


class OpenvinoInt8(OpenvinoFp32):
    name, target = "openvino-int8", "openvino-cpu-int8"
