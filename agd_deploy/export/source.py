"""What `agd export` exports: a trained CKPT folder, an arch JSON (seeded random weights: `untrained`), a named
teacher (`realesrgan-x4plus`, `esrgan-pth:PATH`, `cyclegan-pth:PATH`), a reference net (esrgan, vdsr,
cyclegan, random weights) or a user's ONNX generator (`MODEL.onnx`). Everything but ONNX is resolved to one fp32
torch module plus its ModelInfo; an ONNX file stays a file (`Source.onnx`, module None: export/onnx_source.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import AgdError
from ..utils import format_shape
from .base import ModelInfo

DEFAULT_INPUT = [1, 3, 64, 64]


@dataclass
class Source:
    spec: str  # what the user typed (absolute path for files), enough to load it again (`agd bench`)
    kind: str  # ckpt | arch | teacher | net
    module: nn.Module
    info: ModelInfo
    trained: bool
    seed: int | None = None
    arch: object = None  # the Arch of a derived generator (LUT predictions), else None
    onnx: object = None  # kind "onnx": the `onnx_source.OnnxGraph` of the user's file (module is None)

    def to_dict(self) -> dict:
        return {"spec": self.spec, "kind": self.kind, "trained": self.trained, "seed": self.seed,
                "name": self.info.name, "space": self.info.space, "scale": self.info.scale,
                "value_range": list(self.info.value_range)}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "model"


def load_source(spec: str, input_shape: list[int] | None = None, seed: int = 0, value_range=None) -> Source:
    """Resolve MODEL. `input_shape` overrides the arch's own; `value_range` is read only for an ONNX file (whose
    graph does not say it); errors are one-line AgdErrors."""
    from .. import nets

    spec = str(spec)
    p = Path(spec)
    if p.suffix.lower() == ".onnx":
        from .onnx_source import inspect_onnx

        graph, info = inspect_onnx(p, input_shape, value_range)
        return Source(str(graph.path), "onnx", None, info, trained=True, onnx=graph)
    if p.is_dir():
        from ..train.ckpt import load_ckpt

        module, arch = load_ckpt(p)
        return _from_arch(str(p.resolve()), "ckpt", module, arch, input_shape, trained=True, seed=None)
    if p.suffix == ".json":
        if not p.is_file():
            raise AgdError(f"arch file {p} not found")
        from ..space import Arch, build

        arch = Arch.load(p)
        torch.manual_seed(seed)
        return _from_arch(str(p.resolve()), "arch", build(arch).eval(), arch, input_shape, trained=False, seed=seed)
    if spec in nets.REGISTRY:
        torch.manual_seed(seed)
        module = nets.create(spec).eval()
        space = nets.REGISTRY[spec][1]
        return _finish(spec, "net", module, spec, space, input_shape or DEFAULT_INPUT, trained=False, seed=seed)
    from ..teachers import is_teacher_spec, load_teacher

    if is_teacher_spec(spec):
        t = load_teacher(spec)
        if t.module is None:
            raise AgdError(f"{spec}: an ONNX or ncnn teacher is run as a black box (no torch module); "
                           "export needs a torch model")
        name = spec.split(":", 1)[0] if ":" in spec else spec
        if ":" in spec:  # a path inside the spec: make it absolute so `agd bench` finds it from anywhere
            kind, path = spec.split(":", 1)
            spec = f"{kind}:{Path(path).resolve()}"
        return _finish(spec, "teacher", t.module.eval(), _slug(name), t.space, input_shape or DEFAULT_INPUT,
                       trained=True, seed=None)
    raise AgdError(f"unknown model {spec!r}: give a checkpoint folder, an arch .json, a teacher "
                   f"(realesrgan-x4plus, esrgan-pth:PATH, cyclegan-pth:PATH), an ONNX file or one of "
                   f"{', '.join(sorted(nets.REGISTRY))}")


def _from_arch(spec, kind, module, arch, input_shape, trained, seed) -> Source:
    shape = list(input_shape or arch.input_shape or DEFAULT_INPUT)
    try:
        arch.space_obj.check_input(shape)
    except ValueError as e:
        raise AgdError(f"--input {format_shape(shape)}: {e}") from None
    src = _finish(spec, kind, module, "model", arch.space, shape, trained, seed)
    src.arch = arch
    return src


def _finish(spec, kind, module, name, space, shape, trained, seed) -> Source:
    from ..space import get_space

    sp = get_space(space)
    scale = int(getattr(module, "scale", sp.scale))
    vr = tuple(float(v) for v in getattr(module, "value_range", sp.value_range))
    if len(shape) != 4 or shape[1] != 3:
        raise AgdError(f"--input {format_shape(shape)}: models take Nx3xHxW RGB input")
    module = module.float().eval()
    for prm in module.parameters():
        prm.requires_grad_(False)
    info = ModelInfo(name=name, space=space, scale=scale, value_range=vr, input_shape=list(shape))
    return Source(spec, kind, module, info, trained, seed)
