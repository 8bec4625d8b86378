"""Turning difficulty into buckets: validation, zero-signal filtering, bucketing, the buckets dataset.

Difficulty comes from one of two places:
- a scores file from `curriculum score` (pass rates measured on the model to train, with n, k, intervals);
- a column that ships with the problems (`DifficultyColumn`): a pass rate some other model published
  (fractions or percentages) or a human rating (higher = harder). Nobody here rolled these problems out, so
  `n = k = 0` and the intervals, mean length and truncation are NaN: "unknown", not zero. A rating says
  nothing about a pass rate, so its rows carry `pass_rate = 0.5`, the mean of the uniform prior, which is
  exactly what the sampler's online estimate assumes for a problem with no rollouts (n = 0 gives the prior
  zero weight); the manifest and the report say the pass rate is unknown.

A GRPO group whose completions all pass or all fail has zero advantage and teaches nothing, so problems
with pass rate 1 or 0 are dropped (or a small random fraction kept). A rating carries no such information:
that filter does not apply to it. The rest are split into buckets numbered easiest (0) to hardest by one
of three strategies:
- `quantile`: equal-count buckets by pass rate (or rating), never splitting a tie (see `bucketize`);
- `thresholds`: given pass-rate edges, e.g. 0.8,0.5,0.2 -> [0.8, 1], [0.5, 0.8), [0.2, 0.5), [0, 0.2);
- `kmeans`: scikit-learn KMeans on standardized pass rate (and mean completion length with ties="length"),
  clusters ordered by mean pass rate.
The output is an HF dataset (`save_to_disk`) with a conversational `prompt`, `bucket` and `pass_rate`,
plus `manifest.json` and a histogram of pass rates (or ratings) with the bucket edges.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from curriculum import contracts
from curriculum.layout import HELDOUT, MANIFEST
from curriculum.prompts import DEFAULT_TEMPLATE, PromptTemplate

STRATEGIES = ("quantile", "thresholds", "kmeans")
TIE_RULES = ("length", "merge")
DIFFICULTY_KINDS = ("pass_rate", "rating")
DIFFICULTY_SCALES = (1, 100)
KEPT_SCORE_COLUMNS = ("n", "k", "pass_rate", "ci_low", "ci_high", "mean_tokens", "truncated_frac")
HISTOGRAM = "pass_rates.png"
RATING_HISTOGRAM = "ratings.png"
UNKNOWN_PASS_RATE = 0.5  # Beta(1, 1) mean: the online estimate's prior for a problem nobody rolled out
UNMEASURED = ("n", "k", "ci_low", "ci_high", "mean_tokens", "truncated_frac")
MISSING_TEXT = {"", "nan", "none", "null", "na", "n/a"}
HELD_BACK = "held_back.parquet"


class BuildError(ValueError):
    """Input that cannot be bucketed; the message names the file, column and row."""


@dataclass
class BuildConfig:
    """How to bucket: strategy and count, tie rule, zero-signal and uncertainty filters, per-bucket cap, seed.

    `ties`: problems with equal pass rates are never split on position. "merge" (the default) keeps every
    pass rate in one bucket, making fewer buckets when the values are too few or the ties too large (4
    scoring samples give at most 3 kept values); "length" breaks ties on the mean completion length of the
    scoring rollouts (longer = harder; equal lengths stay together), and is kmeans' second feature. Without
    lengths (a difficulty column) the two are the same.
    """

    num_buckets: int = 4
    strategy: str = "quantile"
    edges: list[float] | None = None
    drop_solved: bool = True
    drop_unsolved: bool = True
    keep_frac: float = 0.0
    max_ci_width: float | None = None
    max_per_bucket: int | None = None
    seed: int = 0
    ties: str = "merge"
    heldout: int = 0  # problems held out of training (stratified by bucket), saved beside the buckets

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise BuildError(f"strategy: unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if self.ties not in TIE_RULES:
            raise BuildError(f"ties: unknown tie rule {self.ties!r}; choose one of {', '.join(TIE_RULES)}")
        for name in ("num_buckets", "seed", "heldout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise BuildError(f"{name}: expected an integer, got {value!r}")
        if self.heldout < 0:
            raise BuildError(f"heldout: must be 0 (none) or a number of problems, got {self.heldout}")
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

    @classmethod
    def from_recipe(cls, section: dict) -> BuildConfig:
        """A pipeline's `build:` section (`buckets` is `num_buckets`), checked: errors start with the key."""
        from curriculum.recipe import check_fields

        values = dict(section)
        if "buckets" in values:
            values["num_buckets"] = values.pop("buckets")
        try:
            values = check_fields(cls, values, error=BuildError)
            if values.get("edges") is not None:
                values["edges"] = list(values["edges"])
            return cls(**values)
        except BuildError as error:  # the recipe calls num_buckets `buckets`
            text = str(error)
            raise BuildError("buckets:" + text.removeprefix("num_buckets:") if text.startswith("num_buckets:")
                             else text) from None


@dataclass
class DifficultyColumn:
    """Difficulty shipped with the problems: a column of pass rates or of ratings.

    Args:
        column: the problems file's column.
        kind: "pass_rate" (share of attempts some model solved; zero-signal filter applies) or "rating"
            (higher = harder, any units; bucketed by quantile of its order).
        scale: 1 if pass rates are fractions in [0, 1], 100 if percentages in [0, 100]; ratings take 1.
        max_missing: largest share of rows allowed without a value; those rows are dropped and counted.

    Example:
        >>> DifficultyColumn("solve_rate", scale=100).describe()["kind"]
        'pass_rate'
    """

    column: str
    kind: str = "pass_rate"
    scale: int = 1
    max_missing: float = 0.05

    def __post_init__(self) -> None:
        if not self.column:
            raise BuildError("the difficulty column needs a name")
        if self.kind not in DIFFICULTY_KINDS:
            raise BuildError(f"unknown difficulty kind {self.kind!r}; choose one of {', '.join(DIFFICULTY_KINDS)}")
        if self.scale not in DIFFICULTY_SCALES:
            raise BuildError(f"difficulty scale must be 1 (fractions) or 100 (percentages), got {self.scale}")
        if self.kind == "rating" and self.scale != 1:
            raise BuildError("a difficulty scale applies to pass rates only; a rating is bucketed by its order")
        if not 0 <= self.max_missing < 1:
            raise BuildError(f"max_missing must be in [0, 1), got {self.max_missing}")

    def describe(self) -> dict[str, Any]:
        return {"source": "column", "column": self.column, "kind": self.kind, "scale": self.scale,
                "max_missing": self.max_missing}


@dataclass
class Bucketing:
    """Bucket per problem (0 = easiest), edges between consecutive buckets, and what ties did."""

    buckets: np.ndarray
    edges: list[float]
    made: int
    ties: dict[str, Any]


@dataclass
class BuildResult:
    """The bucketed problems (one row each, with `bucket`), those held back, the manifest, and the held-out
    split (`BuildConfig.heldout`) when one was asked for."""

    frame: pd.DataFrame
    held_back: pd.DataFrame
    manifest: dict[str, Any] = field(default_factory=dict)
    heldout: BuildResult | None = None

    def summary(self) -> str:
        """One line: what trains, per bucket, what was dropped, and the held-out split."""
        return describe_manifest(self.manifest, self.heldout.manifest if self.heldout is not None else None)


def describe_manifest(manifest: dict, heldout: dict | None = None) -> str:
    """The one-line summary of a build from its manifest (and the held-out split's)."""
    text = f"{manifest.get('total')} problems in buckets {manifest.get('counts')}, dropped {manifest.get('dropped')}"
    if heldout is not None:
        text += f"; held out {heldout.get('total')} {heldout.get('counts')}"
    return text


# ---------------------------------------------------------------------------------------------- reading


def read_table(path: str | Path, what: str) -> pd.DataFrame:
    """A parquet (or .jsonl/.json/.csv) file as a DataFrame, or one BuildError (`contracts.read_table`)."""
    return contracts.read_table(path, what, error=BuildError)


def validate_scores(scores: pd.DataFrame, path: str | Path = "scores") -> None:
    """The scores contract (`contracts.validate_scores`), reported as a BuildError."""
    contracts.validate_scores(scores, path, error=BuildError)


def _fail_if(path, frame: pd.DataFrame, column: str, mask, why: str) -> None:
    contracts.fail_if(path, frame, column, mask, why, error=BuildError)


def validate_problems(problems: pd.DataFrame, path: str | Path = "problems") -> None:
    """The problems contract (`contracts.validate_problems`), reported as a BuildError."""
    contracts.validate_problems(problems, path, error=BuildError)


def read_difficulty(problems: pd.DataFrame, spec: DifficultyColumn, path: str | Path = "problems") -> np.ndarray:
    """The difficulty column as floats in its own units (NaN where a row has no value).

    Numbers and numeric strings are accepted; empty cells, None and "nan"/"null"/"NA" count as missing.
    Refused, naming the column and the first bad row: a value that is not a finite number, a pass rate
    outside [0, scale], and more rows missing than `spec.max_missing` allows.
    """
    column = spec.column
    if column not in problems.columns:
        raise BuildError(f"{path}: no column {column!r} to read difficulty from "
                         f"(columns: {', '.join(map(str, problems.columns))})")
    if len(problems) == 0:
        raise BuildError(f"{path}: no rows")
    values = np.full(len(problems), np.nan)
    bad = np.zeros(len(problems), dtype=bool)
    for row, value in enumerate(problems[column].tolist()):
        values[row], bad[row] = _number(value)
    _fail_if(path, problems, column, bad, "is not a number")
    _fail_if(path, problems, column, np.isinf(values), "is not a finite number")
    if spec.kind == "pass_rate":
        hint = "; percentages need scale 100" if spec.scale == 1 else ""
        _fail_if(path, problems, column, (values < 0) | (values > spec.scale),
                 f"is outside [0, {spec.scale}] (difficulty scale {spec.scale}{hint})")
    missing = np.isnan(values)
    if missing.mean() > spec.max_missing:
        row = int(np.flatnonzero(missing)[0])
        raise BuildError(f"{path}: column {column} has no value in {int(missing.sum())} of {len(values)} rows "
                         f"({missing.mean():.1%}, more than the {spec.max_missing:.1%} allowed); first at row {row} "
                         f"(id {problems['id'].iloc[row]})")
    return values


def _number(value) -> tuple[float, bool]:
    """(value as a float, is it bad); NaN for a missing value."""
    if value is None:
        return np.nan, False
    if isinstance(value, (bool, np.bool_)):
        return np.nan, True
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in MISSING_TEXT:
            return np.nan, False
        value = text
    try:
        return float(value), False
    except (TypeError, ValueError):
        return np.nan, True


# ---------------------------------------------------------------------------------------------- bucketing


def assign_buckets(pass_rates, config: BuildConfig, mean_tokens=None) -> tuple[np.ndarray, list[float]]:
    """Bucket per problem (0 = easiest) and the pass-rate edges between consecutive buckets."""
    result = bucketize(pass_rates, config, mean_tokens=mean_tokens)
    return result.buckets, result.edges


def bucketize(values, config: BuildConfig, *, mean_tokens=None, kind: str = "pass_rate") -> Bucketing:
    """Buckets easiest (0) to hardest by pass rate (higher = easier) or rating (higher = harder).

    Two problems with the same value and the same tie key never land in different buckets. The tie key is
    the mean completion length when `config.ties` is "length" and lengths vary, else nothing. `quantile`
    cuts the easiest-first order at equal counts, then moves each cut to the nearest change of key; cuts
    that meet merge, so ties can make fewer buckets than asked (`made`, explained in `ties`):

        position     0    1  | 2   3   4   5   6   7  | 8    9         4 buckets asked of 10 problems
        pass rate   .75  .75 | .5  .5  .5  .5  .5  .5 | .25  .25
        equal counts cut before 3, 5 and 8; the nearest changes of value are 2, 2 (equally near: the
        earlier) and 8 -> cuts before 2 and 8: 3 buckets, no pass rate split

    Example:
        >>> bucketize([0.75, 0.5, 0.5, 0.25], BuildConfig(num_buckets=4)).made
        3
    """
    values = np.asarray(values, dtype=float)
    ease = -values if kind == "rating" else values
    count = len(values)
    if count < config.num_buckets and config.strategy != "thresholds":
        raise BuildError(f"{count} problem(s) left after filtering: too few for {config.num_buckets} buckets")
    lengths = None if mean_tokens is None else np.nan_to_num(np.asarray(mean_tokens, dtype=float))
    by_length = config.ties == "length" and lengths is not None and len(np.unique(lengths)) > 1
    lengths = lengths if by_length else np.zeros(count)
    if config.strategy == "thresholds":
        edges = np.asarray(config.edges)
        buckets = contracts.band_index(values, edges)
        return Bucketing(buckets, [float(e) for e in edges], config.num_buckets,
                         _ties(values, buckets, config, config.num_buckets, False, kind))
    if config.strategy == "quantile":
        buckets, made = _quantile(ease, lengths, config.num_buckets)
    else:
        buckets, made = _kmeans(ease, lengths, config), config.num_buckets
    edges = _edges_between(ease, buckets, made)
    edges = [-edge for edge in edges] if kind == "rating" else edges
    return Bucketing(buckets, edges, made, _ties(values, buckets, config, made, by_length, kind))


def _quantile(ease: np.ndarray, lengths: np.ndarray, num_buckets: int) -> tuple[np.ndarray, int]:
    count = len(ease)
    order = np.lexsort((lengths, -ease))  # easiest first: higher ease, then shorter completions
    ease_sorted, length_sorted = ease[order], lengths[order]
    new_key = np.ones(count, dtype=bool)
    new_key[1:] = (ease_sorted[1:] != ease_sorted[:-1]) | (length_sorted[1:] != length_sorted[:-1])
    changes = np.append(np.flatnonzero(new_key), count)  # positions where a tie group starts, and the end
    wanted = -(-np.arange(1, num_buckets) * count // num_buckets)  # ceil(j * count / B): equal counts
    moved = changes[np.abs(changes[None, :] - wanted[:, None]).argmin(axis=1)]
    cuts = np.unique(moved[(moved > 0) & (moved < count)])
    buckets = np.empty(count, dtype=np.int64)
    buckets[order] = np.searchsorted(cuts, np.arange(count), side="right")
    return buckets, len(cuts) + 1


def _kmeans(ease: np.ndarray, lengths: np.ndarray, config: BuildConfig) -> np.ndarray:
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import StandardScaler

    features = np.column_stack([ease, lengths]) if lengths.std() > 0 else ease[:, None]
    features = StandardScaler().fit_transform(features)
    if len(np.unique(features, axis=0)) < config.num_buckets:
        raise BuildError(f"kmeans needs at least {config.num_buckets} distinct (pass rate, length) points")
    labels = KMeans(n_clusters=config.num_buckets, n_init=10, random_state=config.seed).fit_predict(features)
    means = [(-ease[labels == c].mean(), lengths[labels == c].mean(), c) for c in range(config.num_buckets)]
    rank = {cluster: position for position, (_, _, cluster) in enumerate(sorted(means))}
    return np.array([rank[label] for label in labels], dtype=np.int64)


def _edges_between(pass_rates: np.ndarray, buckets: np.ndarray, num_buckets: int) -> list[float]:
    return contracts.edges_between(pass_rates, buckets, num_buckets)


def _ties(values, buckets, config: BuildConfig, made: int, by_length: bool, kind: str) -> dict[str, Any]:
    """What ties did to the buckets, for the manifest and the printed summary."""
    label = "pass rate" if kind == "pass_rate" else "rating"
    distinct = np.unique(values)
    split = []
    for value in distinct:
        spanned = np.unique(buckets[values == value])
        if len(spanned) > 1:
            split.append({kind: float(value), "buckets": [int(b) for b in spanned]})
    if config.strategy == "thresholds":
        rule, notes = "thresholds", [f"thresholds never split equal {label}s"]
    elif by_length:
        rule = "length"
        notes = ["ties broken by mean completion length (longer = harder); equal (pass rate, length) share a bucket"]
        notes += [f"pass rate {s[kind]:g} spans buckets {s['buckets'][0]}-{s['buckets'][-1]}" for s in split[:5]]
        if len(split) > 5:
            notes.append(f"{len(split) - 5} more pass rate(s) span several buckets")
    else:
        rule = "merge"
        why = "" if config.ties == "merge" else " (no completion lengths to break them)"
        notes = [f"equal {label}s share a bucket{why}"]
    if made < config.num_buckets:
        if len(distinct) < config.num_buckets and not by_length:
            notes.insert(0, f"asked for {config.num_buckets} buckets; {label}s have {len(distinct)} distinct values "
                            f"in the kept range; made {made} buckets")
        else:
            notes.insert(0, f"asked for {config.num_buckets} buckets; made {made}: ties too large for one "
                            "equal-count bucket merged neighbouring buckets")
    return {"rule": rule, "key": [kind] + (["mean_tokens"] if by_length else []),
            "requested_buckets": config.num_buckets, "made_buckets": made, "distinct_values": int(len(distinct)),
            "split": split, "note": "; ".join(notes)}


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
    frame = scores.reset_index(drop=True)
    first = scores.iloc[0]
    origin = {
        "difficulty": {"source": "scores", "file": str(scores_path), "column": "pass_rate", "kind": "pass_rate",
                       "scale": 1, "unknown": []},
        "scored": int(len(scores)),
        "unscored_problems": int((~problems["id"].isin(scores["id"])).sum()),
        "model": models[0] if models else None,
        "engine": str(first["engine"]) if "engine" in scores.columns else None,
        "sampling": _json_or_text(first["sampling"]) if "sampling" in scores.columns else None,
    }
    solved, unsolved = (frame["k"] >= frame["n"]).to_numpy(), (frame["k"] <= 0).to_numpy()
    result = _build(frame, problems, config, solved, unsolved, origin, {}, template)
    if config.heldout:
        result = split_heldout(result, config, lambda held: build(
            scores[~scores["id"].isin(held)], problems, replace(config, heldout=0), scores_path=scores_path,
            problems_path=problems_path, template=template))
    return result


def build_from_column(problems: pd.DataFrame, spec: DifficultyColumn, config: BuildConfig, *,
                      problems_path: str | Path = "problems",
                      template: PromptTemplate = DEFAULT_TEMPLATE) -> BuildResult:
    """Like `build`, with the difficulty read from a column of the problems file instead of a scores file.

    A pass-rate column gets the zero-signal filter (1 = solved, 0 = unsolved); a rating does not. Rows
    without a value (at most `spec.max_missing` of them) are dropped and counted as `missing_difficulty`.
    """
    if config.max_ci_width is not None:
        raise BuildError("max_ci_width holds back uncertain scores, but a difficulty column has no intervals")
    if spec.kind == "rating" and config.strategy == "thresholds":
        raise BuildError("the thresholds strategy takes pass-rate edges; bucket a rating by quantile or kmeans")
    validate_problems(problems, problems_path)
    values = read_difficulty(problems, spec, problems_path)
    missing = np.isnan(values)
    frame = pd.DataFrame({"id": problems["id"].to_numpy()[~missing], "n": 0, "k": 0})
    rating = spec.kind == "rating"
    frame["pass_rate"] = UNKNOWN_PASS_RATE if rating else values[~missing] / spec.scale
    for column in UNMEASURED[2:]:
        frame[column] = np.nan
    if rating:
        frame["rating"] = values[~missing]
    unknown = list(UNMEASURED) + (["pass_rate"] if rating else [])
    origin = {
        "difficulty": {**spec.describe(), "file": str(problems_path), "missing": int(missing.sum()),
                       "unknown": unknown,
                       "note": ("n = k = 0 and NaN intervals, mean_tokens and truncated_frac: nobody here rolled "
                                "these problems out" + ("; a rating is no pass rate: pass_rate holds 0.5, the "
                                                        "uniform prior's mean, which the sampler weighs as no "
                                                        "evidence (n = 0)" if rating else ""))},
        "scored": int(len(frame)),
        "unscored_problems": 0,
        "model": None, "engine": None, "sampling": None,
    }
    if rating:
        solved = unsolved = np.zeros(len(frame), dtype=bool)
        origin["zero_signal_filter"] = "not applied: a rating says nothing about solvability"
    else:
        rates = frame["pass_rate"].to_numpy()
        solved, unsolved = rates >= 1, rates <= 0
    kept = problems.assign(**{spec.column: values})  # the source column rides along, parsed, in its own units
    result = _build(frame, kept, config, solved, unsolved, origin, {"missing_difficulty": int(missing.sum())},
                    template, kind=spec.kind)
    if config.heldout:
        result = split_heldout(result, config, lambda held: build_from_column(
            problems[~problems["id"].isin(held)], spec, replace(config, heldout=0), problems_path=problems_path,
            template=template))
    return result


def split_heldout(result: BuildResult, config: BuildConfig, rebuild) -> BuildResult:
    """Hold `config.heldout` bucketed problems out of training, stratified by bucket, seeded.

    Args:
        result: the build over every kept problem.
        config: its settings (`heldout`, `num_buckets`, `seed`).
        rebuild: ids held out -> the build over the rest, so the training buckets' edges and manifest
            describe what trains.

    Returns:
        The rebuilt training result, with `heldout` set to the held-out problems: their bucket labels come
        from the full build, and their manifest (same format) counts them.
    """
    count, frame = config.heldout, result.frame
    if not 0 < count <= len(frame) - 2 * config.num_buckets:
        raise BuildError(
            f"heldout: {count} leaves too little to train on: {len(frame)} problems kept after dropping "
            f"zero-signal ones, {config.num_buckets} buckets need at least {2 * config.num_buckets}; hold out "
            "fewer, or score more (or easier) problems"
        )
    rng = np.random.default_rng(config.seed)
    share = count / len(frame)
    chosen = []
    for bucket in sorted(frame["bucket"].unique()):
        members = np.flatnonzero(frame["bucket"].to_numpy() == bucket)
        take = min(len(members), max(1, round(share * len(members))))
        chosen.extend(rng.choice(members, take, replace=False).tolist())
    chosen = sorted(chosen)[:count]
    held = frame.iloc[chosen].reset_index(drop=True)
    train = rebuild(set(held["id"]))
    train.manifest.setdefault("config", {})["heldout"] = count
    manifest = copy.deepcopy(result.manifest)
    counts = [int((held["bucket"] == k).sum()) for k in range(config.num_buckets)]
    manifest.update({"counts": counts, "total": int(len(held)), "role": "held out of training",
                     "buckets": [{**b, "count": counts[b["bucket"]]} for b in manifest.get("buckets", [])]})
    train.heldout = BuildResult(frame=held, held_back=held.iloc[0:0], manifest=manifest)
    return train


def _build(frame, problems, config, solved, unsolved, origin, extra_dropped, template, kind="pass_rate"):
    """Zero-signal and uncertainty filters, bucketing, per-bucket cap, prompts, manifest."""
    rng = np.random.default_rng(config.seed)
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
    considered = len(frame)
    frame = frame[reasons == ""].reset_index(drop=True)

    value = "rating" if kind == "rating" else "pass_rate"
    bucketing = bucketize(frame[value], config, mean_tokens=frame["mean_tokens"], kind=kind)
    frame["bucket"] = bucketing.buckets
    capped = 0
    if config.max_per_bucket is not None:
        keep = np.ones(len(frame), dtype=bool)
        for k in range(bucketing.made):
            members = np.flatnonzero(bucketing.buckets == k)
            if len(members) > config.max_per_bucket:
                drop = rng.choice(members, len(members) - config.max_per_bucket, replace=False)
                keep[drop] = False
        capped = int((~keep).sum())
        frame = frame[keep].reset_index(drop=True)
    dropped["max_per_bucket"] = capped
    dropped.update(extra_dropped)
    if len(frame) == 0:
        raise BuildError(f"no problems left after filtering {considered} with a difficulty ({_describe(dropped)})")

    columns = [c for c in (*KEPT_SCORE_COLUMNS, "rating") if c in frame.columns]
    clashing = [c for c in problems.columns if c in (*columns, "bucket", "prompt")]
    frame = frame[["id", "bucket", *columns]].merge(problems.drop(columns=clashing), on="id", how="left",
                                                    validate="one_to_one")
    frame["prompt"] = [template.messages(text) for text in frame["problem"]]
    frame["bucket"] = frame["bucket"].astype("int64")
    frame["pass_rate"] = frame["pass_rate"].astype(float)
    first = ["id", "prompt", "answer", "bucket", "pass_rate"]
    frame = frame[first + [c for c in frame.columns if c not in first]]

    manifest = _manifest(frame, problems, config, bucketing, dropped, int(len(kept_anyway)), origin, template, kind)
    return BuildResult(frame=frame, held_back=held_back, manifest=manifest)


def _describe(dropped: dict[str, int]) -> str:
    return ", ".join(f"{count} {reason}" for reason, count in dropped.items() if count) or "none dropped"


def _manifest(frame, problems, config, bucketing, dropped, kept_zero_signal, origin, template, kind) -> dict:
    per_bucket = []
    for k in range(bucketing.made):
        members = frame[frame["bucket"] == k]
        entry = {"bucket": k, "count": int(len(members))}
        for column in ("pass_rate", "rating") if kind == "rating" else ("pass_rate",):
            known = len(members) and not (kind == "rating" and column == "pass_rate")  # a rating's pass rate: unknown
            entry |= {f"{column}_{stat}": float(getattr(members[column], stat)()) if known else None
                      for stat in ("min", "max", "mean")}
        per_bucket.append(entry)
    return {
        "strategy": config.strategy,
        "num_buckets": bucketing.made,
        "edges": bucketing.edges,
        "edges_unit": kind,
        "counts": [b["count"] for b in per_bucket],
        "buckets": per_bucket,
        "ties": bucketing.ties,
        "total": int(len(frame)),
        **origin,
        "zero_signal_filter": origin.get("zero_signal_filter", "applied"),
        "dropped": dropped,
        "kept_zero_signal": kept_zero_signal,
        "config": asdict(config),
        "prompt_template": {"system": template.system, "instruction": template.instruction},
    }


def _json_or_text(value):
    try:
        return json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError:
        return value


# ---------------------------------------------------------------------------------------------- writing


def save(result: BuildResult, out_dir: str | Path, *, sources: dict[str, str] | None = None,
         heldout_dir: str | Path | None = None) -> dict[str, Path]:
    """Write the HF dataset, manifest.json, the difficulty histogram and held-back problems into `out_dir`;
    a held-out split goes, in the same format, to `heldout_dir` (default `<out_dir>/heldout/`)."""
    from datasets import Dataset

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    Dataset.from_pandas(result.frame, preserve_index=False).save_to_disk(str(out_dir))
    rating = result.manifest.get("edges_unit") == "rating"
    histogram = out_dir / (RATING_HISTOGRAM if rating else HISTOGRAM)
    paths = {"dataset": out_dir, "manifest": out_dir / MANIFEST, "histogram": histogram}
    manifest = {**result.manifest, **(sources or {}), "histogram": histogram.name}
    if len(result.held_back):
        result.held_back.to_parquet(out_dir / HELD_BACK, index=False)
        paths["held_back"] = out_dir / HELD_BACK
        manifest["held_back_file"] = HELD_BACK
    contracts.atomic_write_text(paths["manifest"], json.dumps(manifest, indent=2, default=str) + "\n")
    plot_histogram(result.frame["rating" if rating else "pass_rate"], result.frame["bucket"],
                   result.manifest["edges"], result.manifest["num_buckets"], histogram,
                   label="rating (higher = harder)" if rating else "pass rate")
    if result.heldout is not None:
        held_dir = Path(heldout_dir) if heldout_dir is not None else out_dir / HELDOUT
        save(result.heldout, held_dir, sources={**(sources or {}), "heldout_of": "all kept problems"})
        paths["heldout"] = held_dir
    return paths


def plot_histogram(values, buckets, edges: list[float], num_buckets: int, path: str | Path, *,
                   label: str = "pass rate") -> None:
    """Stacked histogram of pass rates (or ratings) coloured by bucket, with the edges as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values, buckets = np.asarray(values, dtype=float), np.asarray(buckets)
    figure, axis = plt.subplots(figsize=(7, 4))
    bins = np.linspace(0, 1, 41) if label == "pass rate" else 40
    groups = [values[buckets == k] for k in range(num_buckets)]
    axis.hist(groups, bins=bins, stacked=True, label=[f"bucket {k} ({len(g)})" for k, g in enumerate(groups)])
    for edge in edges:
        axis.axvline(edge, color="black", linestyle="--", linewidth=1)
    axis.set_xlabel(label)
    axis.set_ylabel("problems")
    axis.set_title(f"{label.split(' (')[0].capitalize()}s by bucket (0 = easiest)")
    axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
