"""Random training patches cut from cached teacher outputs: LR patch x, the teacher's output on the matching
scale-x region, and the HR ground truth there; random flips and 90-degree turns applied to all three alike.

Batches are a pure function of (seed, step), so a resumed training sees exactly the batches it would have."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import AgdError
from .images import warn


class PatchDataset:
    def __init__(self, samples, patch: int, value_range: tuple[float, float] = (0.0, 1.0), seed: int = 0,
                 augment: bool = True):
        """samples: a TeacherCache (or list of Sample); patch: LR patch side."""
        self.patch, self.value_range, self.seed, self.augment = patch, value_range, seed, augment
        self.samples = []
        for s in samples:
            if min(s.lr.shape[:2]) >= patch:
                self.samples.append(s)
            else:
                warn(f"skipping {s.name}: its LR image {s.lr.shape[1]}x{s.lr.shape[0]} is smaller than the "
                     f"patch ({patch}x{patch})")
        if not self.samples:
            raise AgdError(f"no training image is large enough for {patch}x{patch} LR patches")
        self.scale = self.samples[0].teacher.shape[0] // self.samples[0].lr.shape[0]
        area = np.array([(s.lr.shape[0] - patch + 1) * (s.lr.shape[1] - patch + 1) for s in self.samples], float)
        self.p = area / area.sum()

    @property
    def lr_pixels(self) -> int:
        return int(sum(s.lr.shape[0] * s.lr.shape[1] for s in self.samples))

    def batch(self, step: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x, teacher, hr) float32 NCHW in value_range for this step."""
        rng = np.random.default_rng([self.seed, step])
        p, s = self.patch, self.scale
        xs, ts, hs = [], [], []
        for _ in range(batch_size):
            smp = self.samples[rng.choice(len(self.samples), p=self.p)]
            y = int(rng.integers(0, smp.lr.shape[0] - p + 1))
            x = int(rng.integers(0, smp.lr.shape[1] - p + 1))
            crops = [smp.lr[y:y + p, x:x + p], smp.teacher[y * s:(y + p) * s, x * s:(x + p) * s],
                     smp.hr[y * s:(y + p) * s, x * s:(x + p) * s]]
            if self.augment:
                flip_h, flip_v, turn = rng.integers(0, 2, size=3)
                crops = [self._aug(c, flip_h, flip_v, turn) for c in crops]
            xs.append(crops[0]), ts.append(crops[1]), hs.append(crops[2])
        return self._stack(xs), self._stack(ts), self._stack(hs)

    @staticmethod
    def _aug(c: np.ndarray, flip_h, flip_v, turn) -> np.ndarray:
        if flip_h:
            c = c[:, ::-1]
        if flip_v:
            c = c[::-1]
        if turn:
            c = c.transpose(1, 0, 2)
        return c

    def _stack(self, arrs) -> torch.Tensor:
        lo, hi = self.value_range
        t = torch.from_numpy(np.stack([np.ascontiguousarray(a) for a in arrs])).permute(0, 3, 1, 2).float() / 255.0
        return t * (hi - lo) + lo
