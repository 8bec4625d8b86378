"""Training recipes: a YAML file (or a pipeline's `train:` section) plus command-line overrides.

What `curriculum train` runs is two things: our settings (schedule, rewards, LoRA, layer selection) and
TRL's `GRPOConfig`, whose every field can be set under `grpo:` in the recipe or with `--set key=value`.
Values are converted by transformers' `HfArgumentParser`, as its command line would convert them, so
`--set learning_rate=1e-6` and `report_to: tensorboard` work as written. The file and the overrides are read by
`curriculum.recipe`, the loader the pipeline uses too. The resolved recipe is written to `<out>/config.yaml` and can be fed back with `--config` to
rerun the same thing.

Defaults. Where TRL 1.16's GRPOConfig default differs from the open-rs recipe (knoveleng/open-rs,
recipes/grpo.yaml; TRL at commit 69ad852, v0.15.0+32, as pinned in a fork's copy of open-rs's setup.py, the
original file was not at hand), open-rs wins: lr 1e-6 (1e-5 under LoRA); temperature 0.7 (TRL: 1.0); beta
0.04 (TRL: 0.0); cosine_with_min_lr down to 10% of the peak lr after 10% warm-up (TRL: linear, no warm-up);
6 completions per prompt (TRL: 8); the cosine reward's length scale = max completion length. bf16 defaults
on where the device does it natively (a bf16 GPU, or a CPU with AMX or AVX512-BF16: autocast over fp32
master weights, `curriculum.hardware`); gradient checkpointing only where a GPU is present. Left at TRL
1.16's value because open-rs had the same: top_p 1.0 (open-rs set none; vLLM's default is 1.0), top_k off,
rewards scaled by the group's std (`scale_rewards="group"`, std + 1e-4 in both), weighted sum of rewards
before that scaling, epsilon 0.2, one update per generation (`num_iterations=1`), truncated completions kept
in the loss, dropout as the model configures it.

What still differs from open-rs, on purpose (`pipelines/open-rs-1.5b.yaml` sets batch, loss, length, reward
and prompt back to open-rs's):
- batch: 4 prompts per optimizer step by default (one prompt group of 6 per micro-batch, 4 accumulation
  steps: 24 completions), not open-rs's 12 prompts (3 processes x 6 completions x 4 accumulation = 72):
  enough that one all-pass or all-fail group does not leave a step without gradient, small enough for one
  GPU or a CPU. Fewer than 4 prompts per step is warned about at start-up.
- loss: TRL 1.16's default `loss_type="dapo"`: per-token, normalized by the active tokens of the whole
  accumulated batch. open-rs's TRL normalized per token over each micro-batch (`"bnpo"` in TRL 1.16). Both
  are per-token, not per-sequence (`"grpo"`); they differ only in how micro-batches are weighted.
- max completion length: TRL's 512 tokens, not open-rs's 3584 (sized for R1-Distill on GPUs).
- prompts longer than `max_prompt_length` (512, as in open-rs) are dropped with a note, not truncated on the
  left (TRL 1.16 no longer truncates prompts).
- reward `accuracy:1`, for the default prompt (answer in \\boxed{}); open-rs experiment 3 used
  `format:1,cosine:2` with a system prompt asking for <think>/<answer> tags (the `think-answer` prompt).
- with vLLM, TRL 1.16 corrects for the sampler/trainer log-prob mismatch
  (`vllm_importance_sampling_correction=True`); open-rs's TRL had no such correction.
- logging to TensorBoard instead of Weights & Biases (seed 42 and a checkpoint every 50 steps as in open-rs).
Not verified: the exact TRL/vLLM versions behind Tina's recipe (tina-lora-1.5b.yaml assumes open-rs's).

Sampling. A pipeline's top-level `sampling:` block (temperature, top_p, max_tokens) is shared by score,
train and eval; `load_recipe` fills the `grpo` fields it maps to (`SAMPLING_TO_GRPO`) where the train
section leaves them unset.

Recipe shape (all keys optional):

    schedule: linear            # curriculum pacing (curriculum.schedules)
    schedule_options: {}        # passed to the schedule
    online_difficulty: true     # update bucket difficulty from every GRPO group
    skip_solved: false
    skip_zero_advantage: true   # completions with advantage 0 get no forward/backward, where that keeps the gradient
    reward: accuracy:1          # name:weight,... (curriculum.rewards)
    reward_options: {}          # per reward name, e.g. {cosine: {max_len: 1000}}
    max_prompt_length: 512      # longer prompts in the buckets are dropped with a warning
    lora: null                  # "r=16,alpha=32,dropout=0.05,targets=all-linear" or a mapping
    train_layers: null          # all | first:K | last:K | middle:K | 10-15,20
    train_embeddings: null      # default: true only when every layer trains
    train_head: null
    layer_schedule: null        # rotate:K@S | unfreeze:top-down@S
    allow_model_mismatch: false # train on buckets scored by another model
    fast_generation: auto       # on a CPU, GRPO completions from vLLM where it runs (training/fast_generation.py)
    max_steps: 500              # shortcuts for grpo.max_steps / grpo.num_generations
    num_generations: 6
    launch: {}                  # multi-GPU launch settings, read by `curriculum pipeline` only
    grpo: {learning_rate: 1.0e-6, ...}   # any trl.GRPOConfig field
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import enum
import functools
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from curriculum.hardware import bf16_pays

OPEN_RS_DEFAULTS: dict[str, Any] = {
    "learning_rate": 1e-6,
    "temperature": 0.7,
    "beta": 0.04,
    "lr_scheduler_type": "cosine_with_min_lr",
    "lr_scheduler_kwargs": {"min_lr_rate": 0.1},
    "warmup_steps": 0.1,
    "num_generations": 6,
    "logging_steps": 1,
    "save_strategy": "steps",
    "save_steps": 50,
    "seed": 42,
    "report_to": ["tensorboard"],
}
LORA_LEARNING_RATE = 1e-5
DEFAULT_PROMPTS_PER_STEP = 4  # gradient accumulation over one-group micro-batches, when no batch field is set
MIN_PROMPTS_PER_STEP = 4  # fewer prompt groups per optimizer step is warned about
BATCH_FIELDS = ("per_device_train_batch_size", "gradient_accumulation_steps", "generation_batch_size",
                "steps_per_generation")
SHORTCUTS = ("max_steps", "num_generations")
# A pipeline's shared `sampling:` block -> the GRPOConfig field each key sets.
SAMPLING_TO_GRPO = {"temperature": "temperature", "top_p": "top_p", "max_tokens": "max_completion_length"}


class ConfigError(ValueError):
    """A recipe or override that cannot become a training configuration; the message names the key."""


@dataclass
class TrainSettings:
    """What `curriculum train` adds on top of TRL's GRPOConfig (the `grpo` mapping)."""

    schedule: str = "linear"
    schedule_options: dict = field(default_factory=dict)
    online_difficulty: bool = True
    skip_solved: bool = False
    skip_zero_advantage: bool = True  # curriculum.training.zero_advantage
    reward: str = "accuracy:1"
    reward_options: dict = field(default_factory=dict)
    max_prompt_length: int = 512
    lora: str | dict | None = None
    train_layers: str | None = None
    train_embeddings: bool | None = None
    train_head: bool | None = None
    layer_schedule: str | None = None
    allow_model_mismatch: bool = False
    # --- fast generation (curriculum/training/fast_generation.py): auto | on | off, or a boolean
    fast_generation: str | bool = "auto"
    # --- end fast generation
    launch: dict = field(default_factory=dict)
    grpo: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict | None, *, source: str = "recipe") -> TrainSettings:
        data = dict(data or {})
        grpo = data.pop("grpo", None) or {}
        if not isinstance(grpo, dict):
            raise ConfigError(f"{source}: `grpo` must be a mapping of GRPOConfig fields, got {type(grpo).__name__}")
        for shortcut in SHORTCUTS:
            if shortcut in data:
                grpo[shortcut] = data.pop(shortcut)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = [key for key in data if key not in names]
        if unknown:
            raise ConfigError(f"{source}: unknown train setting(s) {unknown}{_suggest(unknown[0], names)}")
        settings = cls()
        for key, value in data.items():
            setattr(settings, key, _coerce_setting(key, value, source))
        settings.grpo = {key: coerce_grpo_value(key, value, source) for key, value in grpo.items()}
        return settings

    def to_dict(self) -> dict:
        return copy.deepcopy(dataclasses.asdict(self))


def load_recipe(path: str | Path) -> tuple[TrainSettings, dict]:
    """Read a recipe: a train section, or a pipeline YAML (its `train:` key). Returns (settings, extras).

    `extras` holds the top-level `model` and `buckets` when the file names them (a pipeline or a resolved
    config.yaml), so a run can be repeated from its config alone.
    """
    from curriculum import recipe

    path = Path(path)
    try:
        data = recipe.read_yaml(path)
    except recipe.RecipeError as error:
        raise ConfigError(str(error)) from error
    if "train" in data:  # a pipeline file or a resolved config.yaml: other stages' keys are not ours
        section = data.get("train") or {}
        extras = {key: data[key] for key in ("model", "buckets") if data.get(key) is not None}
        if isinstance(section, dict) and isinstance(data.get("sampling"), dict):
            section = with_sampling(section, data["sampling"])
    else:
        section = dict(data)
        extras = {key: section.pop(key) for key in ("model", "buckets") if key in section}
    if not isinstance(section, dict):
        raise ConfigError(f"recipe {path}: `train` must be a mapping")
    return TrainSettings.from_dict(section, source=str(path)), extras


def with_sampling(section: dict, sampling: dict) -> dict:
    """A copy of a train section whose `grpo` takes the shared sampling block's values where it sets none."""
    section = copy.deepcopy(section)
    grpo = section.get("grpo") or {}
    if not isinstance(grpo, dict):
        return section  # TrainSettings.from_dict names the error
    for key, value in sampling.items():
        if key in SAMPLING_TO_GRPO and value is not None:
            grpo.setdefault(SAMPLING_TO_GRPO[key], value)
    section["grpo"] = grpo
    return section


def apply_overrides(settings: TrainSettings, assignments: list[str] | tuple[str, ...]) -> TrainSettings:
    """Apply `key=value` overrides. A key is a train setting, a GRPOConfig field or `grpo.<field>`;
    dotted tails reach into mappings (`lr_scheduler_kwargs.min_lr_rate=0.05`). Values are YAML."""
    from curriculum.recipe import RecipeError, parse_assignment

    settings = copy.deepcopy(settings)
    grpo_fields = grpo_field_types()
    setting_names = {f.name for f in dataclasses.fields(TrainSettings)} - {"grpo"}
    for assignment in assignments:
        try:
            path, value = parse_assignment(assignment)
        except RecipeError as error:
            raise ConfigError(str(error)) from None
        if path[0] == "train" and len(path) > 1:  # as a pipeline writes it: train.grpo.learning_rate=1e-5
            path = path[1:]
        key = ".".join(path)
        if path[0] == "grpo":
            path = path[1:]
            if not path:
                raise ConfigError(f"override {assignment!r}: name a GRPOConfig field after `grpo.`")
        elif path[0] in setting_names or path[0] in SHORTCUTS:
            if path[0] in SHORTCUTS and len(path) == 1:
                settings.grpo[path[0]] = coerce_grpo_value(path[0], value, "--set")
                continue
            if len(path) == 1:
                setattr(settings, path[0], _coerce_setting(path[0], value, "--set"))
            else:
                target = getattr(settings, path[0])
                if not isinstance(target, dict):
                    target = {} if target is None else target
                    if not isinstance(target, dict):
                        raise ConfigError(f"override {key}: {path[0]} is not a mapping")
                    setattr(settings, path[0], target)
                _set_nested(target, path[1:], value)
            continue
        if path[0] not in grpo_fields:
            raise ConfigError(
                f"override {key!r}: not a train setting nor a GRPOConfig field{_suggest(path[0], set(grpo_fields) | setting_names)}"
            )
        if len(path) == 1:
            settings.grpo[path[0]] = coerce_grpo_value(path[0], value, "--set")
        else:
            current = settings.grpo.get(path[0])
            if not isinstance(current, dict):
                current = {}
            _set_nested(current, path[1:], value)
            settings.grpo[path[0]] = current
    return settings


def resolve_grpo_config(settings: TrainSettings, output_dir: str | Path):
    """Build the `trl.GRPOConfig`: open-rs defaults, then the recipe's `grpo`, with `output_dir` forced."""
    import torch
    from trl import GRPOConfig

    values = grpo_inputs(settings, has_gpu=torch.cuda.is_available())
    values["output_dir"] = str(output_dir)
    try:
        (config,) = _parser(GRPOConfig).parse_dict(values, allow_extra_keys=False)
        return config
    except (TypeError, ValueError) as error:
        raise ConfigError(f"invalid GRPO settings: {error}") from error


def grpo_inputs(settings: TrainSettings, *, has_gpu: bool) -> dict:
    """The keyword arguments for GRPOConfig: defaults filled in, user values winning."""
    given = dict(settings.grpo)
    values = copy.deepcopy(OPEN_RS_DEFAULTS)
    if settings.lora:
        values["learning_rate"] = LORA_LEARNING_RATE
    values["bf16"] = bf16_pays(on_gpu=has_gpu)
    values["gradient_checkpointing"] = has_gpu
    # Without a GPU, accelerate's CPU backend (gloo): so `accelerate launch --multi_gpu --num_processes N`
    # trains N cooperating processes rather than N copies (a single process trains the same either way).
    values["use_cpu"] = not has_gpu
    values.update(given)
    if "per_device_train_batch_size" not in given and "generation_batch_size" not in given:
        values["per_device_train_batch_size"] = values["num_generations"]  # one prompt group per micro-batch
        if "gradient_accumulation_steps" not in given and "steps_per_generation" not in given:
            values["gradient_accumulation_steps"] = DEFAULT_PROMPTS_PER_STEP  # groups per optimizer step
    if values.get("report_to") in (["tensorboard"], "tensorboard") and not _has_tensorboard():
        values["report_to"] = "none"
    return values


def prompts_per_step(grpo_config) -> float:
    """Prompt groups behind one optimizer step: completions per step / completions per prompt."""
    completions = (grpo_config.per_device_train_batch_size * grpo_config.world_size
                   * grpo_config.gradient_accumulation_steps)
    return completions / grpo_config.num_generations


def batch_warning(grpo_config) -> str | None:
    """A sentence when an optimizer step sees fewer than `MIN_PROMPTS_PER_STEP` prompts, else None."""
    prompts = prompts_per_step(grpo_config)
    if prompts >= MIN_PROMPTS_PER_STEP:
        return None
    return (f"each optimizer step sees {prompts:g} prompt(s) (per_device_train_batch_size "
            f"{grpo_config.per_device_train_batch_size} x {grpo_config.world_size} process(es) x "
            f"gradient_accumulation_steps {grpo_config.gradient_accumulation_steps} / num_generations "
            f"{grpo_config.num_generations}); a group whose completions all pass or all fail has no advantage, so "
            f"with so few prompts many steps get little or no gradient. Use at least {MIN_PROMPTS_PER_STEP} "
            "prompts per step, e.g. raise gradient_accumulation_steps")


def grpo_field_types() -> dict[str, Any]:
    """GRPOConfig's init fields and their resolved type hints."""
    from trl import GRPOConfig

    hints = typing.get_type_hints(GRPOConfig)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(GRPOConfig) if f.init}


def coerce_grpo_value(name: str, value: Any, source: str = "recipe") -> Any:
    """Convert a YAML/CLI value for GRPOConfig field `name` as HfArgumentParser's command line would
    (unknown names are errors).

    >>> coerce_grpo_value("learning_rate", "1e-5"), coerce_grpo_value("lr_scheduler_type", "cosine")
    (1e-05, 'cosine')
    """
    from trl import GRPOConfig

    types_by_name = grpo_field_types()
    if name not in types_by_name:
        raise ConfigError(f"{source}: {name!r} is not a GRPOConfig field{_suggest(name, set(types_by_name))}")
    try:
        return _parsed(_parser(GRPOConfig), name, value, types_by_name[name])
    except ValueError as error:
        raise ConfigError(f"{source}: grpo.{name}: {error}") from None


def save_resolved(path: str | Path, *, settings: TrainSettings, grpo_config, model: str, buckets: str,
                  extra: dict | None = None) -> Path:
    """Write the resolved recipe (re-runnable with --config) and the full GRPOConfig (for reading)."""
    import peft
    import torch
    import transformers
    import trl

    section = settings.to_dict()
    section["grpo"] = {key: value for key, value in section["grpo"].items() if key != "output_dir"}
    full = grpo_config.to_dict()
    document = {
        "model": model,
        "buckets": buckets,
        "train": section,
        "resolved": {
            "grpo": full,
            "versions": {"trl": trl.__version__, "transformers": transformers.__version__,
                         "torch": torch.__version__, "peft": peft.__version__},
            **(extra or {}),
        },
    }
    path = Path(path)
    header = "# Resolved by `curriculum train`; rerun with: curriculum train --config THIS_FILE --out DIR\n"
    document = json.loads(json.dumps(_plain(document), default=str))  # plain YAML types only
    path.write_text(header + yaml.safe_dump(document, sort_keys=False, width=110))
    return path


# ---------------------------------------------------------------------------------------------------- helpers


@functools.cache
def _parser(dataclass_type):
    """transformers' HfArgumentParser over a config dataclass: the types, choices and list-ness of each field."""
    from transformers import HfArgumentParser

    return HfArgumentParser(dataclass_type)


def _parsed(parser, name: str, value: Any, hint: Any) -> Any:
    """One value through the parser's action for `--name`: text as the command line gives it; YAML mappings
    (for fields that take one), booleans and lists pass as such."""
    if value is None:
        return None
    action = parser._option_string_actions[f"--{name}"]
    kinds = {typing.get_origin(t) or t for t in (typing.get_args(hint) if typing.get_origin(hint) in
                                                 (typing.Union, types.UnionType) else (hint,))}
    many = action.nargs in ("+", "*") or bool(kinds & {list, tuple})
    if isinstance(value, dict):
        if dict in kinds or Any in kinds:
            return value
        raise ValueError(f"expected {_type_name(action)}, got a mapping {value!r}")
    if isinstance(value, (list, tuple)):
        if not many:
            raise ValueError(f"expected one {_type_name(action)}, got a list {value!r}")
        return [_one(action, item) for item in value]
    if (isinstance(value, bool) and bool in kinds) or (isinstance(value, str) and str in kinds
                                                       and action.choices is None):
        return value  # already what the field takes (GRPOConfig turns a lone report_to string into a list itself)
    return [_one(action, value)] if action.nargs in ("+", "*") or (many and str not in kinds) else _one(action, value)


def _one(action, value: Any) -> Any:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float) and action.type is int and value.is_integer():
        text = str(int(value))
    else:
        text = str(value)
    convert = action.type or str
    try:
        result = convert(text)
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        raise ValueError(f"expected {_type_name(action)}, got {value!r}") from None
    if action.choices is not None and result not in action.choices:
        raise ValueError(f"{value!r} is not one of {', '.join(map(str, action.choices))}")
    return result


def _type_name(action) -> str:
    if action.choices is not None:
        return "one of " + ", ".join(map(str, action.choices))
    return getattr(action.type, "__name__", "a value").replace("string_to_bool", "true/false")


def _coerce_setting(key: str, value: Any, source: str) -> Any:
    hints = typing.get_type_hints(TrainSettings)
    if key in ("lora",) and isinstance(value, bool):  # `lora: true` means the default LoRA
        return "default" if value else None
    if isinstance(value, dict) and dict not in _kinds(hints[key]):
        raise ConfigError(f"{source}: {key}: expected a single value, got a mapping {value!r}")
    kinds = _kinds(hints[key])
    if isinstance(value, dict) or (isinstance(value, str) and str in kinds) or (isinstance(value, bool)
                                                                                 and bool in kinds):
        return value
    try:
        return _parsed(_parser(TrainSettings), key, value, hints[key])
    except ValueError as error:
        raise ConfigError(f"{source}: {key}: {error}") from None


def _kinds(hint: Any) -> set:
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    return {typing.get_origin(t) or t for t in args}


def _set_nested(target: dict, path: list[str], value: Any) -> None:
    from curriculum.recipe import RecipeError, set_path

    try:
        set_path(target, path, value)
    except RecipeError as error:
        raise ConfigError(str(error)) from None


def _suggest(name: str, candidates: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(candidates), n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _has_tensorboard() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None or importlib.util.find_spec("tensorboardX") is not None
