"""The `hf` rollout engine: plain transformers, batched across problems, on CPU or GPU.

Rollouts of many problems go through the model together: one `generate` per problem leaves most of the
hardware idle. Two batching strategies, both from transformers:

- `padded`: prompts sorted by length (so a batch wastes little padding), left padded, generated with the KV
  cache in batches of `batch_size` sequences (derived from free memory unless given). Each prompt goes
  through the model once and its cache is copied to its n samples, instead of n prompt passes; finished
  samples leave the batch as it goes (`_sample_rows`); on CPU the grouped-query attention heads stay
  grouped inside torch's SDPA (see `_register_gqa_sdpa`).
- `continuous`: transformers' continuous batching (`model.generate_batch`), which refills finished slots
  with waiting sequences, so a sequence that stops early does not hold a slot until the longest one ends.

`auto` uses continuous batching on GPU and padded batches on CPU (where continuous batching measured slower;
see reports/bench_score.md), and falls back to padded batches if continuous batching fails.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
from collections.abc import Sequence
from typing import Literal

from curriculum.rollout.base import Completion, Messages, RolloutError, Sampling

logger = logging.getLogger(__name__)

BatchMode = Literal["auto", "padded", "continuous"]
_CPU_MAX_BATCH = 64
_GPU_MAX_BATCH = 512
DECODER = "own sampling loop; finished rows leave the batch"  # written into eval records (engine_decoder)
_DROP_FINISHED_EVERY = 8  # steps between compactions: each one copies the KV cache, so not every step


class HFEngine:
    """Rollouts with transformers' `generate` (see the module docstring for the batching strategies)."""

    name = "hf"

    def __init__(
        self,
        model: str,
        *,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int | None = None,
        mode: BatchMode = "auto",
        memory_fraction: float = 0.5,
    ) -> None:
        import torch
        from transformers import AutoTokenizer

        if mode not in ("auto", "padded", "continuous"):
            raise ValueError(f"unknown hf batching mode {mode!r}; expected auto, padded or continuous")
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.model_path = str(model)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = _pick_dtype(dtype, self.device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        except Exception as error:  # noqa: BLE001 - any load failure becomes one line for the CLI
            raise RolloutError(f"cannot load the tokenizer of {self.model_path}: {error}") from error
        if not getattr(self.tokenizer, "chat_template", None):
            raise RolloutError(
                f"model {self.model_path} has no chat template; scoring needs one to format prompts "
                "(use an instruct/chat model)"
            )
        self.mode: BatchMode = mode
        if mode == "auto":
            self.mode = "continuous" if self.device.type == "cuda" else "padded"
        try:
            self.model = _load_model(self.model_path, self.dtype,
                                     grouped_sdpa=self.mode == "padded" and self.device.type == "cpu")
        except Exception as error:  # noqa: BLE001
            raise RolloutError(f"cannot load model {self.model_path}: {error}") from error
        self.model.to(self.device).eval()
        forward = inspect.signature(self.model.forward).parameters
        self._can_prefill = "logits_to_keep" in forward and "position_ids" in forward
        self.eos_ids = _eos_ids(self.model, self.tokenizer)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_ids[0]
        self.batch_size = int(batch_size) if batch_size else None
        self.memory_fraction = memory_fraction

    # -- protocol ------------------------------------------------------------------------------------------

    def generate(self, prompts: Sequence[Messages], n: int, sampling: Sampling) -> list[list[Completion]]:
        return self.generate_tokens([self.encode(messages) for messages in prompts], n, sampling)

    def generate_tokens(self, prompt_ids: Sequence[Sequence[int]], n: int, sampling: Sampling) -> list[list[Completion]]:
        """`generate` for prompts already tokenized (e.g. a raw-text prompt from an OpenAI-style server)."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        prompt_ids = [list(ids) for ids in prompt_ids]
        if not prompt_ids:
            return []
        if self.mode == "continuous":
            try:
                return self._generate_continuous(prompt_ids, n, sampling)
            except Exception as error:  # noqa: BLE001 - fall back to the always-available strategy
                logger.warning("continuous batching failed (%s); falling back to padded batches", error)
                self.mode = "padded"
        return self._generate_padded(prompt_ids, n, sampling)

    @property
    def decoder(self) -> str:
        """How samples are drawn, for the record: eval files say which loop produced them."""
        return DECODER if self.mode == "padded" else "transformers continuous batching"

    def close(self) -> None:
        self.model = None

    # -- helpers -------------------------------------------------------------------------------------------

    def encode(self, messages: Messages) -> list[int]:
        """The prompt's token ids under the model's chat template, ready for the assistant's turn."""
        ids = self.tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, tokenize=True, return_dict=False
        )
        return list(ids)

    def _generation_config(self, sampling: Sampling, **extra):
        from transformers import GenerationConfig

        greedy = sampling.temperature <= 0
        return GenerationConfig(
            do_sample=not greedy,
            temperature=None if greedy else sampling.temperature,
            top_p=None if greedy else sampling.top_p,
            top_k=None if greedy else 0,  # 0, not None: None lets `generate` fill in its default top-k of 50
            max_new_tokens=sampling.max_tokens,
            eos_token_id=self.eos_ids,
            pad_token_id=self.pad_id,
            **extra,
        )

    def _completion(self, tokens: Sequence[int], max_tokens: int) -> Completion:
        tokens = list(tokens)
        stop = next((i for i, token in enumerate(tokens) if token in self.eos_ids), None)
        if stop is not None:
            kept, num_tokens, reason = tokens[:stop], stop + 1, "stop"
        else:
            kept = tokens[:max_tokens]
            num_tokens, reason = len(kept), "length"
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        return Completion(text=text, num_tokens=num_tokens, finish_reason=reason)

    def kv_bytes_per_token(self) -> int:
        """Bytes of KV cache one token of one sequence takes (keys and values, every layer)."""
        config = self.model.config
        heads = getattr(config, "num_attention_heads", 32)
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        element = getattr(self.model.dtype, "itemsize", 4)
        return 2 * getattr(config, "num_hidden_layers", 32) * kv_heads * head_dim * element

    def pick_batch_size(self, max_prompt_tokens: int, max_new_tokens: int) -> int:
        """Sequences per padded batch: the given size, else what fits the KV cache in free memory."""
        if self.batch_size:
            return self.batch_size
        # KV cache plus a margin for activations and the float32 logits of the step being sampled.
        per_sequence = (self.kv_bytes_per_token() * (max_prompt_tokens + max_new_tokens) * 1.5
                        + self.model.config.vocab_size * 4 * 4)
        free, cap = _free_memory(self.device), (_GPU_MAX_BATCH if self.device.type == "cuda" else _CPU_MAX_BATCH)
        return int(max(1, min(cap, free * self.memory_fraction // per_sequence)))

    def _generate_padded(self, prompt_ids: list[list[int]], n: int, sampling: Sampling) -> list[list[Completion]]:
        import torch

        torch.manual_seed(sampling.seed)
        batch = self.pick_batch_size(max(len(ids) for ids in prompt_ids), sampling.max_tokens)
        # Work units (prompt, first sample, samples): a prompt's samples stay together unless n exceeds the
        # batch. Longest prompts first: a batch holds prompts of similar length (little padding) and the first
        # batch is the largest, so memory trouble shows at once.
        per_unit = min(n, batch)
        order = sorted(range(len(prompt_ids)), key=lambda i: -len(prompt_ids[i]))
        units = [(i, first, min(per_unit, n - first)) for i in order for first in range(0, n, per_unit)]
        batches: list[list[tuple[int, int, int]]] = [[]]
        for unit in units:
            if batches[-1] and sum(count for *_, count in batches[-1]) + unit[2] > batch:
                batches.append([])
            batches[-1].append(unit)
        results: list[list[Completion | None]] = [[None] * n for _ in prompt_ids]
        for chunk in batches:
            generated = self._generate_shared_prompts([prompt_ids[i] for i, _, _ in chunk],
                                                      [count for *_, count in chunk], sampling)
            rows = iter(generated)
            for i, first, count in chunk:
                for j in range(first, first + count):
                    results[i][j] = self._completion(next(rows), sampling.max_tokens)
        return results  # type: ignore[return-value]

    def _generate_shared_prompts(self, prompts: list[list[int]], counts: list[int],
                                 sampling: Sampling) -> list[list[int]]:
        """Generate `counts[p]` samples of each prompt, running each prompt through the model once.

        `generate(num_return_sequences=n)` copies a prompt n times before the first forward pass, so every
        sample pays the prompt again; on CPU, where a 150-token prompt costs more than 128 sampled tokens,
        that is most of the work. Instead the prompts (all but their last token) fill a KV cache once, the
        cache rows are repeated per sample, and sampling continues from it (`_sample_rows`).
        """
        import torch
        from transformers import DynamicCache

        width = max(len(ids) for ids in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(prompts):
            input_ids[row, width - len(ids):] = torch.tensor(ids)
            attention[row, width - len(ids):] = 1
        input_ids, attention = input_ids.to(self.device), attention.to(self.device)
        expand = torch.repeat_interleave(torch.arange(len(prompts)), torch.tensor(counts)).to(self.device)
        with torch.inference_mode():
            if width == 1 or not self._can_prefill:  # an architecture without the hooks: plain `generate`
                output = self.model.generate(input_ids=input_ids[expand], attention_mask=attention[expand],
                                             generation_config=self._generation_config(sampling))
                return output[:, width:].tolist()
            cache = DynamicCache(config=self.model.config)
            positions = (attention.cumsum(-1) - 1).clamp(min=0)
            self.model(input_ids=input_ids[:, :-1], attention_mask=attention[:, :-1],
                       position_ids=positions[:, :-1], past_key_values=cache, use_cache=True, logits_to_keep=1)
            cache.reorder_cache(expand)
            return self._sample_rows(cache, input_ids[expand, -1:], attention[expand], positions[expand, -1:],
                                     sampling)

    def _sample_rows(self, cache, last_tokens, attention, positions, sampling: Sampling) -> list[list[int]]:
        """Sample every row to its end-of-sequence or `max_tokens`, dropping finished rows from the batch.

        `generate` keeps a finished row in the batch, fed padding, until the last row ends. After GRPO
        training completions are short, but one long row in 64 holds the whole batch to `max_tokens`, so
        most of the compute went to padding (reports/bench_decode.md). Here the finished rows leave the KV
        cache every `_DROP_FINISHED_EVERY` steps. Sampling is `generate`'s: float32 logits, temperature, then top-p,
        one multinomial draw per row (greedy at temperature 0); until the first drop the draws are token for
        token those of `generate` with the same seed.
        """
        import torch

        stop = torch.tensor(self.eos_ids, device=self.device)
        rows = torch.arange(len(last_tokens), device=self.device)
        out = torch.full((len(rows), sampling.max_tokens), self.pad_id, dtype=torch.long, device=self.device)
        finished = torch.zeros(len(rows), dtype=torch.bool, device=self.device)
        tokens = last_tokens
        for step in range(sampling.max_tokens):
            logits = self.model(input_ids=tokens, attention_mask=attention, position_ids=positions,
                                past_key_values=cache, use_cache=True).logits[:, -1, :].float()
            token = torch.where(finished, self.pad_id, _pick_tokens(logits, sampling))
            out[rows, step] = token
            finished |= torch.isin(token, stop)
            if bool(finished.all()):
                break
            tokens, positions = token[:, None], positions + 1
            attention = torch.cat([attention, attention.new_ones((len(rows), 1))], dim=-1)
            if (step + 1) % _DROP_FINISHED_EVERY == 0 and bool(finished.any()):
                live = (~finished).nonzero().squeeze(1)
                cache.batch_select_indices(live)
                tokens, positions, attention = tokens[live], positions[live], attention[live]
                rows, finished = rows[live], finished[live]
        return out.tolist()

    def _generate_continuous(
        self, prompt_ids: list[list[int]], n: int, sampling: Sampling
    ) -> list[list[Completion]]:
        from transformers import ContinuousBatchingConfig

        # Size the paged KV cache from this workload and our memory share: left to itself, continuous
        # batching claims most of the device's memory, which on CPU means most of the machine's RAM.
        page = 256
        sequences = len(prompt_ids) * n
        pages_each = math.ceil((max(len(ids) for ids in prompt_ids) + sampling.max_tokens) / page)
        affordable = int(_free_memory(self.device) * self.memory_fraction // (self.kv_bytes_per_token() * page))
        num_blocks = max(pages_each, min(sequences * pages_each, affordable))
        cb_config = ContinuousBatchingConfig(
            page_size=page,
            num_blocks=num_blocks,
            max_batch_tokens=2048 if self.device.type == "cpu" else None,
            max_requests_per_batch=self.batch_size,
            seed=sampling.seed,
        )
        config = self._generation_config(sampling, num_return_sequences=n)
        outputs = self.model.generate_batch(
            inputs=prompt_ids, generation_config=config, continuous_batching_config=cb_config, progress_bar=False,
        )
        results: list[list[Completion]] = [[] for _ in prompt_ids]
        for request_id, output in outputs.items():
            if output.error is not None:
                raise RuntimeError(f"request {request_id} failed: {output.error}")
            index = int(request_id.split("__child#")[0].removeprefix("req_"))
            results[index].append(self._completion(output.generated_tokens, sampling.max_tokens))
        missing = [i for i, completions in enumerate(results) if len(completions) != n]
        if missing:
            raise RuntimeError(f"continuous batching returned no result for {len(missing)} prompt(s)")
        return results


GQA_SDPA = "curriculum_sdpa_gqa"


def _register_gqa_sdpa(forward=None) -> str:
    """Register transformers' SDPA attention that keeps grouped-query heads grouped under a padding mask
    (`grouped_query_attention`, or `forward` in its place: the decoding benchmark swaps in its baseline)."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(GQA_SDPA, forward or grouped_query_attention)
    AttentionMaskInterface.register(GQA_SDPA, sdpa_mask)
    return GQA_SDPA


def grouped_query_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None,
                            **kwargs):
    """transformers' `sdpa` attention, without copying key/value heads for grouped queries.

    With a padding mask, transformers' `sdpa` copies every key/value head `num_key_value_groups` times per layer
    and step (`repeat_kv`) before calling torch's SDPA; on CPU that copy of the whole KV cache dominates batched
    decoding (SmolLM2 shares 3 KV heads among 9). torch's own `enable_gqa` avoids the copy but is slow in bf16 on
    a CPU. Instead the query heads that share a key/value head are laid side by side as extra query positions,
    so plain attention over the key/value heads computes every group at once: the same numbers, no copy
    (reports/bench_decode_kernels.md).
    """
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    if attention_mask is None or groups == 1 or kwargs.get("position_bias") is not None or kwargs.get("cache"):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)
    if attention_mask.dim() != 4 or attention_mask.shape[1] != 1:  # a per-head mask: keep heads apart
        output = torch.nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, enable_gqa=True)
        return output.transpose(1, 2).contiguous(), None
    batch, heads, length, dim = query.shape
    # query heads g*j .. g*j + g - 1 read key/value head j (transformers' repeat_kv order): as one head with
    # g x length query positions, each position keeping its own row of the mask
    grouped = query.reshape(batch, heads // groups, groups * length, dim)
    mask = attention_mask if length == 1 else attention_mask.repeat(1, 1, groups, 1)
    output = torch.nn.functional.scaled_dot_product_attention(
        grouped, key, value, attn_mask=mask, dropout_p=dropout, scale=scaling)
    return output.reshape(batch, heads, length, dim).transpose(1, 2).contiguous(), None


def _load_model(path: str, dtype, *, grouped_sdpa: bool):
    from transformers import AutoModelForCausalLM

    if grouped_sdpa:
        try:
            return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=_register_gqa_sdpa())
        except (ValueError, ImportError):
            pass  # an architecture that only takes its built-in attention implementations
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype)


def _pick_tokens(logits, sampling: Sampling):
    """One token per row from float32 logits, as `generate` samples: argmax at temperature 0, else
    temperature, then top-p (the smallest set of tokens holding `top_p` of the mass; never empty)."""
    import torch

    if sampling.temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits / sampling.temperature
    if sampling.top_p < 1.0:
        logits = logits.masked_fill(_outside_nucleus(logits, sampling.top_p), float("-inf"))
    return torch.multinomial(logits.softmax(dim=-1), num_samples=1).squeeze(1)


_NUCLEUS_CANDIDATES = 256


def _outside_nucleus(logits, top_p: float):
    """The tokens top-p removes: those outside the smallest set, taken most likely first, whose mass reaches
    `top_p` (the most likely token always stays), as transformers' top-p filter decides it.

    Sorting the whole vocabulary for every row and step cost a quarter of CPU decoding (49k tokens for
    SmolLM2). The nucleus is almost always among the few hundred most likely tokens, so those are sorted
    (`topk`) and the full sort is kept for the rows whose nucleus reaches past them.
    """
    import torch

    count = min(_NUCLEUS_CANDIDATES, logits.shape[-1])
    top, index = logits.topk(count, dim=-1)
    mass = (top - logits.logsumexp(dim=-1, keepdim=True)).exp()
    before = mass.cumsum(dim=-1) - mass  # the mass of the more likely candidates
    keep = before < top_p
    outside = torch.ones_like(logits, dtype=torch.bool).scatter(-1, index, ~keep)
    unsettled = keep[:, -1].nonzero().squeeze(1)  # the last candidate is still inside: look further
    if len(unsettled):
        ordered, order = torch.sort(logits[unsettled], descending=False)
        below = ordered.softmax(dim=-1).cumsum(dim=-1) <= 1 - top_p
        below[..., -1] = False
        outside[unsettled] = below.scatter(-1, order, below)
    return outside


def _pick_dtype(dtype: str | None, device):
    """bf16 on GPUs that support it, fp16 on other GPUs; on CPU bf16 where it is native (`curriculum.hardware`)."""
    import torch

    if dtype not in (None, "auto"):
        named = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
        if dtype in named:
            return named[dtype]
        if isinstance(getattr(torch, str(dtype), None), torch.dtype):
            return getattr(torch, str(dtype))
        raise ValueError(f"unknown dtype {dtype!r}; expected bf16, fp16, fp32 or a torch dtype name")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    from curriculum.hardware import cpu_has_native_bf16

    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


def _eos_ids(model, tokenizer) -> list[int]:
    ids: list[int] = []
    for source in (model.generation_config.eos_token_id, tokenizer.eos_token_id):
        if source is None:
            continue
        for token in source if isinstance(source, list | tuple) else [source]:
            if token not in ids:
                ids.append(int(token))
    if not ids:
        raise RolloutError("the model declares no end-of-sequence token; completions could never stop")
    return ids


def _free_memory(device) -> int:
    import torch

    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30
