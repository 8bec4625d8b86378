"""LoRA from a one-line spec through peft and TRL's peft_config; targets checked by name before training."""

from __future__ import annotations

import json

import pytest
import torch

from curriculum.training.lora import LoraSpecError, build_lora_config, parse_lora_spec
from tests.test_train_cli import FAST, make_buckets, train_cli


def test_spec_short_keys_and_defaults():
    assert parse_lora_spec("r=16,alpha=32,dropout=0.05,targets=all-linear") == {
        "r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all-linear", "task_type": "CAUSAL_LM"}
    assert parse_lora_spec("default") == parse_lora_spec("r=16,alpha=32,dropout=0.05,targets=all-linear")
    spec = parse_lora_spec("r=8,targets=q_proj,v_proj,dropout=0.1,use_rslora=true")
    assert spec["target_modules"] == ["q_proj", "v_proj"] and spec["lora_dropout"] == 0.1
    assert spec["use_rslora"] is True and spec["r"] == 8
    assert parse_lora_spec({"r": 4, "targets": ["q_proj"]})["target_modules"] == ["q_proj"]


@pytest.mark.parametrize("spec, message", [
    ("rank=8,colour=blue", "unknown LoRA option 'colour'"),
    ("sixteen", "use key=value pairs"),
])
def test_spec_errors(spec, message):
    with pytest.raises(LoraSpecError, match=message):
        parse_lora_spec(spec)


@pytest.fixture
def tiny_model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir)


def test_a_target_that_matches_nothing_is_named(tiny_model):
    with pytest.raises(LoraSpecError) as error:
        build_lora_config("targets=q_proj,attn.c_attn", tiny_model)
    message = str(error.value)
    assert "'attn.c_attn'" in message and "'q_proj'" not in message.split("match")[0]
    assert "q_proj" in message and "down_proj" in message  # the modules that do exist


def test_lora_config_wraps_the_model_with_peft(tiny_model):
    from peft import get_peft_model

    peft_model = get_peft_model(tiny_model, build_lora_config("r=4,targets=q_proj,v_proj", tiny_model))
    trainable = [name for name, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    assert {name.split(".")[-4] for name in trainable} == {"q_proj", "v_proj"}


def test_lora_restricted_to_chosen_layers(tiny_model):
    from peft import get_peft_model

    config = build_lora_config("default", tiny_model, layers=(2, 3))
    peft_model = get_peft_model(tiny_model, config)
    layers = {int(name.split("layers.")[1].split(".")[0]) for name, p in peft_model.named_parameters()
              if p.requires_grad}
    assert layers == {2, 3}
    assert "o_proj" in config.target_modules and "lm_head" not in config.target_modules


def test_lora_run_end_to_end(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    buckets = make_buckets(tmp_path / "buckets", tiny_model_dir, n=12)
    out = tmp_path / "lora"
    code, output = train_cli("--buckets", buckets, "--model", tiny_model_dir, "--max-steps", 2,
                             "--lora", "r=4,alpha=8,targets=q_proj,v_proj", "--train-layers", "last:2",
                             *FAST, "--out", out)
    assert code == 0, output
    adapter = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert adapter and all(".layers.2." in key or ".layers.3." in key for key in adapter)
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["r"] == 4
    n_lora = sum(t.numel() for t in adapter.values())
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["perf/trainable_params"] == n_lora
    state = torch.load(out / "checkpoint-2" / "optimizer.pt", weights_only=False)["state"]
    assert sum(s["exp_avg"].numel() for s in state.values()) == n_lora
    # the run directory is a plain model again: adapters merged, same tensors as the base
    merged, base = load_file(str(out / "model.safetensors")), load_file(str(tiny_model_dir / "model.safetensors"))
    assert set(merged) == set(base)
    for name, tensor in base.items():
        if "q_proj" not in name and "v_proj" not in name:
            assert torch.equal(tensor, merged[name]), name
