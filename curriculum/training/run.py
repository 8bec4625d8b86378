"""One training run: buckets + model + recipe -> a curriculum GRPO trainer, run into `<out>`.

`prepare()` checks everything that can be checked before a model is loaded (output directory, buckets,
their scoring model, prompt lengths, schedule, layer spec, LoRA targets on a weightless copy of the model),
then builds the trainer; `TrainRun.run()` trains, and `train()` does both. The run directory ends up with
`config.yaml` (the resolved recipe), `metrics.jsonl`, TensorBoard events, `checkpoint-N/` folders (each with
the curriculum state beside TRL's own), and the final model (LoRA adapters merged; the adapter alone under
`adapter/`). `resume=True` continues from the last checkpoint in `<out>`.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curriculum.layout import CONFIG, MANIFEST, METRICS
from curriculum.training.config import (
    ConfigError,
    TrainSettings,
    batch_warning,
    resolve_grpo_config,
    save_resolved,
)

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("id", "prompt", "answer", "bucket", "pass_rate")


class TrainSetupError(ValueError):
    """Input that cannot start a run (buckets, model, output directory, schedule); the message says which."""


@dataclass
class TrainResult:
    """Where a finished run left its things, and its last numbers."""

    out_dir: Path
    global_step: int
    model_dir: Path
    metrics_path: Path
    last_checkpoint: str | None
    train_loss: float | None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: steps and the mean reward of the first and last quarter of logged steps."""
        return self.describe_metrics(self.metrics_path)

    @staticmethod
    def describe_metrics(path: str | Path) -> str:
        """The summary line from a metrics.jsonl (also for a run trained in another process)."""
        rows = []
        for line in Path(path).read_text().splitlines() if Path(path).is_file() else []:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn last line
        rewards = [row["reward"] for row in rows if isinstance(row.get("reward"), (int, float))]
        if not rewards:
            return "no logged steps"
        quarter = max(1, len(rewards) // 4)
        head, tail = rewards[:quarter], rewards[-quarter:]
        step = next((row["step"] for row in reversed(rows) if "step" in row), "?")
        return (f"{step} steps, reward {sum(head) / len(head):.2f} (first quarter) -> "
                f"{sum(tail) / len(tail):.2f} (last quarter)")


@dataclass
class TrainRun:
    """A prepared run: the trainer and what it was built from; `run()` trains it."""

    trainer: Any
    settings: TrainSettings
    out_dir: Path
    model_path: str
    resume_from: str | None
    metrics_path: Path
    layer_callback: Any = None
    notes: list[str] = field(default_factory=list)

    def run(self) -> TrainResult:
        from curriculum.training import fast_generation

        try:
            output = self.trainer.train(resume_from_checkpoint=self.resume_from)
            model_dir = save_final_model(self.trainer, self.out_dir)
        finally:
            fast_generation.release_engine(self.trainer)  # a study trains many runs in one process
        from transformers.trainer_utils import get_last_checkpoint

        return TrainResult(
            out_dir=self.out_dir,
            global_step=self.trainer.state.global_step,
            model_dir=model_dir,
            metrics_path=self.metrics_path,
            last_checkpoint=get_last_checkpoint(str(self.out_dir)),
            train_loss=getattr(output, "training_loss", None),
            notes=self.notes,
        )


def train(buckets: str | Path, model: str, out: str | Path, settings: TrainSettings | None = None, *,
          resume: bool = False, callbacks: list | None = None) -> TrainResult:
    """Train `model` with GRPO on the curriculum over `buckets`, writing everything under `out`."""
    return prepare(buckets, model, out, settings, resume=resume, callbacks=callbacks).run()


def prepare(buckets: str | Path, model: str, out: str | Path, settings: TrainSettings | None = None, *,
            resume: bool = False, callbacks: list | None = None) -> TrainRun:
    """Check the inputs, then assemble tokenizer, dataset, rewards, GRPOConfig and trainer."""
    import gc

    from curriculum.models import ModelResolutionError, resolve_model

    gc.collect()  # an earlier run's trainer in this process (a study) sits in reference cycles: free it first
    settings = settings or TrainSettings()
    notes: list[str] = []
    out_dir = check_output_dir(out, resume=resume)
    resume_from, start_step = _checkpoint_to_resume(out_dir) if resume else (None, 0)

    try:
        model_path = resolve_model(model)
    except ModelResolutionError as error:
        raise TrainSetupError(str(error)) from error
    dataset, manifest = load_buckets(buckets)
    notes += check_model_matches(manifest, model, model_path, allow=settings.allow_model_mismatch,
                                 buckets=buckets)
    _check_schedule(settings)

    tokenizer = _load_tokenizer(model_path)
    dataset, dropped = drop_long_prompts(dataset, tokenizer, settings.max_prompt_length)
    if dropped:
        notes.append(dropped)

    reward_funcs, grpo_config = _grpo_config(settings, out_dir, notes, model_path)
    if grpo_config.process_index == 0:  # once, not once per process
        for warning in setup_warnings(reward_funcs, dataset, tokenizer, grpo_config):
            logger.warning(warning)

    selection, schedule, peft_config = _parameter_plan(settings, model_path, grpo_config)
    trainer = _build_trainer(settings, model_path, reward_funcs, grpo_config, dataset, tokenizer, peft_config,
                             callbacks)
    if settings.skip_zero_advantage:
        notes.append(zero_advantage_note(trainer))
    layer_callback, probes = None, []
    if selection is not None and peft_config is None:  # LoRA chooses its own parameters
        layer_callback, probes = _apply_layer_selection(trainer, settings, selection, schedule, grpo_config,
                                                        start_step, notes)

    from curriculum.training.metrics import MetricsCallback

    metrics_path = out_dir / METRICS
    trainer.callback_handler.callbacks.insert(0, MetricsCallback(metrics_path, probes=probes))

    if trainer.accelerator.is_main_process:
        save_resolved(out_dir / CONFIG, settings=settings, grpo_config=grpo_config, model=model,
                      buckets=str(buckets), extra={"model_path": model_path, "resumed_from": resume_from})
    return TrainRun(trainer=trainer, settings=settings, out_dir=out_dir, model_path=model_path,
                    resume_from=resume_from, metrics_path=metrics_path, layer_callback=layer_callback, notes=notes)


def zero_advantage_note(trainer) -> str:
    """Whether completions without signal skip the forward and backward pass, and why not if they don't."""
    from curriculum.training.zero_advantage import BATCH_NORMALIZED_LOSSES, why_not_exact

    if not trainer.skips_zero_advantage:
        return f"completions whose advantage is 0 still run forward and backward: {why_not_exact(trainer)}"
    if trainer.loss_type in BATCH_NORMALIZED_LOSSES:
        return ("completions whose advantage is 0 skip the forward and backward pass (their gradient is 0; the "
                "share is logged as curriculum/completions_skipped)")
    return (f"micro-batches whose advantages are all 0 skip the forward and backward pass (loss_type="
            f"{trainer.loss_type!r} normalizes per micro-batch, so single completions still run)")


def _load_tokenizer(model_path: str):
    """The model's tokenizer padded on the left (GRPO generates after the prompt), with a pad token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _grpo_config(settings: TrainSettings, out_dir: Path, notes: list[str], model_path: str | None = None):
    """(reward functions, GRPOConfig): the reward weights and the fast-generation values go into a copy of the
    settings' grpo section, so the settings saved in config.yaml stay as the user wrote them."""
    grpo_settings = TrainSettings(**{**settings.__dict__, "grpo": dict(settings.grpo)})
    reward_funcs, weights = _rewards(grpo_settings)
    if "reward_weights" in settings.grpo:
        raise ConfigError("give reward weights in the reward spec (accuracy:1,format:1), not grpo.reward_weights")
    grpo_settings.grpo["reward_weights"] = list(weights)
    # --- fast generation (curriculum/training/fast_generation.py): vLLM completions on a CPU, or one line why not
    from curriculum.training import fast_generation

    fast = fast_generation.plan_fast_generation(settings.fast_generation, grpo_settings.grpo,
                                                max_prompt_length=settings.max_prompt_length, model_path=model_path)
    grpo_settings.grpo.update(fast.grpo_values)
    if fast.note and not fast.enabled:
        logger.warning(fast.note)
    elif fast.note:
        notes.append(fast.note)
    if grpo_settings.grpo.get("use_vllm") and fast_generation.unavailable_reason() is None:
        fast_generation.prepare_cpu_engine_environment()
    # --- end fast generation
    return reward_funcs, resolve_grpo_config(grpo_settings, out_dir)


def _build_trainer(settings: TrainSettings, model_path: str, reward_funcs, grpo_config, dataset, tokenizer,
                   peft_config, callbacks: list | None):
    """The curriculum trainer over TRL's, with the CPU vLLM weight sync installed where fast generation runs."""
    from curriculum.training import fast_generation
    from curriculum.training.trainer import CurriculumGRPOTrainer

    with fast_generation.cpu_engine_options(bool(grpo_config.use_vllm)):  # eager vLLM on CPU: a third of the start-up
        trainer = CurriculumGRPOTrainer(
            model=model_path,
            reward_funcs=reward_funcs,
            args=grpo_config,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=list(callbacks or []),
            schedule=settings.schedule,
            schedule_options=dict(settings.schedule_options),
            online_difficulty=settings.online_difficulty,
            skip_solved=settings.skip_solved,
            skip_zero_advantage=settings.skip_zero_advantage,
        )
    fast_generation.install_cpu_weight_sync(trainer)  # fast generation: a no-op unless vLLM colocate on CPU
    return trainer


def _apply_layer_selection(trainer, settings: TrainSettings, selection, schedule, grpo_config, start_step: int,
                           notes: list[str]):
    """Freeze all but the selected layers (full fine-tuning) and, with a layer schedule, add the callback that
    moves the trainable window, so it starts where a resumed run left it. Returns (layer callback, metric probes)."""
    layer_callback = None
    probes = []
    from curriculum.training.layers import LayerScheduleCallback, apply_selection

    counts = apply_selection(trainer.model, selection)
    if schedule is not None:
        layer_callback = LayerScheduleCallback(
            trainer.model, schedule, selection,
            decay_names=trainer.get_decay_parameter_names(trainer.model),
            weight_decay=grpo_config.weight_decay,
        )
        layer_callback.set_initial(trainer.model, start_step)
        trainer.add_callback(layer_callback)
        probes.append(lambda: {"layers/active": list(layer_callback.active)})
        notes.append(f"layer schedule {settings.layer_schedule} over layers {list(selection.layers)}; "
                     f"starting with {list(layer_callback.active)}")
    else:
        notes.append(f"training layers {list(selection.layers)} (embeddings: {selection.embeddings}, head: "
                     f"{selection.head}): {counts['trainable']:,} of {counts['total']:,} parameters")
    if grpo_config.gradient_checkpointing and not selection.embeddings:
        trainer.model.enable_input_require_grads()  # frozen embeddings: checkpointed blocks still get grads
    return layer_callback, probes


# ---------------------------------------------------------------------------------------------------- checks


def check_output_dir(out: str | Path, *, resume: bool) -> Path:
    """Create `out` and prove it is writable; refuse to mix a new run into an old one unless resuming."""
    out_dir = Path(out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".curriculum-write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise TrainSetupError(f"cannot write to output directory {out_dir}: {error.strerror or error}") from error
    if not resume and any(out_dir.glob("checkpoint-*")):
        raise TrainSetupError(
            f"{out_dir} already holds a run (checkpoints found): pass --resume to continue it, or choose a new --out"
        )
    return out_dir


def _checkpoint_to_resume(out_dir: Path) -> tuple[str, int]:
    from transformers.trainer_utils import get_last_checkpoint

    checkpoint = get_last_checkpoint(str(out_dir))
    if checkpoint is None:
        raise TrainSetupError(f"nothing to resume: {out_dir} has no checkpoint-N folder")
    state_file = Path(checkpoint) / "trainer_state.json"
    step = json.loads(state_file.read_text()).get("global_step", 0) if state_file.exists() else 0
    return checkpoint, int(step)


def load_buckets(buckets: str | Path):
    """The buckets dataset (saved with `save_to_disk`) and its manifest."""
    from datasets import load_from_disk

    path = Path(buckets)
    if not path.is_dir():
        raise TrainSetupError(f"buckets directory {path} does not exist (make it with `curriculum build`)")
    try:
        dataset = load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as error:
        raise TrainSetupError(f"{path} is not a buckets dataset saved by `curriculum build`: {error}") from error
    if hasattr(dataset, "keys") and not hasattr(dataset, "column_names"):
        raise TrainSetupError(f"{path} holds several splits; expected one buckets dataset")
    missing = [column for column in REQUIRED_COLUMNS if column not in dataset.column_names]
    if missing:
        raise TrainSetupError(f"buckets dataset {path} lacks column(s) {missing}; has {dataset.column_names}")
    if len(dataset) == 0:
        raise TrainSetupError(f"buckets dataset {path} is empty")
    manifest_path = path / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    return dataset, manifest


def check_model_matches(manifest: dict, model: str, model_path: str, *, allow: bool, buckets) -> list[str]:
    """Buckets measure difficulty for the model that was scored; training another model needs consent.

    Same model (by alias, hub id or directory): fine. Another model with an identical tokenizer (for example
    a fine-tuned checkpoint of the scored one): a note. Otherwise an error, unless `allow` (then a note).
    """
    from curriculum.models import model_label

    scored = manifest.get("model")
    if not scored:
        return [f"{buckets}/{MANIFEST} names no scoring model; cannot check it matches {model}"]
    scored = str(scored)
    ours = {model, model_label(model), model_path, os.path.realpath(model_path)}
    theirs = {scored, model_label(scored)}
    if os.path.isdir(scored):
        theirs.add(os.path.realpath(scored))
    if ours & theirs:
        return []
    same_tokenizer = _same_tokenizer(scored, model_path)
    message = (f"buckets {buckets} were scored with {scored} (manifest.json `model`) but you train {model}"
               f"{'' if same_tokenizer else ', whose tokenizer differs or could not be compared'}; "
               "their pass rates may not describe this model")
    if same_tokenizer or allow:
        return [message]
    raise TrainSetupError(message + ". Re-score the problems with this model, or pass --allow-model-mismatch.")


def _same_tokenizer(scored: str, model_path: str) -> bool:
    from transformers import AutoTokenizer

    from curriculum.models import ALIASES, cache_dir

    candidate = scored
    if scored in ALIASES:
        candidate = str(cache_dir() / scored)
    for alias in ALIASES.values():
        if scored == alias.hub_id:
            candidate = str(cache_dir() / alias.name)
    if not os.path.isdir(candidate):
        return False
    try:
        theirs = AutoTokenizer.from_pretrained(candidate)
        ours = AutoTokenizer.from_pretrained(model_path)
    except (OSError, ValueError):
        return False
    return theirs.get_vocab() == ours.get_vocab() and theirs.chat_template == ours.chat_template


def drop_long_prompts(dataset, tokenizer, max_prompt_length: int | None):
    """Remove prompts longer than `max_prompt_length` tokens (TRL no longer truncates prompts); say how many."""
    if not max_prompt_length:
        return dataset, None
    lengths = [len(ids) for ids in _prompt_token_ids(tokenizer, dataset["prompt"])]
    keep = [i for i, length in enumerate(lengths) if length <= max_prompt_length]
    if len(keep) == len(lengths):
        return dataset, None
    longest = max(range(len(lengths)), key=lengths.__getitem__)
    ident = dataset[longest]["id"] if "id" in dataset.column_names else f"row {longest}"
    if not keep:
        raise TrainSetupError(
            f"every prompt in the buckets exceeds max_prompt_length={max_prompt_length} tokens "
            f"(longest: {ident}, {lengths[longest]} tokens); raise max_prompt_length"
        )
    note = (f"{len(lengths) - len(keep)} of {len(lengths)} prompts exceed max_prompt_length={max_prompt_length} "
            f"tokens and were dropped (longest: {ident}, {lengths[longest]} tokens)")
    return dataset.select(keep), note


def _prompt_token_ids(tokenizer, prompts) -> list[list[int]]:
    out = []
    for prompt in prompts:
        if isinstance(prompt, str):
            out.append(tokenizer(prompt)["input_ids"])
        else:
            encoded = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True,
                                                    return_dict=True)
            out.append(list(encoded["input_ids"]))
    return out


def setup_warnings(reward_funcs, dataset, tokenizer, grpo_config) -> list[str]:
    """What can run but will train badly: too few prompts per step, rewards the prompts do not ask for."""
    warnings = [batch_warning(grpo_config)]
    sample = dataset.select(range(min(8, len(dataset))))["prompt"]
    warnings += check_prompt_tags(reward_funcs, sample, tokenizer)
    return [warning for warning in warnings if warning]


def check_prompt_tags(reward_funcs, prompts, tokenizer) -> list[str]:
    """Rewards that check for tags (`format`, `tag_count`) against what the prompts ask for and what the chat
    template writes itself: a tag that neither the prompt's words nor the template provide is never produced
    on purpose, and a template that opens `<think>` needs the reward's `prefilled_think`.

    `prompts` are a few rows of the dataset's `prompt` column (conversational or plain strings); a tag counts
    as asked when every one of them names it.
    """
    from curriculum.prompts import THINK_TAGS, asked_tags, prefilled_think

    checking = [reward for reward in reward_funcs if getattr(reward, "tags", ())]
    if not checking or not len(prompts):
        return []
    asked = set.intersection(*(asked_tags(prompt) for prompt in prompts))
    prefilled = not isinstance(prompts[0], str) and prefilled_think(tokenizer, prompts[0])
    messages = []
    for reward in checking:
        name = getattr(reward, "__name__", type(reward).__name__)
        assumes_prefill = bool(getattr(reward, "prefilled_think", False))
        if prefilled and not assumes_prefill:
            messages.append(
                f"the chat template opens the assistant turn with {THINK_TAGS[0]}, so completions never contain it "
                f"and reward {name!r} cannot give full credit: set reward_options: {{{name}: {{prefilled_think: true}}}}"
            )
        elif assumes_prefill and not prefilled:
            messages.append(
                f"reward {name!r} has prefilled_think: true, but the chat template does not open the assistant turn "
                f"with {THINK_TAGS[0]}: it credits completions that never open the think block; set it to false"
            )
        missing = [tag for tag in reward.tags if tag not in asked and not (prefilled and tag == THINK_TAGS[0])]
        if missing:
            messages.append(
                f"reward {name!r} checks for {' '.join(missing)}, which the prompt never asks for, so the model has "
                "no reason to write them: build the buckets with a prompt that asks for them (the `think-answer` "
                "template: `prompt: think-answer` in a pipeline, `--prompt-config` for score and build) or drop "
                "the reward"
            )
    return messages


def _check_schedule(settings: TrainSettings) -> None:
    from curriculum.schedules import get_schedule

    try:
        get_schedule(settings.schedule, **dict(settings.schedule_options))
    except (ValueError, TypeError) as error:
        raise TrainSetupError(f"schedule {settings.schedule!r}: {error}") from error


def _rewards(settings: TrainSettings):
    """Reward callables and weights from the spec; the cosine reward's length scale follows max completion."""
    from curriculum.rewards import parse_reward_spec

    options = {name: dict(values or {}) for name, values in (settings.reward_options or {}).items()}
    max_completion = settings.grpo.get("max_completion_length")
    if max_completion is None:
        from trl import GRPOConfig

        max_completion = GRPOConfig.__dataclass_fields__["max_completion_length"].default
    options.setdefault("cosine", {}).setdefault("max_len", int(max_completion))
    try:
        return parse_reward_spec(settings.reward, options=options)
    except (ValueError, KeyError) as error:
        raise ConfigError(f"reward spec {settings.reward!r}: {error}") from error


def _parameter_plan(settings: TrainSettings, model_path: str, grpo_config):
    """Validate layer spec, layer schedule and LoRA targets on a weightless copy of the model."""
    from curriculum.training.layers import LayerSpecError, num_layers, parse_layer_schedule, select_layers
    from curriculum.training.lora import build_lora_config

    wants_layers = bool(settings.train_layers or settings.layer_schedule
                        or settings.train_embeddings is not None or settings.train_head is not None)
    if not wants_layers and not settings.lora:
        return None, None, None
    skeleton = _meta_model(model_path, grpo_config)
    n_layers = num_layers(skeleton)
    selection = select_layers(settings.train_layers, n_layers, embeddings=settings.train_embeddings,
                              head=settings.train_head)
    schedule = None
    if settings.layer_schedule:
        if settings.lora:
            raise LayerSpecError("--layer-schedule cannot be combined with --lora")
        if grpo_config.world_size > 1 or grpo_config.deepspeed:
            raise LayerSpecError("--layer-schedule needs a single process: DDP and DeepSpeed fix the trainable "
                                 "set when they wrap the model; use --train-layers for multi-GPU runs")
        schedule = parse_layer_schedule(settings.layer_schedule, selection.layers, seed=grpo_config.seed)
    peft_config = None
    if settings.lora:
        if settings.train_embeddings or settings.train_head:
            raise LayerSpecError("--train-embeddings/--train-head cannot be combined with --lora")
        restrict = selection.layers if settings.train_layers else None
        peft_config = build_lora_config(settings.lora, skeleton, layers=restrict)
    return selection, schedule, peft_config


def _meta_model(model_path: str, grpo_config):
    """The model's module tree without weights (device `meta`): names and shapes, no memory."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    trust = bool(grpo_config.trust_remote_code)
    config = AutoConfig.from_pretrained(model_path, trust_remote_code=trust)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, trust_remote_code=trust)


def save_final_model(trainer, out_dir: Path) -> Path:
    """Save the trained weights to `out_dir` so `--model out_dir` loads them; LoRA is merged (adapter kept)."""
    from peft import PeftModel

    model = trainer.accelerator.unwrap_model(trainer.model)
    zero3 = trainer.is_deepspeed_enabled and getattr(trainer.args, "deepspeed_plugin", None) is not None and \
        trainer.args.deepspeed_plugin.zero_stage == 3
    if isinstance(model, PeftModel) and not zero3:
        trainer.save_model(str(out_dir / "adapter"))
        if trainer.accelerator.is_main_process:
            merged = model.merge_and_unload()
            merged.save_pretrained(str(out_dir))
            trainer.processing_class.save_pretrained(str(out_dir))
        return out_dir
    trainer.save_model(str(out_dir))
    return out_dir
