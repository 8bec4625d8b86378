"""`curriculum compare`: train every arm at identical compute, evaluate each along the way, report the study."""

from __future__ import annotations

from pathlib import Path

import click

from curriculum.commands.common import print_table
from curriculum.evaluation import BENCHMARKS
from curriculum.progress import CountingBar


def _list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _seeds(ctx, param, value: str) -> list[int]:
    try:
        return [int(part) for part in _list(value)]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers such as 0,1,2, got {value!r}") from None


@click.command("compare")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A study file (with `arms:`; shape above), or a training recipe / pipeline YAML shared by every "
                   "arm: rewards, LoRA, grpo settings, ...")
@click.option("--buckets", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Buckets dataset from `curriculum build` (for every arm without its own).")
@click.option("--model", "-m", default="smollm2-135m", show_default=True, help="Model every arm starts from.")
@click.option("--schedules", default="linear,uniform", show_default=True,
              help="Without a study file: one arm per schedule (e.g. linear,uniform,root_p,adaptive).")
@click.option("--baseline", default="uniform", show_default=True, help="The arm the others are compared to.")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="GRPO optimizer steps per arm.")
@click.option("--seeds", default="0", show_default=True, callback=_seeds,
              help="Comma-separated training seeds; every arm runs once per seed (e.g. 0,1,2).")
@click.option("--num-generations", type=click.IntRange(min=2), default=4, show_default=True,
              help="Completions per prompt (GRPO group size), the same for every arm.")
@click.option("--eval-every", type=click.IntRange(min=1), default=None,
              help="Save a checkpoint every N steps and evaluate it: learning curves (step 0 = the untrained model).")
@click.option("--scores", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="The scores parquet behind the buckets: its summed `n` is counted as every scored arm's "
                   "scoring rollouts.")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Override a shared training setting or GRPOConfig field, e.g. --set max_completion_length=96.")
@click.option("--benchmarks", "-b", default="gsm8k", show_default=True,
              help=f"Evaluation sets: {', '.join(BENCHMARKS)}, or .parquet/.jsonl problems files.")
@click.option("--heldout", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A buckets dataset whose held-out split is evaluated too (as `heldout`), per difficulty bucket.")
@click.option("--primary", default=None,
              help="The eval set of the study statistics (default: heldout when evaluated, else the first benchmark).")
@click.option("--samples", "-k", type=click.IntRange(min=1), default=4, show_default=True,
              help="Evaluation samples per problem.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="First N problems of each benchmark.")
@click.option("--eval-max-tokens", type=click.IntRange(min=1), default=512, show_default=True)
@click.option("--eval-temperature", type=float, default=0.6, show_default=True)
@click.option("--eval-seed", type=int, default=0, show_default=True, help="Evaluation sampling and bootstrap seed.")
@click.option("--eval-engine", type=click.Choice(["hf", "vllm", "openai"]), default="hf", show_default=True)
@click.option("--no-base", is_flag=True, help="Skip evaluating the untrained model (step 0 of the curves).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Local data directory with eval/*.jsonl (default: $CURRICULUM_DATA_DIR).")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the arms, comparison.json, study.json and report/.")
@click.option("--study-json", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the study summary here (e.g. reports/curriculum-study.json).")
@click.option("--keep-optimizer-state", is_flag=True,
              help="Keep the optimizer state in evaluated checkpoints of finished runs (dropped by default: disk).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Runs done at once, each in its own process on its share of the cores, writing its progress to "
                   "<out>/<arm>/seed-<s>/worker.log. On the 2-core test machine, 2 one-core runs trained at 0.88x "
                   "and evaluated at 1.30x the speed of 1 two-core run (reports/bench_workers.md).")
@click.option("--status", is_flag=True,
              help="Only show where the study stands, unit by unit (state, step, curve points evaluated, final "
                   "accuracy), from its files; also written to <out>/status.json. Runs nothing.")
@click.option("--report-only", is_flag=True, help="Only re-render the report from an existing comparison.json.")
@click.option("--so-far", is_flag=True,
              help="A study still running: compare the runs finished so far (the seeds the baseline has finished, "
                   "the arms finished at all of them) into <out>/so-far/ (comparison.json and report/), and "
                   "with --study-json its summary, marked so_far. Runs nothing.")
@click.pass_context
def compare(ctx, config_path, buckets, model, schedules, baseline, steps, seeds, num_generations, eval_every, scores,
            assignments, benchmarks, heldout, primary, samples, limit, eval_max_tokens, eval_temperature, eval_seed,
            eval_engine, no_base, data_dir, out, study_json, keep_optimizer_state, workers, status, report_only,
            so_far):
    """Compare curriculum arms at identical compute: a study from one command.

    An arm is a name and what its training does differently: schedule, schedule_options, online_difficulty,
    skip_solved, and optionally its own buckets. Everything else (model, steps, group size, prompts per
    step, rewards, GRPO settings, seeds) is shared, and a study that varies it is refused. Every arm and seed
    is trained, its checkpoints (every --eval-every steps) and final model evaluated with one harness, and
    the report gives per arm: final accuracy with a 95% interval and per seed, the paired difference to the
    baseline, learning curves against training and total (scoring + training) rollouts, the rollouts needed
    to reach the baseline's final accuracy with a bootstrap interval, and the zero-advantage share. Finished
    trainings and evaluations are skipped when the command is rerun; an interrupted training resumes from
    its last checkpoint.

    \b
    A study file (options given on the command line win over it):
        steps: 40
        seeds: [0, 1]
        eval_every: 10
        buckets: runs/x/buckets
        scores: runs/x/scores.parquet
        train: {grpo: {learning_rate: 1.0e-6}}
        arms:
          uniform-all:      {schedule: uniform, online_difficulty: false,
                             buckets: runs/x/buckets-all, needs_scoring: false}
          uniform-filtered: {schedule: uniform, online_difficulty: false}
          linear:           {schedule: linear, online_difficulty: false}
          linear-online:    {schedule: linear, online_difficulty: true}
        baseline: uniform-all
    Other top-level keys: model, num_generations, benchmarks, heldout, primary,
    eval: {samples, limit, max_tokens, temperature, seed, ...}, eval_engine, eval_base,
    data_dir, keep_optimizer_state, workers. Per arm also: schedule_options, skip_solved, and scoring_rollouts_from
    (a scores parquet of its own). Scoring rollouts count `scores:` for every arm
    that does not say needs_scoring: false. Paths are relative to the working directory.

    \b
        curriculum compare --config study.yaml --heldout runs/x/buckets --out runs/study \\
            --study-json reports/curriculum-study.json
        curriculum compare --buckets runs/demo-cpu/buckets --schedules linear,uniform --steps 20 \\
            --seeds 0,1 --benchmarks gsm8k --limit 50 --samples 4 --out runs/compare
    """
    if report_only:
        _report_only(out, study_json)
        return
    cli = {"buckets": str(buckets) if buckets else None, "model": model, "baseline": baseline, "steps": steps,
           "seeds": seeds, "num_generations": num_generations, "eval_every": eval_every,
           "scores": str(scores) if scores else None, "benchmarks": _list(benchmarks),
           "heldout": str(heldout) if heldout else None, "primary": primary, "eval_engine": eval_engine,
           "eval_base": not no_base, "data_dir": str(data_dir) if data_dir else None,
           "keep_optimizer_state": keep_optimizer_state, "workers": workers}
    harness = (("samples", "samples", samples), ("limit", "limit", limit),
               ("max_tokens", "eval_max_tokens", eval_max_tokens),
               ("temperature", "eval_temperature", eval_temperature), ("seed", "eval_seed", eval_seed))
    settings = _settings(ctx, config_path, assignments, schedules, out, cli, harness)
    if status:
        _status(settings, out)
        return
    if so_far:
        _so_far(settings, study_json)
        return
    _run(settings, out, study_json)


def _given(ctx, name: str) -> bool:
    """Whether the option was given on the command line (it then wins over the study file)."""
    return ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)


def _report_only(out: Path, study_json: Path | None) -> None:
    """--report-only: re-render the report (and --study-json) from an existing comparison.json."""
    from curriculum import compare as lib

    try:
        result = lib.write_compare_report(out)
    except lib.CompareError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"wrote {result.markdown} and {result.html}")
    if study_json:
        import json

        comparison = json.loads((Path(out) / lib.COMPARISON).read_text())
        if "study" not in comparison:
            raise click.ClickException(f"{Path(out) / lib.COMPARISON} predates study statistics; rerun compare")
        click.echo(f"wrote {lib.write_study_json(comparison, study_json)}")


def _settings(ctx, config_path: Path | None, assignments, schedules: str, out: Path, cli: dict, harness_options):
    """The study's CompareSettings: the study file or recipe, then --set, then the options given on the command
    line (an option left at its default does not override the study file); refused settings are usage errors.

    `harness_options` holds (EvalSettings field, option name, value) for each harness option."""
    from curriculum import compare as lib
    from curriculum.evaluation import EvalSettings, EvaluationError
    from curriculum.training.config import ConfigError, TrainSettings, apply_overrides, load_recipe

    try:
        study: dict = {}
        recipe = TrainSettings()
        if config_path and lib.is_study_file(config_path):
            study, section = lib.read_study(config_path)
            recipe = TrainSettings.from_dict(section, source=str(config_path))
            if _given(ctx, "schedules"):
                raise lib.CompareError("--schedules and a study file's `arms:` both name the arms; use one")
        elif config_path:
            recipe, _ = load_recipe(config_path)
        recipe = apply_overrides(recipe, list(assignments))
        option = {"eval_base": "no_base"}
        values = {key: value for key, value in cli.items()
                  if _given(ctx, option.get(key, key)) or key not in study}
        values = {**study, **values}
        harness = dict(study.get("eval") or {})
        for field, name, value in harness_options:
            if _given(ctx, name) or field not in harness:
                harness[field] = value
        values["eval"] = EvalSettings(**harness)
        if values.get("steps") is None:
            raise lib.CompareError("give the number of training steps: --steps N (or `steps:` in the study file)")
        if "arms" not in values:
            values["schedules"] = _list(schedules)
        return lib.CompareSettings(out=str(out), train=_shared_recipe(recipe), **values)
    except (ConfigError, lib.CompareError, EvaluationError, TypeError) as error:
        raise click.UsageError(str(error)) from error


def _run(settings, out: Path, study_json: Path | None) -> None:
    """Run the study with its narration and an evaluation progress bar, then print the results."""
    from curriculum import compare as lib
    from curriculum.evaluation import EvaluationError
    from curriculum.models import ModelResolutionError
    from curriculum.rollout.base import RolloutError
    from curriculum.training.config import ConfigError
    from curriculum.training.run import TrainSetupError
    from curriculum.verify import VerificationError

    runs = len(settings.arms) * len(settings.seeds)
    points = len(settings.checkpoint_steps()) + 1
    click.echo(f"compare {', '.join(arm.name for arm in settings.arms)} (baseline {settings.baseline}) x seeds "
               f"{settings.seeds}: {runs} training runs of {settings.steps} steps, {settings.num_generations} "
               f"completions per prompt, {runs * points} evaluations"
               + (" + the untrained model" if settings.eval_base else "") + f" -> {out}")
    bar = CountingBar()

    def on_event(arm: str, message: str) -> None:
        bar.close()
        click.echo(f"[{arm}] {message}")

    errors = (lib.CompareError, ConfigError, TrainSetupError, EvaluationError, ModelResolutionError, RolloutError,
              VerificationError)
    try:
        comparison = lib.run_compare(settings, on_event=on_event, on_progress=bar, on_benchmark=bar.begin)
        if study_json:
            lib.write_study_json(comparison, study_json)
    except errors as error:
        raise click.ClickException(f"{error}\n(finished arms are kept; rerun the same command to continue)") from error
    finally:
        bar.close()
    _print(comparison)
    click.echo(f"\nreport: {Path(out) / 'report' / 'report.md'} (single file: {Path(out) / 'report' / 'report.html'})"
               f"; study: {study_json or Path(out) / lib.STUDY}")


def _so_far(settings, study_json: Path | None) -> None:
    """--so-far: the interim comparison of the finished runs, printed and written to <out>/so-far/ (and to
    --study-json, marked as interim, until the whole study replaces it)."""
    from curriculum import compare as lib

    try:
        comparison = lib.compare_so_far(settings)
    except lib.CompareError as error:
        raise click.ClickException(str(error)) from error
    so_far = comparison["so_far"]
    click.echo(f"so far: {so_far['runs']} of {so_far['runs_planned']} runs (arms {', '.join(so_far['arms'])}; "
               f"seeds {so_far['seeds']})")
    _print(comparison)
    click.echo(f"\nreport: {Path(settings.out) / lib.SO_FAR / 'report' / 'report.md'}")
    if study_json:
        click.echo(f"wrote {lib.write_study_json(comparison, study_json)}")


def _status(settings, out: Path) -> None:
    """--status: one row per unit, then the totals; status.json beside the study."""
    import json

    from curriculum import compare as lib
    from curriculum.reports import fmt_interval

    rows = lib.study_status(settings)
    sets = list(dict.fromkeys(name for row in rows for name in row["accuracy"]))
    print_table(["unit", "state", "step", "curve points", *sets, "zero-adv share"],
                [[row["unit"], row["state"], row["step"], f"{row['evaluated']}/{row['points']}",
                  *(fmt_interval(row["accuracy"][name]) if name in row["accuracy"] else "–" for name in sets),
                  "–" if row["zero_adv_share"] is None else f"{row['zero_adv_share']:.2f}"] for row in rows])
    done = sum(row["state"] == "done" for row in rows)
    click.echo(f"{done}/{len(rows)} units done" + ("" if done == len(rows) else "; rerun without --status to continue"))
    if Path(out).is_dir():  # a study not yet started gets no directory from a look at it
        (Path(out) / "status.json").write_text(json.dumps({"units": rows, "done": done, "total": len(rows)}, indent=2)
                                               + "\n")


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


def _print(comparison: dict) -> None:
    from curriculum.compare import difference_verdict, fmt_reach
    from curriculum.reports import fmt_difference, fmt_interval

    print_table(["arm", "benchmark", "avg@k % [95% CI]"],
                [[name, benchmark, fmt_interval(value)] for name, by_name in comparison["accuracy"].items()
                 for benchmark, value in by_name.items()])
    for name, by_name in comparison["differences"].items():
        for benchmark, diff in by_name.items():
            seeds = diff.get("over_seeds")
            over_seeds = (f"; over seeds {fmt_difference(seeds)}, t p = {seeds['p_value']:.3f}" if seeds else "")
            click.echo(f"{name} - {comparison['settings']['baseline']} on {benchmark}: {fmt_difference(diff)} "
                       f"(bootstrap p = {diff['p_value']:.3f}{over_seeds}): "
                       f"{difference_verdict(diff['significant'], seeds)[0]}")
    study = comparison.get("study")
    if study:
        click.echo(f"\nrollouts to reach {study['baseline']}'s final {study['benchmark']} accuracy "
                   f"({100 * study['target']:.1f}%), median [95% interval]:")
        print_table(["arm", "train rollouts", "scoring rollouts", "to reach (train)", "to reach (total)", "reached",
                     "zero-adv share"],
                    [[name, f"{arm['train_rollouts']:,}", f"{arm['scoring_rollouts']:,}",
                      fmt_reach(arm["rollouts_to_reach_baseline"]), fmt_reach(arm["rollouts_to_reach_baseline"]["total"]),
                      f"{100 * arm['rollouts_to_reach_baseline']['reached_frac']:.0f}%",
                      "–" if arm["zero_adv_share"] is None else f"{arm['zero_adv_share']:.2f}"]
                     for name, arm in study["arms"].items()])
        if study.get("target_at_start"):
            click.echo("(the baseline ends no higher than the untrained model, so every arm 'reaches' it at 0: "
                       "these numbers say nothing here)")
    compute = comparison["compute"]
    click.echo(f"compute: {compute['arms']} runs, {compute['total_steps']} steps, {compute['total_completions']:,} "
               f"completions, {compute['total_completion_tokens']:,} completion tokens, "
               f"{compute['total_train_wall_s'] / 60:.1f} min training + {compute['total_eval_wall_s'] / 60:.1f} min eval")
