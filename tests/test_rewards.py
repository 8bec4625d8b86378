"""Reward functions: known values, the skip-not-reward rule, shared verification, the registry, and one
real GRPO step of TRL's trainer with every reward enabled."""

from __future__ import annotations

import math
import pickle

import pytest

from curriculum.rewards import (
    REWARDS,
    completion_text,
    cosine_scaled,
    get_reward,
    parse_reward_spec,
)
from curriculum.verify import cache_info, clear_cache

L = 100


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


@pytest.mark.parametrize(("length", "correct", "expected"), [
    (0, True, 1.0), (L // 2, True, 0.75), (L, True, 0.5), (2 * L, True, 0.5),
    (0, False, -1.0), (L // 2, False, -0.75), (L, False, -0.5), (2 * L, False, -0.5),
])
def test_cosine_known_values(length, correct, expected):
    assert cosine_scaled(length, correct, L) == pytest.approx(expected)


def test_cosine_is_clamped_and_ordered_beyond_max_len():
    lengths = range(0, 4 * L, 7)
    correct = [cosine_scaled(n, True, L) for n in lengths]
    wrong = [cosine_scaled(n, False, L) for n in lengths]
    assert correct == sorted(correct, reverse=True)  # never climbs back up past L
    assert wrong == sorted(wrong)  # a long wrong answer is penalised less than a short one
    assert min(correct) > max(wrong)


@pytest.mark.parametrize(("length", "expected_correct", "expected_wrong"), [
    (0, 1.0, -1.0), (L // 2, 0.75, -0.75), (L, 0.5, -0.5), (2 * L, 0.5, -0.5),
])
def test_cosine_reward_uses_token_counts_and_verification(length, expected_correct, expected_wrong):
    reward = get_reward("cosine", max_len=L)
    completions = [chat(r"so \boxed{\frac{1}{2}}"), chat(r"so \boxed{\frac{1}{3}}")]
    ids = [[7] * length, [7] * length]  # token counts, unrelated to the character count of the text
    values = reward(prompts=[None, None], completions=completions, answer=["0.5", "0.5"], completion_ids=ids)
    assert values == [pytest.approx(expected_correct), pytest.approx(expected_wrong)]


def test_cosine_truncation_penalty_and_options_checked():
    reward = get_reward("cosine", max_len=10, truncation_penalty=-2.0)
    values = reward(completions=[r"\boxed{1}", r"\boxed{1}"], answer=["1", "1"], completion_ids=[[1] * 9, [1] * 10])
    assert values[0] == pytest.approx(cosine_scaled(9, True, 10)) and values[1] == -2.0
    with pytest.raises(ValueError, match="max_len"):
        get_reward("cosine")
    with pytest.raises(ValueError, match="penalised less"):  # the inverted wrong-answer branch
        get_reward("cosine", max_len=10, min_value_wrong=-0.5, max_value_wrong=-1.0)
    with pytest.raises(ValueError, match="never beat"):
        get_reward("cosine", max_len=10, max_value_wrong=0.8)


def test_cosine_needs_token_counts_or_a_tokenizer(tiny_model_dir):
    with pytest.raises(ValueError, match="needs token counts"):
        get_reward("cosine", max_len=L)(completions=[r"\boxed{1}"], answer=["1"])
    reward = get_reward("cosine", max_len=L, tokenizer=str(tiny_model_dir))  # char-level tokenizer
    assert reward(completions=[r"\boxed{1}"], answer=["1"]) == [pytest.approx(cosine_scaled(9, True, L))]


def test_accuracy_plain_and_conversational_and_skip():
    reward = get_reward("accuracy")
    completions = [chat(r"\boxed{72}"), r"The answer is 71.", chat("no idea"), chat(r"\boxed{1}")]
    values = reward(prompts=[None] * 4, completions=completions, answer=["72", "72", "72", r"\text{}"])
    assert values == [1.0, 0.0, 0.0, None]


def test_accuracy_logs_predictions_to_the_completions_table():
    logged, metrics = {}, {}
    reward = get_reward("accuracy")
    reward(completions=[chat(r"\boxed{5}"), chat("none")], answer=["5", "5"],
           log_extra=lambda column, values: logged.setdefault(column, values),
           log_metric=lambda name, value: metrics.setdefault(name, value))
    assert logged == {"predicted": ["5", ""], "verdict": ["correct", "no_answer"]}
    assert metrics["verify/no_answer_frac"] == 0.5


def test_accuracy_names_the_missing_gold_column():
    with pytest.raises(ValueError, match="dataset column 'answer'.*'solution'"):
        get_reward("accuracy")(completions=["1"], solution=["1"])


def test_accuracy_extraction_per_source():
    reward = get_reward("accuracy", extraction={"gsm8k": "last_number", "default": "boxed"})
    completion = r"\boxed{3} so 4"
    values = reward(completions=[completion, completion], answer=["4", "4"], source=["gsm8k", "math"])
    assert values == [1.0, 0.0]


def test_accuracy_and_cosine_share_one_verification():
    clear_cache()
    completions = [chat(rf"\boxed{{{i}}}") for i in range(6)]
    kwargs = {"answer": ["3"] * 6, "completion_ids": [[1] * 10] * 6}
    accuracy = get_reward("accuracy")(completions=completions, **kwargs)
    cosine = get_reward("cosine", max_len=L)(completions=completions, **kwargs)
    assert cache_info()["misses"] == 6 and cache_info()["hits"] == 6
    assert [a == 1.0 for a in accuracy] == [c > 0 for c in cosine]


@pytest.mark.parametrize(("text", "plain", "prefilled"), [
    ("<think>\nreason\n</think>\n<answer>\n42\n</answer>", 1.0, 0.0),
    ("<think>reason</think><answer>42</answer>", 1.0, 0.0),
    ("reason\n</think>\n<answer>42</answer>", 0.0, 1.0),
    ("<think>reason</think> 42", 0.0, 0.0),
    ("<think>reason</think><answer>42</answer> trailing", 0.0, 0.0),
    ("<think>a</think><answer>1</answer><answer>2</answer>", 0.0, 0.0),
    ("<think>a<think>b</think><answer>1</answer>", 0.0, 0.0),
    ("<answer>42</answer>", 0.0, 0.0),
])
def test_format(text, plain, prefilled):
    assert get_reward("format")(completions=[chat(text)]) == [plain]
    assert get_reward("format", prefilled_think=True)(completions=[chat(text)]) == [prefilled]


# DeepSeek-R1-Distill's chat template, reduced to its shape (the real tokenizer cannot be downloaded here): the
# system prompt first, then `<｜User｜>` turns, and a generation prompt that opens the think block itself.
R1_DISTILL_TEMPLATE = (
    "{% set ns = namespace(system_prompt='') %}"
    "{% for message in messages %}{% if message['role'] == 'system' %}"
    "{% set ns.system_prompt = message['content'] %}{% endif %}{% endfor %}"
    "{{ bos_token }}{{ ns.system_prompt }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '<｜User｜>' + message['content'] }}{% endif %}"
    "{% if message['role'] == 'assistant' %}{{ '<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}"
)


@pytest.mark.parametrize("template", ["tiny", "r1-distill"])
def test_format_reward_fires_for_the_asked_format_under_a_real_chat_template(template, tiny_model_dir):
    """The `think-answer` prompt, rendered by a chat template, asks for exactly what `format` credits; with a
    template that opens `<think>` itself the model continues inside the think block, and the reward (told so by
    `prefilled_think`) still gives 1 to that completion and 0 to one in another format."""
    from transformers import AutoTokenizer

    from curriculum.prompts import asked_tags, get_template, prefilled_think

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    if template == "r1-distill":
        tokenizer.chat_template = R1_DISTILL_TEMPLATE
    messages = get_template("think-answer").messages("What is 2 + 2?")
    rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert "What is 2 + 2?" in rendered and "<answer> answer here </answer>" in rendered
    assert asked_tags(messages) == {"<think>", "</think>", "<answer>", "</answer>"}
    prefilled = prefilled_think(tokenizer, messages)
    assert prefilled == (template == "r1-distill") == rendered.endswith("<think>\n")

    body = "\n2 + 2 = 4.\n</think>\n<answer>\n\\boxed{4}\n</answer>"
    asked = body if prefilled else "<think>" + body  # what the model writes after the rendered prompt
    other = "2 + 2 = 4, so the answer is \\boxed{4}."
    assert "<think>" in rendered + asked  # the assistant turn, as the model sees it, opens the think block once
    reward = get_reward("format", prefilled_think=prefilled)
    assert reward(prompts=[messages] * 2, completions=[chat(asked), chat(other)]) == [1.0, 0.0]
    if prefilled:  # without the option, the reward cannot fire under this template
        assert get_reward("format")(completions=[chat(asked)]) == [0.0]


@pytest.mark.parametrize(("text", "expected"), [
    ("<think>\na\n</think>\n<answer>\n1\n</answer>", 1.0),
    ("<think>a</think>", 0.5),
    ("<think><think>a</think><answer>1", 0.5),
    ("plain", 0.0),
])
def test_tag_count(text, expected):
    assert get_reward("tag_count")(completions=[text]) == [expected]


def test_tag_count_with_prefilled_think():
    assert get_reward("tag_count", prefilled_think=True)(completions=["a</think><answer>1</answer>"]) == [1.0]


def test_repetition_on_tokens_and_words():
    tokens = get_reward("repetition", ngram_size=2)
    assert tokens(completions=["x", "y"], completion_ids=[[1, 2, 3, 4], [5, 5, 5, 5, 5]]) == [0.0, -0.75]
    words = get_reward("repetition", ngram_size=2, unit="words", max_penalty=-0.5)
    values = words(completions=["a b c d", "go go go go go", "one"])
    assert values == [0.0, pytest.approx(-0.375), 0.0]
    with pytest.raises(ValueError):
        get_reward("repetition", max_penalty=1.0)


def test_completion_text_shapes():
    assert completion_text("plain") == "plain"
    assert completion_text([{"role": "assistant", "content": "a"}, {"role": "tool", "content": "x"},
                            {"role": "assistant", "content": [{"type": "text", "text": "b"}]}]) == "a\nb"


def test_registry_and_spec():
    assert {"accuracy", "format", "tag_count", "cosine", "repetition"} <= set(REWARDS)
    funcs, weights = parse_reward_spec("accuracy:1, format, cosine:2", options={"cosine": {"max_len": 64},
                                                                              "repetition": {"ngram_size": 4}})
    assert [f.__name__ for f in funcs] == ["accuracy", "format", "cosine"]
    assert weights == [1.0, 1.0, 2.0]
    assert funcs[2].max_len == 64
    funcs, weights = parse_reward_spec({"tag_count": 0.5})
    assert [f.__name__ for f in funcs] == ["tag_count"] and weights == [0.5]
    with pytest.raises(ValueError, match="unknown reward 'acuracy'"):
        parse_reward_spec("acuracy:1")
    with pytest.raises(ValueError, match="not a number"):
        parse_reward_spec("accuracy:high")
    with pytest.raises(ValueError, match="twice"):
        parse_reward_spec("format,format")
    with pytest.raises(ValueError, match="unknown reward"):
        parse_reward_spec("accuracy", options={"cosin": {"max_len": 3}})
    with pytest.raises(ValueError, match="accepted options: prefilled_think"):
        get_reward("format", prefiled_think=True)


def test_rewards_are_picklable():
    """TRL's async rollout worker ships reward functions to a spawned process."""
    funcs, _ = parse_reward_spec("accuracy,format,tag_count,cosine,repetition", options={"cosine": {"max_len": 8}})
    for func in funcs:
        clone = pickle.loads(pickle.dumps(func))
        assert clone.__name__ == func.__name__
        args = {"completions": [r"<think>a</think><answer>\boxed{2}</answer>"], "answer": ["2"], "completion_ids": [[1, 2]]}
        assert clone(**args) == func(**args)


def test_one_grpo_step_with_every_reward(tiny_model_dir, tmp_path):
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    names = ["accuracy", "format", "tag_count", "cosine", "repetition"]
    funcs, weights = parse_reward_spec(",".join(f"{n}:1" for n in names), options={"cosine": {"max_len": 12}})
    problems = [("What is 2+3?", "5"), ("What is 1/2 as a decimal?", r"\frac{1}{2}"),
                ("Give the interval.", "[0, 1)"), ("Cost?", r"\$ 54.60")]
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": q}], "answer": a} for q, a in problems])
    args = GRPOConfig(
        output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=4, num_generations=2,
        max_completion_length=12, use_cpu=True, report_to=[], bf16=False, logging_steps=1, save_strategy="no",
        reward_weights=weights, seed=0,
    )
    trainer = GRPOTrainer(
        model=str(tiny_model_dir), reward_funcs=funcs, args=args, train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(tiny_model_dir),
    )
    trainer.train()
    assert trainer.state.global_step == 1
    logged = next(entry for entry in trainer.state.log_history if "rewards/accuracy/mean" in entry)
    for name in names:
        assert math.isfinite(logged[f"rewards/{name}/mean"]), name
    assert -1.0 <= logged["rewards/cosine/mean"] <= 1.0
    assert 0.0 <= logged["rewards/accuracy/mean"] <= 1.0
