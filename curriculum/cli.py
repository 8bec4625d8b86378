"""The `curriculum` command line: one verb per stage, each loaded only when it is called.

The verbs live in `curriculum.commands.<module>`; this file only knows their names and one-line help,
so `curriculum --help` never imports torch or transformers.
"""

from __future__ import annotations

import importlib

import click

# verb -> (module under curriculum.commands, attribute, one-line help)
VERBS: dict[str, tuple[str, str, str]] = {
    "data": ("data", "data", "Prepare problem sets: load, validate, deduplicate, decontaminate; synthesize."),
    "models": ("models", "models", "Resolve and cache models (hub id, local directory or alias such as smollm2-135m)."),
    "score": ("score", "score", "Estimate each problem's difficulty as its pass rate under base-model rollouts."),
    "build": ("build", "build", "Bucket scored problems easy to hard and drop those that give GRPO no signal."),
    "train": ("train", "train", "Run TRL's GRPO trainer fed by a curriculum schedule over the buckets."),
    "eval": ("evaluate", "eval_cmd", "Evaluate a model on math benchmarks (avg@k with intervals, pass@k, majority)."),
    "report": ("report", "report", "Write a markdown/HTML report with plots for a run directory."),
    "compare": ("compare", "compare", "Compare schedules (e.g. linear against uniform) at equal compute."),
    "pipeline": ("pipeline", "pipeline", "Run data, score, build, train, eval and report from one YAML recipe."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(VERBS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in VERBS:
            return None
        module_name, attribute, help_text = VERBS[name]
        try:
            module = importlib.import_module(f"curriculum.commands.{module_name}")
        except ModuleNotFoundError as error:
            if error.name != f"curriculum.commands.{module_name}":
                raise
            return _not_yet_available(name, help_text)
        return getattr(module, attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help comes from VERBS so listing the verbs imports nothing.
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_text) for name, (_, _, help_text) in VERBS.items()])


def _not_yet_available(name: str, help_text: str) -> click.Command:
    @click.command(name=name, help=f"{help_text} (not yet available)",
                   context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    def placeholder() -> None:
        raise click.ClickException(f"`curriculum {name}` is not yet available in this version.")

    return placeholder


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="curriculum")
def cli() -> None:
    """Curriculum GRPO for small language models on math.

    Typical flow: data prepare -> score -> build -> train -> eval -> report,
    or all at once with `curriculum pipeline pipelines/demo-cpu.yaml`.
    """


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
