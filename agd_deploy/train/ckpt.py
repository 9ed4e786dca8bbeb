"""A trained model on disk (Contracts): a CKPT folder with `generator.safetensors` and `arch.json`.

The folder is written to a temp folder beside it and renamed into place, so a folder named like a CKPT is
always complete."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from ..errors import AgdError
from ..space import Arch, build

WEIGHTS = "generator.safetensors"
ARCH = "arch.json"


def is_ckpt(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / WEIGHTS).is_file() and (p / ARCH).is_file()


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as e:
        raise AgdError(f"corrupt checkpoint {path}: {str(e).splitlines()[0][:160]}") from None


def load_weights(model: nn.Module, sd: dict[str, torch.Tensor], source: str) -> None:
    """load_state_dict(strict) with a one-line message when the weights belong to another arch."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    wrong = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        what = (f"{len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} wrong-shaped tensors"
                + (f" (e.g. {wrong[0]}: {tuple(sd[wrong[0]].shape)} vs {tuple(own[wrong[0]].shape)})" if wrong else ""))
        raise AgdError(f"{source}: weights do not match the arch: {what}")
    model.load_state_dict(sd, strict=True)


def load_ckpt(path: str | Path) -> tuple[nn.Module, Arch]:
    """CKPT folder -> (derived generator in eval mode, its Arch)."""
    p = Path(path)
    if not p.is_dir():
        raise AgdError(f"checkpoint folder {p} not found")
    if not (p / ARCH).is_file() or not (p / WEIGHTS).is_file():
        raise AgdError(f"{p} is not a checkpoint folder (needs {WEIGHTS} and {ARCH})")
    arch = Arch.load(p / ARCH)
    model = build(arch)
    load_weights(model, load_state(p / WEIGHTS), str(p / WEIGHTS))
    return model.eval(), arch


def save_ckpt(model: nn.Module, arch: Arch, out: str | Path, extra: dict | None = None) -> Path:
    """Write the CKPT folder atomically (temp folder + rename); an existing folder there is replaced."""
    from safetensors.torch import save_file

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(sd, str(tmp / WEIGHTS), metadata={"format": "agd-deploy generator"})
        (tmp / ARCH).write_text(arch.to_json() + "\n")
        if extra:
            (tmp / "train.json").write_text(json.dumps(extra, indent=2) + "\n")
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
