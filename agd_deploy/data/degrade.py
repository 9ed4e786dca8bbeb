"""Degradations that make the LR input a student is distilled (and evaluated, and calibrated) on.

A distilled generator is only a compressed teacher on the inputs it was distilled on. Real-ESRGAN was trained on
its second-order degradation model (Wang et al. 2021, "Real-ESRGAN: Training Real-World Blind Super-Resolution
with Pure Synthetic Data", sec. 3), so a student of it must see those inputs too, not only clean bicubic ones.

Names (`get_degradation`, the `--degradation` flag and the recipe key):

- `bicubic`: the SR protocol's LR (`protocol.make_lr`), bit for bit;
- `realesrgan`: two stages of blur -> random resize -> noise -> JPEG, then resize to HR/scale with a final sinc
  filter and JPEG in random order, as Real-ESRGAN x4plus's training options draw them (`RealESRGANConfig`);
- `realesrgan+clean`: the same, but 30% of the draws are plain bicubic LR (a student also fed clean images);
  `realesrgan+clean:P` a share P of them;
- `photo`: one mild stage closer to the photos users feed at their own resolution (soft, lightly compressed,
  little noise): Gaussian blur of the HR, a downscale with random interpolation, mild Gaussian noise, JPEG at a
  realistic quality, each with its own probability, and a share of plain bicubic LR (`PhotoConfig`);
- `jpeg:Q`: bicubic LR saved as JPEG at quality Q (1..100);
- `noise:S`: bicubic LR plus Gaussian noise of std S (0..255 scale), colour;
- `native+bicubic`, `native+photo`, `native+realesrgan`, `native+realesrgan+clean` (`native:P+X`: share P): a
  share NATIVE_PROB of the draws is a crop of the image
  itself, from anywhere in it, at its own resolution (no downscale: what users feed `agd upscale`, the native
  protocol's distribution; distillation needs no ground truth, the target is the teacher's output on that crop),
  the rest the named degradation's LR (`NativeMix`). A native draw has no HR: its stored HR is zeros (training
  with gt_weight refuses it).

Every random choice comes from a numpy Generator: `rng_for(seed, variant, img)` seeds one per (seed, variant,
image content), so the same settings give the same LR on any machine and every image gets its own draw. Only
numpy, scipy and Pillow (resizes are Pillow's, which antialias where torch's F.interpolate, used by Real-ESRGAN,
does not; JPEG is Pillow's libjpeg at 4:2:0 like Real-ESRGAN's DiffJPEG)."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from io import BytesIO
from typing import Callable

import numpy as np
from PIL import Image

from ..errors import AgdError
from .protocol import crop_to_multiple, make_lr

KERNELS = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = {"area": Image.BOX, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}
NAMES = ("bicubic", "realesrgan", "realesrgan+clean", "realesrgan+clean:P", "photo", "jpeg:Q", "noise:S",
         "native+bicubic", "native+photo", "native+realesrgan", "native+realesrgan+clean")
CLEAN_PROB = 0.3  # realesrgan+clean: this share of the variants is clean bicubic LR
NATIVE_PROB = 0.5  # native+X: this share of the variants is a native-resolution crop of the image


# ---------------------------------------------------------------------------------------------- inputs

def as_rgb_uint8(img: np.ndarray) -> np.ndarray:
    """uint8 HxWx3, the way `images.load_image` converts files: grey (HxW or HxWx1) replicated, RGBA/LA
    composited over white. Anything else (another dtype, 2 or 5+ channels) is refused in one line."""
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise AgdError(f"degradations take uint8 images, got {a.dtype}")
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[0] < 1 or a.shape[1] < 1 or a.shape[2] not in (1, 2, 3, 4):
        raise AgdError(f"degradations take HxW, HxWx1, HxWx3 or HxWx4 images, got shape {tuple(a.shape)}")
    if a.shape[2] in (2, 4):  # grey+alpha / RGBA over white, as load_image does
        rgb, alpha = a[..., :-1].astype(np.float64), a[..., -1:].astype(np.float64) / 255.0
        a = np.round(rgb * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(a)


def rng_for(seed: int, variant: int, img: np.ndarray) -> np.random.Generator:
    """The Generator of one (seed, variant, image): the image's content picks its own draw."""
    h = hashlib.sha256(str(img.shape).encode() + np.ascontiguousarray(img).tobytes()).digest()
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(variant), int.from_bytes(h[:8], "little")])


# ---------------------------------------------------------------------------------------------- kernels

def _grid(size: int) -> np.ndarray:
    ax = np.arange(-(size // 2), size // 2 + 1, dtype=np.float64)
    xx, yy = np.meshgrid(ax, ax)
    return np.stack([xx, yy], -1)  # size x size x 2


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float = 0.0, beta: float = 1.0,
                    kind: str = "gaussian") -> np.ndarray:
    """A normalised size x size kernel of the bivariate (generalised / plateau) Gaussian family:
    gaussian exp(-q/2), generalized exp(-q^beta/2), plateau 1/(1+q^beta), q = x^T Sigma^-1 x with Sigma the
    rotation by theta of diag(sigma_x^2, sigma_y^2)."""
    if size % 2 != 1 or size < 1:
        raise ValueError(f"kernel size must be odd, got {size}")
    c, s = math.cos(theta), math.sin(theta)
    u = np.array([[c, -s], [s, c]])
    cov = u @ np.diag([sigma_x ** 2, sigma_y ** 2]) @ u.T
    g = _grid(size)
    q = np.einsum("ijk,kl,ijl->ij", g, np.linalg.inv(cov), g)
    if kind == "gaussian":
        k = np.exp(-0.5 * q)
    elif kind == "generalized":
        k = np.exp(-0.5 * np.power(q, beta))
    elif kind == "plateau":
        k = 1.0 / (np.power(q, beta) + 1.0)
    else:
        raise ValueError(f"unknown kernel kind {kind!r}")
    return k / k.sum()


def sinc_kernel(size: int, omega: float) -> np.ndarray:
    """The 2-D circular low-pass (sinc) kernel with cutoff omega (rad/pixel): ringing and overshoot artifacts."""
    from scipy.special import j1

    r = np.sqrt((_grid(size) ** 2).sum(-1))
    with np.errstate(divide="ignore", invalid="ignore"):
        k = omega * j1(omega * r) / (2 * np.pi * r)
    k[r == 0] = omega ** 2 / (4 * np.pi)
    return k / k.sum()


@dataclass(frozen=True)
class BlurConfig:
    """One stage's blur, as Real-ESRGAN x4plus draws it (BasicSR `random_mixed_kernels`)."""

    prob: float = 1.0                       # chance the stage blurs at all
    kernel_sizes: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)
    kernel_probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)  # over KERNELS
    sigma: tuple[float, float] = (0.2, 3.0)
    betag: tuple[float, float] = (0.5, 4.0)  # generalised Gaussian shape
    betap: tuple[float, float] = (1.0, 2.0)  # plateau shape
    sinc_prob: float = 0.1                  # a sinc kernel instead of the Gaussian family


def _beta(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    lo, hi = lo_hi  # half the draws below 1 (heavier tails), half above (flatter tops), as BasicSR does
    return float(rng.uniform(lo, 1.0) if rng.uniform() < 0.5 else rng.uniform(1.0, hi))


def random_kernel(rng: np.random.Generator, cfg: BlurConfig) -> np.ndarray:
    size = int(rng.choice(cfg.kernel_sizes))
    if rng.uniform() < cfg.sinc_prob:
        omega = rng.uniform(math.pi / 3, math.pi) if size < 13 else rng.uniform(math.pi / 5, math.pi)
        return sinc_kernel(size, float(omega))
    p = np.asarray(cfg.kernel_probs, float)
    name = KERNELS[int(rng.choice(len(KERNELS), p=p / p.sum()))]
    sx = float(rng.uniform(*cfg.sigma))
    if name.endswith("_iso") or name == "iso":
        sy, theta = sx, 0.0
    else:
        sy, theta = float(rng.uniform(*cfg.sigma)), float(rng.uniform(-math.pi, math.pi))
    if name.startswith("generalized"):
        return gaussian_kernel(size, sx, sy, theta, _beta(rng, cfg.betag), "generalized")
    if name.startswith("plateau"):
        return gaussian_kernel(size, sx, sy, theta, _beta(rng, cfg.betap), "plateau")
    return gaussian_kernel(size, sx, sy, theta)


# ---------------------------------------------------------------------------------------------- operations
# float32 HxWx3 in [0, 1] (values may leave it between steps, as in Real-ESRGAN; JPEG and the end clip)

def filter2d(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve each channel with `kernel`, edges reflected (torch's 'reflect' padding, as Real-ESRGAN pads)."""
    from scipy.signal import fftconvolve

    p = kernel.shape[0] // 2
    h, w = img.shape[:2]
    mode = "reflect" if min(h, w) > 1 else "edge"
    padded = np.pad(img, ((p, p), (p, p), (0, 0)), mode=mode)
    out = fftconvolve(padded, kernel[:, :, None], mode="valid", axes=(0, 1))
    return out.astype(np.float32)


def resize(img: np.ndarray, size_wh: tuple[int, int], mode: str) -> np.ndarray:
    """Pillow resize of each channel in float ('F' mode): area (box), bilinear or bicubic."""
    w, h = max(1, int(size_wh[0])), max(1, int(size_wh[1]))
    if (w, h) == (img.shape[1], img.shape[0]):
        return img
    f = RESIZE_MODES[mode]
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(img[..., c], dtype=np.float32), "F").resize((w, h), f))
             for c in range(img.shape[2])]
    return np.stack(chans, -1).astype(np.float32)


def gaussian_noise(img: np.ndarray, rng: np.random.Generator, sigma255: float, gray: bool) -> np.ndarray:
    """img + N(0, sigma/255): one noise image for all channels when `gray`, else one per channel."""
    shape = img.shape[:2] + ((1,) if gray else (img.shape[2],))
    return img + (rng.standard_normal(shape) * (sigma255 / 255.0)).astype(np.float32)


def poisson_noise(img: np.ndarray, rng: np.random.Generator, scale: float, gray: bool) -> np.ndarray:
    """Shot noise, as BasicSR draws it: Poisson(x * vals) / vals - x with vals the number of distinct levels
    rounded up to a power of two, times `scale`; on the luma for `gray` (the same noise in every channel)."""
    x = np.clip(img, 0.0, 1.0)
    if gray:
        x = (0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2])[..., None]
    x = np.round(x * 255.0) / 255.0
    vals = float(2 ** math.ceil(math.log2(max(2, len(np.unique(x))))))
    noise = rng.poisson(x * vals) / vals - x
    return img + (noise * scale).astype(np.float32)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Clip, round to uint8, JPEG-encode at `quality` with Pillow (4:2:0), decode."""
    u8 = np.clip(np.round(np.clip(img, 0.0, 1.0) * 255.0), 0, 255).astype(np.uint8)
    buf = BytesIO()
    Image.fromarray(u8).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- degradations

class Degradation:
    """HR uint8 -> (HR cropped to a multiple of scale, LR uint8 of HR/scale); `key` names the settings (caches)."""

    name = "degradation"

    @property
    def key(self) -> str:
        return self.name

    @property
    def random(self) -> bool:
        """Whether variants differ (a deterministic degradation needs only one)."""
        return False

    def __call__(self, hr: np.ndarray, scale: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        hr = crop_to_multiple(as_rgb_uint8(hr), scale)
        if hr.shape[0] < scale or hr.shape[1] < scale:
            raise AgdError(f"a {hr.shape[1]}x{hr.shape[0]} image is too small to degrade at x{scale}")
        return hr, self.lr(hr, scale, rng)

    def draw(self, full: np.ndarray, hr: np.ndarray, scale: int, rng: np.random.Generator):
        """One draw for the teacher cache: `hr` is the crop of the whole image `full` that the cache keeps.
        Most degradations use `hr` only; NativeMix cuts its native crops from `full`."""
        return self(hr, scale, rng)

    def lr(self, hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<degradation {self.key}>"


class Bicubic(Degradation):
    name = "bicubic"

    def lr(self, hr, scale, rng):
        return make_lr(hr, scale)[1]


@dataclass(frozen=True)
class Jpeg(Degradation):
    quality: int = 75

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"jpeg:{self.quality}"

    def lr(self, hr, scale, rng):
        return to_uint8(jpeg(make_lr(hr, scale)[1].astype(np.float32) / 255.0, self.quality))


@dataclass(frozen=True)
class Noise(Degradation):
    sigma: float = 10.0

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"noise:{self.sigma:g}"

    @property
    def random(self) -> bool:
        return self.sigma > 0

    def lr(self, hr, scale, rng):
        return to_uint8(gaussian_noise(make_lr(hr, scale)[1].astype(np.float32) / 255.0, rng, self.sigma, False))


@dataclass(frozen=True)
class StageConfig:
    """One stage of Real-ESRGAN's degradation: blur -> random resize -> noise -> JPEG."""

    blur: BlurConfig = field(default_factory=BlurConfig)
    resize_probs: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5                           # else Poisson
    noise_range: tuple[float, float] = (1.0, 30.0)             # Gaussian std, 0..255 scale
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple[float, float] = (30.0, 95.0)


@dataclass(frozen=True)
class RealESRGANConfig:
    """Real-ESRGAN x4plus's degradation options (options/train_realesrgan_x4plus.yml in xinntao/Real-ESRGAN)."""

    stage1: StageConfig = field(default_factory=StageConfig)
    stage2: StageConfig = field(default_factory=lambda: StageConfig(
        blur=BlurConfig(prob=0.8, sigma=(0.2, 1.5)), resize_probs=(0.3, 0.4, 0.3), resize_range=(0.3, 1.2),
        noise_range=(1.0, 25.0), poisson_scale_range=(0.05, 2.5)))
    final_sinc_prob: float = 0.8
    final_sinc_sizes: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)
    clean_prob: float = 0.0  # share of draws that are plain bicubic LR (not Real-ESRGAN's; `realesrgan+clean`:
                             # a student fed clean images too must not lose them to the real-world pipeline)

    def to_dict(self) -> dict:
        return asdict(self)


class _Configured(Degradation):
    """A random pipeline set by a frozen `config` dataclass (the subclass's field). Its cache key,
    `<PREFIX>:v<VERSION>:<hash of the config>`, changes with any setting or pipeline version."""

    PREFIX = ""
    VERSION = 1  # bump in a subclass when its code changes what a (config, seed) produces: cached LRs go stale

    @property
    def key(self) -> str:
        blob = json.dumps(self.config.to_dict(), sort_keys=True)  # type: ignore[attr-defined]
        return f"{self.PREFIX}:v{self.VERSION}:{hashlib.sha256(blob.encode()).hexdigest()[:12]}"

    @property
    def random(self) -> bool:
        return True


@dataclass(frozen=True)
class RealESRGAN(_Configured):
    config: RealESRGANConfig = field(default_factory=RealESRGANConfig)
    PREFIX, VERSION = "realesrgan", 1

    @property
    def name(self) -> str:  # type: ignore[override]
        p = self.config.clean_prob
        return "realesrgan" if p <= 0 else "realesrgan+clean" if p == CLEAN_PROB else f"realesrgan+clean:{p:g}"

    def lr(self, hr, scale, rng):
        c = self.config
        h, w = hr.shape[:2]
        lh, lw = h // scale, w // scale
        if c.clean_prob > 0 and rng.uniform() < c.clean_prob:  # drawn only then: plain configs keep their draws
            return make_lr(hr, scale)[1]
        x = hr.astype(np.float32) / 255.0
        x = self._stage(x, c.stage1, rng, None)
        x = self._stage(x, c.stage2, rng, (lh, lw))
        if rng.uniform() < c.final_sinc_prob:
            size = int(rng.choice(c.final_sinc_sizes))
            sinc = sinc_kernel(size, float(rng.uniform(math.pi / 3, math.pi)))
        else:
            sinc = None
        q = int(round(rng.uniform(*c.stage2.jpeg_range)))
        mode = str(rng.choice(list(RESIZE_MODES)))
        if rng.uniform() < 0.5:  # resize back + sinc, then JPEG
            x = resize(x, (lw, lh), mode)
            if sinc is not None:
                x = filter2d(x, sinc)
            x = jpeg(x, q)
        else:                    # JPEG, then resize back + sinc
            x = jpeg(x, q)
            x = resize(x, (lw, lh), mode)
            if sinc is not None:
                x = filter2d(x, sinc)
        return to_uint8(x)

    @staticmethod
    def _stage(x: np.ndarray, s: StageConfig, rng: np.random.Generator, lr_hw) -> np.ndarray:
        """lr_hw None: the first stage resizes by its factor; else the second resizes to factor x the LR size."""
        if rng.uniform() < s.blur.prob:
            x = filter2d(x, random_kernel(rng, s.blur))
        kind = int(rng.choice(3, p=np.asarray(s.resize_probs) / sum(s.resize_probs)))
        f = (rng.uniform(1.0, s.resize_range[1]), rng.uniform(s.resize_range[0], 1.0), 1.0)[kind]
        mode = str(rng.choice(list(RESIZE_MODES)))
        bh, bw = lr_hw if lr_hw is not None else x.shape[:2]
        x = resize(x, (int(bw * f), int(bh * f)), mode)
        gray = rng.uniform() < s.gray_noise_prob
        if rng.uniform() < s.gaussian_noise_prob:
            x = gaussian_noise(x, rng, float(rng.uniform(*s.noise_range)), gray)
        else:
            x = poisson_noise(x, rng, float(rng.uniform(*s.poisson_scale_range)), gray)
        x = np.clip(x, 0.0, 1.0)
        return jpeg(x, int(round(rng.uniform(*s.jpeg_range))))


@dataclass(frozen=True)
class PhotoConfig:
    """`photo`'s draws. Photos fed at their own resolution are softer than a bicubic-downscaled image (camera
    optics, demosaicing, earlier resizes), carry JPEG at the qualities cameras and sites save (not 30), and little
    noise; Real-ESRGAN's two heavy stages teach a small student to smooth everything (benchmarks/results/
    degradation.md). Blur sigmas are in HR pixels (scale 4: sigma 4 is one LR pixel)."""

    clean_prob: float = 0.2                    # plain bicubic LR
    blur_prob: float = 0.8
    blur_sigma: tuple[float, float] = (0.2, 4.0)
    aniso_prob: float = 0.3                    # anisotropic (else isotropic) Gaussian
    noise_prob: float = 0.3
    noise_range: tuple[float, float] = (1.0, 6.0)  # Gaussian std, 0..255 scale
    gray_noise_prob: float = 0.4
    jpeg_prob: float = 0.7
    jpeg_range: tuple[float, float] = (60.0, 95.0)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Photo(_Configured):
    config: PhotoConfig = field(default_factory=PhotoConfig)
    PREFIX, VERSION = "photo", 1

    name = "photo"

    def lr(self, hr, scale, rng):
        c = self.config
        h, w = hr.shape[:2]
        # every draw is made whether used or not, so changing one probability leaves the others' draws alone
        clean = rng.uniform() < c.clean_prob
        blur = rng.uniform() < c.blur_prob
        sx = float(rng.uniform(*c.blur_sigma))
        aniso = rng.uniform() < c.aniso_prob
        sy = float(rng.uniform(*c.blur_sigma)) if aniso else sx
        theta = float(rng.uniform(-math.pi, math.pi)) if aniso else 0.0
        mode = str(rng.choice(list(RESIZE_MODES)))
        noise = rng.uniform() < c.noise_prob
        sigma = float(rng.uniform(*c.noise_range))
        gray = rng.uniform() < c.gray_noise_prob
        use_jpeg = rng.uniform() < c.jpeg_prob
        q = int(round(rng.uniform(*c.jpeg_range)))
        if clean:
            return make_lr(hr, scale)[1]
        x = hr.astype(np.float32) / 255.0
        if blur:
            size = min(2 * int(math.ceil(3 * max(sx, sy))) + 1, 2 * (min(h, w) // 2) + 1)
            x = filter2d(x, gaussian_kernel(max(1, size), sx, sy, theta))
        x = resize(x, (w // scale, h // scale), mode)
        if noise:
            x = gaussian_noise(x, rng, sigma, gray)
        x = np.clip(x, 0.0, 1.0)
        if use_jpeg:
            x = jpeg(x, q)
        return to_uint8(x)


@dataclass(frozen=True)
class NativeMix(Degradation):
    """`native+X`: with probability `native_prob` the LR is an (H/s)x(W/s) crop of the image itself at its own
    resolution, not downscaled (its HR is zeros: there is none); else `other`'s LR. The target of both is the
    teacher's output on that LR, so the student sees the photos users feed as well as X's inputs.

    `draw(full, hr, ...)` takes the native crop anywhere in the whole image `full`, not only inside the centre
    crop `hr` the other draws use: a native crop costs the teacher the same wherever it is cut, and content
    from all over the image is what generalizes (benchmarks/results/degradation-native-anywhere.md)."""

    other: Degradation = field(default_factory=Bicubic)
    native_prob: float = NATIVE_PROB
    VERSION = 2  # bump when the code changes what a (settings, seed) produces: cached LRs go stale
                 # (2: native crops anywhere in the image, `draw`)

    @property
    def name(self) -> str:  # type: ignore[override]
        share = "" if self.native_prob == NATIVE_PROB else f":{self.native_prob:g}"
        return f"native{share}+{self.other.name}"

    @property
    def key(self) -> str:
        return f"native:v{self.VERSION}:p{self.native_prob:g}+{self.other.key}"

    @property
    def random(self) -> bool:
        return True

    def __call__(self, hr, scale, rng):
        return self.draw(hr, hr, scale, rng)

    def draw(self, full, hr, scale, rng):
        """(hr, lr) of one draw: `hr` (a crop of `full`) for the other degradation, `full` for native crops."""
        hr = crop_to_multiple(as_rgb_uint8(hr), scale)
        if hr.shape[0] < scale or hr.shape[1] < scale:
            raise AgdError(f"a {hr.shape[1]}x{hr.shape[0]} image is too small to degrade at x{scale}")
        if rng.uniform() < self.native_prob:  # drawn first: the other degradation's draws follow unchanged
            return np.zeros_like(hr), self.native_lr(as_rgb_uint8(full), hr.shape[0] // scale,
                                                    hr.shape[1] // scale, rng)
        return hr, self.other.lr(hr, scale, rng)

    def native_lr(self, img: np.ndarray, lh: int, lw: int, rng: np.random.Generator) -> np.ndarray:
        """The LR of a native draw: a plain crop. The seam for variants of the native input (a subclass may
        resize or compress it, e.g. benchmarks/native_augment.py)."""
        return self.native_crop(img, lh, lw, rng)

    @staticmethod
    def native_crop(img: np.ndarray, lh: int, lw: int, rng: np.random.Generator) -> np.ndarray:
        """An lh x lw crop of `img` at a uniformly random offset."""
        h, w = img.shape[:2]
        y, x = int(rng.integers(0, h - lh + 1)), int(rng.integers(0, w - lw + 1))
        return np.ascontiguousarray(img[y:y + lh, x:x + lw])

    def lr(self, hr, scale, rng):
        return self(hr, scale, rng)[1]


_REGISTERED: dict[str, Callable[[], Degradation]] = {}


def register_degradation(name: str, factory: Callable[[], Degradation]) -> None:
    """Make `name` a degradation name in this process (`get_degradation`, so TrainConfig.degradation and the
    teacher cache take it) without editing get_degradation: for experiments and extensions. The cache keys on
    the object's `key`, so give a new pipeline its own. Built-in names are not replaced."""
    n = name.strip().lower()
    if n not in _REGISTERED:
        try:
            get_degradation(n)
        except AgdError:
            pass  # not a built-in name: free
        else:
            raise AgdError(f"degradation name {name!r} is built in: register another name")
    _REGISTERED[n] = factory


def _share(text: str) -> float:
    """The P of a `name:P` share; NaN (outside every range check) when it is not a number."""
    try:
        return float(text)
    except ValueError:
        return math.nan


def get_degradation(spec: "str | Degradation | None") -> Degradation:
    """A degradation by name (module doc, or `register_degradation`); None is `bicubic`. Bad names raise AgdError
    (one line)."""
    if isinstance(spec, Degradation):
        return spec
    s = "bicubic" if spec is None else str(spec).strip().lower()
    if s in _REGISTERED:
        return _REGISTERED[s]()
    if s == "bicubic":
        return Bicubic()
    if s == "realesrgan":
        return RealESRGAN()
    if s == "realesrgan+clean":
        return RealESRGAN(RealESRGANConfig(clean_prob=CLEAN_PROB))
    if s.startswith("realesrgan+clean:"):  # realesrgan+clean:P, P the clean share, 0 < P < 1
        p = _share(s[len("realesrgan+clean:"):])
        if not 0 < p < 1:
            raise AgdError(f"bad degradation {spec!r}: realesrgan+clean:P takes a clean share 0 < P < 1")
        return RealESRGAN(RealESRGANConfig(clean_prob=p))
    if s == "photo":
        return Photo()
    if s.startswith("native") and "+" in s:  # native+X, native:P+X (P the native share, 0 < P <= 1)
        head, _, other = s.partition("+")
        share = head[len("native:"):] if head.startswith("native:") else (None if head == "native" else "")
        if (other in ("bicubic", "photo", "realesrgan", "realesrgan+clean") or other.startswith("realesrgan+clean:")) \
                and share != "":
            p = NATIVE_PROB if share is None else _share(share)
            if not 0 < p <= 1:
                raise AgdError(f"bad degradation {spec!r}: native:P+X takes a native share 0 < P <= 1")
            return NativeMix(get_degradation(other), p)
    kind, _, arg = s.partition(":")
    try:
        if kind == "jpeg" and arg:
            q = int(arg)
            if not 1 <= q <= 100:
                raise ValueError
            return Jpeg(q)
        if kind == "noise" and arg:
            sigma = float(arg)
            if not 0 <= sigma <= 255 or math.isnan(sigma):
                raise ValueError
            return Noise(sigma)
    except ValueError:
        raise AgdError(f"bad degradation {spec!r}: jpeg:Q takes a quality 1..100, noise:S a std 0..255") from None
    raise AgdError(f"unknown degradation {spec!r}: use {', '.join(NAMES)}")


def degrade(hr: np.ndarray, scale: int, degradation: "str | Degradation | None" = "bicubic", seed: int = 0,
            variant: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(HR cropped to a multiple of scale, degraded LR), the same for the same (image, settings, seed, variant)."""
    d = get_degradation(degradation)
    img = as_rgb_uint8(hr)
    return d(img, scale, rng_for(seed, variant, img))


__all__ = ["BlurConfig", "Bicubic", "Degradation", "Jpeg", "NAMES", "NATIVE_PROB", "NativeMix", "Noise", "Photo",
           "PhotoConfig", "RealESRGAN",
           "RealESRGANConfig", "StageConfig", "as_rgb_uint8", "degrade", "filter2d", "gaussian_kernel",
           "gaussian_noise", "get_degradation", "jpeg", "poisson_noise", "register_degradation", "resize", "rng_for",
           "sinc_kernel"]
