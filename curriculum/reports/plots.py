"""The report's figures: each plot function takes what a stage wrote and a PNG path, and returns the path, or
None when its data is absent (a partial run gets the figures it can have).

`pyplot`, `save_figure` and `smooth` are the house style and helpers that other figures (a study's learning
curves in curriculum.compare) share; `series`, `bucket_keys`, `reward_keys` and `zero_advantage_key` pick what
to draw out of metrics.jsonl rows, and `bucket_edges` / `bucket_counts` out of a buckets manifest.
"""

from __future__ import annotations

import math
from pathlib import Path

# --------------------------------------------------------------------------------------------------
# the house style


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


def smooth(values: list[float], window: int) -> list[float]:
    """Trailing moving average over `window` values (shorter at the start)."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _line(ax, steps, values, label, color=None, smoothed=True):
    if not steps:
        return
    window = len(values) // 15 if len(values) >= 45 else 1
    if smoothed and window > 1:
        (raw,) = ax.plot(steps, values, alpha=0.25, color=color)
        ax.plot(steps, smooth(values, window), label=f"{label} (mean of {window})", color=raw.get_color())
    else:
        ax.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3, label=label, color=color)


def _bucket_colors(n: int) -> list:
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    return [cmap(0.15 + 0.7 * i / max(1, n - 1)) for i in range(n)]


# --------------------------------------------------------------------------------------------------
# what to draw


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


def reward_keys(metrics: list[dict]) -> list[str]:
    keys = sorted({k for row in metrics for k in row if k.startswith("rewards/") and k.endswith("/mean")})
    return (["reward"] if any("reward" in row for row in metrics) else []) + keys


def zero_advantage_key(metrics: list[dict]) -> str | None:
    for key in ("curriculum/zero_adv_share", "frac_reward_zero_std"):
        if any(key in row for row in metrics):
            return key
    return None


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


# --------------------------------------------------------------------------------------------------
# plots (each returns the PNG path, or None when its data is absent)


def plot_pass_rates(scores, manifest: dict | None, path: Path, assignment: dict[str, int] | None = None) -> Path | None:
    """Histogram of pass rates; with `assignment` (problem id -> bucket) the bars are stacked by bucket and the
    problems in no bucket (dropped as zero-signal) are grey, so discrete pass rates on an edge read clearly."""
    if scores is None or "pass_rate" not in scores:
        return None
    import numpy as np

    plt = pyplot()
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
    return save_figure(fig, path)


def plot_bucket_sizes(manifest: dict | None, path: Path) -> Path | None:
    counts = bucket_counts(manifest)
    if not counts:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    keys = sorted(counts)
    bars = ax.bar([str(k) for k in keys], [counts[k] for k in keys], color=_bucket_colors(len(keys)))
    ax.bar_label(bars)
    ax.set_ylim(0, max(counts.values()) * 1.15 + 0.5)
    ax.set_xlabel("bucket (0 = easiest)")
    ax.set_ylabel("problems")
    ax.set_title("Bucket sizes (training set)")
    return save_figure(fig, path)


def plot_mixture(metrics: list[dict], path: Path) -> Path | None:
    keys = bucket_keys(metrics, "curriculum/bucket_{k}_weight")
    if not keys:
        return None
    steps = [row["step"] for row in metrics if all(key in row for _, key in keys)]
    rows = [row for row in metrics if all(key in row for _, key in keys)]
    if not rows:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.stackplot(steps, [[row[key] for row in rows] for _, key in keys], labels=[f"bucket {b}" for b, _ in keys],
                 colors=_bucket_colors(len(keys)), alpha=0.9)
    ax.set_xlabel("training step")
    ax.set_ylabel("sampling weight")
    ax.set_ylim(0, 1)
    ax.set_xlim(min(steps), max(steps) if max(steps) > min(steps) else min(steps) + 1)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    ax.set_title("Schedule: bucket mixture over steps")
    return save_figure(fig, path)


def plot_rewards(metrics: list[dict], path: Path) -> Path | None:
    main = reward_keys(metrics)
    per_bucket = bucket_keys(metrics, "curriculum/bucket_{k}_reward")
    if not main and not per_bucket:
        return None
    plt = pyplot()
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
    return save_figure(fig, path)


def plot_zero_advantage(metrics: list[dict], path: Path) -> Path | None:
    key = zero_advantage_key(metrics)
    if key is None:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    _line(ax, *series(metrics, key), label=key, color="#c44e52")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("training step")
    ax.set_ylabel("share of groups")
    ax.set_title("Zero-advantage groups (all completions rewarded alike: no gradient)")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_completions(metrics: list[dict], path: Path) -> Path | None:
    lengths = series(metrics, "completions/mean_length")
    clipped = series(metrics, "completions/clipped_ratio")
    if not lengths[0] and not clipped[0]:
        return None
    plt = pyplot()
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
    return save_figure(fig, path)


def plot_eval(evals: dict[str, dict], path: Path, *, metric: str = "avg_at_k", title: str | None = None) -> Path | None:
    """Grouped bars per benchmark, one bar per eval (e.g. before/after, or per schedule), with intervals."""
    evals = {label: result for label, result in evals.items() if result.get("benchmarks")}
    if not evals:
        return None
    names = list(dict.fromkeys(name for result in evals.values() for name in result["benchmarks"]))
    plt = pyplot()
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
    return save_figure(fig, path)

