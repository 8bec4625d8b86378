"""Problem sources: one YAML per source in datasets_cfg/, found by path, name or hub id.

A source says where its rows come from (a hub dataset, or a file under a local data directory), which raw
fields hold the problem and the answer, and which rule extracts the gold answer from the raw answer field.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from curriculum.data.extract import ANSWER_RULES

DATA_DIR_ENV = "CURRICULUM_DATA_DIR"
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


class SourceError(ValueError):
    """A source config or source file that cannot be used, with the file named."""


@dataclass(frozen=True)
class FieldMap:
    """Which raw fields hold the problem and the raw answer, and the rule that extracts the gold answer."""

    problem: str = "problem"
    answer: str = "answer"
    answer_rule: str = "plain"


@dataclass(frozen=True)
class SourceConfig:
    """One problem source as described by a datasets_cfg YAML (see datasets_cfg/README.md)."""

    name: str
    kind: str = "dataset"  # "dataset" or "synthetic"
    description: str = ""
    license: str = "unknown"
    role: str = "train"  # "train" or "eval": eval sources are decontamination targets
    hub_path: str | None = None
    hub_config: str | None = None
    hub_split: str = "train"
    hub_fields: FieldMap = field(default_factory=FieldMap)
    local_file: str | None = None
    local_fields: FieldMap = field(default_factory=FieldMap)
    keep_columns: tuple[str, ...] = ()
    synthetic: dict = field(default_factory=dict)
    config_path: str | None = None

    @classmethod
    def from_yaml(cls, path: str | Path) -> SourceConfig:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as error:
            raise SourceError(f"{path}: cannot read source config: {error}") from error
        if not isinstance(raw, dict) or "name" not in raw:
            raise SourceError(f"{path}: a source config is a mapping with at least a `name`")
        hub = raw.get("hub") or {}
        local = raw.get("local") or {}
        config = cls(
            name=str(raw["name"]),
            kind=raw.get("kind", "dataset"),
            description=raw.get("description", ""),
            license=raw.get("license", "unknown"),
            role=raw.get("role", "train"),
            hub_path=hub.get("path"),
            hub_config=hub.get("config"),
            hub_split=hub.get("split", "train"),
            hub_fields=_field_map(hub.get("fields"), path, "hub.fields"),
            local_file=local.get("file"),
            local_fields=_field_map(local.get("fields"), path, "local.fields"),
            keep_columns=tuple(raw.get("keep_columns") or ()),
            synthetic=raw.get("synthetic") or {},
            config_path=str(path),
        )
        if config.kind not in ("dataset", "synthetic"):
            raise SourceError(f"{path}: field `kind` must be dataset or synthetic, not {config.kind!r}")
        if config.kind == "dataset" and not (config.hub_path or config.local_file):
            raise SourceError(f"{path}: a dataset source needs `hub.path` or `local.file`")
        return config


def _field_map(raw: dict | None, path: Path, where: str) -> FieldMap:
    raw = dict(raw or {})
    rule = raw.get("answer_rule", "plain")
    if rule not in ANSWER_RULES:
        raise SourceError(f"{path}: {where}.answer_rule must be one of {', '.join(ANSWER_RULES)}, not {rule!r}")
    return FieldMap(problem=raw.get("problem", "problem"), answer=raw.get("answer", "answer"), answer_rule=rule)


def configs_dir() -> Path:
    """datasets_cfg/ of this checkout (or $CURRICULUM_CONFIGS_DIR)."""
    return Path(os.environ.get("CURRICULUM_CONFIGS_DIR", _PACKAGE_ROOT / "datasets_cfg"))


def all_sources() -> dict[str, SourceConfig]:
    """Every source config in datasets_cfg/, by name."""
    sources = {}
    for path in sorted(configs_dir().glob("*.yaml")):
        config = SourceConfig.from_yaml(path)
        sources[config.name] = config
    return sources


def find_source(spec: str) -> SourceConfig | None:
    """A YAML path, a source name (`gsm8k`), or a hub id (`openai/gsm8k`, first split listed) -> config."""
    path = Path(spec)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise SourceError(f"{spec}: no such source config")
        return SourceConfig.from_yaml(path)
    sources = all_sources()
    if spec in sources:
        return sources[spec]
    for config in sources.values():
        if config.hub_path and config.hub_path.lower() == spec.lower():
            return config
    return None


def data_dir(explicit: str | Path | None = None) -> Path | None:
    """The local data directory: the explicit option, else $CURRICULUM_DATA_DIR, else the shared data directory
    beside the repository (`../shared/data`) when it holds data, else None (use the hub). The one resolver:
    data prepare, eval and the pipeline all ask it."""
    value = explicit or os.environ.get(DATA_DIR_ENV)
    if not value:
        beside = Path(__file__).resolve().parents[3] / "shared" / "data"
        return beside if (beside / "eval").is_dir() else None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise SourceError(f"data directory {path} does not exist (from --data-dir or ${DATA_DIR_ENV})")
    return path
