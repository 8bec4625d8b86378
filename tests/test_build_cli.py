"""`curriculum build` end to end on synthetic score files: the dataset on disk, manifest, histogram, and
one clear error line (no traceback) for bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from curriculum.cli import cli


@pytest.fixture()
def run_dir(tmp_path):
    """40 scored problems with known pass rates: 2 solved, 2 unsolved, the rest 1/8 .. 7/8."""
    count = 40
    ids = [f"p{i:03d}" for i in range(count)]
    k = np.array([8, 8, 0, 0] + [1 + i % 7 for i in range(count - 4)])
    pd.DataFrame({"id": ids, "problem": [f"What is {i} + 1?" for i in range(count)],
                  "answer": [str(i + 1) for i in range(count)], "source": "synthetic"}
                 ).to_parquet(tmp_path / "problems.parquet")
    pd.DataFrame({"id": ids, "n": 8, "k": k, "pass_rate": k / 8, "ci_low": np.clip(k / 8 - 0.3, 0, 1),
                  "ci_high": np.clip(k / 8 + 0.3, 0, 1), "mean_tokens": np.linspace(50, 400, count),
                  "truncated_frac": 0.0, "model": "HuggingFaceTB/SmolLM2-135M-Instruct", "engine": "hf",
                  "sampling": json.dumps({"temperature": 0.7})}).to_parquet(tmp_path / "scores.parquet")
    return tmp_path


def invoke(*args):
    return CliRunner().invoke(cli, ["build", *map(str, args)])


def test_build_writes_dataset_manifest_and_histogram(run_dir):
    from datasets import load_from_disk

    out = run_dir / "buckets"
    result = invoke("--scores", run_dir / "scores.parquet", "--problems", run_dir / "problems.parquet",
                    "--buckets", 4, "--strategy", "thresholds", "--edges", "0.8,0.5,0.2", "--out", out)
    assert result.exit_code == 0, result.output
    assert "dropped 2 solved, 2 unsolved" in result.output

    dataset = load_from_disk(str(out))
    assert {"id", "prompt", "answer", "bucket", "pass_rate", "problem"} <= set(dataset.column_names)
    assert len(dataset) == 36
    expected = {rate: 0 if rate >= 0.8 else 1 if rate >= 0.5 else 2 if rate >= 0.2 else 3
                for rate in dataset["pass_rate"]}
    assert all(expected[rate] == bucket for rate, bucket in zip(dataset["pass_rate"], dataset["bucket"], strict=True))
    prompt = dataset[0]["prompt"]
    assert prompt[0]["role"] == "system" and prompt[-1]["role"] == "user" and "\\boxed{}" in prompt[-1]["content"]

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["strategy"] == "thresholds" and manifest["edges"] == [0.8, 0.5, 0.2]
    assert manifest["counts"] == [sum(1 for b in dataset["bucket"] if b == k) for k in range(4)]
    assert manifest["dropped"]["solved"] == 2 and manifest["dropped"]["unsolved"] == 2
    assert manifest["buckets"][3]["pass_rate_max"] == 0.125
    assert manifest["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert (out / "pass_rates.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_prompt_config_and_holding_back_uncertain_scores(run_dir):
    from datasets import load_from_disk

    config = run_dir / "prompt.yaml"
    config.write_text("system: null\ninstruction: 'Q: {problem} Answer in \\boxed{{}}.'\n")
    out = run_dir / "buckets"
    result = invoke("--scores", run_dir / "scores.parquet", "--problems", run_dir / "problems.parquet",
                    "--prompt-config", config, "--max-ci-width", 0.55, "--buckets", 2, "--out", out)
    assert result.exit_code == 0, result.output
    dataset = load_from_disk(str(out))
    assert dataset[0]["prompt"] == [{"role": "user", "content": f"Q: {dataset[0]['problem']} Answer in \\boxed{{}}."}]
    held = pd.read_parquet(out / "held_back.parquet")
    assert len(held) > 0 and len(held) + len(dataset) == 36
    assert json.loads((out / "manifest.json").read_text())["dropped"]["uncertain"] == len(held)


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s.drop(columns=["pass_rate"]), "missing column(s) pass_rate"),
    (lambda s: s.assign(pass_rate=s["pass_rate"].where(s.index != 5, 1.25)),
     "row 5 (id p005): column pass_rate = 1.25 is outside [0, 1]"),
])
def test_bad_scores_file_is_one_clear_error(run_dir, mutate, message):
    scores = run_dir / "bad_scores.parquet"
    mutate(pd.read_parquet(run_dir / "scores.parquet")).to_parquet(scores)
    result = invoke("--scores", scores, "--problems", run_dir / "problems.parquet", "--out", run_dir / "b")
    assert result.exit_code != 0
    assert f"Error: {scores}: {message}" in result.output
    assert isinstance(result.exception, SystemExit)  # a click error, not a crash
    assert not (run_dir / "b").exists()


def test_usage_errors(run_dir):
    common = ["--scores", run_dir / "scores.parquet", "--problems", run_dir / "problems.parquet"]
    result = invoke(*common, "--strategy", "thresholds", "--out", run_dir / "b")
    assert result.exit_code == 2 and "needs --edges" in result.output
    result = invoke(*common, "--strategy", "thresholds", "--edges", "0.5", "--buckets", 4, "--out", run_dir / "b")
    assert result.exit_code == 2 and "makes 2 buckets" in result.output
    (run_dir / "full").mkdir()
    (run_dir / "full" / "x").write_text("")
    result = invoke(*common, "--out", run_dir / "full")
    assert result.exit_code == 2 and "--force" in result.output
    result = invoke("--scores", run_dir / "none.parquet", "--problems", run_dir / "problems.parquet",
                    "--out", run_dir / "b")
    assert result.exit_code == 1 and "scores file" in result.output and "does not exist" in result.output


# ---------------------------------------------------------------------------------------------- difficulty columns


@pytest.fixture()
def pool_dir(tmp_path):
    """A problem pool that ships its difficulty: a solve rate in percent and a level 1-5 as text, in parquet
    and JSONL; two rows at 0% and 100% (zero signal), one without a level."""
    count = 40
    rates = [0, 100] + [float(5 + (i * 37) % 90) for i in range(count - 2)]
    levels = [str(1 + i % 5) for i in range(count)]
    levels[7] = None
    frame = pd.DataFrame({"id": [f"q{i:03d}" for i in range(count)], "problem": [f"What is {i} * 2?" for i in range(count)],
                          "answer": [str(2 * i) for i in range(count)], "source": "pool", "solve_rate": rates,
                          "level": levels})
    frame.to_parquet(tmp_path / "pool.parquet")
    frame.to_json(tmp_path / "pool.jsonl", orient="records", lines=True)
    return tmp_path


def test_pass_rate_column_in_percent_builds_without_scores(pool_dir):
    from datasets import load_from_disk

    out = pool_dir / "b"
    result = invoke("--problems", pool_dir / "pool.parquet", "--difficulty-column", "solve_rate",
                    "--difficulty-scale", 100, "--buckets", 4, "--out", out)
    assert result.exit_code == 0, result.output
    assert "n, k and intervals unknown" in result.output and "dropped 1 solved, 1 unsolved" in result.output
    dataset = load_from_disk(str(out))
    assert len(dataset) == 38 and set(dataset["n"]) == {0} and set(dataset["k"]) == {0}
    assert all(0 < rate < 1 for rate in dataset["pass_rate"])
    assert set(dataset["ci_low"]) == {None} and set(dataset["ci_high"]) == {None}  # unknown, not 0
    manifest = json.loads((out / "manifest.json").read_text())
    difficulty = manifest["difficulty"]
    assert {k: difficulty[k] for k in ("source", "column", "kind", "scale", "file")} == {
        "source": "column", "column": "solve_rate", "kind": "pass_rate", "scale": 100,
        "file": str(pool_dir / "pool.parquet")}
    assert manifest["scores"] is None and manifest["problems"] == str(pool_dir / "pool.parquet")
    assert manifest["zero_signal_filter"] == "applied" and (out / "pass_rates.png").is_file()


def test_rating_column_from_jsonl_with_numeric_strings(pool_dir):
    from datasets import load_from_disk

    out = pool_dir / "b"
    result = invoke("--problems", pool_dir / "pool.jsonl", "--difficulty-column", "level", "--difficulty-kind",
                    "rating", "--buckets", 4, "--out", out)
    assert result.exit_code == 0, result.output
    assert "no zero-signal filter" in result.output and "pass rate unknown" in result.output
    dataset = load_from_disk(str(out))
    assert len(dataset) == 39  # the row without a level (1 of 40 = 2.5% <= 5%) is dropped, nothing else
    levels = pd.DataFrame({"rating": dataset["rating"], "bucket": dataset["bucket"]})
    assert (levels.groupby("rating")["bucket"].nunique() == 1).all()
    assert levels.groupby("rating")["bucket"].first().is_monotonic_increasing
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["difficulty"]["kind"] == "rating" and manifest["dropped"]["missing_difficulty"] == 1
    assert manifest["dropped"]["solved"] == manifest["dropped"]["unsolved"] == 0
    assert manifest["edges_unit"] == "rating" and manifest["histogram"] == "ratings.png"
    assert (out / "ratings.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert manifest["ties"]["requested_buckets"] == 4 and manifest["ties"]["made_buckets"] == 4


@pytest.mark.parametrize("column, values, options, message", [
    ("solve_rate", {3: "n/a?"}, ["--difficulty-scale", 100], "row 3 (id q003): column solve_rate = 'n/a?' is not a number"),
    ("solve_rate", {5: 150.0}, ["--difficulty-scale", 100],
     "row 5 (id q005): column solve_rate = 150.0 is outside [0, 100] (difficulty scale 100)"),
    ("solve_rate", {}, [], "row 1 (id q001): column solve_rate = 100.0 is outside [0, 1] (difficulty scale 1; "
                           "percentages need scale 100) (38 more row(s) like it)"),
    ("solve_rate", {4: -3.0}, ["--difficulty-scale", 100], "row 4 (id q004): column solve_rate = -3.0 is outside"),
    ("level", {1: None, 2: None, 3: None}, ["--difficulty-kind", "rating"],
     "column level has no value in 4 of 40 rows (10.0%, more than the 5.0% allowed); first at row 1 (id q001)"),
    ("level", {9: "hard"}, ["--difficulty-kind", "rating"], "row 9 (id q009): column level = 'hard' is not a number"),
])
def test_bad_difficulty_values_are_one_error_line(pool_dir, column, values, options, message):
    frame = pd.read_parquet(pool_dir / "pool.parquet")
    frame[column] = frame[column].astype(object)
    for row, value in values.items():
        frame.loc[row, column] = value
    problems = pool_dir / "bad.parquet"
    if column == "solve_rate" and any(isinstance(value, str) for value in values.values()):
        frame = frame.astype({column: str})  # a text column: numeric strings pass, the bad one does not
    frame.to_parquet(problems)
    out = pool_dir / "b"
    result = invoke("--problems", problems, "--difficulty-column", column, *options, "--out", out)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {problems}: ") and message in lines[0], result.output
    assert not out.exists()


def test_more_missing_values_are_allowed_on_request(pool_dir):
    frame = pd.read_parquet(pool_dir / "pool.parquet")
    frame.loc[[1, 2, 3], "level"] = None
    frame.to_parquet(pool_dir / "holes.parquet")
    result = invoke("--problems", pool_dir / "holes.parquet", "--difficulty-column", "level", "--difficulty-kind",
                    "rating", "--difficulty-max-missing", 0.1, "--out", pool_dir / "b")
    assert result.exit_code == 0, result.output
    assert "dropped 4 missing_difficulty" in result.output


def test_difficulty_option_combinations_are_refused_with_one_line(run_dir, pool_dir):
    pool = ["--problems", pool_dir / "pool.parquet"]
    cases = [
        (["--scores", run_dir / "scores.parquet", *pool, "--difficulty-column", "solve_rate"],
         "--scores and --difficulty-column are two sources of difficulty; give one"),
        ([*pool], "give --scores"),
        (["--scores", run_dir / "scores.parquet", "--problems", run_dir / "problems.parquet", "--difficulty-scale", 100],
         "--difficulty-scale describes --difficulty-column, which is not given"),
        ([*pool, "--difficulty-column", "level", "--difficulty-kind", "rating", "--difficulty-scale", 100],
         "--difficulty-scale applies to --difficulty-kind pass_rate"),
        ([*pool, "--difficulty-column", "solve_rate", "--difficulty-scale", 100, "--max-ci-width", 0.5],
         "a difficulty column has no intervals"),
        ([*pool, "--difficulty-column", "level", "--difficulty-kind", "rating", "--strategy", "thresholds",
          "--edges", "0.5"], "--strategy thresholds takes pass-rate --edges"),
    ]
    for args, message in cases:
        result = invoke(*args, "--out", pool_dir / "b")
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output
        assert not (pool_dir / "b").exists()


def test_help_documents_the_difficulty_and_tie_options():
    result = CliRunner().invoke(cli, ["build", "--help"])
    assert result.exit_code == 0
    for option in ("--difficulty-column", "--difficulty-kind", "--difficulty-scale", "--difficulty-max-missing",
                   "--ties", "pass_rate|rating", "[1|100]", "merge|length"):
        assert option in result.output


# ---------------------------------------------------------------------------------------------- ties (issue 12)


def test_four_sample_pass_rates_are_never_split_and_the_build_says_so(tmp_path):
    """The demo's case: 4 scoring samples give kept pass rates 0.25, 0.5, 0.75 only; 4 buckets asked."""
    from datasets import load_from_disk

    rng = np.random.default_rng(0)
    count = 200
    ids = [f"p{i:03d}" for i in range(count)]
    k = rng.binomial(4, rng.beta(1, 1, count))
    pd.DataFrame({"id": ids, "problem": [f"What is {i} + 1?" for i in range(count)],
                  "answer": [str(i + 1) for i in range(count)], "source": "synthetic"}).to_parquet(tmp_path / "p.parquet")
    pd.DataFrame({"id": ids, "n": 4, "k": k, "pass_rate": k / 4, "ci_low": 0.0, "ci_high": 1.0,
                  "mean_tokens": rng.normal(200, 30, count), "truncated_frac": 0.0, "model": "m", "engine": "hf",
                  "sampling": "{}"}).to_parquet(tmp_path / "s.parquet")
    common = ["--scores", tmp_path / "s.parquet", "--problems", tmp_path / "p.parquet", "--buckets", 4]

    result = invoke(*common, "--out", tmp_path / "merge")
    assert result.exit_code == 0, result.output
    assert ("ties: asked for 4 buckets; pass rates have 3 distinct values in the kept range; made 3 buckets"
            in result.output)
    dataset = load_from_disk(str(tmp_path / "merge"))
    frame = pd.DataFrame({"pass_rate": dataset["pass_rate"], "bucket": dataset["bucket"]})
    assert frame.groupby("pass_rate")["bucket"].nunique().max() == 1
    manifest = json.loads((tmp_path / "merge" / "manifest.json").read_text())
    assert manifest["num_buckets"] == 3 and len(manifest["counts"]) == 3 and manifest["edges"] == [0.625, 0.375]
    assert manifest["ties"]["rule"] == "merge" and manifest["ties"]["split"] == []

    result = invoke(*common, "--ties", "length", "--out", tmp_path / "length")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "length" / "manifest.json").read_text())
    assert manifest["num_buckets"] == 4 and manifest["ties"]["key"] == ["pass_rate", "mean_tokens"]
    assert manifest["ties"]["split"] and "ties broken by mean completion length" in result.output
    dataset = load_from_disk(str(tmp_path / "length"))
    frame = pd.DataFrame({"key": list(zip(dataset["pass_rate"], dataset["mean_tokens"], strict=True)),
                          "bucket": dataset["bucket"]})
    assert frame.groupby("key")["bucket"].nunique().max() == 1


def test_heldout_split_through_the_cli(run_dir):
    from datasets import load_from_disk

    out = run_dir / "buckets"
    result = invoke("--scores", run_dir / "scores.parquet", "--problems", run_dir / "problems.parquet",
                    "--buckets", 2, "--heldout", 6, "--seed", 3, "--out", out)
    assert result.exit_code == 0, result.output
    assert "held out 6 problems" in result.output and str(out / "heldout") in result.output
    train, held = load_from_disk(str(out)), load_from_disk(str(out / "heldout"))
    assert len(held) == 6 and len(train) == 36 - 6
    assert not set(train["id"]) & set(held["id"])
    manifest = json.loads((out / "heldout" / "manifest.json").read_text())
    assert manifest["role"] == "held out of training" and manifest["total"] == 6 and sum(manifest["counts"]) == 6
    assert manifest["heldout_of"] == "all kept problems" and manifest["strategy"] == "quantile"
    assert json.loads((out / "manifest.json").read_text())["config"]["heldout"] == 6
    too_many = invoke("--scores", run_dir / "scores.parquet", "--problems", run_dir / "problems.parquet",
                      "--buckets", 2, "--heldout", 40, "--out", run_dir / "b2")
    assert too_many.exit_code != 0 and "heldout: 40 leaves too little to train on" in too_many.output
    assert "Traceback" not in too_many.output


def test_the_prompt_template_travels_with_the_scores(run_dir):
    """Build reads the template `curriculum score` recorded; a different --prompt-config is refused in one line,
    and eval --buckets does the same with the buckets' manifest."""
    from datasets import load_from_disk

    from curriculum.scoring.store import _atomic_write_parquet

    scores = pd.read_parquet(run_dir / "scores.parquet")
    recorded = {"system": None, "instruction": "Solve: {problem}"}
    _atomic_write_parquet(scores, run_dir / "scores.parquet", metadata={"template": recorded})
    out = run_dir / "buckets"
    result = invoke("--scores", run_dir / "scores.parquet", "--problems", run_dir / "problems.parquet",
                    "--buckets", 2, "--out", out)
    assert result.exit_code == 0, result.output
    dataset = load_from_disk(str(out))
    assert dataset[0]["prompt"] == [{"role": "user", "content": f"Solve: {dataset[0]['problem']}"}]
    assert json.loads((out / "manifest.json").read_text())["prompt_template"] == recorded

    other = run_dir / "prompt.yaml"
    other.write_text("system: null\ninstruction: 'Q: {problem}'\n")
    refused = invoke("--scores", run_dir / "scores.parquet", "--problems", run_dir / "problems.parquet",
                     "--buckets", 2, "--prompt-config", other, "--out", run_dir / "other")
    assert refused.exit_code == 2 and "was made with the prompt template" in refused.output
    assert not (run_dir / "other").exists()

    evaluated = CliRunner().invoke(cli, ["eval", "--model", "no-such-model", "--buckets", str(out),
                                         "--prompt-config", str(other), "--out", str(run_dir / "eval.json")])
    assert evaluated.exit_code == 2 and "was made with the prompt template" in evaluated.output
