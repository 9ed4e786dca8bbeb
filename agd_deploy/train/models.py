"""Anything that upscales an image, behind one interface: a CKPT folder, a teacher spec, `bicubic`, or an
exported artifact (.onnx via onnxruntime, .tflite via ai-edge-litert's Interpreter).

Artifacts are run directly here (a minimal local path) rather than through agd_deploy.runtimes, so `agd
upscale` and `agd eval` work on any artifact file without a target name."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..data.protocol import bicubic_upscale, to_tensor, to_uint8
from ..data.tiles import tiled_apply
from ..errors import AgdError


@dataclass
class Upscaler:
    name: str
    scale: int
    value_range: tuple[float, float]
    fn: Callable[[torch.Tensor], torch.Tensor] | None  # NCHW float in value_range -> output; None for bicubic
    fixed_hw: tuple[int, int] | None = None  # artifacts with a fixed input size are tiled at exactly that size
    meta: dict = field(default_factory=dict)

    def upscale(self, img: np.ndarray, tile: int = 192, overlap: int = 16) -> np.ndarray:
        """uint8 HxWx3 -> uint8 output (clipped and rounded), large images processed in overlapping tiles."""
        if self.fn is None:
            return bicubic_upscale(img, self.scale)
        x = to_tensor(img, self.value_range)
        with torch.no_grad():
            if self.fixed_hw:
                y = tiled_apply(self.fn, x, self.scale, tile=self.fixed_hw, overlap=min(overlap, min(self.fixed_hw) // 4),
                                fixed=True)
            else:
                y = tiled_apply(self.fn, x, self.scale, tile=tile, overlap=overlap)
        return to_uint8(y, self.value_range)


def _torch_fn(model: torch.nn.Module, compute=None) -> Callable[[torch.Tensor], torch.Tensor]:
    """model as NCHW CPU tensor -> CPU tensor, computed on `compute` (train.device.Compute; None: the CPU)."""
    model.eval()
    if compute is not None and compute.device.type != "cpu":
        compute.module(model)

        def fn(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad(), compute.autocast():
                return model(compute.tensor(x)).float().cpu()
        return fn

    def fn(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(x)
    return fn


def load_upscaler(spec, scale: int = 4, device=None, amp: str | None = "off") -> Upscaler:
    """spec: 'bicubic', a CKPT folder, a teacher spec, a .onnx/.tflite artifact, an nn.Module or an Upscaler.
    device/amp: where torch models (CKPTs, torch teachers) run (train.device: auto|cpu|cuda|cuda:N; None = the
    CPU); artifacts run on their own runtime's CPU path."""
    from ..teachers import Teacher, is_teacher_spec, load_teacher

    comp = None
    if device is not None:
        from .device import resolve

        comp = resolve(device, amp)

    if isinstance(spec, Upscaler):
        return spec
    if isinstance(spec, Teacher):
        return Upscaler(spec.name, spec.scale, tuple(spec.value_range), _teacher_fn(spec, comp))
    if isinstance(spec, torch.nn.Module):
        return Upscaler(type(spec).__name__, int(getattr(spec, "scale", scale)),
                        tuple(getattr(spec, "value_range", (0.0, 1.0))), _torch_fn(spec, comp))
    s = str(spec)
    if s == "bicubic":
        return Upscaler("bicubic", scale, (0.0, 1.0), None)
    p = Path(s)
    if p.is_dir():
        from .ckpt import load_ckpt

        model, arch = load_ckpt(p)
        sp = arch.space_obj
        fn = _torch_fn(model, comp)
        fn.hw_multiple = sp.hw_multiple  # data/tiles.py pads to it (the ST frame's H, W: multiples of 4)
        return Upscaler(str(p), sp.scale, tuple(sp.value_range), fn, meta={"arch": arch})
    if p.suffix.lower() == ".onnx":
        t = load_teacher(s)
        return Upscaler(s, t.scale, tuple(t.value_range), t._run, t.fixed_hw)
    if p.suffix.lower() == ".tflite":
        return _tflite_upscaler(p)
    if is_teacher_spec(s):
        t = load_teacher(s)
        return Upscaler(t.name, t.scale, tuple(t.value_range), _teacher_fn(t, comp))
    raise AgdError(f"unknown model {s!r}: give a checkpoint folder, a teacher (realesrgan-x4plus, esrgan-pth:PATH, "
                   "cyclegan-pth:PATH, PATH.onnx), a .tflite file or 'bicubic'")


def _teacher_fn(t, comp):
    """A torch teacher on the device (its module moved there); ONNX teachers and the CPU: the teacher itself."""
    if comp is None or comp.device.type == "cpu" or getattr(t, "module", None) is None:
        return t
    t.module.to(comp.device)
    return lambda x: t(x.to(comp.device)).float().cpu()


def _tflite_upscaler(path: Path) -> Upscaler:
    if not path.is_file():
        raise AgdError(f"{path} not found")
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise AgdError("running .tflite files needs the 'ai-edge-litert' package") from None
    try:
        it = Interpreter(model_path=str(path), num_threads=2)
        it.allocate_tensors()
    except Exception as e:
        raise AgdError(f"cannot load {path}: {str(e).splitlines()[0][:200]}") from None
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    shape = tuple(int(s) for s in inp["shape"])
    nhwc = shape[-1] == 3 and shape[1] != 3
    h, w = (shape[1], shape[2]) if nhwc else (shape[2], shape[3])
    oshape = tuple(int(s) for s in out["shape"])
    scale = max(1, (oshape[1] if nhwc else oshape[2]) // h)
    value_range = (-1.0, 1.0) if scale == 1 else (0.0, 1.0)

    def quant(a: np.ndarray, det) -> np.ndarray:
        sc, zp = det.get("quantization", (0.0, 0))
        if np.issubdtype(det["dtype"], np.integer) and sc:
            info = np.iinfo(det["dtype"])
            return np.clip(np.round(a / sc + zp), info.min, info.max).astype(det["dtype"])
        return a.astype(det["dtype"])

    def dequant(a: np.ndarray, det) -> np.ndarray:
        sc, zp = det.get("quantization", (0.0, 0))
        if np.issubdtype(a.dtype, np.integer) and sc:
            return (a.astype(np.float32) - zp) * sc
        return a.astype(np.float32)

    def fn(x: torch.Tensor) -> torch.Tensor:
        outs = []
        for i in range(x.shape[0]):
            a = x[i:i + 1].numpy()
            if nhwc:
                a = a.transpose(0, 2, 3, 1)
            it.set_tensor(inp["index"], quant(np.ascontiguousarray(a), inp))
            it.invoke()
            y = dequant(it.get_tensor(out["index"]), out)
            outs.append(torch.from_numpy(y.transpose(0, 3, 1, 2).copy() if nhwc else y.copy()))
        return torch.cat(outs)

    return Upscaler(str(path), scale, value_range, fn, (h, w))
