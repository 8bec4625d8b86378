"""compare: every arm gets identical compute, one harness evaluates all, the difference says when it is noise."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from curriculum import buckets as lib
from curriculum.cli import cli
from curriculum.compare import (
    DONE,
    Arm,
    CompareError,
    CompareSettings,
    arm_compute,
    begun_first,
    bootstrap_curves,
    first_crossing,
    fmt_reach,
    read_study,
    rollouts_to_reach,
    run_compare,
    study_json,
    study_units,
    write_compare_report,
)
from curriculum.evaluation import EvalSettings
from curriculum.study_workers import core_slots, run_units_in_parallel, worker_environment


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


def test_compute_records_skipped_completions_and_the_median_step(tmp_path):
    # the study mixes runs trained with and without skip_zero_advantage, and resumed runs whose wall time counts
    # their restarts: the compute table must tell them apart
    rows = [{"step": 1, "perf/step_time_s": 40.0, "curriculum/completions_skipped": 0.5},
            {"step": 2, "perf/step_time_s": 90.0, "curriculum/completions_skipped": 0.25},
            {"step": 3, "perf/step_time_s": 42.0, "curriculum/completions_skipped": 0.15}]
    with_skip, without = tmp_path / "with", tmp_path / "without"
    for directory, keep in ((with_skip, True), (without, False)):
        directory.mkdir()
        (directory / "metrics.jsonl").write_text("".join(
            json.dumps(row if keep else {k: v for k, v in row.items() if k != "curriculum/completions_skipped"})
            + "\n" for row in rows))
    assert arm_compute(with_skip)["completions_skipped"] == 0.3  # the mean over steps, not the median
    assert arm_compute(with_skip)["median_step_s"] == 42.0
    assert arm_compute(without)["completions_skipped"] is None


def test_a_difference_counts_only_when_the_training_seeds_agree():
    # the bootstrap over problems holds the trained models fixed; three seeds that disagree in sign must not
    # pass as a difference between the arms however tight that interval is
    from scipy.stats import t, ttest_1samp

    from curriculum.compare import difference_verdict
    from curriculum.stats import seed_level_difference

    per_seed = [0.008, -0.042, 0.030]
    seeds = seed_level_difference(per_seed)
    reference = t.interval(0.95, df=2, loc=np.mean(per_seed), scale=np.std(per_seed, ddof=1) / np.sqrt(3))
    assert (seeds["ci_low"], seeds["ci_high"]) == pytest.approx(reference)
    assert seeds["p_value"] == pytest.approx(ttest_1samp(per_seed, 0.0).pvalue)
    assert not seeds["significant"] and seed_level_difference([0.02]) is None
    cell, sentence = difference_verdict(True, seeds)
    assert cell == "NOT significant over seeds" and "seeds disagree" in sentence
    assert difference_verdict(True, seed_level_difference([0.03, 0.04, 0.05]))[0] == "significant"
    assert difference_verdict(True, None)[0] == "significant"  # one seed: the only interval there is


def test_one_harness_and_a_paired_difference(compared):
    root, _, comparison, _ = compared
    evals = [json.loads((root / "out" / s / "seed-0" / "eval.json").read_text()) for s in ("linear", "uniform")]
    assert evals[0]["sampling"] == evals[1]["sampling"] and evals[0]["benchmarks"]["mini"]["problems"]["id"] == \
        evals[1]["benchmarks"]["mini"]["problems"]["id"]
    diff = comparison["differences"]["linear"]["mini"]
    accuracy = comparison["accuracy"]
    assert diff["mean"] == pytest.approx(accuracy["linear"]["mini"]["mean"] - accuracy["uniform"]["mini"]["mean"])
    assert diff["ci_low"] <= diff["mean"] <= diff["ci_high"] and "significant" in diff
    assert diff["over_seeds"] is None  # one seed: no interval over seeds
    assert comparison["harness"]["engine_decoders"] == [evals[0]["engine_decoder"]] and evals[0]["engine_decoder"]


def test_report_says_when_evaluations_came_from_different_sampling_loops(compared, tmp_path):
    # an eval file from before the loop was recorded (or from another loop) must not pass as the same harness
    root, bench, _, _ = compared
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    assert "names the same sampling loop" in (out / "report" / "report.md").read_text()
    path = out / "linear" / "seed-0" / "eval.json"
    old = json.loads(path.read_text())
    old.pop("engine_decoder")
    path.write_text(json.dumps(old))
    model = json.loads((out / "comparison.json").read_text())["settings"]["model"]
    run_compare(_settings(root, bench, model, out=str(out)))
    assert "engine_decoder" not in json.loads(path.read_text())  # the same settings: not evaluated again
    report = (out / "report" / "report.md").read_text()
    assert "different sampling loops" in report and "unrecorded" in report


def test_report_shows_curves_accuracy_difference_and_compute(compared):
    root, _, comparison, _ = compared
    report = (root / "out" / "report" / "report.md").read_text()
    assert "accuracy.png" in report and "curves.png" in report
    assert "Compute used" in report and "linear - uniform" in report and "completions skipped" in report
    assert "over seeds (t)" in report and "– (one seed)" in report
    # these arms train with the package's default beta = 0.04, whose KL term gives every completion a gradient:
    # the skip stays off, and the compute table says so rather than showing 0%
    assert [arm["completions_skipped"] for arm in comparison["arms"]] == [None, None]
    assert "| off |" in report
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


# --------------------------------------------------------------------------------------------------
# the rollouts-to-reach statistic, on hand-made curves with known answers


def _curve(values, seeds=2, problems=5):
    """(seeds, points, problems): every problem and seed at the given accuracy per point."""
    return np.tile(np.asarray(values, dtype=float)[None, :, None], (seeds, 1, problems))


def test_an_arm_at_half_the_rollouts_needs_half():
    x = np.array([0.0, 50.0, 100.0])
    result = rollouts_to_reach({"uniform": _curve([0.2, 0.4, 0.6]), "fast": _curve([0.2, 0.6, 0.7]),
                                "between": _curve([0.2, 0.5, 0.8]), "never": _curve([0.2, 0.3, 0.5])},
                               {"uniform": x, "fast": x, "between": x, "never": x}, "uniform",
                               offsets={"uniform": 0, "fast": 30, "between": 30, "never": 30}, resamples=200)
    fast = result["fast"]
    assert fast["target"] == pytest.approx(0.6)
    assert fast["median"] == pytest.approx(50) and fast["relative"]["median"] == pytest.approx(0.5)
    assert fast["ci_low"] == fast["ci_high"] == pytest.approx(50) and fast["reached_frac"] == 1.0
    assert fast["total"]["median"] == pytest.approx(80) and fast["total"]["relative"]["median"] == pytest.approx(0.8)
    assert result["between"]["median"] == pytest.approx(50 + 50 / 3)  # linear between 0.5 at 50 and 0.8 at 100
    assert result["uniform"]["median"] == pytest.approx(100) and result["uniform"]["relative"]["median"] == 1.0
    never = result["never"]
    assert never["median"] is None and never["ci_high"] is None and never["reached_frac"] == 0.0
    assert fmt_reach(never) == "not reached" and fmt_reach(fast) == "50 [50, 50]"


def test_rollouts_to_reach_interval_covers_the_noise():
    rng = np.random.default_rng(0)
    problems = rng.uniform(0.1, 0.9, size=40)  # problems differ; the arm gets there at half the compute
    base = np.stack([np.stack([0.5 * problems, 0.75 * problems, problems]) for _ in range(3)])
    fast = np.stack([np.stack([0.5 * problems, problems, 1.1 * problems]) for _ in range(3)])
    fast = fast + rng.normal(0, 0.05, size=fast.shape)
    x = np.array([0.0, 10.0, 20.0])
    result = rollouts_to_reach({"u": base, "c": fast}, {"u": x, "c": x}, "u", resamples=400)["c"]
    assert result["ci_low"] <= result["estimate"] <= result["ci_high"]
    assert result["relative"]["median"] == pytest.approx(0.5, abs=0.1) and result["reached_frac"] > 0.9
    draws = bootstrap_curves({"u": base, "c": fast}, resamples=50)
    assert draws["u"].shape == (50, 3)
    assert first_crossing(np.array([[0.7, 0.8]]), np.array([0.0, 5.0]), np.array([0.6]))[0] == 0.0  # at step 0


def test_per_arm_keys_that_must_be_shared_are_refused(tmp_path, tiny_buckets, tiny_model_dir):
    with pytest.raises(CompareError, match="arm 'linear' sets `learning_rate`.*every arm must share"):
        Arm.from_dict("linear", {"schedule": "linear", "learning_rate": 1e-5})
    with pytest.raises(CompareError, match="arm 'fast' sets `num_generations`"):
        Arm.from_dict("fast", {"schedule": "linear", "num_generations": 8})
    with pytest.raises(CompareError, match="did you mean online_difficulty"):
        Arm.from_dict("x", {"schedule": "linear", "online_dificulty": True})
    study = tmp_path / "study.yaml"
    study.write_text("steps: 2\narms:\n  a: {schedule: uniform}\n  b: {schedule: linear, reward: format:1}\n")
    with pytest.raises(CompareError, match="arm 'b' sets `reward`"):
        read_study(study)
    study.write_text("steps: 2\ntrain: {online_difficulty: false}\narms:\n  a: {schedule: uniform}\n"
                     "  b: {schedule: linear}\n")
    with pytest.raises(CompareError, match="per-arm setting"):
        read_study(study)
    root, bench = tiny_buckets
    with pytest.raises(CompareError, match="needs scoring"):
        _settings(root, bench, tiny_model_dir, arms={"a": {"schedule": "uniform", "needs_scoring": True},
                                                       "b": {"schedule": "linear"}}, baseline="a")
    with pytest.raises(CompareError, match="save_steps is set by compare"):
        _settings(root, bench, tiny_model_dir, eval_every=1)  # the recipe above sets save_steps itself
    study.write_text(f"steps: 2\nbuckets: {root / 'buckets'}\narms:\n  a: {{schedule: uniform}}\n"
                     "  b: {schedule: linear, grpo: {beta: 0.1}}\nbaseline: a\n")
    result = CliRunner().invoke(cli, ["compare", "--config", str(study), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "arm 'b' sets `grpo`" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------------
# a study from one command: 3 arms x 2 seeds, checkpoints every step, resumable


@pytest.fixture(scope="module")
def study(tiny_model_dir, tmp_path_factory):
    """A pool with solved and unsolved problems: `buckets-all` keeps them (uniform over all problems, no
    scoring needed), `buckets` drops them (needs the scores); the study file runs 3 arms from the CLI."""
    root = tmp_path_factory.mktemp("study")
    problems = pd.DataFrame({"id": [f"p{i}" for i in range(8)], "problem": [f"What is {i} + 3?" for i in range(8)],
                             "answer": [str(i + 3) for i in range(8)], "source": "unit"})
    passes = [4, 4, 3, 3, 1, 1, 0, 0]
    scores = pd.DataFrame({"id": problems["id"], "n": 4, "k": passes, "pass_rate": [p / 4 for p in passes],
                           "ci_low": 0.0, "ci_high": 1.0, "mean_tokens": 8.0, "truncated_frac": 0.0,
                           "model": str(tiny_model_dir), "engine": "hf", "sampling": "{}"})
    scores.to_parquet(root / "scores.parquet")
    lib.save(lib.build(scores, problems, lib.BuildConfig(num_buckets=2)), root / "buckets")
    lib.save(lib.build(scores, problems, lib.BuildConfig(num_buckets=2, drop_solved=False, drop_unsolved=False)),
             root / "buckets-all")
    bench = root / "mini.jsonl"
    bench.write_text("".join(json.dumps({"problem": f"What is {i} * 3?", "answer": str(3 * i)}) + "\n"
                             for i in range(3)))
    recipe = root / "study.yaml"
    recipe.write_text(f"""
model: {tiny_model_dir}
buckets: {root / 'buckets'}
scores: {root / 'scores.parquet'}
steps: 2
num_generations: 2
seeds: [0, 1]
eval_every: 1
benchmarks: [{bench}]
eval: {{samples: 2, max_tokens: 6}}
keep_optimizer_state: true  # the test below continues a run from checkpoint-1
train:
  fast_generation: "off"
  grpo: {{max_completion_length: 8, per_device_train_batch_size: 2, report_to: none}}
arms:
  uniform-all: {{schedule: uniform, online_difficulty: false, buckets: {root / 'buckets-all'}, needs_scoring: false}}
  uniform-filtered: {{schedule: uniform, online_difficulty: false}}
  linear-online: {{schedule: linear, online_difficulty: true}}
baseline: uniform-all
""")
    command = ["compare", "--config", str(recipe), "--out", str(root / "out"),
               "--study-json", str(root / "curriculum-study.json")]
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 0, result.output
    return root, command, result.output


def test_study_reports_curves_compute_and_statistics(study):
    root, _, output = study
    out = root / "out"
    comparison = json.loads((out / "comparison.json").read_text())
    summary = json.loads((out / "study.json").read_text())
    assert summary == json.loads((root / "curriculum-study.json").read_text())
    assert {"steps", "heldout_problems", "samples", "arms"} <= set(summary)
    assert summary["steps"] == 2 and summary["heldout_problems"] == 3 and summary["samples"] == 2
    assert list(summary["arms"]) == ["uniform-all", "uniform-filtered", "linear-online"]
    for name, arm in summary["arms"].items():
        assert {"seeds", "accuracy", "ci", "zero_adv_share", "train_rollouts", "scoring_rollouts"} <= set(arm)
        assert arm["seeds"] == [0, 1] and len(arm["per_seed"]) == 2
        assert arm["ci"][0] - 1e-9 <= arm["accuracy"] <= arm["ci"][1] + 1e-9
        assert arm["train_rollouts"] == 2 * 1 * 2  # steps x prompts per step x completions per prompt
        assert arm["scoring_rollouts"] == (0 if name == "uniform-all" else 8 * 4)  # sum of n in the scores
        assert arm["total_rollouts"] == arm["train_rollouts"] + arm["scoring_rollouts"]
        assert 0.0 <= arm["zero_adv_share"] <= 1.0
        curve = arm["curve"]
        assert curve["step"] == [0, 1, 2] and curve["train_rollouts"] == [0, 2, 4]
        assert curve["total_rollouts"] == [x + arm["scoring_rollouts"] for x in curve["train_rollouts"]]
        bands = zip(curve["ci_low"], curve["accuracy"], curve["ci_high"], strict=True)
        assert all(lo - 1e-9 <= mean <= hi + 1e-9 for lo, mean, hi in bands)
        reach = arm["rollouts_to_reach_baseline"]
        assert 0.0 <= reach["reached_frac"] <= 1.0 and "total" in reach
        assert (arm["difference"] is None) == (name == "uniform-all")
        assert (arm["difference_curve"] is None) == (name == "uniform-all")
        if arm["difference"] is not None:  # along the curve, each point paired with the baseline's at that step
            base = summary["arms"]["uniform-all"]
            along = arm["difference_curve"]
            assert along["step"] == [0, 1, 2] and along["mean"][0] == pytest.approx(0.0)
            assert along["mean"] == pytest.approx([a - b for a, b in zip(curve["accuracy"], base["curve"]["accuracy"],
                                                                         strict=True)])
            assert along["mean"][-1] == pytest.approx(arm["difference"]["mean"])
            assert [len(d) for d in along["per_seed"]] == [2, 2, 2]
            assert along["over_seeds"][-1]["n_seeds"] == 2 and arm["difference"]["over_seeds"]["n_seeds"] == 2
    assert summary["arms"]["uniform-all"]["curve"]["accuracy"][-1] == pytest.approx(summary["baseline_final_accuracy"])
    assert summary["arms"]["uniform-all"]["curve"]["accuracy"][0] == \
        summary["arms"]["linear-online"]["curve"]["accuracy"][0]  # step 0: the one untrained model
    for name in summary["arms"]:
        for seed in (0, 1):
            directory = out / name / f"seed-{seed}"
            assert (directory / "eval-step-1.json").exists() and (directory / "eval.json").exists()
            assert (directory / "checkpoint-1").is_dir()
    config = yaml.safe_load((out / "uniform-all" / "seed-0" / "config.yaml").read_text())
    assert config["buckets"].endswith("buckets-all") and config["train"]["online_difficulty"] is False
    assert config["resolved"]["grpo"]["save_steps"] == 1
    online = yaml.safe_load((out / "linear-online" / "seed-1" / "config.yaml").read_text())
    assert online["train"]["online_difficulty"] is True and online["train"]["schedule"] == "linear"
    assert online["resolved"]["grpo"]["seed"] == 1
    assert comparison["settings"]["eval_every"] == 1 and comparison["study"]["benchmark"] == "mini"
    report = (out / "report" / "report.md").read_text()
    assert "learning_curves.png" in report and "rollouts to reach" in report.lower()
    assert "Along the learning curve" in report and "over seeds (t)" in report
    assert "Mechanism: groups without signal" in report and "1.00x" in report  # the baseline against itself
    assert summary["scale_to_settle"] == comparison["study"]["scale_to_settle"]
    if summary["scale_to_settle"]:  # two seeds: the per-seed differences have a spread, unless they are equal
        assert "What scale would settle it" in report
    if summary["baseline_final_at_or_below_start"]:  # a random tiny model does not learn in 2 steps
        assert "say nothing" in report
    assert (out / "report" / "learning_curves.png").read_bytes().startswith(b"\x89PNG")
    assert "[19/19]" in output  # 6 trainings + 12 evaluations + the untrained model
    assert "rollouts to reach" in output


def test_study_rerun_trains_and_evaluates_nothing_and_resumes_an_interrupted_arm(study):
    root, command, _ = study
    out = root / "out"
    evals = sorted(out.glob("*/seed-*/eval*.json")) + [out / "base" / "eval.json"]
    before = {path: path.stat().st_mtime_ns for path in evals}
    again = CliRunner().invoke(cli, command)
    assert again.exit_code == 0, again.output
    assert "training 2 steps" not in again.output and "evaluating" not in again.output
    assert again.output.count("already done") == 19
    assert {path: path.stat().st_mtime_ns for path in evals} == before
    # an interruption after checkpoint-1: the done marker and the last checkpoint are gone
    directory = out / "linear-online" / "seed-1"
    (directory / DONE).unlink()
    shutil.rmtree(directory / "checkpoint-2", ignore_errors=True)
    resumed = CliRunner().invoke(cli, command)
    assert resumed.exit_code == 0, resumed.output
    assert "[linear-online/seed-1]" in resumed.output and "resuming from the last checkpoint" in resumed.output
    assert resumed.output.count("training 2 steps") == 1 and resumed.output.count("evaluating") == 1
    after = {path: path.stat().st_mtime_ns for path in evals}
    changed = [path for path in evals if after[path] != before[path]]
    assert changed == [directory / "eval.json"]  # checkpoint-1's evaluation was kept
    assert (directory / DONE).exists()


two_cores = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="two workers need two cores")


@two_cores
def test_workers_run_the_study_side_by_side_with_the_serial_files(study):
    """--workers 2: every unit in its own process on its own core, and the same files and fingerprints as
    the serial study (only the thread count differs, so the sampled tokens may)."""
    root, command, _ = study
    out = root / "out-workers"
    command = [*command[:command.index("--out")], "--out", str(out), "--workers", "2"]
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 0, result.output
    assert result.output.count("started on cores") == 7 and result.output.count("finished in") == 7
    assert "7 units on 2 workers" in result.output and "all done" in result.output
    serial = root / "out"
    for directory in [out / "base", *out.glob("*/seed-*")]:
        twin = serial / directory.relative_to(out)
        assert (directory / "worker.log").read_text().strip()
        for path in directory.glob("eval*.json"):
            assert json.loads(path.read_text())["fingerprint"] == json.loads((twin / path.name).read_text())["fingerprint"]
    markers = [json.loads(path.read_text()) for path in out.glob(f"*/seed-*/{DONE}")]
    assert len(markers) == 6 and all(marker["threads"] == 1 for marker in markers)
    assert {tuple(marker["cores"]) for marker in markers} == {tuple(s) for s in core_slots(2)}
    summary = json.loads((out / "study.json").read_text())
    assert summary["arms"].keys() == json.loads((serial / "study.json").read_text())["arms"].keys()
    again = CliRunner().invoke(cli, command)
    assert again.exit_code == 0 and "training 2 steps" not in again.output
    assert "finished in" in again.output  # each child found its unit done


@two_cores
def test_a_failed_worker_names_its_unit_and_log_and_the_others_finish(study, tmp_path):
    root, _, _ = study
    values, train = read_study(root / "study.yaml")
    settings = CompareSettings(out=str(tmp_path / "out"), train=train, workers=2, **values)
    with pytest.raises(CompareError, match=r"nope/seed-0 failed: .*no arm named 'nope'.* \(log: .*worker.log\)"):
        run_units_in_parallel(settings, [("base", None), ("nope", 0)], emit=lambda unit, message: None)
    assert (tmp_path / "out" / "base" / "eval.json").exists()  # the other unit finished


def _workers_of(parent: int) -> set[int]:
    """The pids of the study workers `parent` started (from /proc: no extra dependency)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if ppid == parent and b"study_workers" in (stat.parent / "cmdline").read_bytes():
                found.add(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue  # a process that ended while we looked
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@two_cores
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_stopping_the_study_stops_its_workers(study, tmp_path, how):
    """A stopped `compare` must not leave workers running: a rerun would start the same units beside them.
    SIGTERM: the parent terminates them; SIGKILL: they notice their parent is gone and exit."""
    root, command, _ = study
    long = tmp_path / "long.yaml"  # runs that outlast the test's patience, unless they are stopped
    long.write_text((root / "study.yaml").read_text().replace("steps: 2\n", "steps: 1000\n")
                    .replace("eval_every: 1\n", "eval_every: 500\n"))
    command = ["compare", "--config", str(long), "--out", str(tmp_path / "out"), "--workers", "2"]
    parent = subprocess.Popen([sys.executable, "-c", "from curriculum.cli import main; main()", *command],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: set[int] = set()
    for _ in range(600):
        workers = _workers_of(parent.pid)
        if len(workers) == 2 or parent.poll() is not None:
            break
        time.sleep(0.1)
    assert len(workers) == 2, "the study did not start two workers"
    parent.send_signal(how)
    assert parent.wait(timeout=60) != 0
    deadline = time.monotonic() + 10  # the parent's cleanup, or a worker's check every POLL_S seconds
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers), "a worker outlived its study"


def test_core_slots_split_the_cores_and_refuse_more_workers_than_cores():
    assert core_slots(2, [0, 1]) == [[0], [1]]
    assert core_slots(2, [0, 1, 2, 3, 4]) == [[0, 1, 2], [3, 4]]
    assert core_slots(1, [4, 5]) == [[4, 5]]
    with pytest.raises(CompareError, match="3 runs at once need at least 3 cores"):
        core_slots(3, [0, 1])
    env = worker_environment([2, 3], {"RANK": "1", "WORLD_SIZE": "2", "PATH": "/bin"})
    assert env["OMP_NUM_THREADS"] == "2" and env["VLLM_CPU_OMP_THREADS_BIND"] == "2,3"
    assert "RANK" not in env and "WORLD_SIZE" not in env and env["PATH"] == "/bin"
    ports = {worker_environment([core])["MASTER_PORT"] for core in (0, 1)}
    assert len(ports) == 2 and env["MASTER_ADDR"] == "localhost"  # each child its own rendezvous port
    with pytest.raises(CompareError, match="workers must be a positive integer"):
        CompareSettings(buckets="b", out="o", workers=0)


def test_status_shows_where_a_study_stands_unit_by_unit(study, tmp_path):
    root, command, _ = study
    done = CliRunner().invoke(cli, [*command, "--status"])
    assert done.exit_code == 0, done.output
    assert "7/7 units done" in done.output and "mini" in done.output
    status = json.loads((root / "out" / "status.json").read_text())
    assert [row["state"] for row in status["units"]] == ["done"] * 7
    assert all(row["evaluated"] == row["points"] == (1 if row["unit"] == "base" else 2) for row in status["units"])
    # a copy of the study with one run cut back to its first checkpoint, and its final evaluation gone
    copy = tmp_path / "out"
    shutil.copytree(root / "out", copy)
    directory = copy / "linear-online" / "seed-1"
    (directory / DONE).unlink()
    (directory / "eval.json").unlink()
    metrics = (directory / "metrics.jsonl").read_text().splitlines()
    (directory / "metrics.jsonl").write_text("\n".join(line for line in metrics if '"step": 2' not in line) + "\n")
    shutil.rmtree(copy / "uniform-all" / "seed-1")
    (copy / "base" / "eval.json").unlink()
    (copy / "base" / "eval.journal.jsonl").write_text('{"key": "an evaluation stopped half-way"}\n')
    partial = CliRunner().invoke(cli, [*command[:command.index("--out")], "--out", str(copy), "--status"])
    assert partial.exit_code == 0, partial.output
    states = {row["unit"]: row for row in json.loads((copy / "status.json").read_text())["units"]}
    assert states["uniform-all/seed-1"]["state"] == "not started"
    assert states["linear-online/seed-1"]["state"] == "training (1/2)" and states["linear-online/seed-1"]["evaluated"] == 1
    assert states["linear-online/seed-1"]["accuracy"] == {}
    assert states["base"]["state"] == "evaluating"  # its journal of finished chunks is there
    assert "4/7 units done; rerun without --status to continue" in partial.output


def test_so_far_compares_the_finished_runs_of_a_study_still_running(study, tmp_path):
    """A long study shows what it says so far: seeds the baseline finished, the arms finished at all of them,
    paired seed by seed and as many runs as that allows; nothing runs, and the study's own comparison is left
    alone."""
    root, command, _ = study
    copy = tmp_path / "out"
    shutil.copytree(root / "out", copy)
    (copy / "linear-online" / "seed-1" / "eval.json").unlink()  # seed 1 of one arm is still being evaluated
    partial = [*command[:command.index("--out")], "--out", str(copy)]
    before = (copy / "comparison.json").read_text()

    result = CliRunner().invoke(cli, [*partial, "--so-far", "--study-json", str(tmp_path / "interim.json")])
    assert result.exit_code == 0, result.output
    assert "so far: 4 of 6 runs (arms uniform-all, uniform-filtered; seeds [0, 1])" in result.output
    summary = json.loads((tmp_path / "interim.json").read_text())  # marked interim, with the finished arms only
    assert list(summary["arms"]) == ["uniform-all", "uniform-filtered"] and summary["so_far"]["runs_planned"] == 6
    interim = json.loads((copy / "so-far" / "comparison.json").read_text())
    assert [row["arm"] for row in interim["arms"]] == ["uniform-all"] * 2 + ["uniform-filtered"] * 2
    assert interim["settings"]["seeds"] == [0, 1] and "linear-online" not in interim["accuracy"]
    assert (copy / "so-far" / "report" / "report.md").read_text().startswith("# So far (4 of 6 runs)")
    assert (copy / "comparison.json").read_text() == before
    assert not (copy / "linear-online" / "seed-1" / "eval.json").exists()  # nothing was evaluated

    # the baseline a seed ahead of every other arm: its newest seed waits, rather than every other arm
    (copy / "uniform-filtered" / "seed-1" / "eval.json").unlink()
    result = CliRunner().invoke(cli, [*partial, "--so-far"])
    assert result.exit_code == 0, result.output
    assert "so far: 3 of 6 runs (arms uniform-all, uniform-filtered, linear-online; seeds [0])" in result.output

    # the baseline's seed 1 not finished: seed 0 only, with every arm finished there
    (copy / "uniform-all" / "seed-1" / DONE).unlink()
    result = CliRunner().invoke(cli, [*partial, "--so-far"])
    assert result.exit_code == 0, result.output
    assert "so far: 3 of 6 runs (arms uniform-all, uniform-filtered, linear-online; seeds [0])" in result.output

    for seed in (0, 1):
        shutil.rmtree(copy / "uniform-filtered" / f"seed-{seed}")
        shutil.rmtree(copy / "linear-online" / f"seed-{seed}")
    result = CliRunner().invoke(cli, [*partial, "--so-far"])
    assert result.exit_code != 0 and "nothing to compare yet" in result.output


def test_report_only_rewrites_the_study_json(study, tmp_path):
    root, _, _ = study
    result = CliRunner().invoke(cli, ["compare", "--out", str(root / "out"), "--report-only",
                                      "--study-json", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    comparison = json.loads((root / "out" / "comparison.json").read_text())
    assert json.loads((tmp_path / "s.json").read_text()) == json.loads(json.dumps(study_json(comparison)))


def test_finished_runs_drop_optimizer_state_and_refuse_to_continue_without_it(tmp_path, tiny_buckets, tiny_model_dir):
    from curriculum.compare import _train_arm, drop_optimizer_state

    root, bench = tiny_buckets
    settings = _settings(root, bench, tiny_model_dir, out=str(tmp_path / "out"),
                         train={"grpo": {"max_completion_length": 8, "per_device_train_batch_size": 2}}, eval_every=1)
    checkpoint = tmp_path / "run" / "checkpoint-1"
    checkpoint.mkdir(parents=True)
    (checkpoint / "optimizer.pt").write_bytes(b"x")
    (checkpoint / "model.safetensors").write_bytes(b"x")
    drop_optimizer_state(checkpoint)
    assert sorted(p.name for p in checkpoint.iterdir()) == ["model.safetensors"]
    drop_optimizer_state(tmp_path / "run" / "checkpoint-9")  # absent: nothing to do

    def never(*args, **kwargs):
        raise AssertionError("must not train")

    with pytest.raises(CompareError, match="no optimizer state"):
        _train_arm(settings, settings.arms[0], 0, tmp_path / "run", emit=lambda m: None, counter="", train=never)


def test_the_committed_study_file_loads_and_has_the_issue_s_power():
    """studies/curriculum-study.yaml: at least 4 arms x 3 seeds x 60 steps of 4 prompts x 8 completions, uniform
    over all problems as the baseline, a held-out file and a GSM8K-test slice, k >= 4."""
    from pathlib import Path

    from curriculum.compare import read_study

    settings, train = read_study(Path(__file__).resolve().parents[1] / "studies" / "curriculum-study.yaml")
    CompareSettings(out="unused", train=train, **settings)  # what compare checks before the first run
    assert len(settings["arms"]) >= 4 and len(settings["seeds"]) >= 3 and settings["steps"] >= 60
    grpo = train["grpo"]
    assert settings["num_generations"] >= 8
    assert grpo["per_device_train_batch_size"] * grpo["gradient_accumulation_steps"] // settings["num_generations"] >= 4
    assert settings["baseline"] == "uniform-all" and settings["eval"]["samples"] >= 4
    assert settings["primary"] == "heldout" and "gsm8k:100" in settings["benchmarks"]
    assert settings["workers"] == 2  # two runs at once, one core each


def test_a_resumed_study_finishes_the_runs_it_began_before_starting_new_ones(tiny_buckets, tiny_model_dir, tmp_path):
    """After an arm is added to a study, the run that was half-trained goes first, not after the new arm's
    earlier seeds: the study's existing arms finish (and can be compared) as soon as possible."""
    root, bench = tiny_buckets
    settings = _settings(root, bench, tiny_model_dir, out=str(tmp_path / "out"), seeds=[0, 1])
    units = study_units(settings)
    assert begun_first(settings, units) == units  # nothing begun: the planned order, seed by seed
    (tmp_path / "out" / "uniform" / "seed-1" / "checkpoint-1").mkdir(parents=True)
    (tmp_path / "out" / "linear" / "seed-1").mkdir(parents=True)
    (tmp_path / "out" / "linear" / "seed-1" / "metrics.jsonl").write_text('{"step": 1}\n')
    reordered = begun_first(settings, units)
    assert reordered[:2] == [("linear", 1), ("uniform", 1)]
    assert reordered[2:] == [unit for unit in units if unit not in reordered[:2]]


def test_zero_advantage_share_by_thirds_of_training_with_an_interval_over_seeds(tmp_path):
    """The mechanism table: each run's share averaged within early/middle/late thirds, then over seeds; the
    run-level share gets a Student-t interval over seeds."""
    from scipy import stats as scipy_stats

    from curriculum.compare import _zero_advantage_summary

    rows = []
    for seed, shares in enumerate([[0.5, 0.5, 0.25, 0.25, 0.0, 0.0], [0.75, 0.25, 0.5, 0.5, 0.5, 0.5]]):
        directory = tmp_path / f"seed-{seed}"
        directory.mkdir()
        (directory / "metrics.jsonl").write_text("".join(
            json.dumps({"step": step, "curriculum/zero_adv_share": share}) + "\n"
            for step, share in enumerate(shares, start=1)))
        rows.append({"dir": str(directory)})
    summary = _zero_advantage_summary(rows)
    assert [phase["steps"] for phase in summary["zero_adv_by_phase"]] == [[1, 2], [3, 4], [5, 6]]
    assert [phase["per_seed"] for phase in summary["zero_adv_by_phase"]] == [[0.5, 0.5], [0.25, 0.5], [0.0, 0.5]]
    assert [phase["share"] for phase in summary["zero_adv_by_phase"]] == [0.5, 0.375, 0.25]
    assert summary["zero_adv_share_per_seed"] == [0.25, 0.5] and summary["zero_adv_share"] == 0.375
    low, high = scipy_stats.t.interval(0.95, df=1, loc=0.375, scale=scipy_stats.sem([0.25, 0.5]))
    assert summary["zero_adv_share_ci"] == pytest.approx([low, high])


def test_seeds_needed_match_the_textbook_paired_t_test_and_grow_as_the_effect_shrinks():
    """Reference values of a two-sided paired t-test at 5% and 80% power (Cohen's tables, as G*Power gives
    them): 10 pairs for an effect of one standard deviation, 34 for half of one."""
    from curriculum.stats import pooled_seed_spread, seeds_for_paired_difference

    assert seeds_for_paired_difference(1.0, 1.0) == 10 and seeds_for_paired_difference(2.0, 1.0) == 34
    needed = [seeds_for_paired_difference(0.046, effect) for effect in (0.04, 0.03, 0.02)]
    assert needed == sorted(needed) and needed[0] < needed[-1]
    assert seeds_for_paired_difference(1.0, 0.001, max_seeds=1000) is None
    spread, df = pooled_seed_spread([[0.01, 0.03], [0.0, 0.04, 0.02], [0.5]])  # each arm about its own mean
    assert df == 3 and spread == pytest.approx(((0.0002 + 0.0008) / 3) ** 0.5)


def test_scale_to_settle_pools_the_per_seed_differences_at_each_step():
    from curriculum.compare import scale_to_settle
    from curriculum.stats import seeds_for_paired_difference

    arms = {"uniform": {"difference_curve": None},
            "linear": {"difference_curve": {"per_seed": [[0.0, 0.0], [0.02, 0.06], [0.01, -0.03]]}},
            "online": {"difference_curve": {"per_seed": [[0.0, 0.0], [0.04, 0.0], [0.05, 0.01]]}}}
    rows = scale_to_settle(arms, [0, 20, 40])
    assert [row["step"] for row in rows] == [20, 40]  # step 0 is the untrained model for every arm
    assert rows[0]["df"] == 2 and rows[0]["spread"] == pytest.approx((4 * 0.0004 / 2) ** 0.5)
    assert rows[1]["seeds_needed"]["0.03"] == seeds_for_paired_difference(rows[1]["spread"], 0.03)

    from curriculum.compare import _report_scale
    from curriculum.reports import Document

    doc = Document("study")
    _report_scale(doc, {"baseline": "uniform", "scale_to_settle": rows})
    markdown = doc.to_markdown(Path("."))
    assert "## What scale would settle it" in markdown
    assert f"| 40 | {100 * rows[1]['spread']:.1f} (2) | {rows[1]['seeds_needed']['0.02']:,} |" in markdown
