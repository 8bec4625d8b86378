"""Load problems from a source spec: a datasets_cfg YAML, a source name or hub id, or a plain file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from curriculum.data import synthetic
from curriculum.data.readers import Reject, read_file, read_hub
from curriculum.data.records import Problem
from curriculum.data.sources import FieldMap, SourceConfig, SourceError, data_dir, find_source
from curriculum.data.validate import Limits, to_problem

# Benchmark names used by `curriculum eval` -> source config names in datasets_cfg/.
BENCHMARKS = {
    "aime24": "aime24",
    "amc23": "amc23",
    "math500": "math500",
    "gsm8k": "gsm8k_test",
    "minerva": "minerva_math",
    "olympiadbench": "olympiadbench",
}
_PLAIN_FILE_SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet")


def resolve_source(spec: str) -> SourceConfig:
    """A YAML path, source name, hub id or plain data file -> the SourceConfig describing it."""
    path = Path(spec)
    if path.suffix.lower() in _PLAIN_FILE_SUFFIXES:
        if not path.is_file():
            raise SourceError(f"{spec}: no such file")
        return SourceConfig(name=path.stem, local_file=str(path.resolve()), local_fields=FieldMap())
    config = find_source(spec)
    if config is None:
        raise SourceError(
            f"unknown source {spec!r}: give a datasets_cfg/*.yaml file, a source name, a hub id listed in "
            "datasets_cfg/, or a .jsonl/.json/.parquet file with `problem` and `answer` fields"
        )
    return config


def iter_source(config: SourceConfig, *, data_dir_option: str | Path | None = None,
                limits: Limits = Limits(), synth_n: int | None = None,
                synth_seed: int | None = None, knobs: synthetic.Knobs | None = None) -> Iterator[Problem | Reject]:
    """Problems (or Rejects) of one source, from the local data directory when it has the file, else the hub."""
    if config.kind == "synthetic":
        n = synth_n if synth_n is not None else int(config.synthetic.get("n", 500))
        seed = synth_seed if synth_seed is not None else int(config.synthetic.get("seed", 0))
        yield from synthetic.generate(n, seed, knobs or synthetic.Knobs())
        return
    local_path = _local_path(config, data_dir_option)
    if local_path is not None:
        rows, fields = read_file(local_path), config.local_fields
    elif config.hub_path:
        rows, fields = read_hub(config), config.hub_fields
    else:
        raise SourceError(
            f"source {config.name!r}: {config.local_file} not found; set --data-dir or $CURRICULUM_DATA_DIR"
        )
    for row in rows:
        yield row if isinstance(row, Reject) else to_problem(row, fields, config.name, config.keep_columns, limits)


def _local_path(config: SourceConfig, data_dir_option) -> Path | None:
    if not config.local_file:
        return None
    path = Path(config.local_file)
    if path.is_absolute():
        return path
    root = data_dir(data_dir_option)
    if root is None:
        return None
    candidate = root / path
    return candidate if candidate.is_file() else None


def load_problems(spec: str, *, data_dir_option: str | Path | None = None):
    """All valid problems of a source as a DataFrame (rejects dropped); for eval sets and quick use."""
    import pandas as pd

    config = resolve_source(spec)
    rows = [item.to_row() for item in iter_source(config, data_dir_option=data_dir_option)
            if isinstance(item, Problem)]
    return pd.DataFrame(rows)


def load_benchmark(name: str, data_dir: str | Path | None = None):
    """A benchmark (aime24, amc23, math500, gsm8k, minerva, olympiadbench) as a DataFrame of problems."""
    if name not in BENCHMARKS:
        raise SourceError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    return load_problems(BENCHMARKS[name], data_dir_option=data_dir)
