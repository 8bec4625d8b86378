"""Bucketing strategies, ties, zero-signal filtering and validation, on scores and on difficulty columns."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from curriculum.buckets import (
    BuildConfig,
    BuildError,
    DifficultyColumn,
    assign_buckets,
    bucketize,
    build,
    build_from_column,
)
from curriculum.prompts import PromptTemplate


def frames(k, n=8, *, mean_tokens=None, ci=0.1):
    count = len(k)
    ids = [f"p{i:03d}" for i in range(count)]
    k = np.asarray(k)
    problems = pd.DataFrame({"id": ids, "problem": [f"Compute {i} * 3." for i in range(count)],
                             "answer": [str(3 * i) for i in range(count)], "source": "synthetic",
                             "level": np.arange(count) % 5 + 1})
    scores = pd.DataFrame({
        "id": ids, "n": n, "k": k, "pass_rate": k / n,
        "ci_low": np.clip(k / n - ci, 0, 1), "ci_high": np.clip(k / n + ci, 0, 1),
        "mean_tokens": mean_tokens if mean_tokens is not None else np.full(count, 100.0),
        "truncated_frac": 0.0, "model": "HuggingFaceTB/SmolLM2-135M-Instruct", "engine": "hf",
        "sampling": json.dumps({"temperature": 0.7, "top_p": 1.0}),
    })
    return scores, problems


def test_quantile_gives_equal_counts_easiest_first():
    rates = np.linspace(0.95, 0.05, 20)
    buckets, edges = assign_buckets(rates, BuildConfig(num_buckets=4))
    assert buckets.tolist() == [0] * 5 + [1] * 5 + [2] * 5 + [3] * 5
    assert len(edges) == 3 and edges == sorted(edges, reverse=True)


def test_quantile_breaks_pass_rate_ties_by_length():
    rates = np.full(4, 0.5)
    buckets, _ = assign_buckets(rates, BuildConfig(num_buckets=2, ties="length"), mean_tokens=[400, 100, 300, 200])
    assert buckets.tolist() == [1, 0, 1, 0]  # longer completions count as harder


def test_thresholds_use_the_given_edges():
    config = BuildConfig(strategy="thresholds", edges=[0.2, 0.8, 0.5])
    assert config.num_buckets == 4 and config.edges == [0.8, 0.5, 0.2]
    buckets, edges = assign_buckets([1.0, 0.8, 0.79, 0.5, 0.3, 0.2, 0.1, 0.0], config)
    assert buckets.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert edges == [0.8, 0.5, 0.2]


def test_kmeans_orders_clusters_by_pass_rate():
    rng = np.random.default_rng(0)
    centres = [0.9, 0.6, 0.3, 0.05]
    rates = np.concatenate([np.clip(rng.normal(c, 0.02, 25), 0, 1) for c in centres])
    lengths = np.concatenate([rng.normal(100 + 100 * i, 10, 25) for i in range(4)])
    buckets, _ = assign_buckets(rates, BuildConfig(num_buckets=4, strategy="kmeans", ties="length"),
                                mean_tokens=lengths)
    assert buckets.tolist() == [0] * 25 + [1] * 25 + [2] * 25 + [3] * 25


def test_build_drops_zero_signal_and_says_why():
    scores, problems = frames([0, 0, 0, 8, 8] + [1, 2, 3, 4, 5, 6, 7, 4])
    result = build(scores, problems, BuildConfig(num_buckets=2))
    assert len(result.frame) == 8
    assert result.manifest["dropped"] == {"solved": 2, "unsolved": 3, "uncertain": 0, "max_per_bucket": 0}
    # 8 kept, two of them at 4/8: an equal-count cut would split that tie, so it moves one place (issue 12)
    assert result.manifest["counts"] == [3, 5]
    assert set(result.frame.loc[result.frame["pass_rate"] == 0.5, "bucket"]) == {1}
    assert set(result.frame["pass_rate"]) == {k / 8 for k in range(1, 8)}


def test_build_can_keep_zero_signal_problems():
    scores, problems = frames([0] * 50 + [8] * 50 + [4] * 20)
    kept_all = build(scores, problems, BuildConfig(num_buckets=2, drop_solved=False, drop_unsolved=False))
    assert len(kept_all.frame) == 120
    some = build(scores, problems, BuildConfig(num_buckets=2, keep_frac=0.2, seed=1))
    assert 20 < len(some.frame) < 60 and some.manifest["kept_zero_signal"] == len(some.frame) - 20


def test_uncertain_scores_are_held_back_on_request():
    scores, problems = frames([2, 3, 4, 5, 6, 4])
    scores.loc[[1, 4], "ci_high"] = 1.0
    scores.loc[[1, 4], "ci_low"] = 0.0
    kept = build(scores, problems, BuildConfig(num_buckets=2))
    assert len(kept.frame) == 6
    held = build(scores, problems, BuildConfig(num_buckets=2, max_ci_width=0.5))
    assert sorted(held.held_back["id"]) == ["p001", "p004"] and len(held.frame) == 4
    assert held.manifest["dropped"]["uncertain"] == 2


def test_max_per_bucket_caps_each_bucket():
    scores, problems = frames(list(range(1, 8)) * 6)
    result = build(scores, problems, BuildConfig(num_buckets=3, max_per_bucket=5))
    assert result.manifest["counts"] == [5, 5, 5]
    assert result.manifest["dropped"]["max_per_bucket"] == 42 - 15


def test_rows_carry_a_conversational_prompt_and_the_problem_columns():
    scores, problems = frames([1, 4, 7, 2])
    template = PromptTemplate(system="Be brief.", instruction="Solve: {problem}")
    result = build(scores, problems, BuildConfig(num_buckets=2), template=template)
    row = result.frame.set_index("id").loc["p001"]
    assert row["prompt"] == [{"role": "system", "content": "Be brief."},
                             {"role": "user", "content": "Solve: Compute 1 * 3."}]
    assert row["answer"] == "3" and row["level"] == 2 and row["bucket"] == 0
    assert result.manifest["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert result.manifest["sampling"] == {"temperature": 0.7, "top_p": 1.0}


@pytest.mark.parametrize("column, value, message", [
    ("pass_rate", 1.5, r"column pass_rate = 1.5 is outside \[0, 1\]"),
    ("pass_rate", -0.1, "column pass_rate = -0.1 is outside"),
    ("k", 9, "column k = 9 must be between 0 and n"),
    ("pass_rate", "high", "column pass_rate = 'high' is not a number"),
])
def test_bad_values_name_file_row_and_column(column, value, message):
    scores, problems = frames([1, 2, 3, 4])
    scores[column] = scores[column].astype(object)
    scores.loc[2, column] = value
    with pytest.raises(BuildError, match=rf"runs/x/scores.parquet: row 2 \(id p002\): {message}"):
        build(scores, problems, BuildConfig(num_buckets=2), scores_path="runs/x/scores.parquet")


def test_missing_columns_unknown_ids_and_mixed_models_are_refused():
    scores, problems = frames([1, 2, 3, 4])
    with pytest.raises(BuildError, match="scores.parquet: missing column\\(s\\) pass_rate, ci_high"):
        build(scores.drop(columns=["pass_rate", "ci_high"]), problems, BuildConfig(num_buckets=2),
              scores_path="scores.parquet")
    stray = scores.copy()
    stray.loc[3, "id"] = "nowhere"
    with pytest.raises(BuildError, match="row 3 \\(id nowhere\\): column id = 'nowhere' is not in the problems file"):
        build(stray, problems, BuildConfig(num_buckets=2))
    mixed = scores.copy()
    mixed.loc[0, "model"] = "other/model"
    with pytest.raises(BuildError, match="several models"):
        build(mixed, problems, BuildConfig(num_buckets=2))


def test_bad_configs_are_refused():
    with pytest.raises(BuildError, match="needs edges"):
        BuildConfig(strategy="thresholds")
    with pytest.raises(BuildError, match="strictly between 0 and 1"):
        BuildConfig(strategy="thresholds", edges=[0.5, 1.2])
    with pytest.raises(BuildError, match="unknown strategy"):
        BuildConfig(strategy="random")
    scores, problems = frames([1, 2])
    with pytest.raises(BuildError, match="too few for 4 buckets"):
        build(scores, problems, BuildConfig(num_buckets=4))


# ---------------------------------------------------------------------------------------------- ties (issue 12)


def _never_split(values, buckets):
    """Each value in exactly one bucket, buckets numbered 0..m-1 with no gap."""
    frame = pd.DataFrame({"value": values, "bucket": buckets})
    assert (frame.groupby("value")["bucket"].nunique() == 1).all(), frame.groupby("value")["bucket"].unique()
    assert sorted(set(buckets)) == list(range(max(buckets) + 1))


def test_discrete_pass_rates_from_4_samples_are_never_split_and_the_manifest_says_why():
    rng = np.random.default_rng(3)
    scores, problems = frames(rng.binomial(4, rng.beta(1, 1, 300)), n=4,
                              mean_tokens=rng.normal(200, 40, 300))  # distinct lengths: merge must ignore them
    result = build(scores, problems, BuildConfig(num_buckets=4))
    _never_split(result.frame["pass_rate"], result.frame["bucket"])
    ties = result.manifest["ties"]
    assert result.manifest["num_buckets"] == ties["made_buckets"] == 3 == len(result.manifest["counts"])
    assert ties["requested_buckets"] == 4 and ties["distinct_values"] == 3 and ties["split"] == []
    assert "asked for 4 buckets; pass rates have 3 distinct values in the kept range; made 3 buckets" in ties["note"]
    by_rate = result.frame.groupby("pass_rate")["bucket"].first()
    assert by_rate.tolist() == [2, 1, 0]  # 0.25 hardest, 0.75 easiest
    assert result.manifest["edges"] == [0.625, 0.375]  # no more [0.25, 0.25]


@pytest.mark.parametrize("samples, num_buckets", [(4, 2), (4, 3), (8, 4), (8, 6), (16, 4), (3, 4)])
def test_quantile_never_splits_a_pass_rate_and_keeps_counts_near_equal(samples, num_buckets):
    rng = np.random.default_rng(samples * 10 + num_buckets)
    rates = rng.binomial(samples, rng.beta(0.8, 0.8, 500)) / samples
    buckets, edges = assign_buckets(rates, BuildConfig(num_buckets=num_buckets))
    _never_split(rates, buckets)
    assert all(rates[buckets == b].min() > rates[buckets == b + 1].max() for b in range(buckets.max()))
    assert len(edges) == buckets.max()
    if samples == 16:  # plenty of distinct values: every bucket asked for, roughly equal
        assert buckets.max() + 1 == num_buckets and np.bincount(buckets).min() > 0.5 * 500 / num_buckets


def test_a_tie_too_large_for_one_quantile_merges_buckets():
    rates = np.array([0.9, 0.8] + [0.5] * 14 + [0.3, 0.2, 0.1, 0.05])  # 7 distinct values, 4 buckets asked
    result = bucketize(rates, BuildConfig(num_buckets=4))
    _never_split(rates, result.buckets)
    assert result.made == 3 and result.ties["distinct_values"] == 7
    assert result.buckets.tolist() == [0] * 2 + [1] * 14 + [2] * 4
    assert "made 3: ties too large for one equal-count bucket" in result.ties["note"]


def test_length_rule_breaks_ties_but_never_splits_equal_pass_rate_and_length():
    rates = np.array([0.5] * 8 + [0.25] * 4)
    lengths = np.array([100, 100, 100, 100, 300, 300, 300, 300, 50, 50, 50, 50])
    result = bucketize(rates, BuildConfig(num_buckets=4, ties="length"), mean_tokens=lengths)
    _never_split([f"{r}/{t}" for r, t in zip(rates, lengths, strict=True)], result.buckets)
    assert result.buckets.tolist() == [0] * 4 + [1] * 4 + [2] * 4  # the third cut would split a (rate, length) tie
    assert result.ties["rule"] == "length" and result.ties["key"] == ["pass_rate", "mean_tokens"]
    assert result.ties["split"] == [{"pass_rate": 0.5, "buckets": [0, 1]}]
    assert "ties broken by mean completion length" in result.ties["note"]
    assert "pass rate 0.5 spans buckets 0-1" in result.ties["note"]


def test_merge_rule_ignores_lengths_and_kmeans_follows_the_rule():
    rates = np.array([0.5] * 6 + [0.25] * 6)
    lengths = np.arange(12) * 10.0
    merged = bucketize(rates, BuildConfig(num_buckets=4), mean_tokens=lengths)
    assert merged.buckets.tolist() == [0] * 6 + [1] * 6 and merged.ties["rule"] == "merge"
    clusters = bucketize(np.repeat([0.9, 0.6, 0.3, 0.1], 5), BuildConfig(num_buckets=4, strategy="kmeans"),
                         mean_tokens=np.arange(20.0))
    assert clusters.buckets.tolist() == np.repeat([0, 1, 2, 3], 5).tolist() and clusters.ties["split"] == []


# ---------------------------------------------------------------------------------------------- difficulty columns


def pool(values, column="difficulty"):
    count = len(values)
    return pd.DataFrame({"id": [f"q{i:03d}" for i in range(count)], "problem": [f"Add {i} and 2." for i in range(count)],
                         "answer": [str(i + 2) for i in range(count)], "source": "pool", column: values})


def test_pass_rate_column_at_scale_1_and_100_gives_the_same_buckets_with_unknown_n_k_and_intervals():
    fractions = [0.0, 1.0] + [round(0.05 + 0.9 * i / 19, 4) for i in range(20)]
    as_fraction = build_from_column(pool(fractions), DifficultyColumn("difficulty"), BuildConfig(num_buckets=4),
                                    problems_path="pool.parquet")
    as_percent = build_from_column(pool([100 * v for v in fractions]), DifficultyColumn("difficulty", scale=100),
                                   BuildConfig(num_buckets=4))
    frame = as_fraction.frame
    assert frame["bucket"].tolist() == as_percent.frame["bucket"].tolist()
    assert np.allclose(frame["pass_rate"], as_percent.frame["pass_rate"]) and frame["pass_rate"].between(0, 1).all()
    assert as_percent.frame["difficulty"].max() > 1  # the source column keeps its own units
    assert (frame["n"] == 0).all() and (frame["k"] == 0).all()
    assert frame[["ci_low", "ci_high", "mean_tokens", "truncated_frac"]].isna().all().all()
    manifest = as_fraction.manifest
    assert manifest["dropped"]["solved"] == 1 and manifest["dropped"]["unsolved"] == 1  # zero-signal filter applies
    assert manifest["zero_signal_filter"] == "applied" and manifest["counts"] == [5, 5, 5, 5]
    assert manifest["difficulty"] | {"note": None} == {
        "source": "column", "column": "difficulty", "kind": "pass_rate", "scale": 1, "max_missing": 0.05,
        "file": "pool.parquet", "missing": 0, "note": None,
        "unknown": ["n", "k", "ci_low", "ci_high", "mean_tokens", "truncated_frac"]}
    assert manifest["model"] is None and manifest["buckets"][0]["pass_rate_min"] > manifest["buckets"][1]["pass_rate_max"]


def test_rating_column_takes_numeric_strings_buckets_easiest_first_and_drops_nothing_as_zero_signal():
    ratings = ["1", " 2 ", "3.5", 4, 5.0, "0", "1", 1, "2", "5", "4", "3"]  # 0 and 1 are no pass rates here
    result = build_from_column(pool(ratings, "level"), DifficultyColumn("level", kind="rating"),
                               BuildConfig(num_buckets=3))
    frame = result.frame
    _never_split(frame["rating"], frame["bucket"])
    assert len(frame) == 12 and result.manifest["dropped"]["solved"] == result.manifest["dropped"]["unsolved"] == 0
    assert all(frame.loc[frame["bucket"] == b, "rating"].max() < frame.loc[frame["bucket"] == b + 1, "rating"].min()
               for b in range(frame["bucket"].max()))  # higher rating = harder = later bucket
    assert frame["level"].dtype == float and (frame["pass_rate"] == 0.5).all() and (frame["n"] == 0).all()
    manifest = result.manifest
    assert manifest["edges_unit"] == "rating" and manifest["edges"] == sorted(manifest["edges"])
    assert manifest["zero_signal_filter"].startswith("not applied")
    assert "pass_rate" in manifest["difficulty"]["unknown"]
    assert manifest["buckets"][0]["pass_rate_mean"] is None and manifest["buckets"][0]["rating_min"] == 0.0
    assert manifest["ties"]["key"] == ["rating"] and manifest["ties"]["split"] == []


@pytest.mark.parametrize("value, spec, message", [
    ("hard", {}, "column difficulty = 'hard' is not a number"),
    (True, {}, "column difficulty = True is not a number"),
    (float("inf"), {"kind": "rating"}, "column difficulty = inf is not a finite number"),
    (1.5, {}, r"column difficulty = 1.5 is outside \[0, 1\] \(difficulty scale 1; percentages need scale 100\)"),
    (-0.2, {}, r"column difficulty = -0.2 is outside \[0, 1\]"),
    (150, {"scale": 100}, r"column difficulty = 150.0 is outside \[0, 100\] \(difficulty scale 100\)"),
    ("150", {"scale": 100}, r"column difficulty = '150' is outside \[0, 100\]"),
])
def test_bad_difficulty_values_are_one_line_naming_column_and_first_row(value, spec, message):
    values = [0.2, 0.4, 0.6, 0.3, 0.5, 0.7, 0.45, 0.55]
    values = [100 * v for v in values] if spec.get("scale") == 100 else values
    values = [*values[:3], value, *values[4:6], value, values[7]]  # bad at rows 3 and 6
    with pytest.raises(BuildError) as raised:
        build_from_column(pool(values), DifficultyColumn("difficulty", **spec), BuildConfig(num_buckets=2),
                          problems_path="data/pool.jsonl")
    text = str(raised.value)
    assert "\n" not in text
    assert re.fullmatch(rf"data/pool.jsonl: row 3 \(id q003\): {message}.* \(1 more row\(s\) like it\)", text), text


def test_missing_difficulty_under_the_threshold_is_dropped_and_counted_over_it_refused():
    values = [0.3, None, 0.5, "", 0.6, "nan", 0.7, np.nan] + [0.4] * 32  # 4 of 40 missing = 10%
    result = build_from_column(pool(values), DifficultyColumn("difficulty", max_missing=0.1),
                               BuildConfig(num_buckets=2))
    assert len(result.frame) == 36 and result.manifest["dropped"]["missing_difficulty"] == 4
    assert result.manifest["difficulty"]["missing"] == 4 and "q001" not in set(result.frame["id"])
    with pytest.raises(BuildError, match=r"^pool: column difficulty has no value in 4 of 40 rows \(10.0%, more than "
                                         r"the 5.0% allowed\); first at row 1 \(id q001\)$"):
        build_from_column(pool(values), DifficultyColumn("difficulty"), BuildConfig(num_buckets=2),
                          problems_path="pool")
    with pytest.raises(BuildError, match=r"no column 'rate' to read difficulty from \(columns: id, problem"):
        build_from_column(pool(values), DifficultyColumn("rate"), BuildConfig(num_buckets=2))


def test_difficulty_column_refuses_what_it_cannot_mean():
    with pytest.raises(BuildError, match="scale applies to pass rates only"):
        DifficultyColumn("level", kind="rating", scale=100)
    with pytest.raises(BuildError, match="unknown difficulty kind"):
        DifficultyColumn("level", kind="elo")
    with pytest.raises(BuildError, match="has no intervals"):
        build_from_column(pool([0.5] * 4), DifficultyColumn("difficulty"), BuildConfig(num_buckets=2, max_ci_width=0.3))
    with pytest.raises(BuildError, match="thresholds strategy takes pass-rate edges"):
        build_from_column(pool([1, 2, 3]), DifficultyColumn("difficulty", kind="rating"),
                          BuildConfig(strategy="thresholds", edges=[0.5]))


@pytest.mark.parametrize("kind, values", [("rating", [str(1 + i % 5) for i in range(40)]),
                                          ("pass_rate", [round(0.05 + 0.9 * (i % 13) / 12, 3) for i in range(40)])])
def test_sampler_builds_and_draws_from_buckets_without_rollouts(tmp_path, kind, values):
    from datasets import load_from_disk

    from curriculum.buckets import save
    from curriculum.sampler import CurriculumSampler

    result = build_from_column(pool(values), DifficultyColumn("difficulty", kind=kind), BuildConfig(num_buckets=4))
    save(result, tmp_path / "b")
    dataset = load_from_disk(str(tmp_path / "b"))
    for online in (True, False):
        for schedule in ("linear", "adaptive"):
            sampler = CurriculumSampler.from_dataset(dataset, online_difficulty=online, mini_repeat_count=4,
                                                     batch_size=4, schedule=schedule, total_chunks=20, seed=1)
            assert sampler.current_buckets().tolist() == dataset["bucket"]  # the built buckets, before evidence
            assert sampler.num_buckets == result.manifest["num_buckets"]
            indices = iter(sampler)
            chunk = [next(indices) for _ in range(16)][::4]
            if hasattr(sampler, "consume"):  # the sampler's read-ahead bookkeeping, where it has one
                sampler.consume(chunk)
            sampler.observe(chunk, [0, 1, 4, 2], [4, 4, 4, 4])
            probabilities = sampler.probabilities()
            assert np.isfinite(probabilities).all() and probabilities.sum() == pytest.approx(1.0)
            assert np.isfinite(sampler.describe()["weights"]).all()
            if online:
                assert np.isfinite(sampler.difficulty.mean()).all()
