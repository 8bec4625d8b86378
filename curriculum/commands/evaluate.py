"""`curriculum eval`: one fixed harness for every model and checkpoint (avg@k with intervals, pass@k, maj@k)."""

from __future__ import annotations

from pathlib import Path

import click

from curriculum.commands.common import read_prompt_config
from curriculum.evaluation import BENCHMARKS


def parse_options(pairs: tuple[str, ...]) -> dict:
    """`key=value` pairs -> dict, values parsed as YAML scalars (so 8 is an int and true a bool)."""
    import yaml

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.UsageError(f"--engine-option expects key=value, got {pair!r}")
        options[key] = yaml.safe_load(value)
    return options


def print_results(result: dict) -> None:
    from curriculum.reports import fmt_interval

    k = result["k"]
    click.echo(f"{'benchmark':<14} {'problems':>8}  {'avg@' + str(k) + ' % [95% CI]':<24} "
               f"{'pass@' + str(k):>20} {'maj@' + str(k):>20} {'tokens':>7} {'trunc':>6}")
    for name, metrics in result["benchmarks"].items():
        top = metrics["pass_at_k"].get(str(k)) if k > 1 else None
        click.echo(
            f"{name:<14} {metrics['n_problems']:>8}  {fmt_interval(metrics['avg_at_k']):<24} "
            f"{fmt_interval(top):>20} {fmt_interval(metrics.get('maj_at_k')):>20} "
            f"{metrics['mean_tokens']:>7.0f} {100 * metrics['truncated_frac']:>5.0f}%"
        )
        for bucket, sub in (metrics.get("per_bucket") or {}).items():
            click.echo(f"  bucket {bucket:<5} {sub['n_problems']:>8}  {fmt_interval(sub['avg_at_k']):<24}")


@click.command("eval")
@click.option("--model", "-m", required=True, help="Model alias, local directory or checkpoint, or hub id.")
@click.option("--benchmarks", "-b", default="gsm8k", show_default=True,
              help=f"Comma-separated: {', '.join(BENCHMARKS)}, or .parquet/.jsonl problems files. "
                   "Empty with --buckets to evaluate the held-out split only.")
@click.option("--samples", "-k", default=4, show_default=True, type=click.IntRange(min=1),
              help="Samples per problem (k): avg@k, pass@k and maj@k are computed from them.")
@click.option("--engine", default="hf", show_default=True, type=click.Choice(["hf", "vllm", "openai"]))
@click.option("--engine-option", "engine_options", multiple=True, metavar="KEY=VALUE",
              help="Extra engine option (e.g. batch_size=16, base_url=...); repeatable.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Evaluate the first N problems of each benchmark (file order, the same slice every time); "
                   "--buckets' held-out split is always evaluated whole; `gsm8k:100` in --benchmarks gives one "
                   "benchmark its own limit.")
@click.option("--max-tokens", default=512, show_default=True, type=click.IntRange(min=1))
@click.option("--temperature", default=0.6, show_default=True, type=float)
@click.option("--top-p", default=0.95, show_default=True, type=float)
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seeds sampling and the bootstrap: the same seed gives the same numbers (hf engine, CPU).")
@click.option("--extraction", default="auto", show_default=True,
              help="Answer extraction, as in training (auto: the last of answer tag / boxed / 'answer is', then "
                   "math-verify's own reading of the text, then a number standing alone at the end); e.g. "
                   "boxed to credit only a final \\boxed{}.")
@click.option("--buckets", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A `curriculum build` output: also evaluate its held-out split, per difficulty bucket.")
@click.option("--prompt-config", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="YAML with `system` and/or `instruction` for the prompt. Default: with --buckets, the template the "
                   "buckets were built with (their manifest); else the default template. A prompt that differs from "
                   "the buckets' is refused.")
@click.option("--buckets-split", default=None, help="Split of a bucketed DatasetDict to evaluate (default: test).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Local data directory with eval/*.jsonl (default: $CURRICULUM_DATA_DIR).")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the results JSON; completions go to <out stem>.samples.jsonl beside it. Finished "
                   "chunks are kept in <out stem>.journal.jsonl until then: the same command, run again after a "
                   "kill, resumes there.")
def eval_cmd(model, benchmarks, samples, engine, engine_options, limit, max_tokens, temperature, top_p, seed,
             extraction, buckets, prompt_config, buckets_split, data_dir, out):
    """Evaluate MODEL on math benchmarks with the training prompt template and verifier.

    Reports avg@k (pass@1 averaged over k samples) with a 95% bootstrap interval over problems, pass@k
    (unbiased estimator) and majority vote maj@k when k > 1, per benchmark and, with --buckets, per
    difficulty bucket of the held-out split.

    \b
        curriculum eval --model smollm2-135m --benchmarks gsm8k --limit 50 --samples 4 --out runs/x/eval.json
    """
    from curriculum.evaluation import EvalSettings, EvaluationError, describe, evaluate, write_eval
    from curriculum.layout import journal_path_for, samples_path_for
    from curriculum.models import ModelResolutionError
    from curriculum.rollout.base import RolloutError
    from curriculum.verify import VerificationError

    names = [name.strip() for name in benchmarks.split(",") if name.strip()]
    template = _template(prompt_config, buckets)
    try:
        settings = EvalSettings(samples=samples, limit=limit, temperature=temperature, top_p=top_p,
                                max_tokens=max_tokens, seed=seed, extraction=extraction)
        result = evaluate(
            model, names, settings=settings, engine=engine, engine_options=parse_options(engine_options),
            buckets=buckets, buckets_split=buckets_split, data_dir=data_dir, samples_path=samples_path_for(out),
            journal_path=journal_path_for(out), template=template,
            on_benchmark=lambda name, n: click.echo(f"{name}: {n} problems x {samples} samples", err=True),
        )
    except (EvaluationError, ModelResolutionError, RolloutError, VerificationError) as error:
        raise click.ClickException(str(error)) from error
    write_eval(result, out)
    print_results(result)
    click.echo(f"wrote {out} ({result['timing']['wall_s']:.0f}s); completions in {samples_path_for(out)}")
    click.echo(f"summary: {describe(result)}")


def _template(prompt_config: Path | None, buckets: Path | None):
    """The buckets' prompt template (their manifest) unless --prompt-config gives one; a differing one is refused."""
    import json

    from curriculum.layout import MANIFEST
    from curriculum.prompts import TemplateMismatch, agreed_template, template_from_record

    recorded = None
    if buckets is not None and (buckets / MANIFEST).is_file():
        recorded = template_from_record(json.loads((buckets / MANIFEST).read_text()).get("prompt_template"))
    try:
        return agreed_template(read_prompt_config(prompt_config), recorded, where=str(buckets))
    except TemplateMismatch as error:
        raise click.UsageError(str(error)) from error
