"""`Teacher`: the generator a student is distilled from, behind one small callable interface.

Every teacher takes and returns float32 NCHW tensors in its `value_range` ([0,1] for SR, [-1,1] for
image-to-image) and never tracks gradients. `fingerprint` names its weights, so cached outputs are reused only
for the same teacher."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Teacher:
    name: str
    scale: int
    value_range: tuple[float, float]
    fingerprint: str
    module: nn.Module | None = None  # the torch module, if the teacher is one (None for ONNX teachers)

    @property
    def space(self) -> str:
        return "sr" if self.scale > 1 else "st"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        assert self.module is not None
        self.module.eval()
        with torch.no_grad():
            return self.module(x.float())


class OnnxTeacher(Teacher):
    """Any ONNX generator, run by onnxruntime (numpy in, numpy out). A fixed input size is served by tiling."""

    def __init__(self, path: str, session, input_name: str, fixed_hw: tuple[int, int] | None, **kw):
        super().__init__(**kw)
        self.path, self.session, self.input_name, self.fixed_hw = path, session, input_name, fixed_hw

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.fixed_hw and tuple(x.shape[2:]) != self.fixed_hw:
            from ..data.tiles import tiled_apply

            return tiled_apply(self._run, x, self.scale, tile=self.fixed_hw, overlap=8, fixed=True)
        return self._run(x)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for i in range(x.shape[0]):  # batch 1 at a time: exported graphs often fix N=1
            xi = x[i:i + 1].detach().float().cpu().numpy()
            outs.append(torch.from_numpy(self.session.run(None, {self.input_name: xi})[0]))
        return torch.cat(outs)
