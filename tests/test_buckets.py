"""Bucketing strategies, zero-signal filtering and score validation on scores with known pass rates."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from curriculum.buckets import BuildConfig, BuildError, assign_buckets, build
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
    buckets, _ = assign_buckets(rates, BuildConfig(num_buckets=2), mean_tokens=[400, 100, 300, 200])
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
    buckets, _ = assign_buckets(rates, BuildConfig(num_buckets=4, strategy="kmeans"), mean_tokens=lengths)
    assert buckets.tolist() == [0] * 25 + [1] * 25 + [2] * 25 + [3] * 25


def test_build_drops_zero_signal_and_says_why():
    scores, problems = frames([0, 0, 0, 8, 8] + [1, 2, 3, 4, 5, 6, 7, 4])
    result = build(scores, problems, BuildConfig(num_buckets=2))
    assert len(result.frame) == 8
    assert result.manifest["dropped"] == {"solved": 2, "unsolved": 3, "uncertain": 0, "max_per_bucket": 0}
    assert result.manifest["counts"] == [4, 4]
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
