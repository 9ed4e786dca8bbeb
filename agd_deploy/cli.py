"""The `agd` command line: thin. Parses, calls library functions, prints.

Subcommands live in agd_deploy/commands/<name>.py and are imported only when used, so `agd --help` is fast
and a missing optional runtime never breaks unrelated commands."""

from __future__ import annotations

import importlib
import importlib.util
import sys

import click

from . import __version__

# name -> "module:attribute" of a click command
COMMANDS: dict[str, str] = {
    "info": "agd_deploy.commands.info:info",
    "profile": "agd_deploy.commands.profile:profile",
    "search": "agd_deploy.commands.search:search",
    "train": "agd_deploy.commands.train:train",
    "eval": "agd_deploy.commands.evaluate:eval_cmd",
    "upscale": "agd_deploy.commands.upscale:upscale",
    "export": "agd_deploy.commands.export:export",
    "bench": "agd_deploy.commands.export:bench",
    "report": "agd_deploy.commands.demo:report",
    "demo": "agd_deploy.commands.demo:demo",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(n for n in COMMANDS if self._available(n))

    @staticmethod
    def _available(name: str) -> bool:
        mod = COMMANDS[name].split(":")[0]
        return importlib.util.find_spec(mod) is not None

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS or not self._available(name):
            return None
        mod, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(mod), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="agd")
@click.option("-v", "--verbose", count=True, help="More messages (-v info, -vv debug).")
@click.option("-q", "--quiet", is_flag=True, help="Errors only.")
def cli(verbose: int, quiet: bool) -> None:
    """agd-deploy: search efficient generators under a measured latency budget, export verified int8 artifacts.

    \b
    Profile a device:     agd profile --target ort-cpu-int8 --space sr
    Search under budget:  agd search sr_x4_tiny --target ort-cpu-int8 --budget-ms 40
    Export int8:          agd export RUN/train --formats onnx,onnx-int8,tflite-int8
    All of it:            agd demo
    """
    from .log import setup

    setup(-1 if quiet else verbose)
    if quiet:  # third parties' Python warnings too: this is the CLI's own process, not a library caller's
        import warnings

        warnings.simplefilter("ignore")


def main(argv: list[str] | None = None) -> None:
    """Console entry: user errors (AgdError and its kinds) become one line and exit 1, never a traceback."""
    from .errors import AgdError

    try:
        cli.main(args=argv, prog_name="agd", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except AgdError as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(getattr(e, "exit_code", 1))
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
