"""`agd report RUN` and `agd demo`: the whole product on the embedded default, and its HTML report."""

from __future__ import annotations

import click


@click.command()
@click.argument("run", type=click.Path(file_okay=False, path_type=str))
@click.option("--out", default=None, type=click.Path(dir_okay=False, path_type=str),
              help="Where to write the HTML (default RUN/report.html).")
def report(run: str, out: str | None) -> None:
    """Write RUN/report.html: one self-contained page (images inlined) built from the run folder's files."""
    from ..report import write_report

    path = write_report(run, out)
    click.echo(f"report: {path}")
