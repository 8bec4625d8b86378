"""Training recipes: YAML + overrides -> TRL's GRPOConfig, with open-rs defaults and a re-runnable resolved copy."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from curriculum.training.config import (
    ConfigError,
    TrainSettings,
    apply_overrides,
    grpo_field_types,
    load_recipe,
    resolve_grpo_config,
    save_resolved,
)

REPO = Path(__file__).resolve().parents[1]


def test_open_rs_defaults(tmp_path):
    config = resolve_grpo_config(TrainSettings(), tmp_path)
    assert config.learning_rate == 1e-6
    assert config.temperature == 0.7
    assert config.beta == 0.04
    assert config.lr_scheduler_type.value == "cosine_with_min_lr"
    assert config.lr_scheduler_kwargs == {"min_lr_rate": 0.1}
    assert config.output_dir == str(tmp_path)
    # one prompt group per micro-batch unless the batch size is given
    assert config.per_device_train_batch_size == config.num_generations


def test_default_batch_holds_several_prompts_per_optimizer_step(tmp_path):
    """A bare run must not train on one prompt per step: one all-pass or all-fail group would leave the step
    without gradient. Default: one group per micro-batch, 4 accumulated per step."""
    from curriculum.training.config import batch_warning, prompts_per_step

    config = resolve_grpo_config(TrainSettings(), tmp_path)
    assert (config.num_generations, config.per_device_train_batch_size, config.gradient_accumulation_steps) == (6, 6, 4)
    assert prompts_per_step(config) == 4 and batch_warning(config) is None
    # TRL generates the whole step at once and draws that many prompts from the curriculum sampler
    assert config.generation_batch_size == 24 and config.steps_per_generation == 4
    # the default adapts to the group size, and an explicit batch is left as given
    assert prompts_per_step(resolve_grpo_config(apply_overrides(TrainSettings(), ["num_generations=4"]), tmp_path)) == 4
    given = apply_overrides(TrainSettings(), ["num_generations=4", "per_device_train_batch_size=8"])
    config = resolve_grpo_config(given, tmp_path)
    assert config.gradient_accumulation_steps == 1 and prompts_per_step(config) == 2
    assert "2 prompt(s)" in batch_warning(config) and "at least 4" in batch_warning(config)


def test_default_reward_matches_the_default_prompt():
    """The default prompt asks for \\boxed{}, not for tags: the default reward must not be one that checks tags."""
    from curriculum.prompts import DEFAULT_TEMPLATE, asked_tags
    from curriculum.rewards import parse_reward_spec

    funcs, _ = parse_reward_spec(TrainSettings().reward)
    asked = asked_tags(DEFAULT_TEMPLATE.messages("1 + 1?"))
    assert all(set(getattr(func, "tags", ())) <= asked for func in funcs)


def test_a_pipeline_sampling_block_reaches_the_grpo_config(tmp_path):
    recipe = tmp_path / "pipeline.yaml"
    recipe.write_text("name: x\nsampling: {temperature: 0.9, top_p: 0.8, max_tokens: 96}\n"
                      "train: {grpo: {top_p: 0.5}}\n")
    settings, _ = load_recipe(recipe)
    config = resolve_grpo_config(settings, tmp_path / "out")
    assert (config.temperature, config.max_completion_length) == (0.9, 96)
    assert config.top_p == 0.5  # the train section's own value wins (the pipeline warns about it)


def test_lora_default_learning_rate_and_explicit_value_wins(tmp_path):
    assert resolve_grpo_config(TrainSettings(lora="default"), tmp_path).learning_rate == 1e-5
    explicit = apply_overrides(TrainSettings(lora="r=8"), ["learning_rate=3e-6"])
    assert resolve_grpo_config(explicit, tmp_path).learning_rate == 3e-6


def test_recipe_values_are_converted_to_field_types(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    # PyYAML reads 1e-6 as a string and `tensorboard` as a scalar: both must still land right
    recipe.write_text(
        "schedule: root_p\nmax_steps: 7\ngrpo:\n  learning_rate: 1e-6\n  report_to: tensorboard\n"
        "  bf16: 'false'\n  lr_scheduler_kwargs: {min_lr_rate: 0.2}\n"
    )
    settings, extras = load_recipe(recipe)
    config = resolve_grpo_config(settings, tmp_path / "out")
    assert settings.schedule == "root_p" and extras == {}
    assert config.learning_rate == 1e-6 and isinstance(config.learning_rate, float)
    assert config.report_to == ["tensorboard"]
    assert config.bf16 is False
    assert config.max_steps == 7
    assert config.lr_scheduler_kwargs == {"min_lr_rate": 0.2}


def test_overrides_win_and_reach_nested_and_setting_keys(tmp_path):
    settings = TrainSettings.from_dict({"grpo": {"beta": 0.1, "lr_scheduler_kwargs": {"min_lr_rate": 0.1}}})
    settings = apply_overrides(settings, [
        "beta=0", "grpo.temperature=1.0", "lr_scheduler_kwargs.min_lr_rate=0.05", "schedule=uniform",
        "schedule_options.duration=0.5", "num_generations=4", "max_completion_length=64",
    ])
    config = resolve_grpo_config(settings, tmp_path)
    assert (config.beta, config.temperature, config.num_generations) == (0.0, 1.0, 4)
    assert config.lr_scheduler_kwargs == {"min_lr_rate": 0.05}
    assert config.max_completion_length == 64
    assert settings.schedule == "uniform" and settings.schedule_options == {"duration": 0.5}


@pytest.mark.parametrize("override, message", [
    ("learnig_rate=1e-6", "did you mean learning_rate"),
    ("beta=lots", "beta"),
    ("no_equals_sign", "key=value"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(TrainSettings(), [override])


def test_inconsistent_grpo_settings_are_a_config_error(tmp_path):
    settings = apply_overrides(TrainSettings(), ["num_generations=4", "per_device_train_batch_size=6"])
    with pytest.raises(ConfigError, match="divisible by num_generations"):
        resolve_grpo_config(settings, tmp_path)


def test_unknown_recipe_key_is_reported_with_the_file(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("schedul: linear\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*schedul.*did you mean schedule"):
        load_recipe(recipe)


def test_every_grpo_field_is_reachable_from_the_command_line():
    """Each GRPOConfig field accepts its own default written as a --set value."""
    from trl import GRPOConfig

    defaults = {f.name: f.default for f in dataclasses.fields(GRPOConfig)
                if f.init and f.default is not dataclasses.MISSING and f.default is not None}
    assignments = [f"{name}={yaml.safe_dump(getattr(value, 'value', value), default_flow_style=True).strip()}"
                   for name, value in defaults.items()]
    settings = apply_overrides(TrainSettings(), [a.removesuffix("\n...") for a in assignments])
    assert set(defaults) <= set(settings.grpo) <= set(grpo_field_types())


@pytest.mark.parametrize("pipeline", ["open-rs-1.5b.yaml", "tina-lora-1.5b.yaml", "layer-freeze-study.yaml"])
def test_pipeline_recipes_resolve(pipeline, tmp_path):
    settings, extras = load_recipe(REPO / "pipelines" / pipeline)
    config = resolve_grpo_config(settings, tmp_path)
    assert extras["model"]
    assert config.num_generations >= 2
    if pipeline == "open-rs-1.5b.yaml":  # experiment 3 of open-rs
        assert settings.reward == "format:1,cosine:2"
        assert settings.reward_options["cosine"]["max_len"] == config.max_completion_length == 3584
        assert (config.learning_rate, config.temperature, config.max_steps) == (1e-6, 0.7, 500)
        assert config.use_vllm and config.vllm_mode == "colocate"
        # 4 processes x 6 completions x 3 accumulation = the original 72 completions per step
        assert 4 * config.per_device_train_batch_size * config.gradient_accumulation_steps == 72
        assert settings.launch["num_processes"] == 4
    if pipeline == "tina-lora-1.5b.yaml":
        assert settings.lora["r"] == 32 and settings.lora["alpha"] == 128


def test_resolved_config_reruns_the_same_configuration(tmp_path):
    settings = apply_overrides(TrainSettings(), ["max_steps=9", "learning_rate=2e-6", "train_layers=last:2"])
    config = resolve_grpo_config(settings, tmp_path / "a")
    path = save_resolved(tmp_path / "config.yaml", settings=settings, grpo_config=config, model="m", buckets="b")
    again, extras = load_recipe(path)
    assert extras == {"model": "m", "buckets": "b"}
    assert again == settings
    rerun = resolve_grpo_config(again, tmp_path / "a")
    assert rerun.to_dict() == config.to_dict()
    assert yaml.safe_load(path.read_text())["resolved"]["grpo"]["learning_rate"] == 2e-6


def test_the_pipeline_spelling_of_an_override_works_for_train_and_values_are_typed(tmp_path):
    """One loader: `--set train.grpo.learning_rate=1e-5` means the same to `curriculum train` as to the pipeline;
    GRPOConfig values are converted by transformers' HfArgumentParser."""
    settings = apply_overrides(TrainSettings(), ["train.grpo.learning_rate=1e-5", "train.max_steps=3",
                                                 "grpo.bf16=true", "report_to=[tensorboard]", "train.schedule=uniform"])
    assert settings.grpo["learning_rate"] == 1e-5 and isinstance(settings.grpo["learning_rate"], float)
    assert settings.grpo["bf16"] is True and settings.grpo["report_to"] == ["tensorboard"]
    assert settings.grpo["max_steps"] == 3 and settings.schedule == "uniform"
    with pytest.raises(ConfigError, match=r"grpo.lr_scheduler_type: 'cosinus' is not one of .*cosine"):
        apply_overrides(TrainSettings(), ["lr_scheduler_type=cosinus"])
    with pytest.raises(ConfigError, match=r"grpo.max_steps: expected int, got 'many'"):
        apply_overrides(TrainSettings(), ["train.max_steps=many"])
