"""Issue 18 experiment (a negative result): native+bicubic with augmented native crops, one row per run.

    python benchmarks/native_augment.py {native+bicubic|jpeg|scale|jpegscale|jpegnoise} [STEPS]

Trains the demo's student like benchmarks/degradation.py's native+bicubic row (16 variants, MSE, 500 steps) with
the native draws JPEG-saved, noised and/or cut from a randomly downscaled image, evaluates (a)/(b)/(c) and appends
a JSON row to runs/native_augment/results.jsonl. The augmented draws are not shipped degradations: the script
registers them as `nx-NAME` (`register_degradation`). Results: benchmarks/results/degradation-native-augment.md."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

import degradation as B  # noqa: E402  (benchmarks/degradation.py: the arch, the teacher, the eval crops)

from agd_deploy.data import builtin_images  # noqa: E402
from agd_deploy.data.degrade import NativeMix, gaussian_noise, jpeg, register_degradation, resize, to_uint8  # noqa: E402


@dataclass(frozen=True)
class NativeX(NativeMix):
    """native+bicubic whose native crops are augmented: with probability jpeg_prob saved as JPEG (quality drawn
    in jpeg_q), with noise_prob Gaussian noise (std 1..8, 40% grey), cut from the image downscaled by
    r ~ U(scale_lo, 1) (area)."""

    jpeg_prob: float = 0.0
    jpeg_q: tuple = (50, 95)
    scale_lo: float = 1.0
    noise_prob: float = 0.0
    tag: str = ""

    @property
    def name(self) -> str:  # type: ignore[override]
        return "nx-" + self.tag

    @property
    def key(self) -> str:
        return f"nx:{self.tag}:{self.jpeg_prob}:{self.jpeg_q}:{self.scale_lo}:{self.noise_prob}+" + self.other.key

    def native_lr(self, img, lh, lw, rng):
        # every draw is made whether used or not, so one setting does not shift another's random stream
        r = float(rng.uniform(self.scale_lo, 1.0))
        use_jpeg = rng.uniform() < self.jpeg_prob
        q = int(rng.integers(self.jpeg_q[0], self.jpeg_q[1] + 1))
        use_noise = rng.uniform() < self.noise_prob
        sigma = float(rng.uniform(1, 8))
        if r < 1.0:
            h, w = img.shape[:2]
            size = (max(lw, int(round(w * r))), max(lh, int(round(h * r))))
            img = to_uint8(resize(img.astype(np.float32) / 255, size, "area"))
        x = self.native_crop(img, lh, lw, rng).astype(np.float32) / 255
        if use_noise:
            x = np.clip(gaussian_noise(x, rng, sigma, rng.uniform() < 0.4), 0, 1)
        if use_jpeg:
            x = jpeg(x, q)
        return to_uint8(x)


CFGS = {
    "jpeg": NativeX(jpeg_prob=0.5, tag="jpeg"),
    "scale": NativeX(scale_lo=0.5, tag="scale"),
    "jpegscale": NativeX(jpeg_prob=0.5, scale_lo=0.5, tag="jpegscale"),
    "jpegnoise": NativeX(jpeg_prob=0.5, noise_prob=0.3, tag="jpegnoise"),
}
for _name, _deg in CFGS.items():
    register_degradation("nx-" + _name, lambda d=_deg: d)


def main(name: str, steps: int = 500) -> dict:
    import torch

    from agd_deploy.device import identify
    from agd_deploy.teachers import load_teacher
    from agd_deploy.train import TrainConfig, evaluate, train

    torch.set_num_threads(2)
    arch, _ = B.load_arch(str(ROOT / "benchmarks/results/degradation-native-anywhere.arch.json"))
    teacher = load_teacher(B.TEACHER)
    held = builtin_images("heldout")
    ev = {"native": B.crops(held, 128, "native"), "degraded": B.crops(held, 256, "HR"),
          "bicubic": B.crops(held, 256, "HR")}
    cfg = TrainConfig(steps=steps, batch=8, patch=24, lr=1.5e-3, threads=2, loss="mse", seed=0, max_side=192,
                      degradation=f"nx-{name}" if name in CFGS else name, variants=16)
    work = Path(f"runs/native_augment/{name}-{steps}")
    t0 = time.time()
    res = train(arch, teacher, builtin_images("train"), cfg, work, resume=True, progress=False)
    row = {"name": name, "steps": steps, "train_s": res.get("train_seconds"), "teacher_s": res.get("teacher_seconds"),
           "wall_s": round(time.time() - t0, 1), "final_loss": res.get("final_loss"), "device": identify().device_class}
    for p in ("native", "degraded", "bicubic"):
        r = evaluate(str(work), ev[p], 4, teacher=teacher, progress=False, protocol=p)
        row[p] = r["gain_vs_bicubic_db"]
        row[p + "_per_image"] = {x["name"]: round(x["psnr_vs_teacher"] - x["bicubic_psnr_vs_teacher"], 2)
                                 for x in r["images"]}
    print(json.dumps(row), flush=True)
    with open("runs/native_augment/results.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    return row


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 500)
