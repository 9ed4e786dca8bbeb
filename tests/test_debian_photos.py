"""benchmarks/debian_photos.py: lays out the benchmark's training photos, or says in one line what is missing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "debian_photos.py"


@pytest.fixture(scope="module")
def mod():
    spec = importlib.util.spec_from_file_location("debian_photos", SCRIPT)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def test_missing_packages_are_one_line_and_exit_2(mod, tmp_path, capsys):
    assert mod.main(["--root", str(tmp_path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing" in err[0] and "--root" in err[0]
    assert not (tmp_path / "out").exists()  # nothing half-made


def test_a_laid_out_root_gives_one_png_per_photo_large_ones_downscaled(mod, tmp_path):
    import skimage.data

    base, files = mod.SOURCES["lomiri"]
    photo = skimage.data.astronaut()  # 512x512 RGB
    for i, f in enumerate(files):
        p = tmp_path / base / f
        p.parent.mkdir(parents=True, exist_ok=True)
        big = np.kron(photo, np.ones((4, 3, 1), np.uint8)) if i == 0 else photo  # 2048x1536 for the first
        Image.fromarray(big).save(p, quality=95)
    assert mod.main(["--root", str(tmp_path), "--only", "lomiri", str(tmp_path / "out")]) == 0
    outs = sorted((tmp_path / "out").iterdir())
    assert len(outs) == len(files) and all(o.suffix == ".png" and o.name.startswith("lomiri__") for o in outs)
    sizes = {o.name: Image.open(o).size for o in outs}
    first = f"lomiri__{Path(files[0]).stem}.png"
    assert sizes[first] == (mod.MAX_SIDE * 1536 // 2048, mod.MAX_SIDE)  # 1536x2048 -> 768x1024, aspect kept
    assert all(s == (512, 512) for n, s in sizes.items() if n != first)  # small ones untouched
