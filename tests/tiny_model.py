"""A tiny random-weight causal LM with a character-level tokenizer and a chat template, built offline.

Every later stage (rollouts, rewards inside GRPO, training, eval) is tested against it in seconds.
"""

from __future__ import annotations

import string
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<pad>", "<|im_start|>", "<|im_end|>", "<unk>"]


def build_tiny_model(out_dir: str | Path, *, layers: int = 4, hidden: int = 32, seed: int = 0) -> Path:
    """Write a tiny Llama model and a char-level fast tokenizer with a chat template to `out_dir`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    characters = sorted(set(string.printable) | {"\\", "{", "}"})
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for char in characters:
        vocab.setdefault(char, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        eos_token="<|im_end|>",
        bos_token="<|im_start|>",
        unk_token="<unk>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.padding_side = "left"
    tokenizer.save_pretrained(out_dir)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out_dir)
    return out_dir


def sums_with_known_pass_rates(count: int):
    """(problems, scores) DataFrames: `count` sums `i + i` with pass rates (1 + i % 7) / 8 from 8 rollouts,
    as `curriculum data prepare` and `curriculum score` would write them; feed them to `buckets.build`."""
    import pandas as pd

    ids = [f"q{i:02d}" for i in range(count)]
    problems = pd.DataFrame({"id": ids, "problem": [f"What is {i} + {i}?" for i in range(count)],
                             "answer": [str(2 * i) for i in range(count)], "source": "test"})
    k = [1 + i % 7 for i in range(count)]
    scores = pd.DataFrame({"id": ids, "n": 8, "k": k, "pass_rate": [x / 8 for x in k], "ci_low": 0.0,
                           "ci_high": 1.0, "mean_tokens": 10.0, "model": "tiny", "engine": "hf", "sampling": "{}"})
    return problems, scores


class Recorder:
    """A TRL reward function (1.0 when the completion holds a digit) that records the ids of each batch, so a
    test can compare which problems two runs drew."""

    __name__ = "has_digit"

    def __init__(self):
        self.batches: list[list[str]] = []

    def __call__(self, prompts=None, completions=None, id=None, **kwargs):
        self.batches.append(list(id))
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [1.0 if any(char.isdigit() for char in text) else 0.0 for text in texts]
