"""The curriculum trainer is TRL's real GRPOTrainer on the tiny model: it draws from the curriculum sampler,
learns difficulty from the groups, logs `curriculum/*`, and resumes drawing exactly where it stopped."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from curriculum.buckets import BuildConfig, build

pytest.importorskip("trl")


@pytest.fixture(scope="module")
def buckets_dataset():
    """16 problems with known pass rates, built by the real bucketing into 4 buckets."""
    from datasets import Dataset

    count = 16
    ids = [f"q{i:02d}" for i in range(count)]
    problems = pd.DataFrame({"id": ids, "problem": [f"What is {i} + {i}?" for i in range(count)],
                             "answer": [str(2 * i) for i in range(count)], "source": "test"})
    k = [1 + i % 7 for i in range(count)]
    scores = pd.DataFrame({"id": ids, "n": 8, "k": k, "pass_rate": [x / 8 for x in k], "ci_low": 0.0,
                           "ci_high": 1.0, "mean_tokens": 10.0, "model": "tiny", "engine": "hf", "sampling": "{}"})
    result = build(scores, problems, BuildConfig(num_buckets=4))
    return Dataset.from_pandas(result.frame, preserve_index=False)


class Recorder:
    """A TRL reward function (1.0 when the completion holds a digit) that records the ids of each batch."""

    __name__ = "has_digit"

    def __init__(self):
        self.batches: list[list[str]] = []

    def __call__(self, prompts=None, completions=None, id=None, **kwargs):
        self.batches.append(list(id))
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [1.0 if re.search(r"\d", text) else 0.0 for text in texts]


def make_trainer(model_dir, dataset, out_dir, recorder, *, max_steps=6, save_steps=3, schedule="linear"):
    from transformers import AutoTokenizer
    from trl import GRPOConfig

    from curriculum.training.trainer import CurriculumGRPOTrainer

    args = GRPOConfig(
        output_dir=str(out_dir), use_cpu=True, report_to=[], bf16=False, seed=7,
        per_device_train_batch_size=4, num_generations=2, max_completion_length=6,
        max_steps=max_steps, save_steps=save_steps, logging_steps=1, learning_rate=1e-3,
        temperature=1.0, disable_tqdm=True,
    )
    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    return CurriculumGRPOTrainer(model=str(model_dir), reward_funcs=[recorder], args=args, train_dataset=dataset,
                                 processing_class=tokenizer, schedule=schedule)


def test_curriculum_trainer_logs_learns_and_resumes_identically(tiny_model_dir, buckets_dataset, tmp_path):
    first = Recorder()
    trainer = make_trainer(tiny_model_dir, buckets_dataset, tmp_path / "a", first)
    assert trainer._get_train_sampler() is trainer.curriculum_sampler
    trainer.train()
    assert len(first.batches) == 6
    # TRL's repeat structure: each drawn problem twice in a row (num_generations = 2), 2 problems per batch
    for batch in first.batches:
        assert len(batch) == 4 and batch[0] == batch[1] and batch[2] == batch[3] and batch[0] != batch[2]

    # linear competence starts inside bucket 0: the first batch comes only from the easiest bucket
    bucket_of = dict(zip(buckets_dataset["id"], buckets_dataset["bucket"], strict=True))
    assert {bucket_of[i] for i in first.batches[0]} == {0}

    logged = [entry for entry in trainer.state.log_history if "curriculum/progress" in entry]
    assert len(logged) == 6
    assert logged[0]["curriculum/progress"] == 0.0 and logged[-1]["curriculum/progress"] > 0.5
    assert all(0.0 <= entry["curriculum/zero_adv_share"] <= 1.0 for entry in logged)
    for entry in logged:
        weights = [entry[f"curriculum/bucket_{k}_weight"] for k in range(4)]
        assert sum(weights) == pytest.approx(1.0)
    assert any(key.startswith("curriculum/bucket_") and key.endswith("_reward") for key in logged[0])
    assert trainer.curriculum_sampler.difficulty.observations.sum() == 12  # 6 batches x 2 groups

    state_file = tmp_path / "a" / "checkpoint-3" / "curriculum_state.json"
    state = json.loads(state_file.read_text())
    assert sum(state["difficulty"]["observations"]) == 6  # what had been learned by step 3

    resumed = Recorder()
    trainer_b = make_trainer(tiny_model_dir, buckets_dataset, tmp_path / "b", resumed)
    trainer_b.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-3"))
    assert resumed.batches == first.batches[3:]
    # and it knows what the uninterrupted run knew about every problem
    assert (trainer_b.curriculum_sampler.difficulty.observations
            == trainer.curriculum_sampler.difficulty.observations).all()


def test_resume_without_curriculum_state_forgets_and_warns(tiny_model_dir, buckets_dataset, tmp_path, caplog):
    """The check above can fail: without the state file a resumed run starts its curriculum over."""
    first = Recorder()
    trainer = make_trainer(tiny_model_dir, buckets_dataset, tmp_path / "a", first, max_steps=4, save_steps=2)
    trainer.train()
    (tmp_path / "a" / "checkpoint-2" / "curriculum_state.json").unlink()
    resumed = make_trainer(tiny_model_dir, buckets_dataset, tmp_path / "b", Recorder(), max_steps=4, save_steps=2)
    resumed.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-2"))
    assert "has no curriculum_state.json" in caplog.text
    assert resumed.curriculum_sampler.difficulty.observations.sum() == 4  # only the 2 steps after resuming
    assert trainer.curriculum_sampler.difficulty.observations.sum() == 8
