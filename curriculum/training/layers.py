"""Train only chosen transformer layers, fixed (`--train-layers`) or on a schedule (`--layer-schedule`).

Frozen parameters get `requires_grad=False` before the trainer builds its optimizer, and transformers'
`Trainer.create_optimizer` hands only trainable parameters to the optimizer: a frozen layer has no Adam
moments and no weight decay. A layer schedule (LISA-like rotation, or progressive unfreezing) changes the set
during training; `LayerScheduleCallback` then moves parameters out of and into the optimizer's existing
parameter groups, so the state of layers that leave is freed and layers that join start with fresh moments,
while the learning-rate scheduler keeps driving the same groups.

Layer specs (0 = the layer nearest the embeddings):
    all | none | first:K | last:K | middle:K | explicit indices and inclusive ranges such as 10-15,20
Layer schedules, over the layers the spec selects (all by default):
    rotate:K@S              K layers drawn at random (seeded) every S optimizer steps (LISA)
    unfreeze:top-down@S     start with the top layer and unfreeze one more layer below every S steps;
    unfreeze:top-down:K@S   ... K more layers per stage; `bottom-up` grows from the first layer instead
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass

from transformers import TrainerCallback


class LayerSpecError(ValueError):
    """A layer spec or layer schedule that does not fit the model (or does not parse)."""


# ---------------------------------------------------------------------------------------------------- model anatomy


def decoder_layers(model) -> tuple[str, list]:
    """The stack of transformer blocks: the longest `nn.ModuleList` of blocks of one class.

    Returns its qualified name (e.g. `model.layers`, or `base_model.model.model.layers` under PEFT) and
    the blocks. Works for Llama, Qwen, Mistral, GPT-2 (`transformer.h`) and the like without a table of names.
    """
    import torch.nn as nn

    best: tuple[str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0 and len({type(m) for m in module}) == 1:
            if best is None or len(module) > len(best[1]):
                best = (name, module)
    if best is None:
        raise LayerSpecError(f"cannot find the transformer layers of {type(model).__name__} (no ModuleList of blocks)")
    return best[0], list(best[1])


def parameter_roles(model) -> dict[str, set]:
    """Map each parameter name to its roles: ("layer", i), "embeddings" or "head".

    `head` covers the output projection and every other parameter outside the blocks and the input
    embeddings (the final norm, learned position embeddings). Tied input/output embeddings are one
    parameter with both roles.
    """
    prefix, blocks = decoder_layers(model)
    layer_of = {}
    for index, block in enumerate(blocks):
        for param in block.parameters():
            layer_of[id(param)] = index
    embedding_ids = set()
    if hasattr(model, "get_input_embeddings") and model.get_input_embeddings() is not None:
        embedding_ids = {id(p) for p in model.get_input_embeddings().parameters()}
    head_ids = set()
    if hasattr(model, "get_output_embeddings") and model.get_output_embeddings() is not None:
        head_ids = {id(p) for p in model.get_output_embeddings().parameters()}
    roles: dict[str, set] = {}
    for name, param in model.named_parameters():
        found: set = set()
        if id(param) in layer_of:
            found.add(("layer", layer_of[id(param)]))
        if id(param) in embedding_ids:
            found.add("embeddings")
        if id(param) in head_ids:
            found.add("head")
        if not found:
            found.add("head")
        roles[name] = found
    return roles


def num_layers(model) -> int:
    return len(decoder_layers(model)[1])


# ---------------------------------------------------------------------------------------------------- specs


def parse_layer_spec(spec: str, n_layers: int) -> tuple[int, ...]:
    """Turn a layer spec into sorted layer indices, checked against a model with `n_layers` blocks."""
    text = str(spec).strip().lower().replace(" ", "")
    last = n_layers - 1
    if text in ("all", ""):
        return tuple(range(n_layers))
    if text == "none":
        return ()
    match = re.fullmatch(r"(first|last|middle):(\d+)", text)
    if match:
        where, k = match.group(1), int(match.group(2))
        if not 1 <= k <= n_layers:
            raise LayerSpecError(
                f"layer spec {spec!r} asks for {k} layers but the model has {n_layers} (layers 0-{last})"
            )
        start = {"first": 0, "last": n_layers - k, "middle": (n_layers - k) // 2}[where]
        return tuple(range(start, start + k))
    indices: set[int] = set()
    for part in text.split(","):
        bounds = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not bounds:
            raise LayerSpecError(
                f"cannot read layer spec {spec!r} at {part!r}: use all, none, first:K, last:K, middle:K "
                "or indices and ranges such as 10-15,20"
            )
        low = int(bounds.group(1))
        high = int(bounds.group(2)) if bounds.group(2) is not None else low
        if high < low:
            raise LayerSpecError(f"layer range {part!r} in {spec!r} runs backwards")
        if high > last:
            raise LayerSpecError(
                f"layer spec {spec!r} names layer {high} but the model has {n_layers} layers (0-{last})"
            )
        indices.update(range(low, high + 1))
    return tuple(sorted(indices))


@dataclass(frozen=True)
class LayerSelection:
    """Which parameters train: decoder layers by index, plus the input embeddings and the output head."""

    layers: tuple[int, ...]
    embeddings: bool
    head: bool

    def trains(self, roles: set) -> bool:
        return any(
            (role == "embeddings" and self.embeddings)
            or (role == "head" and self.head)
            or (isinstance(role, tuple) and role[1] in self.layers)
            for role in roles
        )


def select_layers(
    spec: str | None, n_layers: int, *, embeddings: bool | None = None, head: bool | None = None
) -> LayerSelection:
    """A selection from a spec; embeddings and head train by default only when every layer does."""
    spec = spec or "all"
    layers = parse_layer_spec(spec, n_layers)
    everything = len(layers) == n_layers
    return LayerSelection(
        layers=layers,
        embeddings=everything if embeddings is None else bool(embeddings),
        head=everything if head is None else bool(head),
    )


def apply_selection(model, selection: LayerSelection) -> dict[str, int]:
    """Set `requires_grad` from the selection; returns trainable and total parameter counts."""
    roles = parameter_roles(model)
    trainable = total = 0
    for name, param in model.named_parameters():
        on = selection.trains(roles[name])
        param.requires_grad_(on)
        if not on:
            param.grad = None
        total += param.numel()
        trainable += param.numel() if on else 0
    if trainable == 0:
        raise LayerSpecError("the layer selection leaves no parameter to train")
    return {"trainable": trainable, "total": total}


# ---------------------------------------------------------------------------------------------------- schedules


@dataclass(frozen=True)
class LayerSchedule:
    """Which layers of `pool` train at each optimizer step: a pure function of the step, so resumable."""

    kind: str  # "rotate" or "unfreeze"
    k: int
    every: int
    pool: tuple[int, ...]
    direction: str = "top-down"
    seed: int = 0

    def active(self, step: int) -> tuple[int, ...]:
        period = max(0, int(step)) // self.every
        if self.kind == "rotate":
            rng = random.Random(f"layer-schedule:{self.seed}:{period}")
            return tuple(sorted(rng.sample(self.pool, self.k)))
        count = min(len(self.pool), self.k * (period + 1))
        chosen = self.pool[-count:] if self.direction == "top-down" else self.pool[:count]
        return tuple(sorted(chosen))

    def ever_active(self, steps: int) -> set[int]:
        """Every layer active at some step in [0, steps)."""
        return {layer for step in range(0, steps, 1) for layer in self.active(step)}


def parse_layer_schedule(spec: str, pool: Iterable[int], *, seed: int = 0) -> LayerSchedule:
    """`rotate:K@S`, `unfreeze:top-down@S`, `unfreeze:bottom-up:K@S` over the layers in `pool`."""
    pool = tuple(sorted(pool))
    text = str(spec).strip().lower().replace(" ", "")
    rotate = re.fullmatch(r"rotate:(\d+)@(\d+)", text)
    unfreeze = re.fullmatch(r"unfreeze:(top-down|bottom-up)(?::(\d+))?@(\d+)", text)
    if rotate:
        kind, direction, k, every = "rotate", "top-down", int(rotate.group(1)), int(rotate.group(2))
    elif unfreeze:
        kind, direction = "unfreeze", unfreeze.group(1)
        k, every = int(unfreeze.group(2) or 1), int(unfreeze.group(3))
    else:
        raise LayerSpecError(
            f"cannot read layer schedule {spec!r}: use rotate:K@S, unfreeze:top-down@S or unfreeze:bottom-up:K@S"
        )
    if every < 1:
        raise LayerSpecError(f"layer schedule {spec!r}: the period S must be at least 1 step")
    if not 1 <= k <= len(pool):
        raise LayerSpecError(
            f"layer schedule {spec!r} asks for {k} layers at a time but only {len(pool)} layers are selectable"
        )
    return LayerSchedule(kind=kind, k=k, every=every, pool=pool, direction=direction, seed=seed)


class LayerScheduleCallback(TrainerCallback):
    """Changes the trainable layer set at step boundaries and keeps the optimizer in step with it.

    Parameters of layers that leave are removed from their optimizer group and their state (Adam moments)
    is deleted; parameters of layers that join are appended to the group with their weight-decay setting and
    get fresh state on their first update. Embeddings and head keep the static `selection` setting.
    """

    def __init__(self, model, schedule: LayerSchedule, selection: LayerSelection, *, decay_names: Iterable[str],
                 weight_decay: float):
        self.schedule = schedule
        self.selection = selection
        self.decay_names = set(decay_names)
        self.weight_decay = weight_decay
        roles = parameter_roles(model)
        self.params_by_layer: dict[int, list[tuple[str, object]]] = {}
        for name, param in model.named_parameters():
            for role in roles[name]:
                if isinstance(role, tuple):
                    self.params_by_layer.setdefault(role[1], []).append((name, param))
        # model order: a fresh optimizer lists parameters in this order, and a checkpoint's optimizer state
        # is matched to parameters by position, so the groups are kept in it after every change
        self.order = {id(param): index for index, (_, param) in enumerate(model.named_parameters())}
        self.active: tuple[int, ...] = ()
        self.changes: list[dict] = []

    def set_initial(self, model, step: int) -> None:
        """Before the optimizer exists: the layer set in force when step `step` was reached.

        A checkpoint saved at step N holds the optimizer state of the set that made update N, i.e. the set
        of step N-1; starting from that set lets the saved state load, and `on_step_begin(N)` then moves on
        exactly as an uninterrupted run does.
        """
        self.active = self.schedule.active(max(0, step - 1))
        apply_selection(model, LayerSelection(self.active, self.selection.embeddings, self.selection.head))

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        self.update(state.global_step, optimizer)

    def update(self, step: int, optimizer) -> tuple[set[int], set[int]]:
        """Move to the set for `step`; returns (layers that left, layers that joined)."""
        target = self.schedule.active(step)
        leaving, joining = set(self.active) - set(target), set(target) - set(self.active)
        if not leaving and not joining:
            return set(), set()
        gone = set()
        for layer in sorted(leaving):
            for _, param in self.params_by_layer.get(layer, []):
                param.requires_grad_(False)
                param.grad = None
                gone.add(id(param))
                if optimizer is not None:
                    optimizer.state.pop(param, None)  # frees the Adam moments of this parameter
        if optimizer is not None and gone:
            for group in optimizer.param_groups:
                group["params"] = [p for p in group["params"] if id(p) not in gone]
        for layer in sorted(joining):
            for name, param in self.params_by_layer.get(layer, []):
                param.requires_grad_(True)
                if optimizer is not None:
                    self._group_for(optimizer, name)["params"].append(param)
        if optimizer is not None:
            for group in optimizer.param_groups:
                group["params"].sort(key=lambda p: self.order.get(id(p), len(self.order)))
        self.active = target
        self.changes.append({"step": step, "active": list(target), "left": sorted(leaving),
                             "joined": sorted(joining)})
        return leaving, joining

    def _group_for(self, optimizer, name: str) -> dict:
        wanted = self.weight_decay if name in self.decay_names else 0.0
        for group in optimizer.param_groups:
            if group.get("weight_decay", 0.0) == wanted:
                return group
        return optimizer.param_groups[0]
