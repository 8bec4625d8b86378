"""`curriculum models`: resolve a model spec to a local directory once, and list the known aliases."""

from __future__ import annotations

import click

from curriculum.commands.common import fail_on, print_table


@click.group()
def models() -> None:
    """Resolve and cache models (hub id, local directory or alias such as smollm2-135m)."""


@models.command()
@click.argument("spec")
@click.option("--refresh", is_flag=True, help="Rebuild the cached copy of an alias.")
def pull(spec, refresh) -> None:
    """Make SPEC available locally and print its directory (aliases need no model hub)."""
    from curriculum.models import ModelResolutionError, resolve_model

    with fail_on(ModelResolutionError):
        path = resolve_model(spec, refresh=refresh)
    click.echo(path)


@models.command("list")
def list_models() -> None:
    """Show the aliases and whether each is already cached."""
    from curriculum.models import ALIASES, cache_dir

    rows = []
    for alias in ALIASES.values():
        cached = (cache_dir() / alias.name / ".curriculum-complete").exists()
        rows.append([alias.name, alias.hub_id, "yes" if cached else "no", alias.description])
    print_table(["alias", "hub id", "cached", "source"], rows)
