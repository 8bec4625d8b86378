"""`curriculum report`: markdown + single-file HTML with plots for a (possibly partial) run directory."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("report")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory for report.md, report.html and the PNGs (default: RUN_DIR/report).")
@click.option("--title", default=None, help="Report title (default: the run name).")
def report(run_dir, out, title):
    """Write a report of RUN_DIR: difficulty histogram, buckets, schedule mixture, training curves, evals.

    Works on a partial run (for example during training): sections whose inputs are missing say so.

    \b
        curriculum report runs/demo-cpu
    """
    from curriculum.reports import ReportError, write_report

    try:
        result = write_report(run_dir, out, title=title)
    except ReportError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"found: {', '.join(result.found) or 'nothing'}")
    if result.missing:
        click.echo(f"missing: {', '.join(result.missing)}")
    click.echo(f"wrote {result.markdown} and {result.html} with {len(result.figures)} figures")
