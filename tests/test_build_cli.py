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
