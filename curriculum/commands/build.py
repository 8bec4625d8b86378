"""`curriculum build`: scored problems -> difficulty buckets (HF dataset + manifest.json + histogram)."""

from __future__ import annotations

from pathlib import Path

import click

from curriculum.commands.common import fail_on, print_table


def _edges(ctx, param, value: str | None) -> list[float] | None:
    if value is None:
        return None
    try:
        return [float(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated pass rates such as 0.8,0.5,0.2, got {value!r}") from None


@click.command()
@click.option("--scores", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Scores parquet from `curriculum score` (id, n, k, pass_rate, ci_low, ci_high, mean_tokens, model).")
@click.option("--problems", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Problems parquet from `curriculum data prepare` (id, problem, answer, source, ...).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output directory for the buckets dataset, manifest.json and pass_rates.png.")
@click.option("--buckets", "num_buckets", type=int, default=4, show_default=True,
              help="Number of buckets, numbered easiest (0) to hardest.")
@click.option("--strategy", type=click.Choice(["quantile", "thresholds", "kmeans"]), default="quantile",
              show_default=True, help="quantile: equal counts by pass rate; thresholds: at --edges; "
                                      "kmeans: clusters of pass rate and completion length.")
@click.option("--edges", callback=_edges, help="Pass-rate edges for --strategy thresholds, e.g. 0.8,0.5,0.2 "
                                               "(gives len+1 buckets).")
@click.option("--drop-solved/--keep-solved", default=True, show_default=True,
              help="Drop problems every scoring rollout solved (their GRPO groups have zero advantage).")
@click.option("--drop-unsolved/--keep-unsolved", default=True, show_default=True,
              help="Drop problems no scoring rollout solved.")
@click.option("--keep-frac", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Random fraction of the dropped solved/unsolved problems to keep anyway.")
@click.option("--max-ci-width", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Hold back problems whose pass-rate interval is wider than this (written to held_back.parquet "
                   "for re-scoring); by default every score is kept.")
@click.option("--max-per-bucket", type=click.IntRange(min=1), default=None,
              help="Randomly subsample each bucket to at most this many problems.")
@click.option("--prompt-config", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="YAML with `system` and/or `instruction` (with a {problem} placeholder) for the prompt.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for keep-frac, kmeans and caps.")
@click.option("--force", is_flag=True, help="Overwrite an existing non-empty --out directory.")
def build(scores, problems, out, num_buckets, strategy, edges, drop_solved, drop_unsolved, keep_frac,
          max_ci_width, max_per_bucket, prompt_config, seed, force) -> None:
    """Bucket scored problems easy to hard and drop those that give GRPO no signal.

    Writes an HF dataset (save_to_disk) with `prompt` (conversational), `bucket` (0 = easiest), `pass_rate`
    and the problem's columns, plus manifest.json (strategy, edges, counts, pass-rate range per bucket,
    what was dropped and why, the scoring model) and a histogram of pass rates with the bucket edges.

    Example: curriculum build --scores runs/x/scores.parquet --problems runs/x/problems.parquet
    --buckets 4 --strategy quantile --out runs/x/buckets
    """
    from curriculum import buckets as lib

    if strategy == "thresholds":
        if not edges:
            raise click.UsageError("--strategy thresholds needs --edges, e.g. --edges 0.8,0.5,0.2")
        source = click.get_current_context().get_parameter_source("num_buckets")
        if source == click.core.ParameterSource.COMMANDLINE and num_buckets != len(edges) + 1:
            raise click.UsageError(f"--edges {','.join(map(str, edges))} makes {len(edges) + 1} buckets, "
                                   f"but --buckets is {num_buckets}")
    elif edges:
        raise click.UsageError("--edges only applies to --strategy thresholds")
    if out.exists() and any(out.iterdir()) and not force:
        raise click.UsageError(f"{out} exists and is not empty; pass --force to overwrite it")
    template = _template(prompt_config)

    with fail_on(lib.BuildError):
        config = lib.BuildConfig(num_buckets=num_buckets, strategy=strategy, edges=edges, drop_solved=drop_solved,
                                 drop_unsolved=drop_unsolved, keep_frac=keep_frac, max_ci_width=max_ci_width,
                                 max_per_bucket=max_per_bucket, seed=seed)
        score_frame = lib.read_table(scores, "scores")
        problem_frame = lib.read_table(problems, "problems")
        result = lib.build(score_frame, problem_frame, config, scores_path=scores, problems_path=problems,
                           template=template)
    if out.exists() and force:
        import shutil

        shutil.rmtree(out)
    paths = lib.save(result, out, sources={"scores": str(scores), "problems": str(problems),
                                           "prompt_config": str(prompt_config) if prompt_config else None})

    manifest = result.manifest
    print_table(["bucket", "count", "pass rate min", "max", "mean"],
                [[b["bucket"], b["count"], _num(b["pass_rate_min"]), _num(b["pass_rate_max"]),
                  _num(b["pass_rate_mean"])] for b in manifest["buckets"]])
    dropped = ", ".join(f"{count} {reason}" for reason, count in manifest["dropped"].items() if count)
    click.echo(f"kept {manifest['total']} of {manifest['scored']} scored problems"
               + (f"; dropped {dropped}" if dropped else "")
               + (f"; kept {manifest['kept_zero_signal']} zero-signal at random" if manifest["kept_zero_signal"] else ""))
    if manifest["edges"]:
        click.echo("edges: " + ", ".join(f"{edge:.3f}" for edge in manifest["edges"]))
    for bucket in manifest["buckets"]:
        if bucket["count"] == 0:
            click.echo(f"warning: bucket {bucket['bucket']} is empty", err=True)
    click.echo(f"wrote {paths['dataset']} (dataset, {paths['manifest'].name}, {paths['histogram'].name}"
               + (f", {paths['held_back'].name}" if "held_back" in paths else "") + ")")


def _template(prompt_config: Path | None):
    from curriculum.prompts import DEFAULT_TEMPLATE, PromptTemplate

    if prompt_config is None:
        return DEFAULT_TEMPLATE
    import yaml

    try:
        config = yaml.safe_load(prompt_config.read_text())
        if config is not None and not isinstance(config, dict):
            raise ValueError("expected a mapping with keys system and/or instruction")
        return PromptTemplate.from_dict(config)
    except (yaml.YAMLError, ValueError) as error:
        raise click.UsageError(f"--prompt-config {prompt_config}: {error}") from error


def _num(value) -> str:
    return "-" if value is None else f"{value:.3f}"
