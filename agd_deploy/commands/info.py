"""`agd info MODEL`: MACs, parameters and size of a reference net or an arch."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..utils import format_shape, parse_shape


class ShapeType(click.ParamType):
    name = "NxCxHxW"

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            return parse_shape(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


SHAPE = ShapeType()


def load_model_spec(model: str, space: str | None):
    """MODEL -> (nn.Module, space name, default input shape or None). Names, or an arch JSON/CKPT folder."""
    from .. import nets
    from ..space import Arch, build

    if model in nets.REGISTRY:
        _, sp = nets.REGISTRY[model]
        return nets.create(model), sp, None
    p = Path(model)
    if p.suffix == ".json" or p.is_dir():
        arch = Arch.load(p)
        if space and arch.space != space:
            raise click.ClickException(f"{model}: arch is in the {arch.space} space, not {space}")
        return build(arch), arch.space, arch.input_shape
    raise click.BadParameter(f"unknown model {model!r}; use one of {', '.join(sorted(nets.REGISTRY))}, "
                             "an arch .json or a checkpoint folder", param_hint="MODEL")


@click.command()
@click.argument("model")
@click.option("--input", "input_shape", type=SHAPE, default=None,
              help="Input shape NxCxHxW; for SR models the LR input. Default 1x3x256x256 (the AGD paper's convention).")
@click.option("--space", type=click.Choice(["sr", "st"]), default=None, help="Expected space of an arch JSON.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def info(model: str, input_shape: list[int] | None, space: str | None, as_json: bool) -> None:
    """MACs (multiply-accumulates), parameters and fp32 size of MODEL.

    MODEL is esrgan, vdsr, cyclegan, an arch .json or a checkpoint folder."""
    from ..space import count

    net, sp, _ = load_model_spec(model, space)
    shape = input_shape or [1, 3, 256, 256]
    if shape[1] != 3:
        raise click.BadParameter("models take 3-channel RGB input", param_hint="--input")
    try:
        c = count(net, shape)
    except RuntimeError as e:
        raise click.ClickException(f"{model} cannot run at {format_shape(shape)}: {str(e).splitlines()[0]}")
    out = {"model": model, "space": sp, "gmacs": round(c.gmacs, 4), "params": c.params,
           "size_mb": round(c.size_mb, 4), "input_shape": shape}
    if as_json:
        click.echo(json.dumps(out))
    else:
        click.echo(f"{model} ({sp}) at {format_shape(shape)}: {c.gmacs:.2f} GMACs, {c.params:,} params, "
                   f"{c.size_mb:.2f} MB fp32")
