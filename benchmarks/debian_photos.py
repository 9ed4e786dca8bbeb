"""Lay out a folder of natural photos from Debian packages, for the data-size rows of benchmarks/degradation.py
(issue 18: does distilling on tens of photos, not scikit-image's 13, reach the goal?).

No Python package ships tens of photos without a download at run time; two Debian packages do, so this stays
offline at run time once they are fetched from the registry:

- `opencv-doc`: OpenCV's samples/data and other sample folders; 35 real photographs of it are listed below, one
  of each near-duplicate pair (stereo pairs, before/after shots), renders, drawings, charts, text scans and
  synthetic test patterns left out;
- `lomiri-wallpapers-16.04` and `lomiri-wallpapers-20.04`: Ubuntu's wallpaper-contest photos (CC BY-SA), 14 of
  them (the abstract and painted ones left out). They are 1.4k-6k px wide: each is downscaled (PIL's area filter)
  to at most MAX_SIDE px on its long side, so a 192-px training crop holds a scene, not a patch of sky.

    apt-get download opencv-doc lomiri-wallpapers-16.04 lomiri-wallpapers-20.04
    for d in *.deb; do dpkg -x $d /tmp/photos-root; done      # or apt-get install them: --root /
    python benchmarks/debian_photos.py --root /tmp/photos-root OUT_DIR [--only opencv]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

MAX_SIDE = 1024
SOURCES = {
    "opencv": ("usr/share/doc/opencv-doc/examples", (
        "alphamat/input_images/plant.jpg", "data/aero1.jpg", "data/aloeL.jpg", "data/apple.jpg", "data/baboon.jpg",
        "data/basketball1.png", "data/board.jpg", "data/box_in_scene.png", "data/building.jpg", "data/butterfly.jpg",
        "data/chicky_512.png", "data/ela_original.jpg", "data/fruits.jpg", "data/graf1.png", "data/home.jpg",
        "data/leuvenA.jpg", "data/messi5.jpg", "data/orange.jpg", "data/pca_test1.jpg", "data/rubberwhale1.png",
        "data/smarties.png", "data/squirrel_cls.jpg", "data/stuff.jpg", "data/sudoku.png",
        "dnn_superres/butterfly.png", "hfs/data/000.jpg", "hfs/data/001.jpg", "hfs/data/002.jpg", "reg/home.png",
        "text/scenetext01.jpg", "text/scenetext02.jpg", "text/scenetext03.jpg", "text/scenetext04.jpg",
        "text/scenetext05.jpg", "text/scenetext06.jpg")),
    "lomiri": ("usr/share/backgrounds", (
        "Bridge_by_Sander_Klootwijk.jpg", "Dragonfly_by_Bolly.jpg", "Kleiber_by_Lukas_Baubkus.jpg",
        "Picture_0B_by_freespace.jpg", "Picture_1A_by_freespace.jpg", "Wine_by_Jakkub_Mede.jpg",
        "aitzgorri_by_Aitzol_Berasategi.jpg", "free_by_Peter_Nerlich.jpg", "friends_by_Aitzol_Berasategi.jpg",
        "greentock_by_Peter_Nerlich.jpg", "life_by_Aitzol_Berasategi.jpg", "picosdeeuropa_by_Aitzol_Berasategi.jpg",
        "seeding_by_Clements_Engelhardt.jpg", "sunset_by_Aitzol_Berasategi.jpg")),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="folder to write (one PNG per photo, named source__path)")
    ap.add_argument("--root", default="/", help="where the packages are installed or extracted (dpkg -x)")
    ap.add_argument("--only", choices=sorted(SOURCES), default=None, help="one source (default: both)")
    a = ap.parse_args(argv)
    todo = [(name, Path(a.root) / base / p) for name, (base, files) in SOURCES.items()
            if a.only in (None, name) for p in files]
    missing = [str(p) for _, p in todo if not p.is_file()]
    if missing:
        print(f"error: {len(missing)} of {len(todo)} photos are missing (first: {missing[0]}); fetch the packages "
              "and pass --root (see --help)", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, p in todo:
        with Image.open(p) as im:
            im.load()
            if max(im.size) > MAX_SIDE:
                r = MAX_SIDE / max(im.size)
                im = im.resize((round(im.width * r), round(im.height * r)), Image.Resampling.BOX)
            stem = "__".join(p.relative_to(Path(a.root) / SOURCES[name][0]).with_suffix("").parts)
            im.save(out / f"{name}__{stem}.png")  # PNG: no second JPEG pass over the photo
    print(f"wrote {len(todo)} photos to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
