"""Issue 18 experiment (a negative result): native+bicubic with augmented native crops, one row per run.

    python benchmarks/native_augment.py {native+bicubic|jpeg|scale|jpegscale}

Trains the demo's student like benchmarks/degradation.py's native+bicubic row (16 variants, MSE, 500 steps) with
the native draws JPEG-saved and/or cut from a randomly downscaled image, evaluates (a)/(b)/(c), appends a JSON
row to runs/native_augment/results.jsonl. These draws are not a shipped degradation name, so the script swaps
`get_degradation` in the modules that call it. Results: benchmarks/results/degradation-native-augment.md."""
import json, sys, time
from dataclasses import dataclass
from pathlib import Path
import numpy as np
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks")); sys.path.insert(0, str(ROOT))
import degradation as B
import importlib
D = importlib.import_module("agd_deploy.data.degrade"); C = importlib.import_module("agd_deploy.data.cache")
from agd_deploy.data import builtin_images
L = importlib.import_module("agd_deploy.train.loop")

@dataclass(frozen=True)
class NativeX(D.NativeMix):
    jpeg_prob: float = 0.0
    jpeg_q: tuple = (50, 95)
    scale_lo: float = 1.0
    noise_prob: float = 0.0
    tag: str = ""
    @property
    def name(self): return "nx-" + self.tag
    @property
    def key(self): return f"nx:{self.tag}:{self.jpeg_prob}:{self.jpeg_q}:{self.scale_lo}:{self.noise_prob}+" + self.other.key
    def draw(self, full, hr, scale, rng):
        hr = D.crop_to_multiple(D.as_rgb_uint8(hr), scale)
        if rng.uniform() < self.native_prob:
            r = float(rng.uniform(self.scale_lo, 1.0)); j = rng.uniform() < self.jpeg_prob
            q = int(rng.integers(self.jpeg_q[0], self.jpeg_q[1] + 1)); nz = rng.uniform() < self.noise_prob
            sig = float(rng.uniform(1, 8))
            img = D.as_rgb_uint8(full)
            lh, lw = hr.shape[0] // scale, hr.shape[1] // scale
            if r < 1.0:
                h, w = img.shape[:2]
                nw, nh = max(lw, int(round(w * r))), max(lh, int(round(h * r)))
                img = D.to_uint8(D.resize(img.astype(np.float32) / 255, (nw, nh), "area" if "area" in D.RESIZE_MODES else "bicubic"))
            c = self.native_crop(img, lh, lw, rng)
            x = c.astype(np.float32) / 255
            if nz:
                x = np.clip(D.gaussian_noise(x, rng, sig, rng.uniform() < 0.4), 0, 1)
            if j:
                return np.zeros_like(hr), D.to_uint8(D.jpeg(x, q))
            return np.zeros_like(hr), D.to_uint8(x) if nz else c
        return hr, self.other.lr(hr, scale, rng)

CFGS = {
 "jpeg": NativeX(jpeg_prob=0.5, tag="jpeg"),
 "scale": NativeX(scale_lo=0.5, tag="scale"),
 "jpegscale": NativeX(jpeg_prob=0.5, scale_lo=0.5, tag="jpegscale"),
 "jpegnoise": NativeX(jpeg_prob=0.5, noise_prob=0.3, tag="jpegnoise"),
}
_orig = D.get_degradation
def getd(spec):
    if isinstance(spec, str) and spec.startswith("nx-"):
        return CFGS[spec[3:]]
    return _orig(spec)
L.get_degradation = C.get_degradation = D.get_degradation = getd

def main(name, steps=500, extra=None):
    import torch
    from agd_deploy.teachers import load_teacher
    from agd_deploy.train import TrainConfig, evaluate, train
    from agd_deploy.device import identify
    torch.set_num_threads(2)
    arch, _ = B.load_arch(str(ROOT / "benchmarks/results/degradation-native-anywhere.arch.json"))
    teacher = load_teacher(B.TEACHER)
    tr = builtin_images("train")
    held = builtin_images("heldout")
    ev = {"native": B.crops(held, 128, "native"), "degraded": B.crops(held, 256, "HR"), "bicubic": B.crops(held, 256, "HR")}
    deg = name if name in ("bicubic",) or name.startswith("native") else "nx-" + name
    cfg = TrainConfig(steps=steps, batch=8, patch=24, lr=1.5e-3, threads=2, loss="mse", seed=0, max_side=192,
                      degradation=deg, variants=16, **(extra or {}))
    work = Path(f"runs/native_augment/{name}-{steps}")
    t0 = time.time()
    res = train(arch, teacher, tr, cfg, work, resume=True, progress=False)
    row = {"name": name, "steps": steps, "train_s": res.get("train_seconds"), "teacher_s": res.get("teacher_seconds"),
           "wall_s": round(time.time() - t0, 1), "final_loss": res.get("final_loss"), "device": identify().device_class}
    for p in ("native", "degraded", "bicubic"):
        r = evaluate(str(work), ev[p], 4, teacher=teacher, progress=False, protocol=p)
        row[p] = r["gain_vs_bicubic_db"]
        row[p + "_per_image"] = {x["name"]: round(x["psnr_vs_teacher"] - x["bicubic_psnr_vs_teacher"], 2) for x in r["images"]}
    print(json.dumps(row), flush=True)
    with open("runs/native_augment/results.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")

if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 500)
