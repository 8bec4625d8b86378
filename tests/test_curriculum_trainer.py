"""The curriculum trainer is TRL's real GRPOTrainer on the tiny model: it draws from the curriculum sampler,
learns difficulty from the groups, logs `curriculum/*`, resumes drawing exactly where it stopped, and skips the
forward and backward pass of micro-batches without signal without changing the weights."""

from __future__ import annotations

import itertools
import json
import math

import pytest

from curriculum.buckets import BuildConfig, build
from tests.tiny_model import Recorder, sums_with_known_pass_rates

pytest.importorskip("trl")


@pytest.fixture(scope="module")
def buckets_dataset():
    """16 problems with known pass rates, built by the real bucketing into 4 buckets."""
    from datasets import Dataset

    problems, scores = sums_with_known_pass_rates(16)
    result = build(scores, problems, BuildConfig(num_buckets=4))
    return Dataset.from_pandas(result.frame, preserve_index=False)


def make_trainer(model_dir, dataset, out_dir, recorder, *, max_steps=6, save_steps=3, schedule="linear",
                 reward_funcs=None, reward_weights=None, grpo=None, **options):
    from transformers import AutoTokenizer
    from trl import GRPOConfig

    from curriculum.training.trainer import CurriculumGRPOTrainer

    settings = dict(
        output_dir=str(out_dir), use_cpu=True, report_to=[], bf16=False, seed=7,
        per_device_train_batch_size=4, num_generations=2, max_completion_length=6,
        max_steps=max_steps, save_steps=save_steps, logging_steps=1, learning_rate=1e-3,
        temperature=1.0, disable_tqdm=True, reward_weights=reward_weights,
    )
    args = GRPOConfig(**{**settings, **(grpo or {})})
    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    return CurriculumGRPOTrainer(model=str(model_dir), reward_funcs=reward_funcs or [recorder], args=args,
                                 train_dataset=dataset, processing_class=tokenizer, schedule=schedule, **options)


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


def observed(trainer):
    difficulty = trainer.curriculum_sampler.difficulty
    return difficulty.observations.tolist(), difficulty.successes.tolist(), difficulty.shift


@pytest.mark.parametrize(("grpo", "max_steps", "save_steps"), [
    ({}, 9, 1),  # 8 chunks per pass, one per step: checkpoints 1..8 cover a pass, 9 the next one
    ({"gradient_accumulation_steps": 2}, 5, 1),  # 4 chunks per pass, one per step of 2 micro-batches
    ({"steps_per_generation": 2}, 9, 2),  # a generation spans 2 steps: checkpoints on its boundaries only
], ids=["ga1", "ga2", "spg2"])
def test_resume_at_every_checkpoint_draws_what_the_uninterrupted_run_drew(
        tiny_model_dir, buckets_dataset, tmp_path, grpo, max_steps, save_steps):
    """accelerate reads a batch ahead, so a checkpoint's sampler has drawn one chunk more than was used; at the
    second-to-last step of a pass that looked like a finished pass and the resumed run drew anew."""
    first = Recorder()
    trainer = make_trainer(tiny_model_dir, buckets_dataset, tmp_path / "a", first, max_steps=max_steps,
                           save_steps=save_steps, grpo={**grpo, "max_completion_length": 3})
    trainer.train()
    chunks_per_step = trainer.args.gradient_accumulation_steps / (trainer.args.steps_per_generation * trainer.args.num_iterations)
    assert len(first.batches) == math.ceil(max_steps * chunks_per_step)
    for step in range(save_steps, max_steps, save_steps):
        resumed = Recorder()
        again = make_trainer(tiny_model_dir, buckets_dataset, tmp_path / f"b{step}", resumed, max_steps=max_steps,
                             save_steps=save_steps, grpo={**grpo, "max_completion_length": 3})
        again.train(resume_from_checkpoint=str(tmp_path / "a" / f"checkpoint-{step}"))
        assert resumed.batches == first.batches[int(step * chunks_per_step):], f"resumed from checkpoint-{step}"
        assert observed(again) == observed(trainer), f"resumed from checkpoint-{step}"


def test_checkpoints_inside_a_generation_are_refused(tiny_model_dir, buckets_dataset, tmp_path):
    """TRL does not save its buffered completions: a run resumed inside a generation generated them again and
    counted their groups twice (observations 40 instead of 32 in an 8-step run resumed at step 3)."""
    spg2 = {"steps_per_generation": 2, "max_completion_length": 3}
    with pytest.raises(ValueError, match=r"save_steps=1 would write checkpoint-1 inside a generation.*multiple of 2"):
        make_trainer(tiny_model_dir, buckets_dataset, tmp_path / "x", Recorder(), max_steps=8, save_steps=1, grpo=spg2)
    with pytest.raises(ValueError, match="multiple of 2"):
        make_trainer(tiny_model_dir, buckets_dataset, tmp_path / "x", Recorder(), max_steps=8, save_steps=3, grpo=spg2)

    trainer = make_trainer(tiny_model_dir, buckets_dataset, tmp_path / "a", Recorder(), max_steps=3, save_steps=2,
                           grpo=spg2)
    trainer.train()  # its final checkpoint-3 lies inside the second generation
    assert (tmp_path / "a" / "checkpoint-3").is_dir()
    resumed = make_trainer(tiny_model_dir, buckets_dataset, tmp_path / "b", Recorder(), max_steps=8, save_steps=2,
                           grpo=spg2)
    with pytest.raises(ValueError, match="checkpoint-3 was written at step 3, inside a generation"):
        resumed.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-3"))


def drawn_chunk(trainer, dataset):
    """The sampler's first chunk, read as the dataloader reads it, as the examples of one generation batch."""
    sampler = trainer.curriculum_sampler
    indices = list(itertools.islice(iter(sampler), sampler.batch_size * sampler.mini_repeat_count))
    return indices, [dict(dataset[i]) for i in indices]


def score(trainer, examples, texts):
    """Run the real reward path of TRL's trainer on known completions (as generated for `examples`)."""
    tokenizer = trainer.processing_class
    completions = [[{"role": "assistant", "content": text}] for text in texts]
    completion_ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    trainer.model.train()
    return trainer._calculate_rewards(examples, [e["prompt"] for e in examples], completions, completion_ids)


def format_cosine_trainer(model_dir, dataset, out_dir, **options):
    from curriculum.rewards import parse_reward_spec

    funcs, weights = parse_reward_spec("format:1,cosine:1", options={"cosine": {"max_len": 6}})
    return make_trainer(model_dir, dataset, out_dir, None, reward_funcs=funcs, reward_weights=weights, **options)


def test_a_pass_is_the_verifiers_verdict_whatever_the_rewards(tiny_model_dir, buckets_dataset, tmp_path):
    """Under format:1,cosine:1 a well-formatted wrong answer has a positive total reward, and a problem whose
    gold does not parse still earns the format reward; neither is a pass to the online difficulty."""
    trainer = format_cosine_trainer(tiny_model_dir, buckets_dataset, tmp_path, schedule="uniform")
    indices, examples = drawn_chunk(trainer, buckets_dataset)
    good, broken = indices[0], indices[2]
    for example in examples[2:]:
        example["answer"] = ""  # this problem's gold answer is missing: the verifier cannot parse it
    gold = examples[0]["answer"]
    texts = [f"<think>add</think><answer>{int(gold) + 1}</answer>",  # wrong, well formatted
             f"<think>add</think><answer>{gold}</answer>",  # right
             "<think>x</think><answer>4</answer>", "<think>y</think><answer>5</answer>"]
    rewards = score(trainer, examples, texts)
    weighted = (rewards.nan_to_num() * trainer.reward_weights).sum(dim=1)
    assert weighted[0] > 0 and weighted[2] > 0  # what the old "total reward > 0" rule counted as passes

    difficulty = trainer.curriculum_sampler.difficulty
    assert difficulty.observations[good] == 1 and difficulty.successes[good] == 1  # 1 pass of 2
    assert difficulty.failures[good] == 1
    assert difficulty.observations[broken] == 0  # not observed at all
    assert difficulty.observations.sum() == 1


def test_metrics_use_the_bucket_a_problem_was_drawn_from(tiny_model_dir, buckets_dataset, tmp_path):
    """Online difficulty may re-bucket a problem between its draw and its rewards (the next chunk is drawn a step
    ahead); its reward still belongs to the bucket the schedule drew it from."""
    trainer = format_cosine_trainer(tiny_model_dir, buckets_dataset, tmp_path)
    sampler = trainer.curriculum_sampler
    indices, examples = drawn_chunk(trainer, buckets_dataset)
    problems = indices[:: sampler.mini_repeat_count]
    assert set(sampler.current_buckets()[problems].tolist()) == {0}  # linear starts in the easiest bucket
    sampler.difficulty.update(problems, [0, 0], [200, 200])  # meanwhile: evidence that they are very hard
    assert set(sampler.current_buckets()[problems].tolist()) == {3}
    score(trainer, examples, ["<think>a</think><answer>1</answer>"] * len(examples))
    logged = trainer._metrics["train"]
    assert "curriculum/bucket_0_reward" in logged and "curriculum/bucket_3_reward" not in logged


def test_schedule_progress_follows_the_chunk_number(tiny_model_dir, buckets_dataset, tmp_path):
    """Chunk c is drawn at t = c / total chunks, whenever the dataloader reads it. A narrow window that moves one
    bucket per chunk makes the t of every draw visible: chunk c comes from bucket c."""
    recorder = Recorder()
    window = {"width": 0.05, "floor": 0.0, "duration": 0.75}  # centre (K - 1) t / 0.75 = c for t = c / 4
    trainer = make_trainer(tiny_model_dir, buckets_dataset, tmp_path, recorder, max_steps=4, save_steps=4,
                           schedule="gaussian", schedule_options=window, online_difficulty=False,
                           grpo={"max_completion_length": 3})
    trainer.train()
    bucket_of = dict(zip(buckets_dataset["id"], buckets_dataset["bucket"], strict=True))
    assert [{bucket_of[i] for i in batch} for batch in recorder.batches] == [{0}, {1}, {2}, {3}]
    logged = [entry["curriculum/progress"] for entry in trainer.state.log_history if "curriculum/progress" in entry]
    assert logged == [0.0, 0.25, 0.5, 0.75]


class SignalOnlyFromSomeProblems:
    """A reward (1.0 for a completion holding a digit) that is constant, so its group has no signal, for every
    second problem and for every completion of generations 2 and 3: some micro-batches lose some completions,
    two steps lose all of them (the optimizer still steps, over zero gradients)."""

    __name__ = "signal_from_some"

    def __init__(self):
        self.generations = 0

    def __call__(self, prompts=None, completions=None, id=None, **kwargs):
        self.generations += 1
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        if self.generations in (2, 3):
            return [0.0] * len(texts)
        return [1.0 if index % 2 else float(any(char.isdigit() for char in text))
                for index, text in zip((int(ident[1:]) for ident in id), texts, strict=True)]


SKIPPED = "curriculum/completions_skipped"


def zero_advantage_note(trainer) -> str:
    from curriculum.training.run import zero_advantage_note

    return zero_advantage_note(trainer)


def trained_with_and_without_skipping(model_dir, dataset, tmp_path, **grpo):
    runs = []
    for skip in (True, False):
        trainer = make_trainer(model_dir, dataset, tmp_path / str(skip), None, max_steps=6, save_steps=6,
                               reward_funcs=[SignalOnlyFromSomeProblems()], skip_zero_advantage=skip,
                               grpo={"per_device_train_batch_size": 4, "gradient_accumulation_steps": 2, **grpo})
        trainer.train()
        runs.append(trainer)
    skipping, full = runs
    assert skipping.skips_zero_advantage and not full.skips_zero_advantage
    assert "skip the forward and backward pass" in zero_advantage_note(skipping)
    skipped = [entry[SKIPPED] for entry in skipping.state.log_history if SKIPPED in entry]
    assert len(skipped) == 6
    assert skipped[1] == skipped[2] == 1.0  # whole steps without signal
    assert not any(SKIPPED in entry for entry in full.state.log_history)
    return skipping, full, skipped


def test_leaving_out_completions_without_signal_keeps_the_training(tiny_model_dir, buckets_dataset, tmp_path):
    import torch

    # dapo (TRL's default) normalizes by the generation batch's tokens: single completions are left out
    skipping, full, skipped = trained_with_and_without_skipping(tiny_model_dir, buckets_dataset, tmp_path)
    assert any(0.0 < share < 1.0 for share in skipped)  # steps that left single completions out
    for (name, mine), (_, theirs) in zip(skipping.model.named_parameters(), full.model.named_parameters(),
                                         strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-6, msg=name)
    rewards = [[entry["reward"] for entry in trainer.state.log_history if "reward" in entry]
               for trainer in (skipping, full)]
    assert rewards[0] == rewards[1]  # the same completions were drawn all along


def test_skipping_whole_micro_batches_leaves_the_weights_bitwise_equal(tiny_model_dir, buckets_dataset, tmp_path):
    import torch

    # grpo normalizes per micro-batch: only micro-batches without any signal are skipped, and exactly
    skipping, full, _ = trained_with_and_without_skipping(tiny_model_dir, buckets_dataset, tmp_path, loss_type="grpo")
    for (name, mine), (_, theirs) in zip(skipping.model.named_parameters(), full.model.named_parameters(),
                                         strict=True):
        assert torch.equal(mine, theirs), name
    losses = [[entry["loss"] for entry in trainer.state.log_history if "loss" in entry] for trainer in (skipping, full)]
    assert losses[0] == losses[1]


def test_the_skip_stays_off_where_a_completion_without_advantage_still_has_a_gradient(tiny_model_dir,
                                                                                       buckets_dataset, tmp_path):
    trainer = make_trainer(tiny_model_dir, buckets_dataset, tmp_path / "kl", None, max_steps=2, save_steps=2,
                           reward_funcs=[SignalOnlyFromSomeProblems()], grpo={"beta": 0.04})
    assert not trainer.skips_zero_advantage
    assert "still run forward and backward: beta=0.04" in zero_advantage_note(trainer)
    trainer.train()
    assert not any(SKIPPED in entry for entry in trainer.state.log_history)
