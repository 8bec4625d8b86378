"""Rollout engines behind one protocol (see base.py); `get_engine` builds one by name.

Engines are imported only when asked for, so importing this package never loads torch or vLLM.
"""

from __future__ import annotations

from curriculum.rollout.base import Completion, Messages, RolloutEngine, RolloutError, Sampling

ENGINES: tuple[str, ...] = ("hf", "vllm", "openai")

__all__ = ["ENGINES", "Completion", "Messages", "RolloutEngine", "RolloutError", "Sampling", "get_engine"]


def get_engine(name: str, model: str, **options) -> RolloutEngine:
    """An engine by name: `hf` and `vllm` load `model` (an alias, local directory or hub id) in-process;
    `openai` sends requests for `model` to a server (`base_url=...`, default $OPENAI_BASE_URL).

    `options` go to the engine's constructor (HFEngine, VLLMEngine, OpenAIEngine); an unknown option is a
    RolloutError naming the options the engine accepts.
    """
    if name == "hf":
        from curriculum.rollout.hf import HFEngine as engine_class
    elif name == "vllm":
        from curriculum.rollout.vllm_engine import VLLMEngine as engine_class
    elif name == "openai":
        from curriculum.rollout.openai_engine import OpenAIEngine as engine_class
    else:
        raise RolloutError(f"unknown engine {name!r}; expected one of {', '.join(ENGINES)}")
    if name != "openai":
        from curriculum.models import resolve_model

        model = resolve_model(model)
    _check_options(engine_class, name, options)
    return engine_class(model, **options)


def _check_options(engine_class, name: str, options: dict) -> None:
    import inspect

    parameters = inspect.signature(engine_class.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return  # vllm passes unknown options on to vllm.LLM, which reports its own errors
    accepted = [p for p in parameters if p not in ("self", "model")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise RolloutError(
            f"unknown option(s) {', '.join(unknown)} for the {name} engine; accepted: {', '.join(accepted)}"
        )
