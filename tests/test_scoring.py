"""Pass-rate scoring: intervals, the adaptive stopping rule, resumable parts, shards and merge.

Statistical behaviour is tested with `KnownRateEngine`, a rollout engine (the real protocol) whose problems
carry their true pass rate, so the expected outcome is known; its completions go through the real verifier.
The tiny real model is used where the engine itself matters.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from scipy.stats import beta, binomtest

from curriculum.rollout import Completion, Sampling
from curriculum.rollout.hf import HFEngine
from curriculum.scoring import (
    SCORE_COLUMNS,
    ScoreConfig,
    ScoringError,
    Shard,
    adaptive_sample_sizes,
    band_index,
    completions_path,
    load_problems,
    merge_shards,
    parts_dir,
    read_metadata,
    score,
    settled,
)
from curriculum.stats import binomial_interval, jeffreys_interval, wilson_interval

# ---------------------------------------------------------------------------------------------- helpers


class KnownRateEngine:
    """Answers problem "rate R answer A" correctly with probability R (seeded per call and prompt)."""

    name = "known-rate"

    def __init__(self):
        self.calls: list[tuple[int, int, int]] = []  # (prompts, n, seed)

    def generate(self, prompts, n, sampling):
        self.calls.append((len(prompts), n, sampling.seed))
        out = []
        for messages in prompts:
            text = messages[-1]["content"]
            rate = float(re.search(r"rate ([0-9.]+)", text).group(1))
            answer = re.search(r"answer (-?\d+)", text).group(1)
            rng = np.random.default_rng([sampling.seed, sum(map(ord, text))])
            out.append([
                Completion(f"so the answer is \\boxed{{{answer if hit else int(answer) + 1}}}", 12, "stop")
                for hit in rng.random(n) < rate
            ])
        return out

    def close(self):
        pass


def known_problems(rates, prefix="q") -> pd.DataFrame:
    return pd.DataFrame({
        "id": [f"{prefix}{i}" for i in range(len(rates))],
        "problem": [f"Problem {i}: rate {rate} answer {100 + i}" for i, rate in enumerate(rates)],
        "answer": [str(100 + i) for i in range(len(rates))],
        "source": "test",
    })


# -------------------------------------------------------------------------------------------- intervals


@pytest.mark.parametrize("n", [1, 2, 5, 8, 32, 100])
def test_wilson_interval_matches_scipy(n):
    for k in range(n + 1):
        expected = binomtest(k, n).proportion_ci(confidence_level=0.9, method="wilson")
        low, high = wilson_interval(k, n, confidence=0.9)
        assert low == pytest.approx(expected.low, abs=1e-9)
        assert high == pytest.approx(expected.high, abs=1e-9)


def test_jeffreys_interval_is_the_beta_posterior_with_pinned_ends():
    for n in (1, 4, 16, 64):
        for k in range(n + 1):
            low, high = jeffreys_interval(k, n)
            assert low == (0.0 if k == 0 else pytest.approx(beta.ppf(0.025, k + 0.5, n - k + 0.5)))
            assert high == (1.0 if k == n else pytest.approx(beta.ppf(0.975, k + 0.5, n - k + 0.5)))
            assert low <= k / n <= high


def test_intervals_vectorize_and_handle_no_trials():
    k, n = np.array([0, 3, 8]), np.array([8, 8, 8])
    for method in ("wilson", "jeffreys"):
        low, high = binomial_interval(k, n, method=method)
        for i in range(3):
            assert (low[i], high[i]) == pytest.approx(binomial_interval(int(k[i]), int(n[i]), method=method))
        assert binomial_interval(0, 0, method=method) == (0.0, 1.0)
    with pytest.raises(ValueError, match="0 <= k <= n"):
        wilson_interval(5, 4)
    with pytest.raises(ValueError, match="unknown interval"):
        binomial_interval(1, 2, method="wald")


def test_intervals_cover_the_true_rate_about_as_often_as_promised():
    rng = np.random.default_rng(0)
    for rate in (0.05, 0.3, 0.5):
        k = rng.binomial(32, rate, size=4000)
        for method in ("wilson", "jeffreys"):
            low, high = binomial_interval(k, np.full(k.shape, 32), method=method)
            coverage = np.mean((low <= rate) & (rate <= high))
            assert 0.91 <= coverage <= 0.99, (rate, method, coverage)


# ------------------------------------------------------------------------------------------------ bands


def test_band_index_orders_easy_to_hard_and_edges_go_up():
    rates = [1.0, 0.9, 0.8, 0.79, 0.5, 0.3, 0.2, 0.1, 0.0]
    assert band_index(rates, (0.8, 0.5, 0.2)).tolist() == [0, 0, 0, 1, 1, 2, 2, 3, 3]


def test_settled_means_no_edge_strictly_inside_the_interval():
    edges = (0.8, 0.5, 0.2)
    assert settled([0.0, 0.55, 0.2, 0.45], [0.19, 0.75, 0.5, 0.55], edges).tolist() == [True, True, True, False]


def test_adaptive_replay_stops_certain_problems_early_and_keeps_uncertain_ones():
    outcomes = np.zeros((4, 32), dtype=bool)
    outcomes[1] = True
    outcomes[2, ::2] = True  # a pass rate of exactly 0.5 sits on an edge: never settles
    outcomes[3, :8] = [True] * 5 + [False] * 3  # 5/8, then 6/8 per round: near 0.5 and 0.8, never settles
    outcomes[3, 8:] = ([True] * 6 + [False] * 2) * 3
    # The 80% Wilson bound for 0/8 is 0.170 < 0.2: all-fail and all-pass stop after one round of 8 ...
    sizes = adaptive_sample_sizes(outcomes, ScoreConfig(samples=8, adaptive=True, max_samples=32))
    assert sizes.tolist() == [8, 8, 32, 32]
    # ... but at 95% it is 0.324 (0/16 gives 0.194), so they need a second round.
    strict = ScoreConfig(samples=8, adaptive=True, max_samples=32, stop_confidence=0.95)
    assert adaptive_sample_sizes(outcomes, strict).tolist() == [16, 16, 32, 32]
    tiny_rounds = ScoreConfig(samples=8, adaptive=True, max_samples=64, stop_confidence=0.95)
    assert adaptive_sample_sizes(np.zeros((1, 64), dtype=bool), tiny_rounds).tolist() == [16]


# ---------------------------------------------------------------------------------------- score(): fixed


def test_fixed_scoring_writes_the_scores_contract(tmp_path):
    problems = known_problems([0.0, 1.0, 0.5, 0.25])
    out = tmp_path / "scores.parquet"
    config = ScoreConfig(samples=16, sampling=Sampling(max_tokens=32, seed=3), chunk_size=3)
    summary = score(problems, KnownRateEngine(), config, out, model="m", keep_completions=True)
    frame = pd.read_parquet(out)
    assert list(frame.columns[: len(SCORE_COLUMNS)]) == list(SCORE_COLUMNS)
    assert frame["id"].tolist() == problems["id"].tolist()
    assert frame["n"].tolist() == [16] * 4
    assert frame["k"].iloc[0] == 0 and frame["k"].iloc[1] == 16
    assert 3 <= frame["k"].iloc[2] <= 13
    assert (frame["pass_rate"] == frame["k"] / frame["n"]).all()
    assert (frame["ci_low"] <= frame["pass_rate"]).all() and (frame["pass_rate"] <= frame["ci_high"]).all()
    assert frame["mean_tokens"].tolist() == [12.0] * 4 and frame["truncated_frac"].tolist() == [0.0] * 4
    assert set(frame["model"]) == {"m"} and set(frame["engine"]) == {"known-rate"}
    assert json.loads(frame["sampling"].iloc[0]) == {"temperature": 0.7, "top_p": 0.95, "max_tokens": 32, "seed": 3}
    completions = pd.read_parquet(completions_path(out))
    assert len(completions) == 64
    per_problem = completions.groupby("id", sort=False)["correct"].sum()
    assert per_problem.loc[frame["id"]].tolist() == frame["k"].tolist()
    assert sorted(completions[completions["id"] == "q2"]["sample"]) == list(range(16))
    assert summary.problems == 4 and summary.rollouts == 64 and summary.rollouts_now == 64
    assert not parts_dir(out).exists()
    assert read_metadata(out)["samples"] == 16


def test_adaptive_scoring_spends_less_on_certain_problems_and_draws_fresh_samples_each_round(tmp_path):
    problems = known_problems([0.0, 1.0, 0.0, 1.0, 0.5])
    engine = KnownRateEngine()
    config = ScoreConfig(samples=4, adaptive=True, max_samples=16, stop_confidence=0.95, chunk_size=10)
    summary = score(problems, engine, config, tmp_path / "s.parquet", model="m")
    frame = pd.read_parquet(tmp_path / "s.parquet")
    # 95% Wilson bounds for 0/n: 0.49 (n=4), 0.32 (8), 0.24 (12), 0.19 (16): certain problems stop at 16 ...
    assert frame["n"].tolist() == [16] * 5 and frame["k"].tolist()[:4] == [0, 16, 0, 16]
    config = ScoreConfig(samples=8, adaptive=True, max_samples=32, chunk_size=10)
    engine = KnownRateEngine()
    summary = score(problems, engine, config, tmp_path / "t.parquet", model="m")
    frame = pd.read_parquet(tmp_path / "t.parquet")
    # ... and at the default stop confidence (80%) after the first round of 8.
    assert frame["n"].tolist()[:4] == [8, 8, 8, 8] and frame["k"].tolist()[:4] == [0, 8, 0, 8]
    assert frame["n"].iloc[4] == 32  # p = 0.5 straddles an edge
    assert summary.rollouts == 64 and summary.rollouts_budget == 160 and summary.rollouts_saved == 96
    # Rounds: 5 prompts, then only the undecided one, three times; each round with its own seed.
    assert [(prompts, n) for prompts, n, _ in engine.calls] == [(5, 8), (1, 8), (1, 8), (1, 8)]
    assert len({seed for _, _, seed in engine.calls}) == 4
    # the written interval keeps its own (95%) level
    low, high = binomial_interval(0, 8, method="wilson", confidence=0.95)
    assert (frame["ci_low"].iloc[0], frame["ci_high"].iloc[0]) == pytest.approx((low, high))


def test_hf_engine_end_to_end_on_the_tiny_model(tmp_path, tiny_model_dir):
    problems = known_problems([0.0, 0.0, 0.0])
    engine = HFEngine(str(tiny_model_dir))
    config = ScoreConfig(samples=2, sampling=Sampling(max_tokens=8), chunk_size=2)
    summary = score(problems, engine, config, tmp_path / "s.parquet", model="tiny", keep_completions=True)
    frame = pd.read_parquet(tmp_path / "s.parquet")
    assert frame["n"].tolist() == [2, 2, 2] and set(frame["engine"]) == {"hf"}
    assert ((frame["mean_tokens"] >= 1) & (frame["mean_tokens"] <= 8)).all()
    completions = pd.read_parquet(completions_path(tmp_path / "s.parquet"))
    assert len(completions) == 6 and summary.tokens_now == completions["num_tokens"].sum()


# ------------------------------------------------------------------------------------ resume and safety


def test_existing_output_or_parts_are_not_overwritten_without_resume(tmp_path):
    problems = known_problems([0.5, 0.5])
    out = tmp_path / "s.parquet"
    config = ScoreConfig(samples=4)
    score(problems, KnownRateEngine(), config, out, model="m")
    with pytest.raises(ScoringError, match="already exists.*--resume"):
        score(problems, KnownRateEngine(), config, out, model="m")
    # resuming a finished run draws nothing more
    engine = KnownRateEngine()
    summary = score(problems, engine, config, out, model="m", resume=True)
    assert engine.calls == [] and summary.problems == 2 and summary.scored_now == 0


def test_resume_skips_finished_chunks_and_cleans_up_a_killed_write(tmp_path):
    problems = known_problems([0.2] * 7)
    out = tmp_path / "s.parquet"
    config = ScoreConfig(samples=4, chunk_size=2)

    class Dies(KnownRateEngine):
        def generate(self, prompts, n, sampling):
            if len(self.calls) == 2:
                raise KeyboardInterrupt  # the third chunk never finishes
            return super().generate(prompts, n, sampling)

    with pytest.raises(KeyboardInterrupt):
        score(problems, Dies(), config, out, model="m", keep_completions=True)
    parts = parts_dir(out)
    before = pd.concat([pd.read_parquet(p) for p in sorted(parts.glob("part-*[0-9].parquet"))])
    assert len(before) == 4
    # debris of a kill -9 in the middle of a write: a temporary file and a completions part with no scores part
    (parts / "part-000002.parquet.tmp").write_bytes(b"half a parquet")
    pd.DataFrame({"id": ["q4"], "sample": [0]}).to_parquet(parts / "part-000002.completions.parquet")

    engine = KnownRateEngine()
    summary = score(problems, engine, config, out, model="m", resume=True, keep_completions=True)
    assert sum(prompts for prompts, _, _ in engine.calls) == 3  # only the unfinished problems
    frame = pd.read_parquet(out)
    assert frame["id"].tolist() == problems["id"].tolist()
    pd.testing.assert_frame_equal(frame.iloc[:4].reset_index(drop=True), before.reset_index(drop=True))
    completions = pd.read_parquet(completions_path(out))
    assert len(completions) == 28 and not completions.duplicated(["id", "sample"]).any()
    assert summary.scored_now == 3 and not parts.exists()


def test_default_chunks_give_small_runs_progress_and_large_runs_big_batches(tmp_path):
    assert [ScoreConfig().chunk_size_for(n) for n in (5, 68, 200, 40_000)] == [8, 8, 20, 64]
    assert ScoreConfig(chunk_size=3).chunk_size_for(40_000) == 3
    engine = KnownRateEngine()
    score(known_problems([0.5] * 100), engine, ScoreConfig(samples=2), tmp_path / "s.parquet", model="m")
    assert [prompts for prompts, _, _ in engine.calls] == [10] * 10


def test_resume_with_other_settings_is_refused(tmp_path):
    problems = known_problems([0.2] * 4)
    out = tmp_path / "s.parquet"

    class Dies(KnownRateEngine):
        def generate(self, prompts, n, sampling):
            if self.calls:
                raise KeyboardInterrupt
            return super().generate(prompts, n, sampling)

    with pytest.raises(KeyboardInterrupt):
        score(problems, Dies(), ScoreConfig(samples=4, chunk_size=2), out, model="m")
    with pytest.raises(ScoringError, match="settings differ.*samples: was 4, now 8"):
        score(problems, KnownRateEngine(), ScoreConfig(samples=8, chunk_size=2), out, model="m", resume=True)
    with pytest.raises(ScoringError, match="interrupted run left"):
        score(problems, KnownRateEngine(), ScoreConfig(samples=4, chunk_size=2), out, model="m")


# ------------------------------------------------------------------------------------------------ shards


def test_shards_partition_the_problems_deterministically():
    ids = [f"id-{i}" for i in range(300)]
    masks = [Shard(i, 3).mask(ids) for i in range(3)]
    assert (np.sum(masks, axis=0) == 1).all()
    assert all(60 < mask.sum() < 140 for mask in masks)
    assert (Shard(1, 3).mask(ids[::-1]) == masks[1][::-1]).all()  # depends on the id, not the row
    assert Shard.parse("2/3") == Shard(2, 3)
    for bad in ("3/3", "a/b", "1"):
        with pytest.raises(ScoringError, match="shard"):
            Shard.parse(bad)


def test_merge_joins_shards_and_refuses_gaps_overlaps_and_mixed_settings(tmp_path):
    problems = known_problems([0.5] * 20)
    config = ScoreConfig(samples=2)
    paths = []
    for i in range(3):
        path = tmp_path / f"s{i}.parquet"
        score(problems, KnownRateEngine(), config, path, model="m", shard=Shard(i, 3), keep_completions=True)
        paths.append(path)
    merged = merge_shards(paths, tmp_path / "all.parquet", problems=problems)
    assert merged["id"].tolist() == problems["id"].tolist()
    assert read_metadata(tmp_path / "all.parquet")["shard"] is None
    assert len(pd.read_parquet(completions_path(tmp_path / "all.parquet"))) == 40

    with pytest.raises(ScoringError, match=r"missing shard\(s\) 2/3"):
        merge_shards(paths[:2], tmp_path / "x.parquet")
    with pytest.raises(ScoringError, match="both shard 1/3"):
        merge_shards([paths[0], paths[1], paths[1], paths[2]], tmp_path / "x.parquet")
    other = tmp_path / "other.parquet"
    score(problems, KnownRateEngine(), ScoreConfig(samples=3), other, model="m", shard=Shard(2, 3))
    with pytest.raises(ScoringError, match="scored differently.*samples"):
        merge_shards([paths[0], paths[1], other], tmp_path / "x.parquet")
    unsharded = tmp_path / "whole.parquet"
    score(problems, KnownRateEngine(), config, unsharded, model="m")
    with pytest.raises(ScoringError, match="not a shard"):
        merge_shards([unsharded], tmp_path / "x.parquet")
    truncated = pd.read_parquet(paths[2]).iloc[1:]
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(truncated, preserve_index=False)
    table = table.replace_schema_metadata(pq.read_schema(paths[2]).metadata)
    pq.write_table(table, tmp_path / "cut.parquet")
    with pytest.raises(ScoringError, match="gap"):
        merge_shards([paths[0], paths[1], tmp_path / "cut.parquet"], tmp_path / "x.parquet")
    with pytest.raises(ScoringError, match="different problems file"):
        merge_shards(paths, tmp_path / "x.parquet", problems=known_problems([0.5] * 21))


# ------------------------------------------------------------------------------------------ bad problems


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"id": ["a"], "problem": ["p"]}), "missing column.*answer"),
        (pd.DataFrame({"id": pd.Series([], dtype=str), "problem": pd.Series([], dtype=str),
                       "answer": pd.Series([], dtype=str)}), "no problems"),
        (pd.DataFrame({"id": ["a", "b"], "problem": ["p", " "], "answer": ["1", "2"]}), "row 1: field 'problem' is empty"),
        (pd.DataFrame({"id": ["a", "b", "a"], "problem": ["p", "q", "r"], "answer": ["1", "2", "3"]}),
         "rows 0 and 2: duplicate id 'a'"),
    ],
)
def test_bad_problems_files_name_the_file_row_and_field(tmp_path, frame, message):
    path = tmp_path / "problems.parquet"
    frame.to_parquet(path)
    with pytest.raises(ScoringError, match=message) as error:
        load_problems(path)
    assert str(path) in str(error.value)


def test_missing_or_unreadable_problems_file(tmp_path):
    with pytest.raises(ScoringError, match="does not exist"):
        load_problems(tmp_path / "nope.parquet")
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(ScoringError, match="cannot read problems file"):
        load_problems(tmp_path / "junk.parquet")
