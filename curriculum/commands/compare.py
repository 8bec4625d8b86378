"""`curriculum compare`: train every schedule at identical compute, evaluate each, report the difference."""

from __future__ import annotations

from pathlib import Path

import click

from curriculum.commands.common import print_table
from curriculum.evaluation import BENCHMARKS


def _list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _seeds(ctx, param, value: str) -> list[int]:
    try:
        return [int(part) for part in _list(value)]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers such as 0,1,2, got {value!r}") from None


@click.command("compare")
@click.option("--buckets", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Buckets dataset from `curriculum build` (the same data for every arm).")
@click.option("--model", "-m", default="smollm2-135m", show_default=True, help="Model every arm starts from.")
@click.option("--schedules", default="linear,uniform", show_default=True,
              help="Comma-separated schedules to compare (e.g. linear,uniform,root_p,adaptive).")
@click.option("--baseline", default="uniform", show_default=True, help="The schedule the others are compared to.")
@click.option("--steps", type=click.IntRange(min=1), required=True, help="GRPO optimizer steps per arm.")
@click.option("--seeds", default="0", show_default=True, callback=_seeds,
              help="Comma-separated training seeds; every schedule runs once per seed (e.g. 0,1,2).")
@click.option("--num-generations", type=click.IntRange(min=2), default=4, show_default=True,
              help="Completions per prompt (GRPO group size), the same for every arm.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Training recipe (or pipeline YAML) shared by every arm: rewards, LoRA, grpo settings, ...")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Override a shared training setting or GRPOConfig field, e.g. --set max_completion_length=96.")
@click.option("--benchmarks", "-b", default="gsm8k", show_default=True,
              help=f"Evaluation sets: {', '.join(BENCHMARKS)}, or .parquet/.jsonl problems files.")
@click.option("--heldout", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A held-out buckets dataset to evaluate too, per difficulty bucket.")
@click.option("--samples", "-k", type=click.IntRange(min=1), default=4, show_default=True,
              help="Evaluation samples per problem.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="First N problems of each benchmark.")
@click.option("--eval-max-tokens", type=click.IntRange(min=1), default=512, show_default=True)
@click.option("--eval-temperature", type=float, default=0.6, show_default=True)
@click.option("--eval-seed", type=int, default=0, show_default=True, help="Evaluation sampling and bootstrap seed.")
@click.option("--eval-engine", type=click.Choice(["hf", "vllm", "openai"]), default="hf", show_default=True)
@click.option("--no-base", is_flag=True, help="Skip evaluating the untrained model for reference.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Local data directory with eval/*.jsonl (default: $CURRICULUM_DATA_DIR).")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the arms, comparison.json and report/.")
@click.option("--report-only", is_flag=True, help="Only re-render the report from an existing comparison.json.")
def compare(buckets, model, schedules, baseline, steps, seeds, num_generations, config_path, assignments,
            benchmarks, heldout, samples, limit, eval_max_tokens, eval_temperature, eval_seed, eval_engine, no_base,
            data_dir, out, report_only):
    """Compare curriculum schedules at identical compute.

    Trains one run per schedule and seed with the same buckets, model, steps, group size, rewards and GRPO
    settings (only the schedule differs), evaluates each with the same harness, and writes one report:
    training curves on one plot, final accuracy with 95% intervals, and each schedule minus the baseline
    with a paired bootstrap interval over problems (saying plainly when it is not significant), plus the
    compute used. Finished arms are skipped when the command is rerun.

    \b
        curriculum compare --buckets runs/demo-cpu/buckets --schedules linear,uniform --steps 20 \\
            --seeds 0,1 --benchmarks gsm8k --limit 50 --samples 4 --out runs/compare
    """
    from curriculum import compare as lib

    if report_only:
        try:
            result = lib.write_compare_report(out)
        except lib.CompareError as error:
            raise click.ClickException(str(error)) from error
        click.echo(f"wrote {result.markdown} and {result.html}")
        return

    from curriculum.evaluation import EvalSettings, EvaluationError
    from curriculum.models import ModelResolutionError
    from curriculum.rollout.base import RolloutError
    from curriculum.training.config import ConfigError, TrainSettings, apply_overrides, load_recipe
    from curriculum.training.run import TrainSetupError
    from curriculum.verify import VerificationError

    try:
        recipe = TrainSettings()
        if config_path:
            recipe, _ = load_recipe(config_path)
        recipe = apply_overrides(recipe, list(assignments))
        shared = _shared_recipe(recipe)
        settings = lib.CompareSettings(
            buckets=str(buckets), out=str(out), model=model, schedules=_list(schedules), baseline=baseline,
            seeds=seeds, steps=steps, num_generations=num_generations, train=shared, benchmarks=_list(benchmarks),
            heldout=str(heldout) if heldout else None,
            eval=EvalSettings(samples=samples, limit=limit, max_tokens=eval_max_tokens, temperature=eval_temperature,
                              seed=eval_seed),
            eval_engine=eval_engine, eval_base=not no_base, data_dir=str(data_dir) if data_dir else None,
        )
    except (ConfigError, lib.CompareError, EvaluationError) as error:
        raise click.UsageError(str(error)) from error

    arms = len(settings.schedules) * len(settings.seeds)
    click.echo(f"compare {', '.join(settings.schedules)} (baseline {settings.baseline}) x seeds {settings.seeds}: "
               f"{arms} training runs of {steps} steps, {num_generations} completions per prompt -> {out}")
    bar = _Bar()

    def on_event(arm: str, message: str) -> None:
        bar.close()
        click.echo(f"[{arm}] {message}")

    errors = (lib.CompareError, ConfigError, TrainSetupError, EvaluationError, ModelResolutionError, RolloutError,
              VerificationError)
    try:
        comparison = lib.run_compare(settings, on_event=on_event, on_progress=bar)
    except errors as error:
        raise click.ClickException(f"{error}\n(finished arms are kept; rerun the same command to continue)") from error
    finally:
        bar.close()
    _print(comparison)
    click.echo(f"\nreport: {Path(out) / 'report' / 'report.md'} (single file: {Path(out) / 'report' / 'report.html'})")


def _shared_recipe(recipe) -> dict:
    """The recipe as a dict without the keys compare sets per arm (they would be silently overridden)."""
    data = recipe.to_dict()
    grpo = dict(data.pop("grpo") or {})
    for key in ("max_steps", "num_generations", "seed"):
        grpo.pop(key, None)
    data.pop("schedule", None)
    defaults = type(recipe)().to_dict()
    shared = {key: value for key, value in data.items() if value != defaults.get(key)}
    if grpo:
        shared["grpo"] = grpo
    return shared


class _Bar:
    def __init__(self) -> None:
        self.bar = None

    def __call__(self, done: int) -> None:
        from tqdm.auto import tqdm

        if self.bar is None or done < self.bar.n:
            self.close()
            self.bar = tqdm(desc="eval", unit="problem", dynamic_ncols=True, leave=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _print(comparison: dict) -> None:
    from curriculum.reports import fmt_difference, fmt_interval

    print_table(["schedule", "benchmark", "avg@k % [95% CI]"],
                [[schedule, name, fmt_interval(value)] for schedule, by_name in comparison["accuracy"].items()
                 for name, value in by_name.items()])
    for schedule, by_name in comparison["differences"].items():
        for name, diff in by_name.items():
            verdict = "significant" if diff["significant"] else "not significant"
            click.echo(f"{schedule} - {comparison['settings']['baseline']} on {name}: {fmt_difference(diff)} "
                       f"({verdict}, bootstrap p = {diff['p_value']:.3f})")
    compute = comparison["compute"]
    click.echo(f"compute: {compute['arms']} runs, {compute['total_steps']} steps, {compute['total_completions']:,} "
               f"completions, {compute['total_completion_tokens']:,} completion tokens, "
               f"{compute['total_train_wall_s'] / 60:.1f} min training + {compute['total_eval_wall_s'] / 60:.1f} min eval")
