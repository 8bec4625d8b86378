"""Evaluation: interval arithmetic on known counts, pass@k, majority vote, and the harness end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from curriculum.evaluation import EvalSettings, EvaluationError, load_eval_set, summarize
from curriculum.stats import (
    bootstrap_interval,
    clustered_interval,
    majority_vote,
    paired_bootstrap_difference,
    pass_at_k,
    pass_k_values,
)

# ----------------------------------------------------------------------------------------------------------
# interval arithmetic on known counts


def test_clustered_interval_matches_hand_computation():
    # 4 problems, k = 4, correct counts 4, 0, 2, 2 -> rates 1, 0, .5, .5
    # mean .5; sd (ddof 1) = sqrt((.25 + .25 + 0 + 0) / 3) = sqrt(1/6); se = sqrt(1/6) / 2
    interval = clustered_interval([4, 0, 2, 2], 4)
    se = math.sqrt(1 / 6) / 2
    assert interval.mean == pytest.approx(0.5)
    assert interval.low == pytest.approx(0.5 - 1.959964 * se, abs=1e-6)
    assert interval.high == pytest.approx(0.5 + 1.959964 * se, abs=1e-6)


def test_bootstrap_over_problems_agrees_with_clustered_normal_interval_on_many_problems():
    counts = np.array([4] * 120 + [2] * 160 + [0] * 120)  # 400 problems, mean .5
    rates = counts / 4
    boot = bootstrap_interval(rates, resamples=4000, seed=1)
    normal = clustered_interval(counts, 4)
    assert boot.mean == pytest.approx(0.5)
    assert boot.low == pytest.approx(normal.low, abs=0.01)
    assert boot.high == pytest.approx(normal.high, abs=0.01)


def test_repeating_a_problem_k_times_does_not_narrow_the_interval():
    # k identical samples of each problem carry no more information than one sample: a binomial over all
    # n*k samples would be sqrt(k) times too narrow; the interval over problems is the same as for k = 1.
    outcomes = np.array([1] * 9 + [0] * 21, dtype=bool)
    one = summarize(outcomes[:, None], [[None]] * 30, seed=3)["avg_at_k"]
    repeated = summarize(np.repeat(outcomes[:, None], 8, axis=1), [[None] * 8] * 30, seed=3)["avg_at_k"]
    assert repeated == one
    binomial_half_width = 1.96 * math.sqrt(0.3 * 0.7 / (30 * 8))
    assert (repeated["ci_high"] - repeated["ci_low"]) / 2 > 1.8 * binomial_half_width


def test_constant_rates_give_a_zero_width_interval_and_empty_input_nan():
    interval = bootstrap_interval([0.25] * 50)
    assert (interval.mean, interval.low, interval.high) == (0.25, 0.25, 0.25)
    assert math.isnan(bootstrap_interval([]).mean)


def test_bootstrap_is_seeded():
    rates = np.random.default_rng(0).random(40)
    assert bootstrap_interval(rates, seed=7) == bootstrap_interval(rates, seed=7)
    assert bootstrap_interval(rates, seed=7) != bootstrap_interval(rates, seed=8)


@pytest.mark.parametrize(("n", "c", "k"), [(4, 1, 1), (4, 1, 2), (10, 3, 5), (16, 0, 4), (16, 13, 4), (200, 7, 64)])
def test_pass_at_k_is_the_unbiased_estimator(n, c, k):
    expected = 1 - math.comb(n - c, k) / math.comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_pass_at_1_is_the_fraction_correct_and_pass_at_k_rejects_bad_counts():
    assert pass_at_k(8, 3, 1) == pytest.approx(3 / 8)
    assert pass_at_k(4, 4, 4) == 1.0
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def test_pass_k_values_are_powers_of_two_and_k():
    assert pass_k_values(1) == [1]
    assert pass_k_values(4) == [1, 2, 4]
    assert pass_k_values(6) == [1, 2, 4, 6]


def test_majority_vote_groups_equal_answers_and_ignores_missing_ones():
    assert majority_vote(["3", "4", " 4", None], [True, False, False, False]) is False
    assert majority_vote(["$3$", None, None, "4"], [True, False, False, False]) is True  # tie: first seen wins
    assert majority_vote(["12", "12.", None], [True, True, False]) is True
    assert majority_vote([None, None], [False, False]) is False


def test_summarize_reports_avg_pass_and_majority():
    correct = np.array([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=bool)
    predicted = [["5", "5", "6", "6"], ["1", "2", "3", None], ["9", "9", "9", "9"]]
    result = summarize(correct, predicted, seed=0)
    assert result["n_problems"] == 3 and result["k"] == 4 and result["n_correct"] == 6
    assert result["avg_at_k"]["mean"] == pytest.approx(0.5)
    assert result["pass_at_k"]["1"]["mean"] == pytest.approx(0.5)
    assert result["pass_at_k"]["4"]["mean"] == pytest.approx(2 / 3)
    assert result["maj_at_k"]["mean"] == pytest.approx(2 / 3)  # "5" wins the 2-2 tie on problem 0
    assert result["avg_at_k"]["ci_low"] <= 0.5 <= result["avg_at_k"]["ci_high"]


def test_paired_bootstrap_difference_significance():
    same = np.full(40, 0.5)
    assert paired_bootstrap_difference(same, same) == {
        "mean": 0.0, "ci_low": 0.0, "ci_high": 0.0, "p_value": 1.0, "significant": False, "n_problems": 40}
    better = paired_bootstrap_difference(np.ones(40), np.r_[np.ones(20), np.zeros(20)])
    assert better["mean"] == pytest.approx(0.5) and better["significant"] and better["ci_low"] > 0
    noisy = paired_bootstrap_difference([1, 0, 1, 0, 1, 0], [0, 1, 1, 0, 0, 1])
    assert not noisy["significant"] and noisy["ci_low"] < 0 < noisy["ci_high"]
    with pytest.raises(ValueError):
        paired_bootstrap_difference([1, 0], [1])


def test_eval_settings_reject_nonsense():
    with pytest.raises(EvaluationError):
        EvalSettings(samples=4, temperature=0.0)
    with pytest.raises(EvaluationError):
        EvalSettings(samples=0)
    with pytest.raises(EvaluationError, match="unknown answer extraction 'boxd'"):
        EvalSettings(samples=2, extraction="boxd")
    assert EvalSettings(samples=2, extraction="boxed").extraction == "boxed"


# ----------------------------------------------------------------------------------------------------------
# problem sets


def test_benchmark_slice_is_the_first_rows_in_file_order(data_dir):
    first = load_eval_set("gsm8k", data_dir=data_dir, limit=5)
    again = load_eval_set("gsm8k", data_dir=data_dir, limit=5)
    assert len(first) == 5 and first["id"].tolist() == again["id"].tolist()
    assert first["answer"].iloc[0] == "18"


def test_unknown_benchmark_and_bad_file_are_clear_errors(tmp_path):
    with pytest.raises(EvaluationError, match="unknown benchmark 'gsm9k'"):
        load_eval_set("gsm9k")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"problem": "1+1", "answer": "2"}) + "\n" + json.dumps({"problem": "2+2", "answer": ""}) + "\n")
    with pytest.raises(EvaluationError, match="row 1"):
        load_eval_set(str(bad))
    with pytest.raises(EvaluationError, match="does not exist"):
        load_eval_set(str(tmp_path / "missing.jsonl"))


def test_eval_cli_reports_bad_input_without_traceback(tmp_path):
    from curriculum.cli import cli

    result = CliRunner().invoke(cli, ["eval", "--model", str(tmp_path), "--benchmarks", "nope",
                                      "--out", str(tmp_path / "e.json")])
    assert result.exit_code != 0
    assert "unknown benchmark 'nope'" in result.output
    assert "Traceback" not in result.output


# ----------------------------------------------------------------------------------------------------------
# the harness end to end on the tiny model


def _evaluate_tiny(model_dir, data_dir, tmp_path, seed, name):
    from curriculum.evaluation import evaluate, write_eval

    settings = EvalSettings(samples=3, limit=6, max_tokens=12, seed=seed, chunk_size=4)
    samples = tmp_path / f"{name}.samples.jsonl"
    result = evaluate(str(model_dir), ["gsm8k"], settings=settings, data_dir=data_dir, samples_path=samples)
    write_eval(result, tmp_path / f"{name}.json")
    return result, samples.read_text()


def _numbers(result: dict) -> dict:
    return {key: value for key, value in result.items() if key != "timing"}


def test_same_seed_gives_the_same_numbers_and_samples(tiny_model_dir, data_dir, tmp_path):
    first, first_samples = _evaluate_tiny(tiny_model_dir, data_dir, tmp_path, 5, "a")
    second, second_samples = _evaluate_tiny(tiny_model_dir, data_dir, tmp_path, 5, "b")
    assert json.dumps(_numbers(first), sort_keys=True) == json.dumps(_numbers(second), sort_keys=True)
    assert first_samples == second_samples
    other, other_samples = _evaluate_tiny(tiny_model_dir, data_dir, tmp_path, 6, "c")
    assert other_samples != first_samples  # the seed really drives sampling


def test_a_benchmark_can_carry_its_own_limit(tiny_model_dir, data_dir, tmp_path):
    """`gsm8k:3` takes 3 GSM8K problems while `limit` (2) still bounds the other sets: a study evaluates a
    slice of a large benchmark beside the whole of its own held-out file."""
    import pandas as pd

    from curriculum.evaluation import evaluate

    own = tmp_path / "mine.parquet"
    pd.DataFrame({"id": ["a", "b", "c"], "problem": ["1+1?", "2+2?", "3+3?"], "answer": ["2", "4", "6"]}).to_parquet(own)
    result = evaluate(str(tiny_model_dir), ["gsm8k:3", str(own)], settings=EvalSettings(samples=1, limit=2, max_tokens=4),
                      data_dir=data_dir)
    assert {name: r["n_problems"] for name, r in result["benchmarks"].items()} == {"gsm8k": 3, "mine": 2}
    with pytest.raises(EvaluationError, match="gsm8k:0: a benchmark's limit must be at least 1"):
        evaluate(str(tiny_model_dir), ["gsm8k:0"], settings=EvalSettings(samples=1), data_dir=data_dir)


def test_eval_json_records_the_harness(tiny_model_dir, data_dir, tmp_path):
    from curriculum.cli import cli

    out = tmp_path / "eval.json"
    result = CliRunner().invoke(cli, [
        "eval", "--model", str(tiny_model_dir), "--benchmarks", "gsm8k", "--limit", "4", "--samples", "2",
        "--max-tokens", "8", "--seed", "3", "--data-dir", str(data_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    assert saved["engine"] == "hf" and saved["k"] == 2 and saved["limit"] == 4 and saved["seed"] == 3
    assert saved["sampling"] == {"temperature": 0.6, "top_p": 0.95, "max_tokens": 8, "seed": 3}
    assert saved["dtype"] in ("float32", "bfloat16")  # the hf engine picks it per machine: recorded
    bench = saved["benchmarks"]["gsm8k"]
    assert bench["n_problems"] == 4 and bench["n_samples"] == 8 and set(bench["pass_at_k"]) == {"1", "2"}
    assert len(bench["problems"]["id"]) == 4 and sum(bench["statuses"].values()) == 8
    assert 0 <= bench["avg_at_k"]["ci_low"] <= bench["avg_at_k"]["mean"] <= bench["avg_at_k"]["ci_high"] <= 1
    lines = (tmp_path / "eval.samples.jsonl").read_text().splitlines()
    assert len(lines) == 8 and {"text", "predicted", "status"} <= set(json.loads(lines[0]))
    assert "gsm8k" in result.output and "avg@2" in result.output


def test_per_bucket_results_for_a_buckets_dataset(tiny_model_dir, tmp_path):
    import pandas as pd

    from curriculum import buckets as lib
    from curriculum.evaluation import evaluate

    problems = pd.DataFrame({"id": [f"p{i}" for i in range(6)], "problem": [f"What is {i} + {i}?" for i in range(6)],
                             "answer": [str(2 * i) for i in range(6)], "source": "unit"})
    passes = [3, 3, 2, 2, 1, 1]
    scores = pd.DataFrame({"id": problems["id"], "n": 4, "k": passes, "pass_rate": [p / 4 for p in passes],
                           "ci_low": 0.0, "ci_high": 1.0, "mean_tokens": 10.0, "truncated_frac": 0.0,
                           "model": "tiny", "engine": "hf", "sampling": "{}"})
    built = lib.build(scores, problems, lib.BuildConfig(num_buckets=3))
    lib.save(built, tmp_path / "heldout")
    # `limit` is for benchmarks: the held-out split is evaluated whole (its size was chosen when it was built)
    result = evaluate(str(tiny_model_dir), [], settings=EvalSettings(samples=2, max_tokens=6, limit=2),
                      buckets=tmp_path / "heldout")
    heldout = result["benchmarks"]["heldout"]
    assert set(heldout["per_bucket"]) == {"0", "1", "2"}
    assert sum(b["n_problems"] for b in heldout["per_bucket"].values()) == 6


@pytest.mark.slow
def test_smollm2_eval_is_reproducible_with_the_same_seed(smollm2_dir, data_dir, tmp_path):
    first, first_samples = _evaluate_real(smollm2_dir, data_dir, tmp_path, "a")
    second, second_samples = _evaluate_real(smollm2_dir, data_dir, tmp_path, "b")
    assert _numbers(first) == _numbers(second) and first_samples == second_samples


def _evaluate_real(model_dir, data_dir, tmp_path, name):
    from curriculum.evaluation import evaluate

    samples = tmp_path / f"{name}.samples.jsonl"
    settings = EvalSettings(samples=2, limit=4, max_tokens=48, seed=0)
    result = evaluate(str(model_dir), ["gsm8k"], settings=settings, data_dir=data_dir, samples_path=samples)
    return result, samples.read_text()
