"""Training chosen layers: specs, frozen parameters kept out of the optimizer, and layer schedules that move
parameters in and out of it; end to end, frozen layers stay bit-identical while trained ones change."""

from __future__ import annotations

import shutil

import pytest
import torch

from curriculum.training.layers import (
    LayerScheduleCallback,
    LayerSpecError,
    apply_selection,
    decoder_layers,
    parse_layer_schedule,
    parse_layer_spec,
    select_layers,
)
from tests.test_train_cli import FAST, make_buckets, train_cli


@pytest.mark.parametrize("spec, expected", [
    ("all", (0, 1, 2, 3, 4, 5, 6, 7, 8, 9)),
    ("first:3", (0, 1, 2)),
    ("last:4", (6, 7, 8, 9)),
    ("middle:4", (3, 4, 5, 6)),
    ("middle:3", (3, 4, 5)),
    ("0-2,5, 9", (0, 1, 2, 5, 9)),
    ("7", (7,)),
    ("none", ()),
])
def test_layer_specs(spec, expected):
    assert parse_layer_spec(spec, 10) == expected


@pytest.mark.parametrize("spec, message", [
    ("last:11", "asks for 11 layers but the model has 10 (layers 0-9)"),
    ("first:0", "asks for 0 layers"),
    ("3-12", "names layer 12 but the model has 10 layers (0-9)"),
    ("5-2", "runs backwards"),
    ("top:3", "cannot read layer spec"),
])
def test_layer_spec_errors_say_what_fits(spec, message):
    with pytest.raises(LayerSpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_layer_spec(spec, 10)


@pytest.mark.parametrize("spec, message", [
    ("rotate:3@0", "at least 1 step"),
    ("rotate:5@2", "only 4 layers"),
    ("unfreeze:sideways@2", "cannot read layer schedule"),
])
def test_layer_schedule_errors(spec, message):
    with pytest.raises(LayerSpecError, match=message):
        parse_layer_schedule(spec, range(4))


def test_rotation_is_a_seeded_function_of_the_step():
    schedule = parse_layer_schedule("rotate:2@10", range(30), seed=3)
    assert schedule.active(0) == schedule.active(9) != schedule.active(10)
    assert all(len(schedule.active(step)) == 2 for step in range(0, 200, 10))
    assert parse_layer_schedule("rotate:2@10", range(30), seed=3).active(57) == schedule.active(57)


def test_progressive_unfreezing_grows_from_the_top():
    schedule = parse_layer_schedule("unfreeze:top-down@5", (4, 5, 6, 7))
    assert [schedule.active(step) for step in (0, 4, 5, 10, 15, 99)] == [
        (7,), (7,), (6, 7), (5, 6, 7), (4, 5, 6, 7), (4, 5, 6, 7)]
    assert parse_layer_schedule("unfreeze:bottom-up:2@1", range(6)).active(1) == (0, 1, 2, 3)


@pytest.fixture
def tiny_model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir)


def test_selection_sets_requires_grad_by_layer_and_switch(tiny_model):
    counts = apply_selection(tiny_model, select_layers("last:2", 4))
    trainable = {name for name, p in tiny_model.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith(("model.layers.2.", "model.layers.3.")) for name in trainable)
    assert counts["trainable"] == sum(p.numel() for p in tiny_model.parameters() if p.requires_grad)

    apply_selection(tiny_model, select_layers("0", 4, embeddings=True, head=True))
    trainable = {name for name, p in tiny_model.named_parameters() if p.requires_grad}
    assert {"model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"} <= trainable
    assert not any(name.startswith("model.layers.1.") for name in trainable)
    # every layer selected: embeddings and head train too, unless switched off
    assert select_layers("all", 4) == select_layers(None, 4)
    assert select_layers("all", 4).embeddings and not select_layers("all", 4, head=False).head


def _trainer_optimizer(model, tmp_path):
    """The optimizer transformers' Trainer builds for this model (AdamW, decay / no-decay groups)."""
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", learning_rate=1e-2,
                             weight_decay=0.1)
    trainer = Trainer(model=model, args=args)
    return trainer, trainer.create_optimizer()


def test_frozen_parameters_are_not_given_to_the_optimizer(tiny_model, tmp_path):
    apply_selection(tiny_model, select_layers("middle:2", 4))
    _, optimizer = _trainer_optimizer(tiny_model, tmp_path)
    handed = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert handed == {id(p) for p in tiny_model.parameters() if p.requires_grad}


def test_layer_schedule_frees_leaving_state_and_starts_joining_layers_fresh(tiny_model, tmp_path):
    before = {name: p.detach().clone() for name, p in tiny_model.named_parameters()}
    selection = select_layers("all", 4, embeddings=False, head=False)
    schedule = parse_layer_schedule("unfreeze:top-down@2", selection.layers)
    rotate = parse_layer_schedule("rotate:1@1", (0, 1))  # only used to leave layer 3 later
    trainer, _ = _trainer_optimizer(tiny_model, tmp_path)
    callback = LayerScheduleCallback(tiny_model, schedule, selection,
                                     decay_names=trainer.get_decay_parameter_names(tiny_model), weight_decay=0.1)
    callback.set_initial(tiny_model, 0)
    trainer.optimizer = None
    optimizer = trainer.create_optimizer()
    batch = torch.randint(4, 50, (2, 12))
    layer_params = {i: [p for _, p in callback.params_by_layer[i]] for i in range(4)}

    def train_step(step):
        callback.update(step, optimizer)
        loss = tiny_model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for step in range(4):  # steps 0-1: layer 3; steps 2-3: layers 2 and 3
        train_step(step)
    state_ids = {id(p) for p in optimizer.state}
    handed = {id(p) for group in optimizer.param_groups for p in group["params"]}
    trainable = {id(p) for p in tiny_model.parameters() if p.requires_grad}
    assert state_ids == handed == trainable == {id(p) for i in (2, 3) for p in layer_params[i]}
    assert all(optimizer.state[p]["step"] == 2 for p in layer_params[2])  # joined at step 2, fresh moments
    assert all(optimizer.state[p]["step"] == 4 for p in layer_params[3])

    # now switch to a rotation over layers 0 and 1: layers 2 and 3 leave, their state is freed
    callback.schedule = rotate
    train_step(4)
    active = rotate.active(4)
    assert {id(p) for p in optimizer.state} == {id(p) for i in active for p in layer_params[i]}
    assert all(p.grad is None and not p.requires_grad for i in (2, 3) for p in layer_params[i])
    # groups stay in model order, as a fresh optimizer would list them (checkpoints map state by position)
    order = {id(p): k for k, p in enumerate(tiny_model.parameters())}
    for group in optimizer.param_groups:
        positions = [order[id(p)] for p in group["params"]]
        assert positions == sorted(positions)

    never = {0, 1} - set(active)
    for name, param in tiny_model.named_parameters():
        layer = next((i for i in range(4) if name.startswith(f"model.layers.{i}.")), None)
        if layer in never or layer is None:
            assert torch.equal(param, before[name]), f"{name} moved though frozen"
        else:
            assert not torch.equal(param, before[name]), f"{name} did not move though trained"


def test_decoder_layers_found_under_peft(tiny_model):
    from peft import LoraConfig, get_peft_model

    name, blocks = decoder_layers(get_peft_model(tiny_model, LoraConfig(target_modules=["q_proj"])))
    assert name.endswith("model.layers") and len(blocks) == 4


# ---------------------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def buckets(tiny_model_dir, tmp_path_factory):
    return make_buckets(tmp_path_factory.mktemp("layer-buckets") / "buckets", tiny_model_dir)


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def _layer_of(name):
    return int(name.split(".")[2]) if name.startswith("model.layers.") else None


def _optimizer_state(checkpoint):
    state = torch.load(checkpoint / "optimizer.pt", weights_only=False)
    handed = [index for group in state["param_groups"] for index in group["params"]]
    return state["state"], handed


def test_last_k_trains_only_the_top_layers(buckets, tiny_model_dir, tmp_path):
    out = tmp_path / "last2"
    code, output = train_cli("--buckets", buckets, "--model", tiny_model_dir, "--max-steps", 2,
                             "--train-layers", "last:2", *FAST, "--out", out)
    assert code == 0, output
    original, trained = _weights(tiny_model_dir), _weights(out)
    for name, tensor in original.items():
        if _layer_of(name) in (2, 3):
            assert not torch.equal(tensor, trained[name]), f"{name} did not change"
        else:  # layers 0-1, embeddings, final norm, head
            assert torch.equal(tensor, trained[name]), f"{name} changed though frozen"
    state, handed = _optimizer_state(out / "checkpoint-2")
    n_trainable = sum(1 for name in original if _layer_of(name) in (2, 3))
    assert len(handed) == len(state) == n_trainable
    assert sum(s["exp_avg"].numel() for s in state.values()) == sum(
        t.numel() for name, t in original.items() if _layer_of(name) in (2, 3))


def test_rotation_keeps_never_chosen_layers_bit_identical_and_resumes(buckets, tiny_model_dir, tmp_path):
    out = tmp_path / "rotate"
    args = ["--buckets", buckets, "--model", tiny_model_dir, "--max-steps", 4, "--layer-schedule", "rotate:1@2",
            "--freeze-embeddings", "--freeze-head", *FAST, "--set", "seed=8"]
    code, output = train_cli(*args, "--out", out)
    assert code == 0, output
    schedule = parse_layer_schedule("rotate:1@2", range(4), seed=8)  # the schedule is seeded by the run's seed
    ever = schedule.ever_active(4)
    assert len(ever) == 2 and schedule.active(1) != schedule.active(2), "the seed must rotate to a new layer"
    records = [r for r in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in r]
    assert len(records) == 4
    original, trained = _weights(tiny_model_dir), _weights(out)
    for name, tensor in original.items():
        if _layer_of(name) in ever:
            assert not torch.equal(tensor, trained[name]), f"{name} did not change"
        else:
            assert torch.equal(tensor, trained[name]), f"{name} changed though never selected"
    # the optimizer holds state for the last active layer only: the earlier ones' moments were freed
    state, handed = _optimizer_state(out / "checkpoint-4")
    last = schedule.active(3)
    assert len(state) == len(handed) == sum(1 for name in original if _layer_of(name) in last)

    # resume from step 2 (a rotation boundary): the run finishes with the weights of the uninterrupted one
    resumed = tmp_path / "rotate-resumed"
    shutil.copytree(out, resumed)
    shutil.rmtree(resumed / "checkpoint-4")
    code, output = train_cli("--resume", "--out", resumed)
    assert code == 0, output
    again = _weights(resumed)
    for name, tensor in trained.items():
        assert torch.equal(tensor, again[name]), f"{name} differs after resume"
