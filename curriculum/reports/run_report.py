"""The report of one run directory: read whatever its stages have written, and assemble the document.

The report reads whatever stages have written so far (a partial run gets a partial report, with a line
saying what is missing) so it can be opened during training as well as at the end. Every figure is a
PNG beside report.md (curriculum.reports.plots); the document is curriculum.reports.document's.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from curriculum.layout import (
    BUCKETS,
    CONFIG,
    EVAL_AFTER,
    EVAL_BEFORE,
    MANIFEST,
    METRICS,
    PROBLEMS,
    REPORT_DIR,
    SCORES,
    STAGES,
    TRAIN,
    RunLayout,
)
from curriculum.reports.document import Document, Report, fmt_difference, write_document
from curriculum.reports.plots import (
    bucket_edges,
    plot_bucket_sizes,
    plot_completions,
    plot_eval,
    plot_mixture,
    plot_pass_rates,
    plot_rewards,
    plot_zero_advantage,
    zero_advantage_key,
)
from curriculum.stats import fmt_interval


class ReportError(ValueError):
    """A run directory that cannot be reported on: one clear message for the CLI."""


FIGURES = ("pass_rates.png", "bucket_sizes.png", "mixture.png", "rewards.png", "zero_advantage.png",
           "completions.png", "eval.png")


@dataclass
class RunFiles:
    """The files a run directory holds (None where a stage has not written yet)."""

    root: Path
    config: dict | None = None
    problems: object = None  # pandas DataFrame
    scores: object = None
    manifest: dict | None = None
    metrics: list[dict] = field(default_factory=list)
    evals: dict[str, dict] = field(default_factory=dict)  # label -> eval JSON
    stages: dict[str, dict] = field(default_factory=dict)  # pipeline stage -> its completion marker

    @property
    def found(self) -> list[str]:
        names = {
            CONFIG: self.config is not None, PROBLEMS: self.problems is not None,
            SCORES: self.scores is not None, f"{BUCKETS}/{MANIFEST}": self.manifest is not None,
            f"{TRAIN}/{METRICS}": bool(self.metrics),
        }
        return [name for name, present in names.items() if present] + [f"{label} eval" for label in self.evals]


def read_run(run_dir: str | Path) -> RunFiles:
    """Load every stage output that exists under `run_dir`; skip the rest."""
    import pandas as pd
    import yaml

    root = Path(run_dir)
    if not root.is_dir():
        raise ReportError(f"run directory {root} does not exist")
    files = RunFiles(root=root)
    if (root / CONFIG).is_file():
        files.config = yaml.safe_load((root / CONFIG).read_text()) or {}
    for name, attribute in ((PROBLEMS, "problems"), (SCORES, "scores")):
        if (root / name).is_file():
            try:
                setattr(files, attribute, pd.read_parquet(root / name))
            except Exception as error:  # a half-written parquet: report without it, say why
                raise ReportError(f"cannot read {root / name}: {error}") from error
    manifest = root / BUCKETS / MANIFEST
    if manifest.is_file():
        files.manifest = json.loads(manifest.read_text())
    files.metrics = read_metrics(_first_existing(root / TRAIN / METRICS, root / METRICS))
    for path in sorted(root.glob("eval*.json")):
        label = {EVAL_BEFORE: "before", EVAL_AFTER: "after"}.get(path.name, path.stem)
        files.evals[label] = json.loads(path.read_text())
    for stage in STAGES:
        marker = RunLayout(root).marker(stage)
        if marker.is_file():
            files.stages[stage] = json.loads(marker.read_text())
    if "before" in files.evals and "after" in files.evals:  # before first in every table and plot
        files.evals = {"before": files.evals.pop("before"), "after": files.evals.pop("after"), **files.evals}
    return files


def _first_existing(*paths: Path) -> Path | None:
    return next((p for p in paths if p.is_file()), None)


def read_metrics(path: str | Path | None) -> list[dict]:
    """metrics.jsonl as a list of dicts (lines without a step, and a torn last line, are skipped)."""
    if path is None or not Path(path).is_file():
        return []
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written while we read
        if isinstance(row, dict) and "step" in row:
            rows.append(row)
    return rows


def bucket_assignment(root: Path) -> dict[str, int]:
    """Problem id -> bucket from the buckets dataset (and a held-out split beside it), if present."""
    assignment: dict[str, int] = {}
    layout = RunLayout(root)
    for folder in (layout.buckets, layout.heldout):
        if not (folder / "dataset_info.json").is_file():
            continue
        from datasets import load_from_disk

        try:
            dataset = load_from_disk(str(folder))
        except (OSError, ValueError):
            continue
        if {"id", "bucket"} <= set(getattr(dataset, "column_names", [])):
            assignment.update({str(i): int(b) for i, b in zip(dataset["id"], dataset["bucket"], strict=True)})
    return assignment


def difficulty_source(manifest: dict | None) -> dict:
    """manifest.json's `difficulty` (where the buckets' difficulty came from); {} for older manifests."""
    return dict((manifest or {}).get("difficulty") or {})


def difficulty_text(manifest: dict) -> str:
    """One sentence on where the difficulty came from and which numbers are unknown."""
    source = difficulty_source(manifest)
    if source.get("source") != "column":
        model = manifest.get("model")
        return ("Difficulty: pass rates measured by `curriculum score`" + (f" with `{model}`" if model else "")
                + (f" ({source['file']})" if source.get("file") else "") + "; n, k and intervals per problem are "
                "in the scores file.")
    kind = source.get("kind", "pass_rate")
    what = "a rating (higher = harder)" if kind == "rating" else (
        f"a published pass rate ({'percent' if source.get('scale') == 100 else 'fraction'})")
    return (f"Difficulty: column `{source.get('column')}` of `{source.get('file')}`, {what}, not measured here: "
            "n, k and pass-rate intervals are unknown for these buckets (the dataset holds n = k = 0 and NaN "
            "intervals)" + ("; the pass rate is unknown too, and no zero-signal filter was applied"
                            if kind == "rating" else "") + ".")


def bucket_rows(manifest: dict) -> tuple[list[str], list[list]]:
    """Per-bucket table from manifest.json: size and the range of the value the buckets were cut on."""
    column = "rating" if manifest.get("edges_unit") == "rating" else "pass_rate"
    rows = []
    for bucket in manifest.get("buckets") or []:
        low, high, mean = (bucket.get(f"{column}_{stat}") for stat in ("min", "max", "mean"))
        span = "–" if low is None else f"{low:.3g} – {high:.3g} (mean {mean:.3g})"
        rows.append([bucket.get("bucket"), bucket.get("count"), span])
    return ["bucket", "problems", column.replace("_", " ") + " range"], rows


def eval_table(evals: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    """Rows of benchmark x eval label: avg@k [CI], pass@k, maj@k, tokens, truncation."""
    header = ["eval", "benchmark", "problems", "k", "avg@k % [95% CI]", "pass@k %", "maj@k %", "mean tokens",
              "truncated %"]
    rows = []
    for label, result in evals.items():
        for name, metrics in result.get("benchmarks", {}).items():
            k = metrics.get("k", result.get("k"))
            top = metrics.get("pass_at_k", {}).get(str(k))
            rows.append([
                label, name, metrics.get("n_problems"), k, fmt_interval(metrics.get("avg_at_k")),
                fmt_interval(top) if k and k > 1 else "–",
                fmt_interval(metrics.get("maj_at_k")) if metrics.get("maj_at_k") else "–",
                f"{metrics.get('mean_tokens', math.nan):.0f}", f"{100 * metrics.get('truncated_frac', math.nan):.0f}",
            ])
    return header, rows


def difference_rows(evals: dict[str, dict], first: str, second: str) -> list[list[str]]:
    """Per benchmark: second minus first on the same problems with a paired bootstrap interval."""
    from curriculum.stats import paired_bootstrap_difference

    rows = []
    a, b = evals.get(first, {}).get("benchmarks", {}), evals.get(second, {}).get("benchmarks", {})
    for name in a:
        if name not in b:
            continue
        left, right = a[name].get("problems"), b[name].get("problems")
        if not left or not right or left["id"] != right["id"]:
            continue
        ka, kb = a[name]["k"], b[name]["k"]
        diff = paired_bootstrap_difference(
            [c / kb for c in right["correct"]], [c / ka for c in left["correct"]],
            seed=evals[second].get("seed", 0),
        )
        verdict = "significant" if diff["significant"] else "not significant (interval contains 0)"
        rows.append([name, fmt_difference(diff), f"{diff['p_value']:.3f}", verdict])
    return rows


@dataclass
class _Draft:
    """The report while it is assembled: the document, where its figures go, and what is missing so far."""

    doc: Document
    out_dir: Path
    figures: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def figure(self, path: Path | None, caption: str) -> None:
        """Add a figure that was drawn (a plot function returns None when its data is absent)."""
        if path is not None:
            self.figures.append(path)
            self.doc.figure(path, caption)


def build_document(files: RunFiles, out_dir: Path, title: str | None = None) -> tuple[Document, list[Path], list[str]]:
    """The report document for one run, its figure paths, and the list of missing inputs.

    One section per stage, in the order the data flows (data, scores and buckets; training; evaluation), then
    the pipeline's stage times and what is not there yet.
    """
    name = (files.config or {}).get("name") or files.root.resolve().name
    draft = _Draft(Document(title or f"Run report: {name}"), out_dir)
    _run_facts(draft, files)
    draft.doc.h2("Data and difficulty")
    _problems_section(draft, files)
    _scores_section(draft, files)
    _buckets_section(draft, files)
    draft.doc.h2("Training")
    _training_section(draft, files)
    draft.doc.h2("Evaluation")
    _evaluation_section(draft, files)
    _stages_section(draft, files)
    if draft.missing:
        draft.doc.h2("Not yet available")
        draft.doc.text("Missing inputs (stages not run yet, or run elsewhere): "
                       + ", ".join(f"`{m}`" for m in draft.missing) + ".")
    return draft.doc, draft.figures, draft.missing


def _run_facts(draft: _Draft, files: RunFiles) -> None:
    """Where the run is, what it holds, and the settings a reader asks for first."""
    doc = draft.doc
    doc.text(f"Run directory: `{files.root}`. Found: {', '.join(files.found) or 'nothing yet'}.")
    config = files.config or {}
    if config:
        facts = [["model", config.get("model", "–")]]
        train = config.get("train") or {}
        for key in ("schedule", "max_steps", "num_generations", "reward", "lora"):
            if key in train:
                facts.append([f"train.{key}", json.dumps(train[key]) if isinstance(train[key], (dict, list)) else train[key]])
        doc.table(["setting", "value"], facts)


def _problems_section(draft: _Draft, files: RunFiles) -> None:
    """How many problems, from which sources."""
    if files.problems is None:
        draft.missing.append(PROBLEMS)
        return
    problems = files.problems
    by_source = problems["source"].astype(str).str.split("@").str[0].value_counts() if "source" in problems else {}
    draft.doc.text(f"{len(problems)} problems in `{PROBLEMS}`.")
    if len(by_source):
        draft.doc.table(["source", "problems"], [[s, int(n)] for s, n in by_source.items()])


def _scores_section(draft: _Draft, files: RunFiles) -> None:
    """Who scored the problems, how, and the pass-rate histogram by bucket."""
    if files.scores is None:
        if difficulty_source(files.manifest).get("source") != "column":  # a difficulty column needs no scores
            draft.missing.append(SCORES)
        return
    scores = files.scores
    sampling = scores["sampling"].iloc[0] if "sampling" in scores and len(scores) else "{}"
    draft.doc.text(
        f"{len(scores)} problems scored by `{scores['model'].iloc[0] if 'model' in scores and len(scores) else '?'}` "
        f"({scores['engine'].iloc[0] if 'engine' in scores and len(scores) else '?'} engine, sampling {sampling}); "
        f"mean pass rate {scores['pass_rate'].mean():.3f}, never solved {(scores['pass_rate'] == 0).mean():.0%}, "
        f"always solved {(scores['pass_rate'] == 1).mean():.0%}."
    )
    assignment = bucket_assignment(files.root)
    draft.figure(plot_pass_rates(scores, files.manifest, draft.out_dir / "pass_rates.png", assignment),
                 "Pass-rate histogram by bucket (grey: dropped, no GRPO signal); dashed lines are the bucket edges")


def _buckets_section(draft: _Draft, files: RunFiles) -> None:
    """How the buckets were cut, from what difficulty, their sizes, and what was dropped or held out."""
    if files.manifest is None:
        draft.missing.append(f"{BUCKETS}/{MANIFEST}")
        return
    doc, manifest = draft.doc, files.manifest
    unit = "rating " if manifest.get("edges_unit") == "rating" else ""
    doc.text(f"Buckets: strategy `{manifest.get('strategy', '?')}`, {unit}edges "
             f"{bucket_edges(manifest) or manifest.get('edges')}.")
    doc.text(difficulty_text(manifest))
    header, rows = bucket_rows(manifest)
    if rows:
        doc.table(header, rows)
    if (manifest.get("ties") or {}).get("note"):
        doc.text(f"Ties: {manifest['ties']['note']}.")
    dropped = manifest.get("dropped")
    if dropped:
        doc.text(f"Dropped: {json.dumps(dropped)}")
    held = RunLayout(files.root).heldout_manifest
    if held.is_file():
        counts = json.loads(held.read_text()).get("counts")
        doc.text(f"Held out of training (evaluated per bucket): {sum(counts or [])} problems, per bucket {counts}.")
    draft.figure(plot_bucket_sizes(manifest, draft.out_dir / "bucket_sizes.png"), "Problems per bucket used for training")


def _training_section(draft: _Draft, files: RunFiles) -> None:
    """Steps, tokens and time, the last logged values, and the curves over steps."""
    doc, out_dir = draft.doc, draft.out_dir
    if not files.metrics:
        draft.missing.append(f"{TRAIN}/{METRICS}")
        doc.text("No training metrics yet.")
        return
    metrics = files.metrics
    last = metrics[-1]
    runtime = next((row["train_runtime"] for row in reversed(metrics) if "train_runtime" in row), None)
    tokens = max((row.get("num_tokens") or 0 for row in metrics), default=0)
    doc.text(f"{len([r for r in metrics if 'reward' in r])} logged steps, last step {last['step']}"
             + (f", {tokens:,.0f} tokens through the model (prompt + completion)" if tokens else "")
             + (f", {runtime / 60:.1f} min of training" if runtime else "") + ".")
    last = next((row for row in reversed(metrics) if "reward" in row), last)
    summary = [[key, last[key]] for key in ("reward", zero_advantage_key(metrics), "completions/mean_length",
                                            "completions/clipped_ratio", "curriculum/progress", "loss")
               if key and isinstance(last.get(key), (int, float))]
    if summary:
        doc.table(["metric (last log)", "value"], summary)
    online = any("curriculum/shift" in row for row in metrics)
    draft.figure(plot_mixture(metrics, out_dir / "mixture.png"), "Bucket mixture drawn by the schedule over steps" + (
        " (online difficulty on: a problem's bucket follows its pass rate as re-estimated from training "
        "rewards, so the mixture moves with what the model solves, not with the schedule alone)"
        if online else ""))
    draft.figure(plot_rewards(metrics, out_dir / "rewards.png"), "Reward over steps, overall and per bucket")
    draft.figure(plot_zero_advantage(metrics, out_dir / "zero_advantage.png"),
                 "Share of GRPO groups whose completions all got the same reward")
    draft.figure(plot_completions(metrics, out_dir / "completions.png"), "Completion length and truncation over steps")


def _evaluation_section(draft: _Draft, files: RunFiles) -> None:
    """Every eval in one table with the harness it ran under, the paired after-minus-before difference, the
    figure, and the per-bucket accuracy of a held-out split."""
    doc = draft.doc
    if not files.evals:
        draft.missing.append(f"{EVAL_BEFORE} / {EVAL_AFTER}")
        doc.text("No evaluation yet.")
        return
    header, rows = eval_table(files.evals)
    doc.table(header, rows)
    first = next(iter(files.evals.values()))
    sampling = first.get("sampling", {})
    doc.text(
        f"Same harness for every row: engine `{first.get('engine')}`, temperature {sampling.get('temperature')}, "
        f"top_p {sampling.get('top_p')}, max_tokens {sampling.get('max_tokens')}, seed {first.get('seed')}, "
        f"limit {first.get('limit')} per benchmark (a held-out split is evaluated whole). avg@k is pass@1 "
        "averaged over k samples; its interval is a bootstrap "
        "over problems (a problem's k samples are resampled together)."
    )
    if "before" in files.evals and "after" in files.evals:
        rows = difference_rows(files.evals, "before", "after")
        if rows:
            doc.text("After minus before, paired over the same problems:")
            doc.table(["benchmark", "difference [95% CI]", "bootstrap p", "verdict"], rows)
    draft.figure(plot_eval(files.evals, draft.out_dir / "eval.png"), "Evaluation with 95% intervals")
    for label, result in files.evals.items():
        for name, metrics in result.get("benchmarks", {}).items():
            if metrics.get("per_bucket"):
                doc.text(f"Per bucket ({label}, {name}):")
                doc.table(["bucket", "problems", "avg@k % [95% CI]"],
                          [[b, m["n_problems"], fmt_interval(m["avg_at_k"])] for b, m in metrics["per_bucket"].items()])


def _stages_section(draft: _Draft, files: RunFiles) -> None:
    """Wall time per pipeline stage, when the run came from `curriculum pipeline`."""
    if not files.stages:
        return
    draft.doc.h2("Pipeline stages")
    total = sum(m.get("wall_s") or 0 for m in files.stages.values())
    draft.doc.table(["stage", "wall time", "finished"],
                    [[stage, f"{m.get('wall_s', 0):.0f} s", m.get("finished", "")] for stage, m in files.stages.items()]
                    + [["total", f"{total / 60:.1f} min", ""]])


def write_report(run_dir: str | Path, out_dir: str | Path | None = None, *, title: str | None = None) -> Report:
    """Write report.md, report.html and the PNGs for `run_dir` into `out_dir` (default <run_dir>/report)."""
    files = read_run(run_dir)
    out = Path(out_dir) if out_dir else files.root / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    for stale in FIGURES:  # a figure whose data has gone must not linger
        (out / stale).unlink(missing_ok=True)
    doc, figures, missing = build_document(files, out, title)
    return write_document(doc, out, figures, files.found, missing)

