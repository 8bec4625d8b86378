"""Small helpers every command shares: turning library errors into one clear line, printing tables."""

from __future__ import annotations

import contextlib

import click


@contextlib.contextmanager
def fail_on(*errors: type[BaseException]):
    """Turn the given library exceptions into a one-line `Error: ...` and a non-zero exit, no traceback."""
    try:
        yield
    except errors as error:
        raise click.ClickException(str(error)) from error


def print_table(headers: list[str], rows: list[list]) -> None:
    """A plain aligned text table on stdout."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        click.echo("  ".join(value.rjust(width) if index and _numeric(value) else value.ljust(width)
                             for value, width in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            click.echo("  ".join("-" * width for width in widths))


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _numeric(value: str) -> bool:
    try:
        float(value.replace(",", ""))
        return True
    except ValueError:
        return False
