"""Real teachers, loaded by spec: `realesrgan-x4plus`, `esrgan-pth:PATH`, `cyclegan-pth:PATH`, `PATH.onnx`,
`ncnn:PATH.param` or a named ncnn model (`waifu2x-cunet-denoise0..3`, `realcugan-x2`, ...: ncnn_teacher.py).

    t = load_teacher("realesrgan-x4plus")
    y = t(x)  # NCHW float32 in t.value_range -> t.scale times larger, no gradients
"""

from __future__ import annotations

from pathlib import Path

from ..errors import AgdError
from .base import OnnxTeacher, Teacher

from .ncnn_teacher import NAMED_MODELS as NCNN_NAMED

NAMED = ("realesrgan-x4plus", *NCNN_NAMED)


def load_teacher(spec: str) -> Teacher:
    """A teacher from its spec string (see module doc). Bad specs and unreadable files raise AgdError."""
    if isinstance(spec, Teacher):
        return spec
    spec = str(spec)
    if spec == "realesrgan-x4plus":
        from .realesrgan import load_realesrgan_x4plus

        model, fp = load_realesrgan_x4plus()
        return Teacher(spec, 4, (0.0, 1.0), fp, model)
    if spec.startswith("esrgan-pth:"):
        from .checkpoints import load_esrgan_pth

        model, fp = load_esrgan_pth(spec.split(":", 1)[1])
        return Teacher(spec, 4, (0.0, 1.0), fp, model)
    if spec.startswith("cyclegan-pth:"):
        from .checkpoints import load_cyclegan_pth

        model, fp = load_cyclegan_pth(spec.split(":", 1)[1])
        return Teacher(spec, 1, (-1.0, 1.0), fp, model)
    if spec.lower().endswith(".onnx"):
        return load_onnx_teacher(spec)
    from .ncnn_teacher import is_ncnn_spec, load_ncnn_teacher

    if is_ncnn_spec(spec):
        return load_ncnn_teacher(spec)
    raise AgdError(f"unknown teacher {spec!r}: use {', '.join(NAMED)}, esrgan-pth:PATH, cyclegan-pth:PATH, "
                   "ncnn:PATH.param or PATH.onnx")


# Teachers trained on Real-ESRGAN's second-order degradations: their students are distilled on the same inputs
# (data/degrade.py). An esrgan-pth file whose name says realesr (RealESRGAN_x4plus.pth, realesr-general-x4v3.pth)
# is taken for one of them.
REALWORLD = ("realesrgan-x4plus",)


def default_degradation(teacher) -> str:
    """The degradation a student of `teacher` (spec or Teacher) is distilled on by default: `jpeg:Q` for the named
    ncnn denoise models (waifu2x noise level 0..3 -> Q 90/75/50/25: JPEG-artefact removal), `bicubic` for the
    others (at scale 1 bicubic is the identity: the input is the image itself, as for a CycleGAN checkpoint).

    Real-ESRGAN-family teachers (REALWORLD) were trained on `realesrgan` degradations, but that is opt-in
    (`--degradation realesrgan`, `suggested_degradation`): within the demo's training budget a student distilled
    on them lost to the bicubic-trained one on every protocol but `realesrgan`-degraded LR, and so did one
    distilled on the milder `photo` mix, even on `photo`-degraded LR (native photos -0.03 dB vs bicubic where the
    bicubic-trained student has +0.57; clean LR 0.48 dB below it; benchmarks/results/degradation.md), so neither
    is the default until a schedule that pays off is measured. `native+bicubic` with 16 variants and MSE beat
    bicubic training on all three protocols but not by the +1.5 dB asked
    (benchmarks/results/degradation-native-anywhere.md): `agd demo` uses it (DemoConfig), but not this default,
    because at `agd train`'s 2 variants its native share is too small to pay off."""
    name = str(getattr(teacher, "name", teacher))
    from .ncnn_teacher import DENOISE_JPEG_QUALITY, denoise_level

    level = denoise_level(name)
    if level is not None:
        return f"jpeg:{DENOISE_JPEG_QUALITY[level]}"
    return "bicubic"


def suggested_degradation(teacher) -> str:
    """What the teacher was trained on, for users who distil for real photos: `realesrgan` for Real-ESRGAN-family
    teachers, else `default_degradation`."""
    name = str(getattr(teacher, "name", teacher))
    if name in REALWORLD or (name.startswith("esrgan-pth:") and "realesr" in Path(name.split(":", 1)[1]).name.lower()):
        return "realesrgan"
    return default_degradation(teacher)


def is_teacher_spec(spec: str) -> bool:
    s = str(spec)
    return s in NAMED or s.startswith(("esrgan-pth:", "cyclegan-pth:", "ncnn:")) or s.lower().endswith(".onnx")


def load_onnx_teacher(path: str) -> OnnxTeacher:
    """Scale and value range from the model's metadata (`scale`, `value_range`) when present, else probed/[0,1]."""
    import numpy as np

    from ..utils import sha256_file

    p = Path(path)
    if not p.is_file():
        raise AgdError(f"ONNX teacher {p} not found")
    try:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        sess = ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
    except ImportError:
        raise AgdError("ONNX teachers need the 'onnxruntime' package") from None
    except Exception as e:
        raise AgdError(f"cannot load ONNX model {p}: {str(e).splitlines()[0][:200]}") from None
    inp = sess.get_inputs()[0]
    if len(inp.shape) != 4:
        raise AgdError(f"{p}: input {inp.name} is not NCHW")
    h, w = inp.shape[2:]
    fixed = (h, w) if isinstance(h, int) and isinstance(w, int) else None
    meta = sess.get_modelmeta().custom_metadata_map
    vr = (0.0, 1.0)
    if "value_range" in meta:
        try:
            lo, hi = (float(v) for v in str(meta["value_range"]).strip("[]() ").split(","))
            vr = (lo, hi)
        except ValueError:
            pass
    if "scale" in meta:
        scale = int(float(meta["scale"]))
    else:  # probe with one small input
        ph, pw = fixed or (16, 16)
        out = sess.run(None, {inp.name: np.zeros((1, 3, ph, pw), np.float32)})[0]
        scale = max(1, out.shape[2] // ph)
    return OnnxTeacher(str(p), sess, inp.name, fixed, name=str(p), scale=scale, value_range=vr,
                       fingerprint=f"onnx:{sha256_file(p)[:16]}")


__all__ = ["NAMED", "NCNN_NAMED", "OnnxTeacher", "REALWORLD", "Teacher", "default_degradation", "is_teacher_spec", "suggested_degradation",
           "load_teacher"]
