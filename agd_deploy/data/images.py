"""Image sets: a folder of the user's images, or the built-in natural images that scikit-image ships.

Every image is loaded as uint8 RGB HxWx3 (grayscale is replicated, alpha composited on white; either with one
`warning:` line per file). Files that cannot be read
are skipped with a warning on stderr; a set with no readable image is an error. A folder is lazy: opening it
reads only each file's header (size, format), and an image is decoded when it is accessed, so a dataset of
thousands of images (DIV2K's 800) is never in memory at once."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import AgdError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

# scikit-image's bundled sample images (in the wheel, no download), fixed split by name. Near-duplicates
# (motorcycle_right), synthetic images (phantom, chessboard, logo, color) and tiny ones are left out.
BUILTIN_TRAIN = ("astronaut", "rocket", "motorcycle_left", "hubble_deep_field", "retina", "brick", "grass",
                 "gravel", "moon", "ihc", "cell", "page", "text")
BUILTIN_HELDOUT = ("chelsea", "coffee", "camera", "coins")


def warn(msg: str) -> None:
    from ..log import warn as log_warn

    log_warn(msg)


def load_image(path: str | Path, say_converted: bool = True) -> np.ndarray:
    """uint8 RGB HxWx3. Raises OSError/ValueError for unreadable files (also for a header claiming more
    pixels than PIL's decompression-bomb limit: PIL raises its own exception type for that). say_converted:
    warn once for a user's file that is not plain RGB (off for the built-in set, grey photos on purpose)."""
    try:
        return _load_image(path, say_converted)
    except Image.DecompressionBombError as e:
        raise ValueError(str(e).split(",")[0]) from None


_CONVERTED: set[str] = set()  # files already warned about (a lazy folder decodes a file again on each access)


def _warn_converted(path, mode: str) -> None:
    """One warning per file whose pixels are not plain RGB: every model here is RGB, so alpha is composited on
    white and grey is replicated (the same for training, evaluation and teachers) rather than refused."""
    key = str(path)
    if key in _CONVERTED:
        return
    _CONVERTED.add(key)
    how = "alpha composited on white" if mode in ("RGBA", "LA", "P+alpha") else "converted to RGB"
    warn(f"{path}: {mode} pixels, {how}")


def _load_image(path: str | Path, say_converted: bool = True) -> np.ndarray:
    with Image.open(path) as im:
        im.load()
        if im.mode not in ("RGB", "P") and say_converted:
            _warn_converted(path, im.mode)
        elif im.mode == "P" and "transparency" in im.info and say_converted:
            _warn_converted(path, "P+alpha")
        if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(bg, im)
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            a = np.asarray(im, dtype=np.float64)
            im = Image.fromarray((a / max(1.0, a.max()) * 255).round().astype(np.uint8))
        arr = np.asarray(im.convert("RGB"))
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError("empty image")
    return np.ascontiguousarray(arr)


class Images:
    """A named, ordered list of uint8 RGB images with a content hash (for cache keys)."""

    def __init__(self, names: list[str], arrays: list[np.ndarray], source: str):
        self.names, self.arrays, self.source = list(names), list(arrays), source
        if not self.arrays:
            raise AgdError(f"no readable images in {source}")

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> tuple[str, np.ndarray]:
        return self.names[i], self.arrays[i]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def shape(self, i: int) -> tuple[int, int, int]:
        """(H, W, 3) of image i (without decoding it, for a folder)."""
        return tuple(self.arrays[i].shape)  # type: ignore[return-value]

    @property
    def data_hash(self) -> str:
        cached = getattr(self, "_data_hash", None)
        if cached is not None:
            return cached
        h = hashlib.sha256()
        for n, a in self:  # one image at a time
            h.update(n.encode() + b"\0" + str(a.shape).encode())
            h.update(hashlib.sha256(a.tobytes()).digest())
        self._data_hash = h.hexdigest()[:16]
        return self._data_hash

    def _select(self, keep: list[int]) -> "Images":
        return Images([self.names[i] for i in keep], [self.arrays[i] for i in keep], self.source)

    def subset(self, min_hw: int, what: str = "the patch size") -> "Images":
        """Only images at least min_hw x min_hw (warn about the others; error if none is left)."""
        keep = [i for i in range(len(self)) if min(self.shape(i)[:2]) >= min_hw]
        for i in range(len(self)):
            if i not in keep:
                h, w = self.shape(i)[:2]
                warn(f"skipping {self.names[i]}: {w}x{h} is smaller than {what} ({min_hw}x{min_hw})")
        if not keep:
            raise AgdError(f"every image in {self.source} is smaller than {what} ({min_hw}x{min_hw})")
        return self._select(keep)


def _header_shape(path: Path) -> tuple[int, int, int]:
    """(H, W, 3) from the file's header only; raises what PIL raises for a file it cannot identify."""
    with Image.open(path) as im:
        w, h = im.size
    if w < 1 or h < 1:
        raise ValueError("empty image")
    return (h, w, 3)


class ImageFolder(Images):
    """All images under `root` (recursively, sorted by relative path), decoded on access (lazy): opening a
    folder reads headers only; `folder[i]` / iteration decode one image at a time."""

    def __init__(self, root: str | Path):
        root = Path(root)
        if not root.exists():
            raise AgdError(f"data folder {root} does not exist")
        if root.is_file():
            files = [root]
        else:
            files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise AgdError(f"data folder {root} is empty")
        names, paths, shapes = [], [], []
        for p in files:
            name = str(p.relative_to(root)) if p != root else p.name
            if p.suffix.lower() not in EXTENSIONS:
                warn(f"skipping {p}: not an image file ({p.suffix or 'no extension'})")
                continue
            try:
                shapes.append(_header_shape(p))
                paths.append(p)
                names.append(name)
            except (OSError, ValueError, Image.DecompressionBombError) as e:
                warn(f"skipping {p}: cannot read it as an image ({str(e).splitlines()[0][:120]})")
        self._init_lazy(names, paths, shapes, str(root))

    def _init_lazy(self, names, paths, shapes, source: str) -> None:
        self.names, self.paths, self._shapes, self.source = list(names), list(paths), list(shapes), source
        if not self.paths:
            raise AgdError(f"no readable images in {source}")

    @property
    def arrays(self) -> list[np.ndarray]:  # type: ignore[override]
        """Every image decoded (the eager list of `Images`; avoid it for large folders)."""
        return [self[i][1] for i in range(len(self))]

    def __getitem__(self, i: int) -> tuple[str, np.ndarray]:
        p = self.paths[i]
        try:
            return self.names[i], load_image(p)
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise AgdError(f"cannot read {p} as an image: {str(e).splitlines()[0][:120]}") from None

    def shape(self, i: int) -> tuple[int, int, int]:
        return self._shapes[i]

    def _select(self, keep: list[int]) -> "Images":
        sub = ImageFolder.__new__(ImageFolder)
        sub._init_lazy([self.names[i] for i in keep], [self.paths[i] for i in keep],
                       [self._shapes[i] for i in keep], self.source)
        return sub


def builtin_images(split: str = "train") -> Images:
    """scikit-image's bundled images: split 'train', 'heldout' or 'all' (fixed by name)."""
    import skimage.data

    names = {"train": BUILTIN_TRAIN, "heldout": BUILTIN_HELDOUT, "all": BUILTIN_TRAIN + BUILTIN_HELDOUT}.get(split)
    if names is None:
        raise AgdError(f"unknown built-in split {split!r}: train, heldout or all")
    folder = Path(skimage.data.__file__).parent
    arrays, kept = [], []
    for n in names:
        cands = [folder / f"{n}{ext}" for ext in (".png", ".jpg")]
        path = next((c for c in cands if c.is_file()), None)
        if path is None:
            warn(f"built-in image {n} is not in this scikit-image install")
            continue
        arrays.append(load_image(path, say_converted=False))
        kept.append(n)
    return Images(kept, arrays, f"built-in images ({split})")


def open_images(spec: str | Path | None, split: str = "train") -> Images:
    """--data: a folder/file, or None/'builtin' for the built-in set ('builtin:heldout' picks a split)."""
    if spec is None or str(spec) == "builtin":
        return builtin_images(split)
    if str(spec).startswith("builtin:"):
        return builtin_images(str(spec).split(":", 1)[1])
    return ImageFolder(spec)
