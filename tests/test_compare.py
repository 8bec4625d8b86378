"""compare: every arm gets identical compute, one harness evaluates all, the difference says when it is noise."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from curriculum import buckets as lib
from curriculum.cli import cli
from curriculum.compare import CompareError, CompareSettings, run_compare, write_compare_report
from curriculum.evaluation import EvalSettings


@pytest.fixture(scope="module")
def tiny_buckets(tiny_model_dir, tmp_path_factory):
    """Eight arithmetic problems in two buckets, as `curriculum build` writes them (scored by the tiny model)."""
    root = tmp_path_factory.mktemp("compare")
    problems = pd.DataFrame({"id": [f"p{i}" for i in range(8)], "problem": [f"What is {i} + 2?" for i in range(8)],
                             "answer": [str(i + 2) for i in range(8)], "source": "unit"})
    passes = [3, 3, 3, 3, 1, 1, 1, 1]
    scores = pd.DataFrame({"id": problems["id"], "n": 4, "k": passes, "pass_rate": [p / 4 for p in passes],
                           "ci_low": 0.0, "ci_high": 1.0, "mean_tokens": 8.0, "truncated_frac": 0.0,
                           "model": str(tiny_model_dir), "engine": "hf", "sampling": "{}"})
    lib.save(lib.build(scores, problems, lib.BuildConfig(num_buckets=2)), root / "buckets")
    bench = root / "mini.jsonl"
    bench.write_text("".join(json.dumps({"problem": f"What is {i} * 2?", "answer": str(2 * i)}) + "\n"
                             for i in range(4)))
    return root, bench


def _settings(root, bench, model, **overrides) -> CompareSettings:
    values = dict(
        buckets=str(root / "buckets"), out=str(root / "out"), model=str(model), schedules=["linear", "uniform"],
        seeds=[0], steps=2, num_generations=2,
        train={"grpo": {"max_completion_length": 8, "per_device_train_batch_size": 2, "save_steps": 1,
                        "report_to": "none"}},
        benchmarks=[str(bench)], eval=EvalSettings(samples=2, max_tokens=6),
    )
    return CompareSettings(**{**values, **overrides})


@pytest.fixture(scope="module")
def compared(tiny_buckets, tiny_model_dir):
    root, bench = tiny_buckets
    events = []
    comparison = run_compare(_settings(root, bench, tiny_model_dir), on_event=lambda arm, m: events.append((arm, m)))
    return root, bench, comparison, events


def test_every_arm_gets_the_same_compute(compared):
    _, _, comparison, _ = compared
    arms = comparison["arms"]
    assert [(a["schedule"], a["seed"]) for a in arms] == [("linear", 0), ("uniform", 0)]
    assert len({(a["steps"], a["completions"], a["completions_per_step"]) for a in arms}) == 1
    assert arms[0]["steps"] == 2 and arms[0]["completions"] == 4
    assert comparison["compute"]["total_steps"] == 4 and comparison["compute"]["total_completion_tokens"] > 0


def test_one_harness_and_a_paired_difference(compared):
    root, _, comparison, _ = compared
    evals = [json.loads((root / "out" / s / "seed-0" / "eval.json").read_text()) for s in ("linear", "uniform")]
    assert evals[0]["sampling"] == evals[1]["sampling"] and evals[0]["benchmarks"]["mini"]["problems"]["id"] == \
        evals[1]["benchmarks"]["mini"]["problems"]["id"]
    diff = comparison["differences"]["linear"]["mini"]
    accuracy = comparison["accuracy"]
    assert diff["mean"] == pytest.approx(accuracy["linear"]["mini"]["mean"] - accuracy["uniform"]["mini"]["mean"])
    assert diff["ci_low"] <= diff["mean"] <= diff["ci_high"] and "significant" in diff


def test_report_shows_curves_accuracy_difference_and_compute(compared):
    root, _, comparison, _ = compared
    report = (root / "out" / "report" / "report.md").read_text()
    assert "accuracy.png" in report and "curves.png" in report
    assert "Compute used" in report and "linear - uniform" in report
    if not comparison["differences"]["linear"]["mini"]["significant"]:
        assert "not significant" in report
    assert (root / "out" / "report" / "curves.png").read_bytes().startswith(b"\x89PNG")


def test_rerun_skips_finished_arms(compared, tiny_model_dir):
    root, bench, _, _ = compared
    events = []
    run_compare(_settings(root, bench, tiny_model_dir), on_event=lambda arm, m: events.append(m))
    assert events and all("already done" in m for m in events)


def test_unfair_settings_are_refused(tiny_buckets, tiny_model_dir):
    root, bench = tiny_buckets
    with pytest.raises(CompareError, match="baseline"):
        _settings(root, bench, tiny_model_dir, baseline="adaptive")
    with pytest.raises(CompareError, match="set by compare itself"):
        _settings(root, bench, tiny_model_dir, train={"grpo": {"max_steps": 9}})
    with pytest.raises(CompareError, match="two distinct"):
        _settings(root, bench, tiny_model_dir, schedules=["linear"])
    with pytest.raises(CompareError, match="comparison.json"):
        write_compare_report(root / "nowhere")


def test_cli_report_only_and_bad_input(compared):
    root, _, _, _ = compared
    result = CliRunner().invoke(cli, ["compare", "--buckets", str(root / "buckets"), "--steps", "2",
                                      "--out", str(root / "out"), "--report-only"])
    assert result.exit_code == 0, result.output
    bad = CliRunner().invoke(cli, ["compare", "--buckets", str(root / "buckets"), "--steps", "2", "--seeds", "a",
                                   "--out", str(root / "x")])
    assert bad.exit_code != 0 and "comma-separated integers" in bad.output and "Traceback" not in bad.output
