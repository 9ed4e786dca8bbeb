"""Where training, search, teacher caching and inference compute: `--device auto|cpu|cuda|cuda:N`, mixed
precision (`--amp auto|bf16|fp16|off`) and channels-last, resolved once per command.

    rt = resolve("auto", amp="auto")          # Compute(device=cuda:0, amp=bfloat16, channels_last=True) on a GPU
    with rt.autocast(): y = model(x.to(rt.device))

`auto` is CUDA when torch sees a GPU (under torchrun: cuda:LOCAL_RANK), else the CPU. On CUDA, AMP `auto` is
bf16 (fp16 on older GPUs). On the CPU, `--amp bf16` is CPU autocast in bf16 (with channels-last: oneDNN's bf16
convolutions want NHWC), fp16 runs in fp32 with one warning, and `auto` is *measured*: `choose_cpu_amp` times
a few training steps both ways on this CPU and keeps bf16 only where it is clearly faster (a CPU without bf16
instructions emulates it slowly, one with AMX or AVX-512 BF16 can run it several times faster: which one this
is, is a reading, not a default). In fp32, channels-last is left off. Lives in `train/` (the learn layer) because
it imports torch; `agd_deploy.device` (core) stays stdlib-only, and `data/` only receives a torch.device."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Callable

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
    amp: torch.dtype | None = None     # autocast dtype (CUDA: bf16/fp16; CPU: bf16), None = fp32
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


BF16_MIN_SPEEDUP = 1.25  # step times move between rounds on a shared box: bf16 must clearly pay to be chosen
BF16_MIN_STEP_MS = 50.0  # shorter fp32 steps save seconds a run: not worth a choice that could flip between reruns


def choose_cpu_amp(step_under: Callable[[Compute], Callable[[], Any]], cpu: Compute, rounds: int = 3,
                   isa: tuple[str, ...] | None = None) -> tuple[Compute, dict[str, Any]]:
    """`--amp auto` on the CPU: bf16 autocast + channels-last if this CPU has bf16 instructions, an fp32 step
    takes >= BF16_MIN_STEP_MS and a bf16 step runs >= BF16_MIN_SPEEDUP times faster, timed interleaved
    (runtimes.timing.measure); else fp32. Two thresholds, so that the same command picks the same precision
    on reruns (bf16 and fp32 train different weights): small nets and near-equal speeds stay fp32.

    step_under(compute) -> a zero-argument callable that runs one training step (forward, backward, optimizer)
    of a throwaway copy of the model under `compute`. Returns the chosen Compute and what was measured (for
    train.json: `amp_probe`)."""
    from ..device import BF16_MATH, identify

    have = sorted(set(identify().isa if isa is None else isa) & BF16_MATH)
    if not have:
        return cpu, {"chosen": "off", "why": "this CPU lists no bf16 instructions (avx512_bf16, amx_bf16, bf16)"}
    from ..runtimes.timing import measure

    bf16 = Compute(cpu.device, torch.bfloat16, True)
    st = measure({"fp32": step_under(cpu), "bf16": step_under(bf16)}, rounds=rounds, warmup=1,
                 untimed_before_each=False)
    fp32_ms, bf16_ms = st["fp32"].min_ms, st["bf16"].min_ms
    speedup = fp32_ms / bf16_ms if bf16_ms > 0 else 0.0
    chosen = bf16 if speedup >= BF16_MIN_SPEEDUP and fp32_ms >= BF16_MIN_STEP_MS else cpu
    return chosen, {"chosen": chosen.amp_name, "isa": have, "fp32_step_ms": round(fp32_ms, 2),
                    "bf16_step_ms": round(bf16_ms, 2), "speedup": round(speedup, 3), "min_speedup": BF16_MIN_SPEEDUP,
                    "min_step_ms": BF16_MIN_STEP_MS, "rounds": rounds}


def resolve(device: str | torch.device | None = "auto", amp: str | None = "off", channels_last: bool | None = None,
            local_rank: int | None = None, warn: bool = True) -> Compute:
    """Device + AMP + channels-last. amp 'auto' = bf16 on a CUDA GPU that supports it, fp16 on older ones,
    fp32 on the CPU until a caller measures (choose_cpu_amp); bf16 on the CPU is CPU autocast; fp16 on the CPU
    is turned off with one warning."""
    dev = resolve_device(device, local_rank)
    a = (amp or "off").lower()
    if a not in AMPS:
        raise DeviceError(f"--amp {amp}: expected {', '.join(AMPS)}")
    dtype: torch.dtype | None = None
    if dev.type == "cuda":
        if a == "auto":
            a = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(a)
    elif a == "bf16":  # CPU autocast: bf16 matmuls/convolutions where the CPU has them (AMX, AVX-512 BF16)
        dtype = torch.bfloat16
    elif a == "fp16" and warn:
        from ..log import warn as _warn

        _warn(f"--amp {a} is for CUDA only: running in fp32 on the {dev.type}")
    if channels_last is None:  # NHWC is what oneDNN's bf16 convolutions want on the CPU, tensor cores on CUDA
        cl = dtype is not None
    else:
        cl = bool(channels_last)
    return Compute(dev, dtype, cl)


__all__ = ["AMPS", "BF16_MIN_SPEEDUP", "BF16_MIN_STEP_MS", "Compute", "DEVICES", "DeviceError", "choose_cpu_amp",
           "resolve", "resolve_device"]
