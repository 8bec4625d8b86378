r"""Read raw rows from JSONL, JSON, parquet files or a hub dataset, keeping line numbers for errors.

A row that cannot even be read (malformed JSON, binary bytes, not an object) becomes a Reject here; the
readers never raise for one bad row, so one broken line never costs the good ones. Values are handed on as
read: LaTeX escape damage in the text ("\x0crac" for "\frac") is repaired by validate.to_problem, which every
problem read goes through (see escapes.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from curriculum.data.sources import SourceConfig, SourceError


@dataclass(frozen=True)
class RawRow:
    """One raw record and where it came from (file and 1-based line or row number)."""

    file: str
    line: int
    data: dict


@dataclass(frozen=True)
class Reject:
    """A row that was not kept: file, line, the offending field (if any) and why."""

    file: str
    line: int
    reason: str
    field: str | None = None
    excerpt: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _excerpt(text: str, limit: int = 120) -> str:
    return text[:limit] + ("..." if len(text) > limit else "")


def read_file(path: str | Path) -> Iterator[RawRow | Reject]:
    """Rows of a .jsonl/.json/.parquet file, each a RawRow or a Reject."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        yield from _read_jsonl(path)
    elif suffix == ".json":
        yield from _read_json(path)
    elif suffix == ".parquet":
        yield from _read_parquet(path)
    else:
        raise SourceError(f"{path}: unsupported file type {suffix!r} (expected .jsonl, .json or .parquet)")


def _read_jsonl(path: Path) -> Iterator[RawRow | Reject]:
    name = str(path)
    with path.open("rb") as handle:
        for number, raw_line in enumerate(handle, start=1):
            try:
                line = raw_line.decode("utf-8")
            except UnicodeDecodeError:
                yield Reject(name, number, "binary data: line is not valid UTF-8")
                continue
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as error:
                yield Reject(name, number, f"malformed JSON: {error.msg} at column {error.colno}",
                             excerpt=_excerpt(line.strip()))
                continue
            if not isinstance(data, dict):
                yield Reject(name, number, f"row is a JSON {type(data).__name__}, not an object",
                             excerpt=_excerpt(line.strip()))
                continue
            yield RawRow(name, number, data)


def _read_json(path: Path) -> Iterator[RawRow | Reject]:
    name = str(path)
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SourceError(f"{path}: not a valid JSON file: {error}") from error
    if isinstance(data, dict):
        # {"data": [...]} or {"train": [...]}: take the single list-valued entry.
        lists = [value for value in data.values() if isinstance(value, list)]
        if len(lists) != 1:
            raise SourceError(f"{path}: expected a JSON array of objects (or one object holding one array)")
        data = lists[0]
    if not isinstance(data, list):
        raise SourceError(f"{path}: expected a JSON array of objects")
    for number, item in enumerate(data, start=1):
        if isinstance(item, dict):
            yield RawRow(name, number, item)
        else:
            yield Reject(name, number, f"row is a JSON {type(item).__name__}, not an object",
                         excerpt=_excerpt(json.dumps(item)))


def _read_parquet(path: Path) -> Iterator[RawRow | Reject]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow raises several types for a corrupt file
        raise SourceError(f"{path}: not a readable parquet file: {error}") from error
    for number, row in enumerate(table.to_pylist(), start=1):
        yield RawRow(str(path), number, row)


def read_hub(config: SourceConfig) -> Iterator[RawRow | Reject]:
    """Rows of the source's hub dataset (needs a reachable hub or a populated HF cache)."""
    import datasets

    label = f"{config.hub_path}:{config.hub_split}"
    try:
        dataset = datasets.load_dataset(config.hub_path, config.hub_config, split=config.hub_split)
    except Exception as error:  # network, auth or missing-dataset errors all mean the same to the user
        raise SourceError(
            f"cannot load {config.hub_path!r} (config {config.hub_config}, split {config.hub_split}) from the hub: "
            f"{type(error).__name__}: {str(error)[:200]}. Without a hub, point --data-dir or "
            f"$CURRICULUM_DATA_DIR at a directory holding {config.local_file or 'the local file'}."
        ) from error
    for number, row in enumerate(dataset, start=1):
        yield RawRow(label, number, dict(row))
