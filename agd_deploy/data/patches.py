"""Random training patches cut from cached teacher outputs: LR patch x, the teacher's output on the matching
scale-x region, and the HR ground truth there; random flips and 90-degree turns applied to all three alike.

Batches are a pure function of (seed, step), so a resumed training sees exactly the batches it would have.
Under torchrun each rank cuts only its own shard of the step's batch (`rank`, `world`): the draws are the
world-1 draws, so the union of the shards is the world-1 batch and a world-2 run sees the same patches."""

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

    def __getstate__(self) -> dict:
        """Pickled for DataLoader workers started by spawn/forkserver: memory-mapped entries travel as
        (file, offset, shape) and are mapped again in the worker, never copied (fork shares them anyway)."""
        import dataclasses

        from .entries import MapRef

        d = dict(self.__dict__)
        d["samples"] = [dataclasses.replace(s, hr=MapRef.of(s.hr), lr=MapRef.of(s.lr), teacher=MapRef.of(s.teacher))
                        for s in self.samples]
        return d

    def __setstate__(self, d: dict) -> None:
        import dataclasses

        from .entries import MapRef

        d["samples"] = [dataclasses.replace(s, hr=MapRef.load(s.hr), lr=MapRef.load(s.lr),
                                            teacher=MapRef.load(s.teacher)) for s in d["samples"]]
        self.__dict__.update(d)

    @property
    def lr_pixels(self) -> int:
        return int(sum(s.lr.shape[0] * s.lr.shape[1] for s in self.samples))

    def batch(self, step: int, batch_size: int, rank: int = 0,
              world: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x, teacher, hr) float32 NCHW in value_range for this step: all of it (world 1), or rank's shard
        (`shard_bounds`) of the same batch_size draws."""
        rng = np.random.default_rng([self.seed, step])
        lo_i, hi_i = shard_bounds(batch_size, rank, world)
        p, s = self.patch, self.scale
        xs, ts, hs = [], [], []
        for i in range(batch_size):
            smp = self.samples[rng.choice(len(self.samples), p=self.p)]
            y = int(rng.integers(0, smp.lr.shape[0] - p + 1))
            x = int(rng.integers(0, smp.lr.shape[1] - p + 1))
            flips = rng.integers(0, 2, size=3) if self.augment else None
            if not lo_i <= i < hi_i:
                continue  # another rank's patch: drawn (so the stream matches world 1), not cut
            crops = [smp.lr[y:y + p, x:x + p], smp.teacher[y * s:(y + p) * s, x * s:(x + p) * s],
                     smp.hr[y * s:(y + p) * s, x * s:(x + p) * s]]
            if flips is not None:
                crops = [self._aug(c, *flips) for c in crops]
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


class StepBatches(torch.utils.data.Dataset):
    """Item `step` = PatchDataset.batch(step, batch, rank, world): a step-indexed dataset for a DataLoader
    (`batch_size=None`, `sampler=range(start, total)`), so worker processes cut the batches ahead of the
    training step while each batch stays the pure function of (seed, step, rank) that makes resume exact."""

    def __init__(self, ds: PatchDataset, batch: int, rank: int = 0, world: int = 1, steps: int = 0):
        self.ds, self.batch, self.rank, self.world, self.steps = ds, batch, rank, world, steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int):
        return self.ds.batch(int(step), self.batch, self.rank, self.world)


def step_loader(ds: PatchDataset, batch: int, start: int, total: int, rank: int = 0, world: int = 1,
                workers: int = 2, pin_memory: bool = False):
    """A DataLoader yielding the batches of steps start..total-1 in order, cut by `workers` processes
    (persistent, `pin_memory` for CUDA). Its own generator: the global torch RNG is left as it was."""
    return torch.utils.data.DataLoader(
        StepBatches(ds, batch, rank, world, total), batch_size=None, sampler=range(start, total),
        num_workers=workers, persistent_workers=workers > 0, pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(0))


def shard_bounds(batch: int, rank: int, world: int) -> tuple[int, int]:
    """[lo, hi) of the patches rank `rank` of `world` cuts from a batch of `batch` (sizes differ by at most 1)."""
    if world <= 1:
        return 0, batch
    base, extra = divmod(batch, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)
