"""LoRA for GRPO from a one-line spec: `r=16,alpha=32,dropout=0.05,targets=all-linear`.

The spec becomes a `peft.LoraConfig` that is handed to TRL as `peft_config`; TRL wraps the model and, with
a KL term, uses the base model (adapter disabled) as the reference, so no second copy of the weights is
loaded. Targets are checked against the model's module names with peft's own matcher before any training
starts, so a target that matches nothing is reported by name instead of failing deep inside peft.
"""

from __future__ import annotations

import copy

import yaml

DEFAULTS = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all-linear"}
ALIASES = {"alpha": "lora_alpha", "dropout": "lora_dropout", "targets": "target_modules", "rank": "r"}


class LoraSpecError(ValueError):
    """A LoRA spec that does not parse or does not fit the model."""


def parse_lora_spec(spec: str | dict | None) -> dict:
    """LoraConfig keyword arguments from `key=value,...` (or a mapping from a YAML recipe).

    Short keys: r, alpha, dropout, targets; any other LoraConfig field passes through (use_rslora=true,
    use_dora=true, bias=none, ...). A list value continues over commas: `targets=q_proj,v_proj,r=8`.
    An empty spec, `default` or `true` gives r=16, alpha=32, dropout=0.05, targets=all-linear.
    """
    from peft import LoraConfig

    if spec is None or spec is False:
        raise LoraSpecError("no LoRA spec given")
    if isinstance(spec, dict):
        items = dict(spec)
    elif spec is True or str(spec).strip().lower() in ("", "default", "true", "on"):
        items = {}
    else:
        items = {}
        key = None
        for token in str(spec).split(","):
            token = token.strip()
            if not token:
                continue
            if "=" in token:
                key, value = (part.strip() for part in token.split("=", 1))
                items[key] = value
            elif key is not None:  # a list continues after a comma: targets=q_proj,v_proj
                previous = items[key]
                items[key] = (previous if isinstance(previous, list) else [previous]) + [token]
            else:
                raise LoraSpecError(f"cannot read LoRA spec {spec!r} at {token!r}: use key=value pairs such as r=16")
    options = dict(DEFAULTS)
    known = {name for name in LoraConfig.__dataclass_fields__}
    for key, value in items.items():
        name = ALIASES.get(key, key)
        if name not in known:
            raise LoraSpecError(
                f"unknown LoRA option {key!r}; use r, alpha, dropout, targets or a peft LoraConfig field"
            )
        options[name] = _parse_value(value)
    targets = options["target_modules"]
    if isinstance(targets, str) and targets != "all-linear" and "+" in targets:
        options["target_modules"] = [t for t in targets.split("+") if t]
    elif isinstance(targets, str) and targets != "all-linear" and not _looks_like_regex(targets):
        options["target_modules"] = [targets]
    options.setdefault("task_type", "CAUSAL_LM")
    return options


def build_lora_config(spec: str | dict | None, model=None, *, layers: tuple[int, ...] | None = None):
    """A `peft.LoraConfig` for `spec`, with targets checked against `model` when given.

    `layers` restricts the adapters to those decoder layers (from `--train-layers`), through peft's
    `layers_to_transform`; `all-linear` is then spelled out as the linear module names inside the layers.
    """
    from peft import LoraConfig

    options = parse_lora_spec(spec)
    if model is not None:
        check_targets(options["target_modules"], model)
        if layers is not None:
            from curriculum.training.layers import decoder_layers

            prefix, blocks = decoder_layers(model)
            if len(layers) < len(blocks):
                if options["target_modules"] == "all-linear":
                    options["target_modules"] = sorted(_linear_names(blocks))
                elif isinstance(options["target_modules"], str):
                    raise LoraSpecError("a regex LoRA target cannot be combined with --train-layers; list the modules")
                options["layers_to_transform"] = list(layers)
                options["layers_pattern"] = prefix.split(".")[-1]
    try:
        return LoraConfig(**options)
    except (TypeError, ValueError) as error:
        raise LoraSpecError(f"invalid LoRA settings {options}: {error}") from error


def check_targets(targets, model) -> None:
    """Raise LoraSpecError naming every target that matches no module of `model` (peft's own matching rule)."""
    from peft import LoraConfig
    from peft.tuners.tuners_utils import check_target_module_exists

    names = [name for name, _ in model.named_modules() if name]
    linear = sorted(_linear_names([model]))
    if targets == "all-linear":
        if not linear:
            raise LoraSpecError("LoRA target all-linear matches nothing: the model has no linear layers")
        return
    missing = []
    for target in [targets] if isinstance(targets, str) else list(targets):
        probe = LoraConfig(target_modules=[target] if not isinstance(targets, str) else target)
        if not any(check_target_module_exists(probe, name) for name in names):
            missing.append(target)
    if missing:
        raise LoraSpecError(
            f"LoRA target(s) {', '.join(map(repr, missing))} match no module of {type(model).__name__}; "
            f"its linear modules are: {', '.join(linear)} (or use targets=all-linear)"
        )


def _linear_names(modules) -> set[str]:
    import torch.nn as nn

    output = None
    names = set()
    for root in modules:
        if hasattr(root, "get_output_embeddings"):
            output = root.get_output_embeddings()
        for name, module in root.named_modules():
            if isinstance(module, nn.Linear) and module is not output and name:
                names.add(name.split(".")[-1])
    return names


def _parse_value(value):
    if isinstance(value, str):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        if isinstance(parsed, str):
            try:
                return float(parsed) if any(c in parsed for c in ".eE") and parsed[0].isdigit() else parsed
            except ValueError:
                return parsed
        return parsed
    return copy.deepcopy(value)


def _looks_like_regex(text: str) -> bool:
    return any(char in text for char in "*.[]()|^$\\?")
