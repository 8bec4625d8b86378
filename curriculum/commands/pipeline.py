"""`curriculum pipeline`: every stage from one recipe, skipping what is already done."""

from __future__ import annotations

import time
from pathlib import Path

import click

from curriculum.commands.common import print_table
from curriculum.layout import REPORT_HTML, STAGES


class _Bars:
    """One tqdm bar per stage that reports progress (score: problems; eval: problems of a benchmark)."""

    def __init__(self) -> None:
        self.bar = None
        self.key = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm.auto import tqdm

        if self.bar is None or self.key != (stage, total) or done < self.bar.n:
            self.close()
            self.key = (stage, total)
            self.bar = tqdm(total=total or None, desc=stage, unit="problem", dynamic_ncols=True, leave=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@click.command("pipeline")
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override a recipe value, e.g. --set train.max_steps=5 --set eval.limit=10; repeatable.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory (default: the recipe's `out`, else runs/<name>).")
@click.option("--until", type=click.Choice(STAGES), default=None, help="Stop after this stage.")
@click.option("--redo", type=click.Choice(STAGES), default=None,
              help="Delete this stage's outputs and every later stage's, then run them again.")
@click.option("--plan", "plan_only", is_flag=True,
              help="Check the recipe (every section's values), print the stages and their status, run nothing.")
def pipeline(recipe, overrides, out, until, redo, plan_only):
    """Run data, score, build, train, eval and report from RECIPE (a pipelines/*.yaml file).

    Each stage writes into one run directory and is skipped on a rerun once complete, so an interrupted
    pipeline continues where it stopped (scoring and training resume mid-way). Changed settings are
    refused for stages already run; --redo STAGE recomputes from there.

    \b
        curriculum pipeline pipelines/demo-cpu.yaml
        curriculum pipeline pipelines/demo-cpu.yaml --set train.max_steps=4 --out runs/quick
    """
    from curriculum import pipeline as lib

    try:
        config = lib.load_config(recipe, [*overrides, *([f"out={out}"] if out else [])])
    except lib.PipelineError as error:
        raise click.UsageError(str(error)) from error
    bars = _Bars()
    runner = lib.Pipeline(config, progress=bars)
    if redo:
        removed = runner.redo(redo)
        click.echo(f"--redo {redo}: removed {len(removed)} output(s) of {redo} and later stages")

    states = runner.plan()
    _print_plan(config, recipe, states)
    if plan_only:
        return
    click.echo("")
    started = time.perf_counter()
    outcomes = _run_stages(runner, until, bars, _stage_events(states, bars))
    total = time.perf_counter() - started
    click.echo(f"\nsummary of {config.name} ({total / 60:.1f} min):")
    print_table(["stage", "action", "time", "result"],
                [[o.name, o.action, f"{o.wall_s:.0f}s", o.summary] for o in outcomes])
    layout = runner.layout
    if any(o.name == "report" for o in outcomes):
        click.echo(f"\nreport: {layout.report_md}  (single file with plots: {layout.report / REPORT_HTML})")


def _print_plan(config, recipe: Path, states) -> None:
    """The plan before anything runs: every stage, its status and files, so a rerun shows what it will skip."""
    click.echo(f"pipeline {config.name}: {recipe} -> {config.out} (model {config.model})")
    print_table(["#", "stage", "status", "writes", "note"],
                [[i + 1, s.name, s.status, ", ".join(str(p) for p in s.outputs), s.note]
                 for i, s in enumerate(states)])


def _stage_events(states, bars: _Bars):
    """The pipeline's event callback: one numbered line per stage start, skip and finish (a progress bar is
    closed first, so the line is not drawn into it)."""
    numbers = {s.name: i + 1 for i, s in enumerate(states)}

    def on_event(kind: str, stage: str, message: str) -> None:
        bars.close()
        prefix = f"[{numbers[stage]}/{len(states)}] {stage}"
        if kind == "start":
            click.echo(f"{prefix}: running" + (f" ({message})" if message else ""))
        elif kind == "skip":
            click.echo(f"{prefix}: {message}")
        elif kind == "done":
            click.echo(f"{prefix}: done in {message}")
        else:
            click.echo(f"{prefix}: {message}")

    return on_event


def _run_stages(runner, until: str | None, bars: _Bars, on_event):
    """Run the stages; a library error becomes one line (with a hint that finished stages are kept), never a
    traceback."""
    from curriculum.pipeline import StageFailed

    errors = _library_errors()
    try:
        return runner.run(until=until, on_event=on_event)
    except errors as error:
        bars.close()
        hint = "\n(completed stages are kept; rerun the same command to continue)" if isinstance(
            error, StageFailed) else ""
        raise click.ClickException(f"{error}{hint}") from error
    finally:
        bars.close()


def _library_errors() -> tuple[type[BaseException], ...]:
    """Every library error that means bad input or a failed stage, printed as one line."""
    from curriculum.buckets import BuildError
    from curriculum.evaluation import EvaluationError
    from curriculum.models import ModelResolutionError
    from curriculum.pipeline import PipelineError
    from curriculum.reports import ReportError
    from curriculum.rollout.base import RolloutError
    from curriculum.training.config import ConfigError
    from curriculum.training.run import TrainSetupError
    from curriculum.verify import VerificationError

    return (PipelineError, BuildError, EvaluationError, ModelResolutionError, ReportError, RolloutError,
            ConfigError, TrainSetupError, VerificationError)
