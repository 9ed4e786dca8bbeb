"""Options several commands share: `--device` and `--amp` (resolved by `agd_deploy.train.device`)."""

from __future__ import annotations

import click


def _check_device(ctx, param, value):
    """Refuse a device this machine lacks while parsing (one line, exit 2), before any work starts."""
    if value is None:
        return value
    from ..train.device import DeviceError, resolve_device

    try:
        resolve_device(value)
    except DeviceError as e:
        raise click.BadParameter(str(e).split(": ", 1)[-1], ctx=ctx, param=param) from None
    return value


def device_options(amp_default: str = "off"):
    """Add `--device` and `--amp` to a command (keyword arguments `device`, `amp`)."""
    def deco(f):
        f = click.option("--amp", type=click.Choice(["auto", "bf16", "fp16", "off"]), default=amp_default,
                         show_default=True,
                         help="Mixed precision. CUDA: auto = bf16 where the GPU has it, else fp16. CPU: bf16 = "
                              "CPU autocast; auto = bf16 only where a timed training step shows it pays (train, "
                              "demo), else fp32; fp16 = fp32.")(f)
        f = click.option("--device", default="auto", show_default=True, callback=_check_device,
                         help="auto (CUDA when present, under torchrun cuda:LOCAL_RANK), cpu, cuda or cuda:N.")(f)
        return f
    return deco
