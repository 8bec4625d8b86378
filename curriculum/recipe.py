"""Recipes: one reader for a YAML file plus dotted `key=value` overrides, and one check of a section's values.

`curriculum pipeline X.yaml --set train.grpo.learning_rate=1e-5` and `curriculum train --config X.yaml --set
learning_rate=1e-5` both read their file and apply their overrides here; each stage then turns its section into
its own config object (`PrepareOptions`, `ScoreConfig`, `BuildConfig`, `TrainSettings`, `EvalSettings`), which
refuses a bad value with a message that starts with the key. GRPOConfig's fields are converted by
transformers' `HfArgumentParser` (curriculum.training.config), not here. A pipeline recipe's `sampling:` block
is given to its score, train and eval sections here too (`resolve_sampling`).

Example:
    >>> data = {"train": {"max_steps": 10}}
    >>> apply_overrides(data, ["train.max_steps=20", "train.grpo.learning_rate=1e-5"])
    {'train': {'max_steps': 20, 'grpo': {'learning_rate': '1e-5'}}}
"""

from __future__ import annotations

import logging
import typing
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)


class RecipeError(ValueError):
    """A recipe file or override that cannot be read; the message names the file or the key."""


def read_yaml(path: str | Path, *, what: str = "recipe") -> dict:
    """A YAML file that must hold a mapping, with one-line errors for a missing file or bad YAML."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as error:
        raise RecipeError(f"{what} {path} does not exist") from error
    except yaml.YAMLError as error:
        raise RecipeError(f"{what} {path} is not valid YAML: {' '.join(str(error).split())}") from error
    if not isinstance(data, dict):
        raise RecipeError(f"{what} {path} must be a mapping, got {type(data).__name__}")
    return data


def parse_assignment(assignment: str) -> tuple[list[str], Any]:
    """`a.b.c=VALUE` -> (["a", "b", "c"], VALUE read as YAML; empty -> None; unparseable YAML stays text)."""
    key, sep, text = assignment.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"override {assignment!r} must look like key=value (section.key=value in a pipeline)")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text.strip()
    return key.strip().split("."), value


def set_path(data: dict, path: list[str], value: Any) -> None:
    """Set `data[a][b][c] = value`, creating mappings on the way."""
    for part in path[:-1]:
        data = data.setdefault(part, {})
        if not isinstance(data, dict):
            raise RecipeError(f"override {'.'.join(path)}: {part} is not a mapping")
    data[path[-1]] = value


def apply_overrides(data: dict, assignments: list[str] | tuple[str, ...]) -> dict:
    """Apply dotted `key=value` overrides to a recipe mapping, in place; returns it."""
    for assignment in assignments:
        path, value = parse_assignment(assignment)
        set_path(data, path, value)
    return data


def load(path: str | Path, overrides: list[str] | tuple[str, ...] = (), *, what: str = "recipe") -> dict:
    """Read a recipe file and apply its overrides: the one loader of pipeline and train recipes."""
    return apply_overrides(read_yaml(path, what=what), overrides)


# ------------------------------------------------------------------------------------------ shared sampling

SAMPLING_KEYS = ("temperature", "top_p", "max_tokens")
# A recipe without a `sampling:` block samples as `curriculum train` does by default: open-rs's temperature,
# TRL's top_p and max_completion_length.
DEFAULT_SAMPLING = {"temperature": 0.7, "top_p": 1.0, "max_tokens": 512}
# Sampling knobs only TRL's generation has: set under train.grpo, the other stages cannot follow.
TRAIN_ONLY_SAMPLING = {"top_k": (None, 0), "min_p": (None,), "repetition_penalty": (None, 1.0)}


def resolve_sampling(sections: dict, block: dict | None, source: str = "recipe") -> dict:
    """Give score, train and eval one sampling: the recipe's `sampling:` block, defaults for the keys it leaves out.

    A stage that sets none of a key takes the shared value (written into its section, so it is in the stage's
    fingerprint and the resolved config.yaml); a stage that sets a different value keeps it, with a warning:
    a pass rate measured at one temperature (or length limit) does not describe the model at another.

        sampling key   score           train (GRPOConfig)              eval
        temperature    temperature     grpo.temperature                temperature
        top_p          top_p           grpo.top_p                      top_p
        max_tokens     max_tokens      grpo.max_completion_length      max_tokens

    Returns the shared block, defaults filled in.
    """
    from curriculum.training.config import SAMPLING_TO_GRPO

    if block is not None and not isinstance(block, dict):
        raise RecipeError(f"{source}: `sampling` must be a mapping of {', '.join(SAMPLING_KEYS)}")
    block = {key: value for key, value in (block or {}).items() if value is not None}
    unknown = sorted(set(block) - set(SAMPLING_KEYS))
    if unknown:
        raise RecipeError(f"{source}: unknown key(s) {unknown} in `sampling`; expected some of "
                            f"{list(SAMPLING_KEYS)} (train-only knobs such as top_k go under train.grpo)")
    shared = {**DEFAULT_SAMPLING, **block}
    grpo = sections["train"].get("grpo")
    if grpo is None:
        grpo = sections["train"]["grpo"] = {}
    places = [("score", sections["score"], {key: key for key in SAMPLING_KEYS}),
              ("eval", sections["eval"], {key: key for key in SAMPLING_KEYS})]
    if isinstance(grpo, dict):  # otherwise _check_train names the error
        places.insert(1, ("train.grpo", grpo, SAMPLING_TO_GRPO))
        for name, neutral in TRAIN_ONLY_SAMPLING.items():
            if grpo.get(name) not in neutral:
                logger.warning("%s: train.grpo.%s = %r shapes training's sampling, which score and eval cannot "
                               "follow; their pass rates describe sampling without it", source, name, grpo[name])
    for stage, section, names in places:
        differ = []
        for key in SAMPLING_KEYS:
            value = section.get(names[key])
            if value is None:
                section[names[key]] = shared[key]
            elif value != shared[key]:
                default = "" if key in block else ", the default"
                differ.append(f"{names[key]} = {value!r} (sampling.{key} = {shared[key]!r}{default})")
        if differ:
            logger.warning("%s: %s overrides the shared sampling: %s. Score, train and eval no longer sample alike, "
                           "so a pass rate measured in one stage does not describe another; remove the stage's "
                           "values to share the `sampling:` block", source, stage, "; ".join(differ))
    return shared


# ------------------------------------------------------------------------------------------ section values

_SCALARS = (bool, int, float, str)


def check_fields(cls: type, values: dict, *, error: type[Exception] = ValueError) -> dict:
    """Check a section's values against the scalar types `cls` (a dataclass) declares, before it is built.

    Unknown keys, and values of the wrong scalar type, are refused with `key: ...`; a number written as text
    (`"1e-5"`, which YAML reads as a string) becomes the number. Fields of other types (tuples, mappings,
    objects) are left to the class's own `__post_init__`. Returns the values, numbers converted.

    >>> from curriculum.buckets import BuildConfig
    >>> check_fields(BuildConfig, {"keep_frac": "0.1"})
    {'keep_frac': 0.1}
    """
    hints = typing.get_type_hints(cls)
    names = [name for name in getattr(cls, "__dataclass_fields__", {})]
    out = {}
    for key, value in values.items():
        if key not in names:
            raise error(f"{key}: unknown setting; expected one of {', '.join(names)}")
        out[key] = _check_scalar(key, value, hints.get(key, Any), error)
    return out


def _check_scalar(key: str, value: Any, hint: Any, error: type[Exception]) -> Any:
    allowed = [arg for arg in (typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, _UnionType)
                               else (hint,))]
    scalars = [t for t in allowed if t in _SCALARS]
    if value is None or not scalars or len(scalars) < len([t for t in allowed if t is not type(None)]):
        return value  # optional, or a type this check leaves to the class
    if any(_is(value, t) for t in scalars):
        return float(value) if float in scalars and int not in scalars and not isinstance(value, bool) else value
    if isinstance(value, str) and (float in scalars or int in scalars):
        try:
            number = float(value)
            return int(number) if int in scalars and float not in scalars and number.is_integer() else number
        except ValueError:
            pass
    names = " or ".join("a number" if t is float else {int: "an integer", bool: "true/false", str: "text"}[t]
                        for t in scalars)
    raise error(f"{key}: expected {names}, got {value!r}")


def _is(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


_UnionType = type(int | None)
