"""`curriculum data`: prepare problem sets from sources, generate synthetic problems, list sources."""

from __future__ import annotations

from pathlib import Path

import click

from curriculum.commands.common import fail_on, print_table
from curriculum.data.loaders import BENCHMARKS


@click.group()
def data() -> None:
    """Prepare problem sets: load, validate, deduplicate, decontaminate; synthesize."""


@data.command()
@click.option("--source", "sources", multiple=True, required=True,
              help="A datasets_cfg/*.yaml, a source name (gsm8k), a hub id (openai/gsm8k), or a "
                   ".jsonl/.json/.parquet file with `problem` and `answer` fields. Repeatable.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output problems parquet; rejects go beside it as <name>.rejects.jsonl, notes on rows whose "
                   "LaTeX escape damage was repaired (\\x0crac -> \\frac) as <name>.repairs.jsonl.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Local data directory (default: $CURRICULUM_DATA_DIR; without one, sources load from the hub).")
@click.option("--decontaminate", default=",".join(BENCHMARKS), show_default=True,
              help="Evaluation sets to decontaminate against (comma-separated; 'none' to skip).")
@click.option("--ngram", default=8, show_default=True, help="Word n-gram size for decontamination.")
@click.option("--overlap", default=0.8, show_default=True,
              help="Jaccard n-gram overlap with one evaluation problem that counts as contamination.")
@click.option("--limit", type=int, default=None, help="Keep at most this many problems per source.")
@click.option("--synth-n", type=int, default=None, help="Override the number of synthetic problems.")
@click.option("--synth-seed", type=int, default=None, help="Override the synthetic seed.")
@click.option("--max-problem-chars", default=20_000, show_default=True, help="Longer problems are rejected.")
@click.option("--strict", is_flag=True, help="Exit non-zero when any row is rejected as invalid.")
def prepare(sources, out, data_dir, decontaminate, ngram, overlap, limit, synth_n, synth_seed,
            max_problem_chars, strict) -> None:
    """Normalize sources into one validated problems parquet (id, problem, answer, source, ...)."""
    from tqdm import tqdm

    from curriculum.data import PrepareOptions, SourceError
    from curriculum.data import prepare as run_prepare
    from curriculum.data.validate import Limits

    eval_sets = () if decontaminate.strip().lower() in ("", "none") else tuple(
        name.strip() for name in decontaminate.split(",") if name.strip())
    with fail_on(SourceError, ValueError):
        options = PrepareOptions(decontaminate=eval_sets, ngram=ngram, threshold=overlap, limit_per_source=limit,
                                 synth_n=synth_n, synth_seed=synth_seed,
                                 limits=Limits(max_problem_chars=max_problem_chars))
    with fail_on(SourceError, ValueError), tqdm(desc="reading", unit=" rows", leave=False) as bar:
        result = run_prepare(list(sources), out, data_dir=data_dir, options=options, progress=bar.update)
    rows = [[s.source, s.read, s.invalid, s.duplicate, s.contaminated, s.kept] for s in result.summaries]
    rows.append(["total", sum(r[1] for r in rows), sum(r[2] for r in rows), sum(r[3] for r in rows),
                 sum(r[4] for r in rows), result.kept])
    print_table(["source", "read", "invalid", "duplicate", "contaminated", "kept"], rows)
    if result.decontaminated_against:
        click.echo(f"decontaminated against: {', '.join(result.decontaminated_against)}")
    for name, why in result.skipped_eval_sets.items():
        click.echo(f"warning: could not load evaluation set {name} for decontamination: {why}", err=True)
    click.echo(f"wrote {result.kept} problems to {result.out}")
    click.echo(f"summary: {result.summary()}")
    if result.repaired:
        commands = ", ".join(f"{name} {count}" for name, count in result.repaired_commands.most_common(8))
        more = ", ..." if len(result.repaired_commands) > 8 else ""
        click.echo(f"repaired LaTeX escape damage in {result.repaired} rows ({result.repaired_fields} fields; "
                   f"{commands}{more}); see {result.repairs_path}")
    invalid = sum(s.invalid for s in result.summaries)
    if result.rejected:
        reasons = ", ".join(f"{kind}: {count}" for kind, count in result.reject_reasons.most_common())
        click.echo(f"warning: {result.rejected} rows rejected ({reasons}); see {result.rejects_path}", err=True)
    if result.kept == 0:
        raise click.ClickException("no valid problems left; nothing to train on")
    if strict and invalid:
        raise click.ClickException(f"--strict: {invalid} invalid rows (see {result.rejects_path})")


@data.command()
@click.option("--n", "count", default=500, show_default=True, help="Number of problems.")
@click.option("--seed", default=0, show_default=True, help="Random seed (same seed, same problems).")
@click.option("--digits", default="1,2,3", show_default=True,
              help="Digits per operand to draw from (repeat a value to weight it: 1,1,2).")
@click.option("--operands", default="2,3,4", show_default=True, help="Operand counts to draw from.")
@click.option("--operations", default="add,addsub,mixed", show_default=True,
              help="Operation sets to draw from: add, addsub, mixed.")
@click.option("--word-fraction", default=0.3, show_default=True, type=click.FloatRange(0, 1),
              help="Share of problems phrased as word problems.")
@click.option("--exclude", type=click.Path(exists=True, dir_okay=False, path_type=Path), multiple=True,
              help="A problems file (.jsonl, .json, .parquet) whose problems must not be generated again (e.g. the training "
                   "set, for a held-out evaluation set). Repeatable.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output parquet (or .jsonl).")
def synth(count, seed, digits, operands, operations, word_fraction, exclude, out) -> None:
    """Generate arithmetic and word problems with difficulty knobs (digits, operands, operations).

        curriculum data synth --n 60 --seed 7 --digits 1,2 --operations add,addsub \\
            --exclude runs/x/problems.parquet --out runs/x/heldout_synth.jsonl
    """
    import pandas as pd

    from curriculum.data import SourceError, generate_synthetic
    from curriculum.data.escapes import repair_escapes
    from curriculum.data.readers import RawRow, read_file
    from curriculum.data.synthetic import Knobs

    if count <= 0:
        raise click.UsageError("--n must be positive")
    try:
        values = {name: tuple(int(x) for x in text.split(",")) for name, text in (("digits", digits),
                                                                                  ("operands", operands))}
    except ValueError as error:
        raise click.UsageError(f"--digits and --operands take comma-separated integers: {error}") from error
    try:
        knobs = Knobs(**values, operations=tuple(x.strip() for x in operations.split(",")),
                      word_fraction=word_fraction)
    except ValueError as error:
        raise click.UsageError(f"--{error}") from error
    excluded = set()
    for path in exclude:
        with fail_on(SourceError):
            texts = [repair_escapes(str(row.data["problem"]))[0] for row in read_file(path)
                     if isinstance(row, RawRow) and "problem" in row.data]
        if not texts:
            raise click.UsageError(f"--exclude {path}: no rows with a `problem` field")
        excluded.update(texts)
    # Draw extra and drop excluded problems, so --n stays the count written when the space is large enough.
    rows = [p.to_row() for p in generate_synthetic(count + len(excluded), seed, knobs) if p.problem not in excluded]
    frame = pd.DataFrame(rows[:count])
    if len(frame) < count:
        click.echo(f"warning: only {len(frame)} distinct problems under these knobs", err=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".jsonl":
        frame.to_json(out, orient="records", lines=True)
    else:
        frame.to_parquet(out, index=False)
    summary = frame.groupby("difficulty").size()
    click.echo(f"wrote {len(frame)} synthetic problems to {out}")
    print_table(["difficulty", "problems"], [[int(k), int(v)] for k, v in summary.items()])


@data.command()
def sources() -> None:
    """List the problem sources in datasets_cfg/ with their hub ids and local files."""
    from curriculum.data.sources import all_sources

    rows = [[c.name, c.role, c.hub_path or "-", c.local_file or "-", c.license] for c in all_sources().values()]
    print_table(["name", "role", "hub", "local file", "license"], rows)
