"""Turning scores into difficulty buckets: validation, zero-signal filtering, bucketing, the buckets dataset.

A GRPO group whose completions all pass or all fail has zero advantage and teaches nothing, so problems
solved by every scoring rollout or by none are dropped (or a small random fraction kept). The rest are
split into buckets numbered easiest (0) to hardest by one of three strategies:
- `quantile`: equal-count buckets by pass rate (ties broken by longer mean completion = harder);
- `thresholds`: given pass-rate edges, e.g. 0.8,0.5,0.2 -> [0.8, 1], [0.5, 0.8), [0.2, 0.5), [0, 0.2);
- `kmeans`: scikit-learn KMeans on standardized pass rate and mean completion length, clusters ordered
  by mean pass rate.
The output is an HF dataset (`save_to_disk`) with a conversational `prompt`, `bucket` and `pass_rate`,
plus `manifest.json` and a histogram of pass rates with the bucket edges.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from curriculum.prompts import DEFAULT_TEMPLATE, PromptTemplate

STRATEGIES = ("quantile", "thresholds", "kmeans")
SCORE_COLUMNS = ("id", "n", "k", "pass_rate", "ci_low", "ci_high", "mean_tokens", "model")
PROBLEM_COLUMNS = ("id", "problem", "answer")
KEPT_SCORE_COLUMNS = ("n", "k", "pass_rate", "ci_low", "ci_high", "mean_tokens", "truncated_frac")
MANIFEST = "manifest.json"
HISTOGRAM = "pass_rates.png"
HELD_BACK = "held_back.parquet"


class BuildError(ValueError):
    """Input that cannot be bucketed; the message names the file, column and row."""


@dataclass
class BuildConfig:
    """How to bucket: strategy and count, zero-signal and uncertainty filters, per-bucket cap, seed."""

    num_buckets: int = 4
    strategy: str = "quantile"
    edges: list[float] | None = None
    drop_solved: bool = True
    drop_unsolved: bool = True
    keep_frac: float = 0.0
    max_ci_width: float | None = None
    max_per_bucket: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise BuildError(f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if self.edges is not None:
            if self.strategy != "thresholds":
                raise BuildError("edges are only used by the thresholds strategy")
            if not self.edges or any(not 0 < e < 1 for e in self.edges) or len(set(self.edges)) != len(self.edges):
                raise BuildError(f"edges must be distinct pass rates strictly between 0 and 1, got {self.edges}")
            self.edges = sorted(self.edges, reverse=True)
            self.num_buckets = len(self.edges) + 1
        elif self.strategy == "thresholds":
            raise BuildError("the thresholds strategy needs edges, e.g. 0.8,0.5,0.2")
        if self.num_buckets < 1:
            raise BuildError(f"need at least one bucket, got {self.num_buckets}")
        if not 0 <= self.keep_frac <= 1:
            raise BuildError(f"keep_frac must be in [0, 1], got {self.keep_frac}")
        if self.max_ci_width is not None and not 0 < self.max_ci_width <= 1:
            raise BuildError(f"max_ci_width must be in (0, 1], got {self.max_ci_width}")
        if self.max_per_bucket is not None and self.max_per_bucket < 1:
            raise BuildError(f"max_per_bucket must be >= 1, got {self.max_per_bucket}")


@dataclass
class BuildResult:
    """The bucketed problems (one row each, with `bucket`), those held back, and the manifest."""

    frame: pd.DataFrame
    held_back: pd.DataFrame
    manifest: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- reading


def read_table(path: str | Path, what: str) -> pd.DataFrame:
    """A parquet (or .jsonl/.csv) file as a DataFrame, with a clear error if it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise BuildError(f"{what} file {path} does not exist")
    try:
        if path.suffix == ".jsonl":
            return pd.read_json(path, lines=True)
        if path.suffix == ".csv":
            return pd.read_csv(path)
        return pd.read_parquet(path)
    except Exception as error:  # pyarrow and pandas raise many types for a corrupt file
        raise BuildError(f"cannot read {what} file {path}: {error}") from error


def validate_scores(scores: pd.DataFrame, path: str | Path = "scores") -> None:
    """Check the scores contract: columns present, one row per id, 0 <= k <= n, pass rates in [0, 1]."""
    missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise BuildError(f"{path}: missing column(s) {', '.join(missing)} "
                         f"(a scores file has {', '.join(SCORE_COLUMNS)}; found {', '.join(map(str, scores.columns))})")
    if len(scores) == 0:
        raise BuildError(f"{path}: no rows")
    for column in ("n", "k", "pass_rate", "ci_low", "ci_high", "mean_tokens"):
        values = pd.to_numeric(scores[column], errors="coerce")
        bad = values.isna() & scores[column].notna() if column == "mean_tokens" else values.isna()
        if bad.any():
            _fail(path, scores, column, bad, "is not a number")
    pass_rate = scores["pass_rate"].astype(float)
    _fail_if(path, scores, "pass_rate", (pass_rate < 0) | (pass_rate > 1), "is outside [0, 1]")
    for column in ("ci_low", "ci_high"):
        values = scores[column].astype(float)
        _fail_if(path, scores, column, (values < 0) | (values > 1), "is outside [0, 1]")
    n, k = scores["n"].astype(float), scores["k"].astype(float)
    _fail_if(path, scores, "n", n < 1, "must be at least 1")
    _fail_if(path, scores, "k", (k < 0) | (k > n), "must be between 0 and n")
    duplicated = scores["id"].duplicated()
    _fail_if(path, scores, "id", duplicated, "appears twice")


def _fail_if(path, frame: pd.DataFrame, column: str, mask: pd.Series, why: str) -> None:
    if mask.any():
        _fail(path, frame, column, mask, why)


def _fail(path, frame: pd.DataFrame, column: str, mask: pd.Series, why: str) -> None:
    row = int(np.flatnonzero(mask.to_numpy())[0])
    ident = frame["id"].iloc[row] if "id" in frame.columns else "?"
    more = int(mask.sum()) - 1
    value = frame[column].iloc[row]
    value = value.item() if isinstance(value, np.generic) else value
    raise BuildError(f"{path}: row {row} (id {ident}): column {column} = {value!r} {why}"
                     + (f" ({more} more row(s) like it)" if more else ""))


def validate_problems(problems: pd.DataFrame, path: str | Path = "problems") -> None:
    missing = [c for c in PROBLEM_COLUMNS if c not in problems.columns]
    if missing:
        raise BuildError(f"{path}: missing column(s) {', '.join(missing)} "
                         f"(a problems file has {', '.join(PROBLEM_COLUMNS)}, source)")
    _fail_if(path, problems, "id", problems["id"].duplicated(), "appears twice")


# ---------------------------------------------------------------------------------------------- bucketing


def assign_buckets(pass_rates, config: BuildConfig, mean_tokens=None) -> tuple[np.ndarray, list[float]]:
    """Bucket per problem (0 = easiest) and the pass-rate edges between consecutive buckets."""
    pass_rates = np.asarray(pass_rates, dtype=float)
    count = len(pass_rates)
    if count < config.num_buckets and config.strategy != "thresholds":
        raise BuildError(f"{count} problem(s) left after filtering: too few for {config.num_buckets} buckets")
    lengths = np.zeros(count) if mean_tokens is None else np.nan_to_num(np.asarray(mean_tokens, dtype=float))
    if config.strategy == "thresholds":
        edges = np.asarray(config.edges)
        buckets = (pass_rates[:, None] < edges[None, :]).sum(axis=1)
        return buckets, [float(e) for e in edges]
    if config.strategy == "quantile":
        # hardest last: lower pass rate, then longer completions, then position (stable)
        order = np.lexsort((lengths, -pass_rates))
        buckets = np.empty(count, dtype=np.int64)
        buckets[order] = np.arange(count) * config.num_buckets // count
    else:
        buckets = _kmeans(pass_rates, lengths, config)
    return buckets, _edges_between(pass_rates, buckets, config.num_buckets)


def _kmeans(pass_rates: np.ndarray, lengths: np.ndarray, config: BuildConfig) -> np.ndarray:
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import StandardScaler

    features = np.column_stack([pass_rates, lengths]) if lengths.std() > 0 else pass_rates[:, None]
    features = StandardScaler().fit_transform(features)
    if len(np.unique(features, axis=0)) < config.num_buckets:
        raise BuildError(f"kmeans needs at least {config.num_buckets} distinct (pass rate, length) points")
    labels = KMeans(n_clusters=config.num_buckets, n_init=10, random_state=config.seed).fit_predict(features)
    means = [(-pass_rates[labels == c].mean(), lengths[labels == c].mean(), c) for c in range(config.num_buckets)]
    rank = {cluster: position for position, (_, _, cluster) in enumerate(sorted(means))}
    return np.array([rank[label] for label in labels], dtype=np.int64)


def _edges_between(pass_rates: np.ndarray, buckets: np.ndarray, num_buckets: int) -> list[float]:
    """Midpoints between the lowest pass rate of bucket k and the highest of bucket k + 1."""
    edges = []
    for k in range(num_buckets - 1):
        easier, harder = pass_rates[buckets == k], pass_rates[buckets == k + 1]
        if len(easier) and len(harder):
            edges.append(float((easier.min() + harder.max()) / 2))
    return edges


# ---------------------------------------------------------------------------------------------- building


def build(scores: pd.DataFrame, problems: pd.DataFrame, config: BuildConfig, *,
          scores_path: str | Path = "scores", problems_path: str | Path = "problems",
          template: PromptTemplate = DEFAULT_TEMPLATE) -> BuildResult:
    """Validate, filter, bucket and attach prompts: everything but writing files."""
    validate_scores(scores, scores_path)
    validate_problems(problems, problems_path)
    unknown = ~scores["id"].isin(problems["id"])
    _fail_if(scores_path, scores, "id", unknown, f"is not in the problems file {problems_path}")
    models = sorted(map(str, scores["model"].dropna().unique()))
    if len(models) > 1:
        raise BuildError(f"{scores_path}: scores from several models ({', '.join(models)}); bucket one at a time")
    rng = np.random.default_rng(config.seed)

    frame = scores.reset_index(drop=True)
    solved = (frame["k"] >= frame["n"]).to_numpy()
    unsolved = (frame["k"] <= 0).to_numpy()
    reasons = np.full(len(frame), "", dtype=object)
    if config.drop_solved:
        reasons[solved] = "solved"
    if config.drop_unsolved:
        reasons[unsolved] = "unsolved"
    zero_signal = np.flatnonzero(reasons != "")
    kept_anyway = zero_signal[rng.random(len(zero_signal)) < config.keep_frac]
    reasons[kept_anyway] = ""
    if config.max_ci_width is not None:
        wide = ((frame["ci_high"] - frame["ci_low"]) > config.max_ci_width).to_numpy() & (reasons == "")
        reasons[wide] = "uncertain"
    dropped = {reason: int((reasons == reason).sum()) for reason in ("solved", "unsolved", "uncertain")}
    held_back = frame[reasons == "uncertain"].copy()
    frame = frame[reasons == ""].reset_index(drop=True)

    buckets, edges = assign_buckets(frame["pass_rate"], config, frame["mean_tokens"])
    frame["bucket"] = buckets
    capped = 0
    if config.max_per_bucket is not None:
        keep = np.ones(len(frame), dtype=bool)
        for k in range(config.num_buckets):
            members = np.flatnonzero(buckets == k)
            if len(members) > config.max_per_bucket:
                drop = rng.choice(members, len(members) - config.max_per_bucket, replace=False)
                keep[drop] = False
        capped = int((~keep).sum())
        frame = frame[keep].reset_index(drop=True)
    dropped["max_per_bucket"] = capped
    if len(frame) == 0:
        raise BuildError(f"no problems left after filtering {len(scores)} scored ones ({_describe(dropped)})")

    columns = [c for c in KEPT_SCORE_COLUMNS if c in frame.columns]
    clashing = [c for c in problems.columns if c in (*columns, "bucket", "prompt")]
    frame = frame[["id", "bucket", *columns]].merge(problems.drop(columns=clashing), on="id", how="left",
                                                    validate="one_to_one")
    frame["prompt"] = [template.messages(text) for text in frame["problem"]]
    frame["bucket"] = frame["bucket"].astype("int64")
    frame["pass_rate"] = frame["pass_rate"].astype(float)
    first = ["id", "prompt", "answer", "bucket", "pass_rate"]
    frame = frame[first + [c for c in frame.columns if c not in first]]

    manifest = _manifest(frame, scores, problems, config, edges, dropped, int(len(kept_anyway)),
                         models[0] if models else None, template)
    return BuildResult(frame=frame, held_back=held_back, manifest=manifest)


def _describe(dropped: dict[str, int]) -> str:
    return ", ".join(f"{count} {reason}" for reason, count in dropped.items() if count) or "none dropped"


def _manifest(frame, scores, problems, config, edges, dropped, kept_zero_signal, model, template) -> dict:
    per_bucket = []
    for k in range(config.num_buckets):
        rates = frame.loc[frame["bucket"] == k, "pass_rate"]
        per_bucket.append({
            "bucket": k,
            "count": int(len(rates)),
            "pass_rate_min": float(rates.min()) if len(rates) else None,
            "pass_rate_max": float(rates.max()) if len(rates) else None,
            "pass_rate_mean": float(rates.mean()) if len(rates) else None,
        })
    first = scores.iloc[0]
    return {
        "strategy": config.strategy,
        "num_buckets": config.num_buckets,
        "edges": edges,
        "counts": [b["count"] for b in per_bucket],
        "buckets": per_bucket,
        "total": int(len(frame)),
        "scored": int(len(scores)),
        "unscored_problems": int((~problems["id"].isin(scores["id"])).sum()),
        "dropped": dropped,
        "kept_zero_signal": kept_zero_signal,
        "model": model,
        "engine": str(first["engine"]) if "engine" in scores.columns else None,
        "sampling": _json_or_text(first["sampling"]) if "sampling" in scores.columns else None,
        "config": asdict(config),
        "prompt_template": {"system": template.system, "instruction": template.instruction},
    }


def _json_or_text(value):
    try:
        return json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError:
        return value


# ---------------------------------------------------------------------------------------------- writing


def save(result: BuildResult, out_dir: str | Path, *, sources: dict[str, str] | None = None) -> dict[str, Path]:
    """Write the HF dataset, manifest.json, the pass-rate histogram and held-back problems into `out_dir`."""
    from datasets import Dataset

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    Dataset.from_pandas(result.frame, preserve_index=False).save_to_disk(str(out_dir))
    paths = {"dataset": out_dir, "manifest": out_dir / MANIFEST, "histogram": out_dir / HISTOGRAM}
    manifest = {**result.manifest, **(sources or {})}
    if len(result.held_back):
        result.held_back.to_parquet(out_dir / HELD_BACK, index=False)
        paths["held_back"] = out_dir / HELD_BACK
        manifest["held_back_file"] = HELD_BACK
    paths["manifest"].write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    plot_histogram(result.frame["pass_rate"], result.frame["bucket"], result.manifest["edges"],
                   result.manifest["num_buckets"], paths["histogram"])
    return paths


def plot_histogram(pass_rates, buckets, edges: list[float], num_buckets: int, path: str | Path) -> None:
    """Stacked histogram of pass rates coloured by bucket, with the edges as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pass_rates, buckets = np.asarray(pass_rates, dtype=float), np.asarray(buckets)
    figure, axis = plt.subplots(figsize=(7, 4))
    bins = np.linspace(0, 1, 41)
    groups = [pass_rates[buckets == k] for k in range(num_buckets)]
    axis.hist(groups, bins=bins, stacked=True, label=[f"bucket {k} ({len(g)})" for k, g in enumerate(groups)])
    for edge in edges:
        axis.axvline(edge, color="black", linestyle="--", linewidth=1)
    axis.set_xlabel("pass rate (scoring rollouts)")
    axis.set_ylabel("problems")
    axis.set_title("Pass rates by bucket (0 = easiest)")
    axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
