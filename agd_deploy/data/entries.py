"""Teacher-cache entries read on demand: an entry's arrays as read-only memory-maps into its `.npz`.

np.savez stores its members uncompressed, so each array is a plain byte range of the file: the offsets come
from the zip's local headers and the .npy headers. A dataset of hundreds of images then costs page cache, not
process memory, and a training patch reads only its own rows. Files that cannot be mapped (compressed, odd)
are loaded whole; absent or damaged ones give None (the cache recomputes them)."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np

KEYS = ("hr", "lr", "teacher")


class MapRef:
    """A read-only memory-map in pickled form (file, offset, shape, dtype, order): mapped again on load, so
    sending a cache's samples to a worker process copies no pixels. Other arrays pass through unchanged."""

    def __init__(self, filename: str, offset: int, shape: tuple, dtype: str, order: str):
        self.filename, self.offset, self.shape, self.dtype, self.order = filename, offset, shape, dtype, order

    @staticmethod
    def of(a):
        import mmap

        if isinstance(a, np.memmap) and isinstance(a.base, mmap.mmap) and a.filename:
            order = "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C"
            return MapRef(a.filename, int(a.offset), tuple(a.shape), a.dtype.str, order)
        return a

    @staticmethod
    def load(a):
        if isinstance(a, MapRef):
            return np.memmap(a.filename, dtype=np.dtype(a.dtype), mode="r", offset=a.offset, shape=a.shape,
                             order=a.order)
        return a


def npz_members(path: str | Path) -> dict[str, tuple[int, tuple, bool, np.dtype]] | None:
    """member -> (data offset, shape, fortran order, dtype) of an uncompressed .npz; None if it cannot be mapped."""
    members = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
        for info in zf.infolist():
            if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
                return None
            fh.seek(info.header_offset)
            local = fh.read(30)
            if local[:4] != b"PK\x03\x04":
                return None
            n_name, n_extra = struct.unpack("<HH", local[26:30])
            fh.seek(info.header_offset + 30 + n_name + n_extra)
            major, _minor = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(fh)
            if dtype.hasobject:
                return None
            members[info.filename[:-4]] = (fh.tell(), tuple(shape), bool(fortran), dtype)
    return members


def load_arrays(path: str | Path, keys: tuple[str, ...] = KEYS) -> dict[str, np.ndarray] | None:
    """{key: array} of an entry, memory-mapped where possible; None when absent, incomplete or damaged."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        m = npz_members(path)
        if m is not None:
            if not set(keys) <= m.keys():
                return None
            size = path.stat().st_size
            out = {}
            for k in keys:
                off, shape, fortran, dtype = m[k]
                if off + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize > size:
                    return None  # truncated
                out[k] = (np.memmap(path, dtype=dtype, mode="r", offset=off, shape=shape, order="F" if fortran else "C")
                          if np.prod(shape) else np.zeros(shape, dtype))
            return out
        with np.load(path) as z:
            return {k: z[k] for k in keys}
    except Exception:  # damaged entry: the caller recomputes it
        return None
