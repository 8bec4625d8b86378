"""`curriculum train` end to end on the tiny model: GRPO steps under the linear schedule, metrics, checkpoints
with curriculum state, resume that draws the same next batch, and one clear message per kind of bad input."""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from curriculum.cli import cli
from curriculum.prompts import DEFAULT_TEMPLATE

# A few GRPO steps with a reward that varies with completion length (cosine), a learning rate and weight
# decay large enough that every trained parameter visibly moves, short completions.
FAST = ["--reward", "cosine:1,accuracy:1", "--num-generations", "4",
        "--set", "max_completion_length=16", "--set", "learning_rate=1e-3", "--set", "warmup_steps=0",
        "--set", "weight_decay=0.1", "--set", "save_steps=2", "--set", "seed=7",
        # the plain generate path: these tests are about schedules, checkpoints and parameters; vLLM in
        # training has its own tests (test_fast_generation.py), and CliRunner's stdout has no fileno for vLLM
        "--set", "fast_generation=off"]


def make_buckets(path: Path, model: str, *, n: int = 24, num_buckets: int = 3, template=DEFAULT_TEMPLATE) -> Path:
    """A buckets directory as `curriculum build` writes it: sums with answers, buckets and pass rates."""
    from datasets import Dataset

    rng = random.Random(0)
    rows = []
    for i in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        bucket = i % num_buckets
        rows.append({"id": f"sum-{i}", "prompt": template.messages(f"What is {a}+{b}?"),
                     "answer": str(a + b), "bucket": bucket, "pass_rate": 0.9 - 0.8 * bucket / (num_buckets - 1)})
    Dataset.from_list(rows).save_to_disk(str(path))
    (path / "manifest.json").write_text(json.dumps({"model": str(model), "strategy": "quantile",
                                                    "num_buckets": num_buckets}))
    return path


def train_cli(*args) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["train", *map(str, args)])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]


def step_records(out: Path) -> list[dict]:
    return [r for r in records(out) if "loss" in r]


@pytest.fixture(scope="module")
def buckets(tiny_model_dir, tmp_path_factory) -> Path:
    return make_buckets(tmp_path_factory.mktemp("buckets") / "buckets", tiny_model_dir)


@pytest.fixture(scope="module")
def linear_run(tiny_model_dir, buckets, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "linear"
    code, output = train_cli("--buckets", buckets, "--model", tiny_model_dir, "--schedule", "linear",
                             "--max-steps", 4, *FAST, "--set", "log_completions=true", "--out", out)
    assert code == 0, output
    return out


def test_grpo_steps_under_the_linear_schedule(linear_run):
    steps = step_records(linear_run)
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    assert all(math.isfinite(r["loss"]) for r in steps)
    first = steps[0]
    # TRL's numbers, the curriculum's, and the run's cost, side by side in every record
    for key in ("reward", "completions/mean_length", "completions/clipped_ratio", "curriculum/progress",
                "curriculum/bucket_0_weight", "curriculum/zero_adv_share", "perf/trainable_params",
                "perf/optimizer_state_mib", "perf/peak_memory_mib", "perf/step_time_s"):
        assert key in first, key
    assert [r["curriculum/progress"] for r in steps] == [0.0, 0.25, 0.5, 0.75]
    assert first["perf/optimizer_state_mib"] > 0 and first["perf/peak_memory_mib"] > 0


def test_run_directory_holds_checkpoints_with_curriculum_state_config_and_model(linear_run, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    for step in (2, 4):
        state = json.loads((linear_run / f"checkpoint-{step}" / "curriculum_state.json").read_text())
        assert state
    assert (linear_run / "config.yaml").is_file()
    assert list((linear_run / "runs").rglob("events.out.tfevents*")), "TensorBoard events missing"
    model = AutoModelForCausalLM.from_pretrained(linear_run)
    assert model.config.num_hidden_layers == 4


def test_resume_continues_at_the_next_step_with_the_same_batches(linear_run, tmp_path):
    resumed = tmp_path / "resumed"
    shutil.copytree(linear_run, resumed)
    shutil.rmtree(resumed / "checkpoint-4")
    for step in (3, 4):
        (resumed / "completions" / f"completions_{step:05d}.parquet").unlink()
    # the run's own config.yaml supplies buckets, model and every setting
    code, output = train_cli("--resume", "--out", resumed)
    assert code == 0, output
    assert "checkpoint-2" in output
    assert [r["step"] for r in step_records(resumed)] == [1, 2, 3, 4]
    assert (resumed / "checkpoint-4" / "curriculum_state.json").is_file()
    for step in (3, 4):
        ours = pd.read_parquet(resumed / "completions" / f"completions_{step:05d}.parquet")
        theirs = pd.read_parquet(linear_run / "completions" / f"completions_{step:05d}.parquet")
        assert ours["prompt"].astype(str).tolist() == theirs["prompt"].astype(str).tolist()
        assert ours["completion"].astype(str).tolist() == theirs["completion"].astype(str).tolist()
    uninterrupted = {r["step"]: r for r in step_records(linear_run)}
    for r in step_records(resumed)[2:]:
        assert r["reward"] == pytest.approx(uninterrupted[r["step"]]["reward"])
        assert r["curriculum/progress"] == uninterrupted[r["step"]]["curriculum/progress"]


def test_help_documents_the_options():
    result = CliRunner().invoke(cli, ["train", "--help"])
    assert result.exit_code == 0
    for option in ("--buckets", "--schedule", "--lora", "--train-layers", "--layer-schedule", "--set", "--resume"):
        assert option in result.output


# ---------------------------------------------------------------------------------------------------- bad input


@pytest.fixture
def other_model_buckets(tmp_path, tiny_model_dir) -> Path:
    path = make_buckets(tmp_path / "other", tiny_model_dir, n=6)
    (path / "manifest.json").write_text(json.dumps({"model": "someone/another-model"}))
    return path


@pytest.mark.parametrize("extra, message", [
    (["--schedule", "zigzag"], "zigzag"),
    (["--train-layers", "last:9"], "asks for 9 layers but the model has 4"),
    (["--train-layers", "2-7"], "names layer 7 but the model has 4 layers"),
    (["--layer-schedule", "rotate:5@2"], "only 4 layers"),
    (["--lora", "r=8,targets=qkv_proj"], "'qkv_proj' match no module"),
    (["--set", "max_prompt_length=20"], "every prompt in the buckets exceeds max_prompt_length=20"),
    (["--set", "learnig_rate=1e-5"], "did you mean learning_rate"),
    (["--reward", "accuracy:1,speed:2"], "unknown reward 'speed'"),
])
def test_bad_input_gets_one_clear_message(extra, message, buckets, tiny_model_dir, tmp_path):
    code, output = train_cli("--buckets", buckets, "--model", tiny_model_dir, "--max-steps", 1, *FAST,
                             *extra, "--out", tmp_path / "out")
    assert code != 0
    assert message in output
    assert "Traceback" not in output


def test_unknown_schedule_lists_the_known_ones(buckets, tiny_model_dir, tmp_path):
    code, output = train_cli("--buckets", buckets, "--model", tiny_model_dir, "--schedule", "zigzag",
                             "--out", tmp_path / "out")
    assert code != 0 and "linear" in output and "uniform" in output


def test_buckets_scored_by_another_model_are_refused(other_model_buckets, tiny_model_dir, tmp_path):
    code, output = train_cli("--buckets", other_model_buckets, "--model", tiny_model_dir, "--out", tmp_path / "o")
    assert code != 0
    assert "scored with someone/another-model" in output and "--allow-model-mismatch" in output


def test_unwritable_output_is_reported(buckets, tiny_model_dir, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, output = train_cli("--buckets", buckets, "--model", tiny_model_dir, "--out", blocker / "run")
    assert code != 0 and "cannot write to output directory" in output and "Traceback" not in output


def test_missing_buckets_and_nothing_to_resume(buckets, tiny_model_dir, tmp_path):
    code, output = train_cli("--buckets", tmp_path / "nope", "--model", tiny_model_dir, "--out", tmp_path / "o")
    assert code != 0 and "does not exist" in output
    code, output = train_cli("--buckets", buckets, "--model", tiny_model_dir, "--resume", "--out", tmp_path / "o")
    assert code != 0 and "nothing to resume" in output


def test_an_old_run_is_not_overwritten_without_resume(linear_run, buckets, tiny_model_dir):
    code, output = train_cli("--buckets", buckets, "--model", tiny_model_dir, "--out", linear_run)
    assert code != 0 and "--resume" in output


def test_long_prompts_are_dropped_with_a_note(buckets, tiny_model_dir):
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    from curriculum.training.run import drop_long_prompts

    dataset = load_from_disk(str(buckets))
    long_row = {**dataset[0], "id": "long", "prompt": DEFAULT_TEMPLATE.messages("1+" * 400 + "1")}
    dataset = dataset.add_item(long_row)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    kept, note = drop_long_prompts(dataset, tokenizer, 512)
    assert len(kept) == len(dataset) - 1 and "long" not in kept["id"]
    assert "1 of 25 prompts exceed max_prompt_length=512" in note and "long" in note


# ---------------------------------------------------------------------------------------------------- start-up warnings


def start_up_warnings(buckets: Path, model: Path, out: Path, caplog, *overrides: str) -> list[str]:
    from curriculum.training.config import TrainSettings, apply_overrides
    from curriculum.training.run import prepare

    # fast_generation off: the tiny model's head size has no vLLM CPU kernel, which `auto` would warn about too
    settings = apply_overrides(TrainSettings(), ["report_to=none", "max_steps=1", "fast_generation=off", *overrides])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="curriculum.training.run"):
        prepare(buckets, str(model), out, settings)
    return [r.getMessage() for r in caplog.records if r.name == "curriculum.training.run"]


def test_start_up_warns_about_rewarded_tags_the_prompt_never_asks_for_and_a_thin_batch(
        buckets, tiny_model_dir, tmp_path, caplog):
    warnings = start_up_warnings(buckets, tiny_model_dir, tmp_path / "bad", caplog, "reward=accuracy:1,format:1",
                                 "num_generations=4", "per_device_train_batch_size=4")
    assert len(warnings) == 2, warnings
    assert "each optimizer step sees 1 prompt(s)" in warnings[0]
    assert "reward 'format' checks for <think> </think> <answer> </answer>, which the prompt never asks for" in \
        warnings[1]


def test_start_up_is_quiet_for_a_good_recipe(tiny_model_dir, tmp_path, caplog):
    from curriculum.prompts import THINK_ANSWER_TEMPLATE

    # the defaults (accuracy on the boxed prompt, 4 prompts per step) ...
    default_buckets = make_buckets(tmp_path / "boxed", tiny_model_dir, n=8)
    assert start_up_warnings(default_buckets, tiny_model_dir, tmp_path / "default", caplog) == []
    # ... and the format reward on buckets built with the prompt that asks for its tags
    tagged = make_buckets(tmp_path / "tagged", tiny_model_dir, n=8, template=THINK_ANSWER_TEMPLATE)
    assert start_up_warnings(tagged, tiny_model_dir, tmp_path / "tagged-run", caplog, "reward=accuracy:1,format:1",
                             "max_prompt_length=1024") == []


def test_prefilled_think_must_match_the_chat_template(tiny_model_dir):
    from transformers import AutoTokenizer

    from curriculum.prompts import THINK_ANSWER_TEMPLATE
    from curriculum.rewards import get_reward
    from curriculum.training.run import check_prompt_tags
    from tests.test_rewards import R1_DISTILL_TEMPLATE

    prompts = [THINK_ANSWER_TEMPLATE.messages("What is 1+1?")]
    plain, prefilling = AutoTokenizer.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)
    prefilling.chat_template = R1_DISTILL_TEMPLATE
    fmt, fmt_prefilled = get_reward("format"), get_reward("format", prefilled_think=True)
    assert check_prompt_tags([fmt], prompts, plain) == []
    assert check_prompt_tags([fmt_prefilled], prompts, prefilling) == []
    (message,) = check_prompt_tags([fmt], prompts, prefilling)
    assert "opens the assistant turn with <think>" in message and "prefilled_think: true" in message
    (message,) = check_prompt_tags([fmt_prefilled], prompts, plain)
    assert "does not open the assistant turn" in message
    # a template that writes <think> covers that tag, but not the ones only the prompt can ask for
    boxed = [DEFAULT_TEMPLATE.messages("What is 1+1?")]
    (message,) = check_prompt_tags([fmt_prefilled], boxed, prefilling)
    assert "checks for </think> <answer> </answer>," in message
