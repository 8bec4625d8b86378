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


def read_prompt_config(prompt_config):
    """A `--prompt-config` YAML (keys system, instruction) as a PromptTemplate; None when not given."""
    if prompt_config is None:
        return None
    import yaml

    from curriculum.prompts import PromptTemplate

    try:
        config = yaml.safe_load(prompt_config.read_text())
        if config is not None and not isinstance(config, dict):
            raise ValueError("expected a mapping with keys system and/or instruction")
        return PromptTemplate.from_dict(config)
    except (yaml.YAMLError, ValueError, TypeError) as error:
        raise click.UsageError(f"--prompt-config {prompt_config}: {error}") from error
