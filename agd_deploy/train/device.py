"""Where training, search, teacher caching and inference compute: `--device auto|cpu|cuda|cuda:N`, mixed
precision (`--amp auto|bf16|fp16|off`) and channels-last, resolved once per command.

    rt = resolve("auto", amp="auto")          # Compute(device=cuda:0, amp=bfloat16, channels_last=True) on a GPU
    with rt.autocast(): y = model(x.to(rt.device))

`auto` is CUDA when torch sees a GPU (under torchrun: cuda:LOCAL_RANK), else the CPU. AMP is for CUDA only:
on the CPU it is off (a requested bf16/fp16 says so once). Channels-last pays on CUDA with AMP (tensor-core
convolutions want NHWC); on the CPU and in fp32 it is left off. Lives in `train/` (the learn layer) because
it imports torch; `agd_deploy.device` (core) stays stdlib-only, and `data/` only receives a torch.device."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

from ..errors import AgdError

DEVICES = "auto, cpu, cuda or cuda:N"
AMPS = ("auto", "bf16", "fp16", "off")


class DeviceError(AgdError):
    """A device that this machine does not have (a usage error: the CLI turns it into exit 2)."""

    exit_code = 2


@dataclass(frozen=True)
class Compute:
    device: torch.device
    amp: torch.dtype | None = None     # autocast dtype on CUDA, None = fp32
    channels_last: bool = False

    @property
    def amp_name(self) -> str:
        return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.amp, "off")

    def autocast(self):
        """The autocast context for forward passes (a no-op without AMP)."""
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp)

    def module(self, m: torch.nn.Module) -> torch.nn.Module:
        """Move a module to the device (and channels-last where that pays)."""
        m = m.to(self.device)
        return m.to(memory_format=torch.channels_last) if self.channels_last else m

    def tensor(self, t: torch.Tensor) -> torch.Tensor:
        non_blocking = self.device.type == "cuda" and t.is_pinned()
        t = t.to(self.device, non_blocking=non_blocking)
        return t.contiguous(memory_format=torch.channels_last) if self.channels_last and t.dim() == 4 else t

    def describe(self) -> str:
        name = str(self.device)
        if self.device.type == "cuda":
            name += f" ({torch.cuda.get_device_name(self.device)})"
        return f"{name}, amp {self.amp_name}" + (", channels-last" if self.channels_last else "")


def resolve_device(spec: str | torch.device | None = "auto", local_rank: int | None = None) -> torch.device:
    """`auto|cpu|cuda|cuda:N` -> torch.device; CUDA asked for on a machine without it is a DeviceError.
    `cuda` (and `auto` on a GPU machine) under torchrun is cuda:LOCAL_RANK."""
    if isinstance(spec, torch.device):
        return spec
    s = (spec or "auto").strip().lower()
    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    have = torch.cuda.is_available()
    if s == "cpu":
        return torch.device("cpu")
    if s == "auto":
        s = "cuda" if have else "cpu"
        if s == "cpu":
            return torch.device("cpu")
    if s == "cuda" or s.startswith("cuda:"):
        if not have:
            why = ("this torch is built without CUDA" if torch.version.cuda is None
                   else "torch sees no CUDA GPU (check CUDA_VISIBLE_DEVICES and the driver)")
            raise DeviceError(f"--device {s}: no CUDA device on this machine ({why}); use --device cpu or auto")
        n = torch.cuda.device_count()
        if s == "cuda":
            idx = local_rank % n if n else 0
        else:
            try:
                idx = int(s.split(":", 1)[1])
            except ValueError:
                raise DeviceError(f"--device {spec}: expected {DEVICES}") from None
        if not 0 <= idx < n:
            raise DeviceError(f"--device {s}: this machine has {n} CUDA device(s) (cuda:0..cuda:{n - 1})")
        return torch.device(f"cuda:{idx}")
    raise DeviceError(f"--device {spec}: expected {DEVICES}")


def resolve(device: str | torch.device | None = "auto", amp: str | None = "off", channels_last: bool | None = None,
            local_rank: int | None = None, warn: bool = True) -> Compute:
    """Device + AMP + channels-last. amp 'auto' = bf16 on a CUDA GPU that supports it, fp16 on older ones,
    off on the CPU; an explicit bf16/fp16 on the CPU is turned off with one warning."""
    dev = resolve_device(device, local_rank)
    a = (amp or "off").lower()
    if a not in AMPS:
        raise DeviceError(f"--amp {amp}: expected {', '.join(AMPS)}")
    dtype: torch.dtype | None = None
    if dev.type == "cuda":
        if a == "auto":
            a = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(a)
    elif a in ("bf16", "fp16") and warn:
        from ..log import warn as _warn

        _warn(f"--amp {a} is for CUDA only: running in fp32 on the {dev.type}")
    cl = (dev.type == "cuda" and dtype is not None) if channels_last is None else bool(channels_last and dev.type == "cuda")
    return Compute(dev, dtype, cl)


__all__ = ["AMPS", "Compute", "DEVICES", "DeviceError", "resolve", "resolve_device"]
