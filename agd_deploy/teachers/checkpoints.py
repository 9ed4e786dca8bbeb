"""Teacher checkpoints users bring: ESRGAN/BasicSR RRDBNet `.pth` and official CycleGAN `latest_net_G.pth`.

All are read with `torch.load(weights_only=True)`. ESRGAN checkpoints come in three key layouts, mapped to our
RRDBNet (BasicSR names):
  BasicSR          conv_first, body.N.rdbK.convJ, conv_body, conv_up1, conv_up2, conv_hr, conv_last
  ESRGAN (2019+)   conv_first, RRDB_trunk.N.RDBK.convJ, trunk_conv, upconv1, upconv2, HRconv, conv_last
  ESRGAN (legacy)  model.0, model.1.sub.N.RDBK.convJ.0, model.1.sub.<nb>, model.3, model.6, model.8, model.10
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..errors import AgdError
from ..nets.cyclegan import ResnetGenerator
from ..nets.esrgan import RRDBNet
from ..utils import sha256_file

_ESRGAN_RENAMES = [  # (regex on an ESRGAN key, BasicSR replacement)
    (r"^RRDB_trunk\.(\d+)\.RDB(\d)\.", r"body.\1.rdb\2."),
    (r"^trunk_conv\.", "conv_body."),
    (r"^upconv1\.", "conv_up1."),
    (r"^upconv2\.", "conv_up2."),
    (r"^HRconv\.", "conv_hr."),
]
_LEGACY_TOP = {"model.0.": "conv_first.", "model.3.": "conv_up1.", "model.6.": "conv_up2.",
               "model.8.": "conv_hr.", "model.10.": "conv_last."}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """torch.load(weights_only=True), unwrapped from {'params_ema'|'params'|'state_dict': ...} and 'module.'."""
    p = Path(path)
    if not p.is_file():
        raise AgdError(f"checkpoint {p} not found")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise AgdError(f"cannot read checkpoint {p}: {str(e).splitlines()[0][:200]}") from None
    for key in ("params_ema", "params", "state_dict", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise AgdError(f"{p}: not a state_dict of tensors")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in obj.items()}


def esrgan_to_basicsr(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename ESRGAN-repo keys (2019 or legacy) to BasicSR's; BasicSR keys pass through."""
    legacy = "model.0.weight" in sd
    nb = 1 + max((int(m.group(1)) for k in sd if (m := re.match(r"model\.1\.sub\.(\d+)\.RDB", k))), default=-1)
    out = {}
    for k, v in sd.items():
        if legacy:
            m = re.match(r"^model\.1\.sub\.(\d+)\.RDB(\d)\.(conv\d)\.0\.(weight|bias)$", k)
            if m:
                k = f"body.{m.group(1)}.rdb{m.group(2)}.{m.group(3)}.{m.group(4)}"
            elif k.startswith(f"model.1.sub.{nb}."):
                k = "conv_body." + k[len(f"model.1.sub.{nb}."):]
            else:
                for old, new in _LEGACY_TOP.items():
                    if k.startswith(old):
                        k = new + k[len(old):]
                        break
        else:
            for pat, rep in _ESRGAN_RENAMES:
                k = re.sub(pat, rep, k)
        out[k] = v
    return out


def basicsr_to_esrgan(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse rename (BasicSR -> ESRGAN 2019 keys); used to write test checkpoints in that layout."""
    out = {}
    for k, v in sd.items():
        k = re.sub(r"^body\.(\d+)\.rdb(\d)\.", r"RRDB_trunk.\1.RDB\2.", k)
        for a, b in (("conv_body.", "trunk_conv."), ("conv_up1.", "upconv1."), ("conv_up2.", "upconv2."),
                     ("conv_hr.", "HRconv.")):
            if k.startswith(a):
                k = b + k[len(a):]
        out[k] = v
    return out


def load_esrgan_pth(path: str | Path) -> tuple[RRDBNet, str]:
    sd = esrgan_to_basicsr(read_state_dict(path))
    try:
        nb = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"body\.(\d+)\.", k)))
        nf, in_nc = sd["conv_first.weight"].shape[:2]
        gc = sd["body.0.rdb1.conv1.weight"].shape[0]
        out_nc = sd["conv_last.weight"].shape[0]
    except (ValueError, KeyError):
        raise AgdError(f"{path}: not an ESRGAN RRDBNet checkpoint (no conv_first/RRDB_trunk/body keys)") from None
    model = RRDBNet(in_nc=in_nc, out_nc=out_nc, nf=nf, nb=nb, gc=gc)
    _load_strict(model, sd, path)
    return model.eval(), f"esrgan-pth:{sha256_file(path)[:16]}"


def load_cyclegan_pth(path: str | Path) -> tuple[ResnetGenerator, str]:
    sd = read_state_dict(path)
    # Old checkpoints carry InstanceNorm running stats the official model deletes before loading too.
    sd = {k: v for k, v in sd.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    try:
        ngf, in_nc = sd["model.1.weight"].shape[:2]
        n_blocks = len({m.group(1) for k in sd if (m := re.match(r"model\.(\d+)\.conv_block\.", k))})
        last = max(int(m.group(1)) for k in sd if (m := re.match(r"model\.(\d+)\.weight$", k)))
        out_nc = sd[f"model.{last}.weight"].shape[0]
    except (KeyError, ValueError):
        raise AgdError(f"{path}: not a CycleGAN ResnetGenerator checkpoint (no model.N keys)") from None
    model = ResnetGenerator(input_nc=in_nc, output_nc=out_nc, ngf=ngf, n_blocks=n_blocks)
    _load_strict(model, sd, path)
    return model.eval(), f"cyclegan-pth:{sha256_file(path)[:16]}"


def _load_strict(model: torch.nn.Module, sd: dict[str, torch.Tensor], path) -> None:
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        raise AgdError(f"{path}: weights do not fit {type(model).__name__}: {' '.join(lines[1:3])[:300]}") from None
