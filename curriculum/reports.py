"""Plots and the markdown / single-file HTML report of a run directory.

The report reads whatever stages have written so far (a partial run gets a partial report, with a line
saying what is missing) so it can be opened during training as well as at the end. Every figure is a
PNG beside report.md; report.html embeds the same PNGs as base64 so it is one file to send around.

The document is built once as a list of blocks (heading, text, table, figure) and rendered twice, so the
markdown and HTML versions always say the same thing.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from curriculum.layout import (  # noqa: F401 - REPORT_DIR re-exported: compare names its report folder with it
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
from curriculum.stats import fmt_interval  # noqa: F401 - re-exported: the eval and compare commands print with it

FIGURES = ("pass_rates.png", "bucket_sizes.png", "mixture.png", "rewards.png", "zero_advantage.png",
           "completions.png", "eval.png")


class ReportError(ValueError):
    """A run directory that cannot be reported on: one clear message for the CLI."""


# --------------------------------------------------------------------------------------------------
# the document model


@dataclass
class Block:
    kind: str  # "h1" | "h2" | "text" | "table" | "figure" | "code"
    text: str = ""
    rows: list[list[str]] = field(default_factory=list)  # table: first row is the header
    path: Path | None = None  # figure


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def h2(self, text: str) -> None:
        self.blocks.append(Block("h2", text))

    def text(self, text: str) -> None:
        self.blocks.append(Block("text", text))

    def code(self, text: str) -> None:
        self.blocks.append(Block("code", text))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        self.blocks.append(Block("table", rows=[list(map(str, header))] + [[_cell(v) for v in r] for r in rows]))

    def figure(self, path: Path, caption: str) -> None:
        self.blocks.append(Block("figure", caption, path=path))

    def to_markdown(self, base: Path) -> str:
        lines = [f"# {self.title}", ""]
        for block in self.blocks:
            if block.kind == "h2":
                lines += [f"## {block.text}", ""]
            elif block.kind == "text":
                lines += [block.text, ""]
            elif block.kind == "code":
                lines += ["```", block.text.rstrip("\n"), "```", ""]
            elif block.kind == "table":
                header, *body = block.rows
                lines.append("| " + " | ".join(header) + " |")
                lines.append("|" + "|".join("---" for _ in header) + "|")
                lines += ["| " + " | ".join(row) + " |" for row in body]
                lines.append("")
            elif block.kind == "figure":
                lines += [f"![{block.text}]({_relative(block.path, base)})", "", f"*{block.text}*", ""]
        return "\n".join(lines)

    def to_html(self) -> str:
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        for block in self.blocks:
            if block.kind == "h2":
                body.append(f"<h2>{html.escape(block.text)}</h2>")
            elif block.kind == "text":
                body.append(f"<p>{_inline_html(block.text)}</p>")
            elif block.kind == "code":
                body.append(f"<pre>{html.escape(block.text)}</pre>")
            elif block.kind == "table":
                header, *rows = block.rows
                head = "".join(f"<th>{html.escape(c)}</th>" for c in header)
                cells = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>")
            elif block.kind == "figure":
                data = base64.b64encode(block.path.read_bytes()).decode("ascii")
                body.append(
                    f'<figure><img alt="{html.escape(block.text)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{html.escape(block.text)}</figcaption></figure>"
                )
        style = (
            "body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}"
            "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}"
            "th{background:#f3f3f3}img{max-width:100%}figcaption{color:#555;font-style:italic}"
            "pre{background:#f6f6f6;padding:.8em;overflow-x:auto}code{background:#f3f3f3}"
        )
        return (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
        )


def _inline_html(text: str) -> str:
    """Escape text, keeping `code` spans (the only inline markup the report uses)."""
    parts = text.split("`")
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts))


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def fmt_difference(diff: dict) -> str:
    """'+3.0 pts [-2.0, +8.0]' from a paired difference of rates."""
    if diff.get("mean") is None or math.isnan(diff["mean"]):
        return "–"
    return f"{100 * diff['mean']:+.1f} pts [{100 * diff['ci_low']:+.1f}, {100 * diff['ci_high']:+.1f}]"


# --------------------------------------------------------------------------------------------------
# reading a run directory


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


def series(metrics: list[dict], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of one logged key, skipping logs that do not carry it."""
    steps, values = [], []
    for row in metrics:
        value = row.get(key)
        if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
            steps.append(row["step"])
            values.append(float(value))
    return steps, values


def bucket_keys(metrics: list[dict], pattern: str) -> list[tuple[int, str]]:
    """[(bucket, key)] for keys like curriculum/bucket_{k}_weight present in the logs, by bucket."""
    prefix, suffix = pattern.split("{k}")
    found = set()
    for row in metrics:
        for key in row:
            if key.startswith(prefix) and key.endswith(suffix):
                middle = key[len(prefix):len(key) - len(suffix)]
                if middle.isdigit():
                    found.add((int(middle), key))
    return sorted(found)


# --------------------------------------------------------------------------------------------------
# plots (each returns the PNG path, or None when its data is absent)


def pyplot():
    """matplotlib's pyplot on the Agg backend, with the house style (grid, no top/right spines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 110, "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
                         "axes.spines.right": False})
    return plt


def save_figure(fig, path: Path) -> Path:
    """Lay out, write and close a figure; return its path."""
    fig.tight_layout()
    fig.savefig(path)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


_pyplot, _save = pyplot, save_figure  # old private names, kept for callers


def bucket_edges(manifest: dict | None) -> list[float]:
    """Interior pass-rate edges between buckets from manifest.json (empty when absent or in rating units)."""
    if not manifest or manifest.get("edges_unit", "pass_rate") != "pass_rate":
        return []
    edges = manifest.get("edges") or []
    return [float(e) for e in edges if e is not None and 0.0 < float(e) < 1.0]


def bucket_counts(manifest: dict | None) -> dict[int, int]:
    """{bucket: size} from manifest.json's `counts` (a list or a mapping)."""
    if not manifest:
        return {}
    counts = manifest.get("counts")
    if isinstance(counts, dict):
        return {int(k): int(v) for k, v in counts.items()}
    if isinstance(counts, list):
        return dict(enumerate(int(v) for v in counts))
    buckets = manifest.get("buckets")
    if isinstance(buckets, list):
        return {int(b.get("bucket", i)): int(b.get("count", b.get("size", 0))) for i, b in enumerate(buckets)}
    return {}


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


def plot_pass_rates(scores, manifest: dict | None, path: Path, assignment: dict[str, int] | None = None) -> Path | None:
    """Histogram of pass rates; with `assignment` (problem id -> bucket) the bars are stacked by bucket and the
    problems in no bucket (dropped as zero-signal) are grey, so discrete pass rates on an edge read clearly."""
    if scores is None or "pass_rate" not in scores:
        return None
    import numpy as np

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    samples = int(scores["n"].max()) if "n" in scores and len(scores) else 0
    bins = [(i - 0.5) / samples for i in range(samples + 2)] if 0 < samples <= 64 else 20
    rates = scores["pass_rate"].to_numpy(dtype=float)
    if assignment:
        labels = np.array([assignment.get(str(i), -1) for i in scores["id"]])
        buckets = sorted(set(labels.tolist()) - {-1})
        groups = [rates[labels == -1]] + [rates[labels == b] for b in buckets]
        names = [f"not bucketed ({len(groups[0])})"] + [f"bucket {b} ({len(g)})" for b, g in zip(buckets, groups[1:],
                                                                                               strict=True)]
        ax.hist(groups, bins=bins, stacked=True, label=names, color=["#c8c8c8"] + _bucket_colors(len(buckets)),
                edgecolor="white")
    else:
        ax.hist(rates, bins=bins, color="#4c72b0", edgecolor="white")
    for i, edge in enumerate(bucket_edges(manifest)):
        ax.axvline(edge, color="#c44e52", linestyle="--", linewidth=1.2, label="bucket edge" if i == 0 else None)
    ax.set_xlabel("pass rate under the base model" + (f" ({samples} samples per problem)" if samples else ""))
    ax.set_ylabel("problems")
    ax.set_xlim(-0.05 if samples else 0, 1.05)
    if assignment or bucket_edges(manifest):
        ax.legend(fontsize=8)
    ax.set_title(f"Difficulty of {len(scores)} scored problems")
    return _save(fig, path)


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


def plot_bucket_sizes(manifest: dict | None, path: Path) -> Path | None:
    counts = bucket_counts(manifest)
    if not counts:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    keys = sorted(counts)
    bars = ax.bar([str(k) for k in keys], [counts[k] for k in keys], color=_bucket_colors(len(keys)))
    ax.bar_label(bars)
    ax.set_ylim(0, max(counts.values()) * 1.15 + 0.5)
    ax.set_xlabel("bucket (0 = easiest)")
    ax.set_ylabel("problems")
    ax.set_title("Bucket sizes (training set)")
    return _save(fig, path)


def _bucket_colors(n: int) -> list:
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    return [cmap(0.15 + 0.7 * i / max(1, n - 1)) for i in range(n)]


def plot_mixture(metrics: list[dict], path: Path) -> Path | None:
    keys = bucket_keys(metrics, "curriculum/bucket_{k}_weight")
    if not keys:
        return None
    steps = [row["step"] for row in metrics if all(key in row for _, key in keys)]
    rows = [row for row in metrics if all(key in row for _, key in keys)]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.stackplot(steps, [[row[key] for row in rows] for _, key in keys], labels=[f"bucket {b}" for b, _ in keys],
                 colors=_bucket_colors(len(keys)), alpha=0.9)
    ax.set_xlabel("training step")
    ax.set_ylabel("sampling weight")
    ax.set_ylim(0, 1)
    ax.set_xlim(min(steps), max(steps) if max(steps) > min(steps) else min(steps) + 1)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    ax.set_title("Schedule: bucket mixture over steps")
    return _save(fig, path)


def smooth(values: list[float], window: int) -> list[float]:
    """Trailing moving average over `window` values (shorter at the start)."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


_smooth = smooth  # old private name, kept for callers


def _line(ax, steps, values, label, color=None, smooth=True):
    if not steps:
        return
    window = len(values) // 15 if len(values) >= 45 else 1
    if smooth and window > 1:
        (raw,) = ax.plot(steps, values, alpha=0.25, color=color)
        ax.plot(steps, _smooth(values, window), label=f"{label} (mean of {window})", color=raw.get_color())
    else:
        ax.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3, label=label, color=color)


def reward_keys(metrics: list[dict]) -> list[str]:
    keys = sorted({k for row in metrics for k in row if k.startswith("rewards/") and k.endswith("/mean")})
    return (["reward"] if any("reward" in row for row in metrics) else []) + keys


def plot_rewards(metrics: list[dict], path: Path) -> Path | None:
    main = reward_keys(metrics)
    per_bucket = bucket_keys(metrics, "curriculum/bucket_{k}_reward")
    if not main and not per_bucket:
        return None
    plt = _pyplot()
    panels = 2 if per_bucket else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 3.6), squeeze=False)
    ax = axes[0][0]
    for key in main:
        _line(ax, *series(metrics, key), label=key)
    ax.set_xlabel("training step")
    ax.set_ylabel("mean reward")
    ax.set_title("Training reward")
    ax.legend(fontsize=8)
    if per_bucket:
        ax = axes[0][1]
        for (bucket, key), color in zip(per_bucket, _bucket_colors(len(per_bucket)), strict=True):
            _line(ax, *series(metrics, key), label=f"bucket {bucket}", color=color)
        ax.set_xlabel("training step")
        ax.set_ylabel("mean reward of its groups")
        ax.set_title("Reward per bucket (online accuracy)")
        ax.legend(fontsize=8)
    return _save(fig, path)


def zero_advantage_key(metrics: list[dict]) -> str | None:
    for key in ("curriculum/zero_adv_share", "frac_reward_zero_std"):
        if any(key in row for row in metrics):
            return key
    return None


def plot_zero_advantage(metrics: list[dict], path: Path) -> Path | None:
    key = zero_advantage_key(metrics)
    if key is None:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    _line(ax, *series(metrics, key), label=key, color="#c44e52")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("training step")
    ax.set_ylabel("share of groups")
    ax.set_title("Zero-advantage groups (all completions rewarded alike: no gradient)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_completions(metrics: list[dict], path: Path) -> Path | None:
    lengths = series(metrics, "completions/mean_length")
    clipped = series(metrics, "completions/clipped_ratio")
    if not lengths[0] and not clipped[0]:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    _line(axes[0], *lengths, label="mean completion length")
    _line(axes[0], *series(metrics, "completions/mean_terminated_length"), label="mean length of finished ones")
    axes[0].set_xlabel("training step")
    axes[0].set_ylabel("tokens")
    axes[0].set_title("Completion length")
    axes[0].legend(fontsize=8)
    _line(axes[1], *clipped, label="truncated share", color="#dd8452")
    axes[1].set_ylim(-0.02, 1.02)
    axes[1].set_xlabel("training step")
    axes[1].set_ylabel("share of completions")
    axes[1].set_title("Truncation (hit max completion length)")
    return _save(fig, path)


def plot_eval(evals: dict[str, dict], path: Path, *, metric: str = "avg_at_k", title: str | None = None) -> Path | None:
    """Grouped bars per benchmark, one bar per eval (e.g. before/after, or per schedule), with intervals."""
    evals = {label: result for label, result in evals.items() if result.get("benchmarks")}
    if not evals:
        return None
    names = list(dict.fromkeys(name for result in evals.values() for name in result["benchmarks"]))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.5, 0.9 * len(names) * len(evals) + 2), 3.8))
    width = 0.8 / len(evals)
    colors = ["#8c8c8c", "#4c72b0", "#55a868", "#dd8452", "#c44e52", "#8172b3"]
    for j, (label, result) in enumerate(evals.items()):
        xs, means, lows, highs = [], [], [], []
        for i, name in enumerate(names):
            value = result["benchmarks"].get(name, {}).get(metric)
            if not value or value.get("mean") is None or math.isnan(value["mean"]):
                continue
            xs.append(i - 0.4 + width * (j + 0.5))
            means.append(100 * value["mean"])
            lows.append(100 * (value["mean"] - value["ci_low"]))
            highs.append(100 * (value["ci_high"] - value["mean"]))
        k = result.get("k")
        ax.bar(xs, means, width=width * 0.95, yerr=[lows, highs], capsize=4, color=colors[j % len(colors)],
               label=f"{label} (k={k})" if k else label)
        for x, mean, high in zip(xs, means, highs, strict=True):
            ax.annotate(f"{mean:.1f}", (x, mean + high), xytext=(0, 3), textcoords="offset points", ha="center",
                        fontsize=8)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel(f"{metric.replace('_at_', '@')} (%), 95% CI")
    ax.set_ylim(0, min(105, max(5, ax.get_ylim()[1] * 1.12)))
    ax.set_title(title or "Evaluation: mean and 95% bootstrap interval over problems", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)


# --------------------------------------------------------------------------------------------------
# the report


@dataclass(frozen=True)
class Report:
    markdown: Path
    html: Path
    figures: list[Path]
    found: list[str]
    missing: list[str]


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


def build_document(files: RunFiles, out_dir: Path, title: str | None = None) -> tuple[Document, list[Path], list[str]]:
    """The report document for one run, its figure paths, and the list of missing inputs."""
    name = (files.config or {}).get("name") or files.root.resolve().name
    doc = Document(title or f"Run report: {name}")
    figures: list[Path] = []
    missing: list[str] = []

    def add(path: Path | None, caption: str) -> None:
        if path is not None:
            figures.append(path)
            doc.figure(path, caption)

    doc.text(f"Run directory: `{files.root}`. Found: {', '.join(files.found) or 'nothing yet'}.")
    config = files.config or {}
    if config:
        facts = [["model", config.get("model", "–")]]
        train = config.get("train") or {}
        for key in ("schedule", "max_steps", "num_generations", "reward", "lora"):
            if key in train:
                facts.append([f"train.{key}", json.dumps(train[key]) if isinstance(train[key], (dict, list)) else train[key]])
        doc.table(["setting", "value"], facts)

    doc.h2("Data and difficulty")
    if files.problems is not None:
        problems = files.problems
        by_source = problems["source"].astype(str).str.split("@").str[0].value_counts() if "source" in problems else {}
        doc.text(f"{len(problems)} problems in `{PROBLEMS}`.")
        if len(by_source):
            doc.table(["source", "problems"], [[s, int(n)] for s, n in by_source.items()])
    else:
        missing.append(PROBLEMS)
    if files.scores is not None:
        scores = files.scores
        sampling = scores["sampling"].iloc[0] if "sampling" in scores and len(scores) else "{}"
        doc.text(
            f"{len(scores)} problems scored by `{scores['model'].iloc[0] if 'model' in scores and len(scores) else '?'}` "
            f"({scores['engine'].iloc[0] if 'engine' in scores and len(scores) else '?'} engine, sampling {sampling}); "
            f"mean pass rate {scores['pass_rate'].mean():.3f}, never solved {(scores['pass_rate'] == 0).mean():.0%}, "
            f"always solved {(scores['pass_rate'] == 1).mean():.0%}."
        )
        assignment = bucket_assignment(files.root)
        add(plot_pass_rates(scores, files.manifest, out_dir / "pass_rates.png", assignment),
            "Pass-rate histogram by bucket (grey: dropped, no GRPO signal); dashed lines are the bucket edges")
    elif difficulty_source(files.manifest).get("source") != "column":  # a difficulty column needs no scores
        missing.append(SCORES)
    if files.manifest is not None:
        manifest = files.manifest
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
        add(plot_bucket_sizes(manifest, out_dir / "bucket_sizes.png"), "Problems per bucket used for training")
    else:
        missing.append(f"{BUCKETS}/{MANIFEST}")

    doc.h2("Training")
    if files.metrics:
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
        add(plot_mixture(metrics, out_dir / "mixture.png"), "Bucket mixture drawn by the schedule over steps" + (
            " (online difficulty on: a problem's bucket follows its pass rate as re-estimated from training "
            "rewards, so the mixture moves with what the model solves, not with the schedule alone)"
            if online else ""))
        add(plot_rewards(metrics, out_dir / "rewards.png"), "Reward over steps, overall and per bucket")
        add(plot_zero_advantage(metrics, out_dir / "zero_advantage.png"),
            "Share of GRPO groups whose completions all got the same reward")
        add(plot_completions(metrics, out_dir / "completions.png"), "Completion length and truncation over steps")
    else:
        missing.append(f"{TRAIN}/{METRICS}")
        doc.text("No training metrics yet.")

    doc.h2("Evaluation")
    if files.evals:
        header, rows = eval_table(files.evals)
        doc.table(header, rows)
        first = next(iter(files.evals.values()))
        sampling = first.get("sampling", {})
        doc.text(
            f"Same harness for every row: engine `{first.get('engine')}`, temperature {sampling.get('temperature')}, "
            f"top_p {sampling.get('top_p')}, max_tokens {sampling.get('max_tokens')}, seed {first.get('seed')}, "
            f"limit {first.get('limit')}. avg@k is pass@1 averaged over k samples; its interval is a bootstrap "
            "over problems (a problem's k samples are resampled together)."
        )
        if "before" in files.evals and "after" in files.evals:
            rows = difference_rows(files.evals, "before", "after")
            if rows:
                doc.text("After minus before, paired over the same problems:")
                doc.table(["benchmark", "difference [95% CI]", "bootstrap p", "verdict"], rows)
        add(plot_eval(files.evals, out_dir / "eval.png"), "Evaluation with 95% intervals")
        for label, result in files.evals.items():
            for name, metrics in result.get("benchmarks", {}).items():
                if metrics.get("per_bucket"):
                    doc.text(f"Per bucket ({label}, {name}):")
                    doc.table(["bucket", "problems", "avg@k % [95% CI]"],
                              [[b, m["n_problems"], fmt_interval(m["avg_at_k"])] for b, m in metrics["per_bucket"].items()])
    else:
        missing.append(f"{EVAL_BEFORE} / {EVAL_AFTER}")
        doc.text("No evaluation yet.")
    if files.stages:
        doc.h2("Pipeline stages")
        total = sum(m.get("wall_s") or 0 for m in files.stages.values())
        doc.table(["stage", "wall time", "finished"],
                  [[stage, f"{m.get('wall_s', 0):.0f} s", m.get("finished", "")] for stage, m in files.stages.items()]
                  + [["total", f"{total / 60:.1f} min", ""]])
    if missing:
        doc.h2("Not yet available")
        doc.text("Missing inputs (stages not run yet, or run elsewhere): " + ", ".join(f"`{m}`" for m in missing) + ".")
    return doc, figures, missing


def write_document(doc: Document, out_dir: Path, figures: list[Path], found: list[str], missing: list[str]) -> Report:
    markdown = out_dir / "report.md"
    markdown.write_text(doc.to_markdown(out_dir))
    page = out_dir / "report.html"
    page.write_text(doc.to_html())
    return Report(markdown=markdown, html=page, figures=figures, found=found, missing=missing)


def write_report(run_dir: str | Path, out_dir: str | Path | None = None, *, title: str | None = None) -> Report:
    """Write report.md, report.html and the PNGs for `run_dir` into `out_dir` (default <run_dir>/report)."""
    files = read_run(run_dir)
    out = Path(out_dir) if out_dir else files.root / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    for stale in FIGURES:  # a figure whose data has gone must not linger
        (out / stale).unlink(missing_ok=True)
    doc, figures, missing = build_document(files, out, title)
    return write_document(doc, out, figures, files.found, missing)
