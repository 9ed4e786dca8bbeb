"""Teacher outputs cached on disk, so a teacher that costs ~18 M MACs per LR pixel runs once per image.

One folder per (teacher fingerprint, scale, crop policy); in it one `.npz` per image (hr, lr, teacher output, all
uint8) named by the image's content hash and written atomically. So an interrupted run resumes where it stopped,
and any subset or superset of already-seen images reuses their outputs.

With a `degradation` other than bicubic (data/degrade.py) the LR is degraded and the folder is keyed also on the
degradation's settings and seed; each image then has `variants` entries (`<hash>.v<k>.npz`, variant k drawn by
`degrade.rng_for(seed, k, image)`), a fixed set, so the teacher runs once per (image, variant) ever. `native` is
the evaluation protocol of images upscaled at their own resolution: lr is the image itself and hr is empty
(there is no ground truth)."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import AgdError
from ..log import warn
from ..utils import atomic_path, cache_dir
from .degrade import get_degradation, rng_for
from .entries import load_arrays
from .images import Images
from .protocol import make_lr, to_tensor, to_uint8
from .tiles import tiled_apply


@dataclass
class Sample:
    name: str
    hr: np.ndarray       # uint8 HxWx3, cropped to a multiple of the scale
    lr: np.ndarray       # uint8 (H/s)x(W/s)x3, bicubic (== hr when scale is 1)
    teacher: np.ndarray  # uint8 HxWx3, the teacher's output on lr
    variant: int = 0     # which degraded variant of the image (0 for bicubic)
    image: int = -1      # index of the source image in the cache's Images (variants share it)


def center_crop(img: np.ndarray, max_side: int | None) -> np.ndarray:
    if not max_side:
        return img
    h, w = img.shape[:2]
    th, tw = min(h, max_side), min(w, max_side)
    y, x = (h - th) // 2, (w - tw) // 2
    return img[y:y + th, x:x + tw]


class TeacherCache:
    """hr/lr/teacher-output triples for `images`, computed once per (teacher, images, scale, max_side).

    max_side: HR images are centre-cropped to at most max_side x max_side first (bounds the teacher's cost).
    degradation: a name or `degrade.Degradation` (None: bicubic, whose keys and entries are the same as before
    degradations existed) or "native"; variants: degraded variants per image (1 for deterministic ones);
    seed: the degradation draw's seed. Samples are image-major: image 0's variants, then image 1's, ...
    shard: (index, count): compute only the missing entries j with j % count == index, then wait (polling
    the files, at most `wait_s` s without progress) for the other shards' entries (under torchrun every rank
    builds its shard in parallel; search.distributed.Dist.cache_shard). Every entry is computed under its own
    file lock and re-checked, so separate agd processes sharing the cache never compute one twice."""

    VERSION = 2

    def __init__(self, teacher, images: Images, cache_root: str | Path | None = None, max_side: int | None = None,
                 tile: int = 128, progress: bool = True, degradation=None, variants: int = 1, seed: int = 0,
                 shard: tuple[int, int] = (0, 1), wait_s: float = 600.0):
        self.teacher, self.images, self.max_side, self.tile = teacher, images, max_side, tile
        self.shard, self.wait_s = (int(shard[0]), max(1, int(shard[1]))), float(wait_s)
        self.computed = 0  # entries this process computed (the rest were on disk or another shard's)
        self._memo: dict[bytes, np.ndarray] = {}  # run_teacher's outputs of the current image's variants
        self.scale = int(teacher.scale)
        self.native = str(degradation) == "native"
        self.degradation = None if self.native else get_degradation(degradation)
        random = self.degradation is not None and self.degradation.random
        self.variants, self.seed = (max(1, int(variants)) if random else 1), int(seed)
        tkey = f"{teacher.fingerprint}|x{self.scale}|max{max_side}|v{self.VERSION}"
        if self.native:
            tkey += "|native"
        elif self.degradation.key != "bicubic":
            tkey += f"|deg:{self.degradation.key}|seed{self.seed if random else 0}"
        self.teacher_key = hashlib.sha256(tkey.encode()).hexdigest()[:16]
        vkey = f"|k{self.variants}" if self.variants > 1 else ""
        self.key = hashlib.sha256(f"{tkey}|{images.data_hash}{vkey}".encode()).hexdigest()[:16]  # names this set
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
        k = self.variants
        out: list[Sample | None] = [None] * (len(self.images) * k)
        self._paths: list[Path] = []
        self._names: list[str] = []
        for name, img in self.images:  # each image decoded once here (its content hash names its entries)
            for v in range(k):
                self._paths.append(self.entry_path(img, v))
                self._names.append(self._name(name, v))
        # memory-mapped, not read (data/entries.py); absent or damaged: compute (ours) or wait (another shard's)
        todo = [j for j in range(len(out)) if not self._load(j, out)]
        index, count = self.shard
        mine = [j for j in todo if j % count == index]
        bar = tqdm(mine, desc=f"teacher {self.teacher.name}", unit="img", disable=not progress or not mine,
                   file=None, leave=False)
        # an entry another agd process is computing (its lock is held) is left for later, not waited for here
        deferred = [j for j in bar if not self._compute(j, out)]
        if deferred:
            warn(f"another agd process is computing {len(deferred)} teacher output(s) in {self.dir}: "
                 "using its results as they appear")
        self._wait_for_others(out, set(deferred))
        return out  # type: ignore[return-value]

    def _compute(self, j: int, out: list) -> bool:
        """Compute entry j unless it exists by now, under its own lock (`.locks/<entry>.lock`, the file
        utils.file_lock uses); False (nothing done) when another process holds that lock."""
        from filelock import FileLock, Timeout

        path = self._paths[j]
        (self.dir / ".locks").mkdir(exist_ok=True)
        lock = FileLock(str(self.dir / ".locks" / path.name) + ".lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return False
        try:
            if self._load(j, out):
                return True  # written by another process meanwhile
            i, v = divmod(j, self.variants)
            hr, lr = self.make_input(self.images[i][1], v)
            t = self.run_teacher(lr)
            with atomic_path(path, ".npz") as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, hr=hr, lr=lr, teacher=t)
        finally:
            lock.release()
        if not self._load(j, out):  # keep no copy: map what was written
            out[j] = Sample(self._names[j], hr, lr, t, v, i)
        self.computed += 1
        return True

    def _load(self, j: int, out: list) -> bool:
        """Map entry j into out[j] if it is on disk and whole."""
        i, v = divmod(j, self.variants)
        z = load_arrays(self._paths[j])
        if z is None:
            return False
        out[j] = Sample(self._names[j], z["hr"], z["lr"], z["teacher"], v, i)
        return True

    def _wait_for_others(self, out: list, ours: set[int]) -> None:
        """Poll the files of the other shards' entries until all exist (no collective: a long teacher run meets
        no process-group timeout); `ours` (held by another process a moment ago) are computed here if that
        process let go without writing them. Gives up after `wait_s` seconds in which no new entry appeared."""
        missing = [j for j, s in enumerate(out) if s is None]
        t_last = time.monotonic()
        while missing:
            time.sleep(self.POLL_S)
            left = [j for j in missing if not self._load(j, out) and not (j in ours and self._compute(j, out))]
            if len(left) < len(missing):
                t_last = time.monotonic()
            missing = left
            if missing and time.monotonic() - t_last > self.wait_s:
                index, count = self.shard
                raise AgdError(f"teacher outputs: {len(missing)} of {len(out)} entries of {self.dir} still missing "
                               f"after {self.wait_s:.0f} s without a new one (shard {index} of {count} is done; the "
                               f"ranks or processes computing the others stopped or are stuck; AGD_DIST_TIMEOUT "
                               "sets the limit)")

    POLL_S = 0.25

    def _name(self, name: str, v: int) -> str:
        return f"{name}#v{v}" if self.variants > 1 else name

    def make_input(self, img: np.ndarray, variant: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(hr, lr) of one image and variant, before the teacher runs."""
        full, img = img, center_crop(img, self.max_side)
        if self.native:
            return np.zeros((0, 0, 3), np.uint8), np.ascontiguousarray(img)
        if self.degradation.key == "bicubic":
            return make_lr(img, self.scale)
        return self.degradation.draw(full, img, self.scale, rng_for(self.seed, variant, img))

    def entry_path(self, img: np.ndarray, variant: int = 0) -> Path:
        h = hashlib.sha256(str(img.shape).encode() + img.tobytes()).hexdigest()[:20]
        random = self.degradation is not None and self.degradation.random
        return self.dir / (f"{h}.v{variant}.npz" if random else f"{h}.npz")

    TILE_BATCH = 8  # tiles per teacher call: batches keep a GPU busy (the teacher runs where its module is)

    def run_teacher(self, lr: np.ndarray) -> np.ndarray:
        """The teacher's uint8 output on `lr`; an input seen before in this build is not run again (the
        deterministic share of a random mix, e.g. native+bicubic's bicubic draws, repeats one LR per image).
        The memo holds at most one image's variants: entries are built image by image."""
        key = hashlib.sha256(str(lr.shape).encode() + np.ascontiguousarray(lr).tobytes()).digest()
        if key not in self._memo:
            while len(self._memo) >= self.variants:
                self._memo.pop(next(iter(self._memo)))
            self._memo[key] = self._run_teacher(lr)
        return self._memo[key]

    def _run_teacher(self, lr: np.ndarray) -> np.ndarray:
        vr = tuple(self.teacher.value_range)
        fn, dev = self.teacher, _module_device(self.teacher)
        if dev is not None and dev.type != "cpu":  # a teacher moved to a GPU: tiles go there and back (fp32)
            fn = lambda x: self.teacher(x.to(dev)).float().cpu()  # noqa: E731
        with torch.no_grad():
            y = tiled_apply(fn, to_tensor(lr, vr), self.scale, tile=self.tile, overlap=8,
                            batch=self.TILE_BATCH if fn is not self.teacher else 1)
        return to_uint8(y, vr)


def _module_device(teacher) -> torch.device | None:
    """The device of a torch teacher's weights (None for ONNX teachers and stand-ins without a module)."""
    module = getattr(teacher, "module", None)
    p = next(iter(module.parameters()), None) if module is not None else None
    return p.device if p is not None else None
