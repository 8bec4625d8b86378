"""`curriculum build`: scored or rated problems -> difficulty buckets (HF dataset + manifest.json + histogram)."""

from __future__ import annotations

from pathlib import Path

import click

from curriculum.commands.common import fail_on, print_table, read_prompt_config


def _edges(ctx, param, value: str | None) -> list[float] | None:
    if value is None:
        return None
    try:
        return [float(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated pass rates such as 0.8,0.5,0.2, got {value!r}") from None


DIFFICULTY_OPTIONS = ("difficulty_kind", "difficulty_scale", "difficulty_max_missing")


@click.command()
@click.option("--scores", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Scores parquet from `curriculum score` (id, n, k, pass_rate, ci_low, ci_high, mean_tokens, model). "
                   "Give this or --difficulty-column.")
@click.option("--problems", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Problems parquet from `curriculum data prepare` (id, problem, answer, source, ...); "
                   ".jsonl and .csv are read too.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output directory for the buckets dataset, manifest.json and pass_rates.png (ratings.png "
                   "for a rating).")
@click.option("--difficulty-column", default=None, metavar="COLUMN",
              help="Take difficulty from this column of --problems instead of a scores file: a pass rate some "
                   "model published, or a human rating. No rollouts are run; the buckets' n and k are 0 and "
                   "their intervals NaN (unknown).")
@click.option("--difficulty-kind", type=click.Choice(["pass_rate", "rating"]), default="pass_rate",
              show_default=True,
              help="pass_rate: share of attempts solved (higher = easier); problems at 0 or 1 are dropped as "
                   "zero-signal like scored ones. rating: higher = harder, any units, numeric strings accepted; "
                   "bucketed by quantile, no zero-signal filter (a rating says nothing about solvability).")
@click.option("--difficulty-scale", type=click.Choice(["1", "100"]), default="1", show_default=True,
              help="Pass rates as fractions in [0, 1] (1) or percentages in [0, 100] (100).")
@click.option("--difficulty-max-missing", type=click.FloatRange(0, 1, max_open=True), default=0.05,
              show_default=True,
              help="Largest share of rows allowed without a difficulty value; those rows are dropped and counted "
                   "in manifest.json (dropped.missing_difficulty). More refuses the file.")
@click.option("--buckets", "num_buckets", type=int, default=4, show_default=True,
              help="Number of buckets, numbered easiest (0) to hardest. Quantile buckets never split a tie, "
                   "so fewer may be made (manifest.json `ties` says why).")
@click.option("--strategy", type=click.Choice(["quantile", "thresholds", "kmeans"]), default="quantile",
              show_default=True, help="quantile: equal counts by pass rate (or rating); thresholds: at --edges; "
                                      "kmeans: clusters of pass rate (and completion length with --ties length).")
@click.option("--edges", callback=_edges, help="Pass-rate edges for --strategy thresholds, e.g. 0.8,0.5,0.2 "
                                               "(gives len+1 buckets).")
@click.option("--ties", type=click.Choice(["merge", "length"]), default="merge", show_default=True,
              help="Problems with equal pass rates (or ratings): merge: keep each value in one bucket, making "
                   "fewer buckets if needed (4 scoring samples give at most 3 kept values); length: break ties "
                   "on the scoring rollouts' mean completion length (longer = harder; equal lengths stay "
                   "together; also makes length a kmeans feature). Without lengths (a difficulty column) both "
                   "merge.")
@click.option("--drop-solved/--keep-solved", default=True, show_default=True,
              help="Drop problems every scoring rollout solved, or with a published pass rate of 1 "
                   "(their GRPO groups have zero advantage).")
@click.option("--drop-unsolved/--keep-unsolved", default=True, show_default=True,
              help="Drop problems no scoring rollout solved (pass rate 0).")
@click.option("--keep-frac", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Random fraction of the dropped solved/unsolved problems to keep anyway.")
@click.option("--max-ci-width", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Hold back problems whose pass-rate interval is wider than this (written to held_back.parquet "
                   "for re-scoring); by default every score is kept. Needs --scores.")
@click.option("--max-per-bucket", type=click.IntRange(min=1), default=None,
              help="Randomly subsample each bucket to at most this many problems.")
@click.option("--prompt-config", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="YAML with `system` and/or `instruction` (with a {problem} placeholder) for the prompt. Default: "
                   "the template the scores were made with (recorded by `curriculum score`); a different one is "
                   "refused.")
@click.option("--heldout", type=click.IntRange(min=0), default=0, show_default=True,
              help="Hold this many bucketed problems out of training (stratified by bucket, seeded) and write them, "
                   "in the same format with their own manifest.json, to OUT/heldout/ for `curriculum eval --buckets "
                   "OUT/heldout` (accuracy per bucket). The training buckets are rebuilt on the rest.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for keep-frac, kmeans, caps and --heldout.")
@click.option("--force", is_flag=True, help="Overwrite an existing non-empty --out directory.")
def build(scores, problems, out, difficulty_column, difficulty_kind, difficulty_scale, difficulty_max_missing,
          num_buckets, strategy, edges, ties, drop_solved, drop_unsolved, keep_frac, max_ci_width, max_per_bucket,
          prompt_config, heldout, seed, force) -> None:
    """Bucket problems easy to hard and drop those that give GRPO no signal.

    Difficulty comes from a scores file (--scores, pass rates measured by `curriculum score`) or ships with
    the data (--difficulty-column: a published pass rate or a human rating).

    Writes an HF dataset (save_to_disk) with `prompt` (conversational), `bucket` (0 = easiest), `pass_rate`
    and the problem's columns, plus manifest.json (where the difficulty came from, strategy, edges, counts,
    range per bucket, how ties were handled, what was dropped and why, the scoring model) and a histogram
    with the bucket edges.

    \b
    Examples:
      curriculum build --scores runs/x/scores.parquet --problems runs/x/problems.parquet --out runs/x/buckets
      curriculum build --problems pool.parquet --difficulty-column solve_rate --difficulty-scale 100 --out B
      curriculum build --problems pool.jsonl --difficulty-column level --difficulty-kind rating --out B
    """
    from curriculum import buckets as lib

    context = click.get_current_context()
    _check_difficulty_source(context, scores, difficulty_column, difficulty_kind, strategy)
    _check_edges(context, strategy, edges, num_buckets)
    if out.exists() and any(out.iterdir()) and not force:
        raise click.UsageError(f"{out} exists and is not empty; pass --force to overwrite it")
    template = _template(prompt_config, scores)

    with fail_on(lib.BuildError):
        config = lib.BuildConfig(num_buckets=num_buckets, strategy=strategy, edges=edges, drop_solved=drop_solved,
                                 drop_unsolved=drop_unsolved, keep_frac=keep_frac, max_ci_width=max_ci_width,
                                 max_per_bucket=max_per_bucket, seed=seed, ties=ties, heldout=heldout)
        problem_frame = lib.read_table(problems, "problems")
        if difficulty_column is not None:
            spec = lib.DifficultyColumn(difficulty_column, kind=difficulty_kind, scale=int(difficulty_scale),
                                        max_missing=difficulty_max_missing)
            result = lib.build_from_column(problem_frame, spec, config, problems_path=problems, template=template)
        else:
            score_frame = lib.read_table(scores, "scores")
            result = lib.build(score_frame, problem_frame, config, scores_path=scores, problems_path=problems,
                               template=template)
    if out.exists() and force:
        import shutil

        shutil.rmtree(out)
    with fail_on(lib.BuildError):
        paths = lib.save(result, out, sources={"scores": str(scores) if scores else None, "problems": str(problems),
                                               "prompt_config": str(prompt_config) if prompt_config else None})
    _summary(result.manifest, paths)
    if result.heldout is not None:
        click.echo(f"held out {result.heldout.manifest['total']} problems, per bucket "
                   f"{result.heldout.manifest['counts']}: {paths['heldout']}")
    click.echo(result.summary())


def _check_difficulty_source(context, scores, difficulty_column, difficulty_kind: str, strategy: str) -> None:
    """Exactly one source of difficulty, and only the options that describe the one given."""
    given = {name for name in (*DIFFICULTY_OPTIONS, "max_ci_width")
             if context.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE}
    if scores is not None and difficulty_column is not None:
        raise click.UsageError("--scores and --difficulty-column are two sources of difficulty; give one "
                               "(measured pass rates in a scores file, or a column that ships with --problems)")
    if scores is None and difficulty_column is None:
        raise click.UsageError("give --scores (pass rates from `curriculum score`) or --difficulty-column "
                               "(a pass rate or rating in --problems)")
    if difficulty_column is None and given & set(DIFFICULTY_OPTIONS):
        option = "--" + sorted(given & set(DIFFICULTY_OPTIONS))[0].replace("_", "-")
        raise click.UsageError(f"{option} describes --difficulty-column, which is not given")
    if difficulty_column is not None and "max_ci_width" in given:
        raise click.UsageError("--max-ci-width holds back uncertain scores; a difficulty column has no intervals")
    if difficulty_kind == "rating" and "difficulty_scale" in given:
        raise click.UsageError("--difficulty-scale applies to --difficulty-kind pass_rate; a rating is bucketed "
                               "by its order, whatever its units")
    if difficulty_kind == "rating" and difficulty_column is not None and strategy == "thresholds":
        raise click.UsageError("--strategy thresholds takes pass-rate --edges; bucket a rating with quantile or kmeans")


def _check_edges(context, strategy: str, edges: list[float] | None, num_buckets: int) -> None:
    """--edges belong to --strategy thresholds, which needs them, and must agree with a --buckets given."""
    if strategy == "thresholds":
        if not edges:
            raise click.UsageError("--strategy thresholds needs --edges, e.g. --edges 0.8,0.5,0.2")
        source = context.get_parameter_source("num_buckets")
        if source == click.core.ParameterSource.COMMANDLINE and num_buckets != len(edges) + 1:
            raise click.UsageError(f"--edges {','.join(map(str, edges))} makes {len(edges) + 1} buckets, "
                                   f"but --buckets is {num_buckets}")
    elif edges:
        raise click.UsageError("--edges only applies to --strategy thresholds")


def _summary(manifest: dict, paths: dict) -> None:
    """The printed summary: per-bucket ranges, where the difficulty came from, drops, ties, files."""
    difficulty = manifest["difficulty"]
    rating = difficulty["kind"] == "rating"
    column = "rating" if rating else "pass_rate"
    print_table(["bucket", "count", f"{column.replace('_', ' ')} min", "max", "mean"],
                [[b["bucket"], b["count"], _num(b[f"{column}_min"]), _num(b[f"{column}_max"]),
                  _num(b[f"{column}_mean"])] for b in manifest["buckets"]])
    if difficulty["source"] == "column":
        click.echo(f"difficulty: column {difficulty['column']} of {difficulty['file']} "
                   f"({difficulty['kind']}" + ("" if rating else f", scale {difficulty['scale']}")
                   + "); n, k and intervals unknown (no rollouts)" + ("; pass rate unknown" if rating else ""))
        what = f"problems with a value in {difficulty['column']}"
    else:
        what = "scored problems"
    dropped = ", ".join(f"{count} {reason}" for reason, count in manifest["dropped"].items() if count)
    click.echo(f"kept {manifest['total']} of {manifest['scored']} {what}"
               + (f"; dropped {dropped}" if dropped else "")
               + (f"; kept {manifest['kept_zero_signal']} zero-signal at random" if manifest["kept_zero_signal"] else "")
               + ("; no zero-signal filter (a rating says nothing about solvability)" if rating else ""))
    if manifest["edges"]:
        click.echo(f"edges ({column.replace('_', ' ')}): " + ", ".join(f"{edge:.3f}" for edge in manifest["edges"]))
    click.echo(f"ties: {manifest['ties']['note']}")
    for bucket in manifest["buckets"]:
        if bucket["count"] == 0:
            click.echo(f"warning: bucket {bucket['bucket']} is empty", err=True)
    click.echo(f"wrote {paths['dataset']} (dataset, {paths['manifest'].name}, {paths['histogram'].name}"
               + (f", {paths['held_back'].name}" if "held_back" in paths else "") + ")")


def _template(prompt_config: Path | None, scores: Path | None):
    """The scores' prompt template (recorded by `curriculum score`) unless --prompt-config gives one; a given one
    that differs is refused."""
    from curriculum.prompts import TemplateMismatch, agreed_template, template_from_record

    recorded = None
    if scores is not None and scores.suffix == ".parquet" and scores.is_file():
        from curriculum.scoring import read_metadata

        try:
            recorded = template_from_record((read_metadata(scores) or {}).get("template"))
        except Exception:  # noqa: BLE001 - an unreadable file is reported by the build itself, with its name
            recorded = None
    try:
        return agreed_template(read_prompt_config(prompt_config), recorded, where=str(scores))
    except TemplateMismatch as error:
        raise click.UsageError(str(error)) from error


def _num(value) -> str:
    return "-" if value is None else f"{value:.3f}"
