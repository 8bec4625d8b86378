"""Recipes: one reader for a YAML file plus dotted `key=value` overrides, and one check of a section's values.

`curriculum pipeline X.yaml --set train.grpo.learning_rate=1e-5` and `curriculum train --config X.yaml --set
learning_rate=1e-5` both read their file and apply their overrides here; each stage then turns its section into
its own config object (`PrepareOptions`, `ScoreConfig`, `BuildConfig`, `TrainSettings`, `EvalSettings`), which
refuses a bad value with a message that starts with the key. GRPOConfig's fields are converted by
transformers' `HfArgumentParser` (curriculum.training.config), not here.

Example:
    >>> data = {"train": {"max_steps": 10}}
    >>> apply_overrides(data, ["train.max_steps=20", "train.grpo.learning_rate=1e-5"])
    {'train': {'max_steps': 20, 'grpo': {'learning_rate': '1e-5'}}}
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import yaml


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
