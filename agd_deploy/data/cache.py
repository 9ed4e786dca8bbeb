"""Teacher outputs cached on disk, so a teacher that costs ~18 M MACs per LR pixel runs once per image.

One folder per (teacher fingerprint, scale, crop policy); in it one `.npz` per image (hr, lr, teacher output, all
uint8) named by the image's content hash and written atomically. So an interrupted run resumes where it stopped,
and any subset or superset of already-seen images reuses their outputs."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..utils import atomic_path, cache_dir
from .images import Images
from .protocol import make_lr, to_tensor, to_uint8
from .tiles import tiled_apply


@dataclass
class Sample:
    name: str
    hr: np.ndarray       # uint8 HxWx3, cropped to a multiple of the scale
    lr: np.ndarray       # uint8 (H/s)x(W/s)x3, bicubic (== hr when scale is 1)
    teacher: np.ndarray  # uint8 HxWx3, the teacher's output on lr


def center_crop(img: np.ndarray, max_side: int | None) -> np.ndarray:
    if not max_side:
        return img
    h, w = img.shape[:2]
    th, tw = min(h, max_side), min(w, max_side)
    y, x = (h - th) // 2, (w - tw) // 2
    return img[y:y + th, x:x + tw]


class TeacherCache:
    """hr/lr/teacher-output triples for `images`, computed once per (teacher, images, scale, max_side).

    max_side: HR images are centre-cropped to at most max_side x max_side first (bounds the teacher's cost)."""

    VERSION = 2

    def __init__(self, teacher, images: Images, cache_root: str | Path | None = None, max_side: int | None = None,
                 tile: int = 128, progress: bool = True):
        self.teacher, self.images, self.max_side, self.tile = teacher, images, max_side, tile
        self.scale = int(teacher.scale)
        tkey = f"{teacher.fingerprint}|x{self.scale}|max{max_side}|v{self.VERSION}"
        self.teacher_key = hashlib.sha256(tkey.encode()).hexdigest()[:16]
        self.key = hashlib.sha256(f"{tkey}|{images.data_hash}".encode()).hexdigest()[:16]  # names this set
        root = Path(cache_root) if cache_root else cache_dir("teacher_outputs")
        self.dir = root / self.teacher_key
        self.samples: list[Sample] = self._build(progress)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]

    def _build(self, progress: bool) -> list[Sample]:
        from tqdm import tqdm

        self.dir.mkdir(parents=True, exist_ok=True)
        out: list[Sample | None] = [None] * len(self.images)
        todo = []
        for i, (name, img) in enumerate(self.images):
            f = self.entry_path(img)
            if f.is_file():
                try:
                    with np.load(f) as z:
                        out[i] = Sample(name, z["hr"], z["lr"], z["teacher"])
                    continue
                except Exception:  # damaged entry: recompute
                    pass
            todo.append(i)
        bar = tqdm(todo, desc=f"teacher {self.teacher.name}", unit="img", disable=not progress or not todo,
                   file=None, leave=False)
        for i in bar:
            name, img = self.images[i]
            hr, lr = make_lr(center_crop(img, self.max_side), self.scale)
            t = self.run_teacher(lr)
            with atomic_path(self.entry_path(img), ".npz") as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, hr=hr, lr=lr, teacher=t)
            out[i] = Sample(name, hr, lr, t)
        return out  # type: ignore[return-value]

    def entry_path(self, img: np.ndarray) -> Path:
        h = hashlib.sha256(str(img.shape).encode() + img.tobytes()).hexdigest()[:20]
        return self.dir / f"{h}.npz"

    def run_teacher(self, lr: np.ndarray) -> np.ndarray:
        vr = tuple(self.teacher.value_range)
        with torch.no_grad():
            y = tiled_apply(self.teacher, to_tensor(lr, vr), self.scale, tile=self.tile, overlap=8)
        return to_uint8(y, vr)
