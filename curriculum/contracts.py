"""The contracts between stages: which columns each file holds, how it is read and checked, where a pass rate
falls among bucket edges, and how a finished file is written so that a kill never leaves half of one.

Every stage that reads a problems, scores or buckets file goes through here, so a bad file gets the same one
line (file, row, id, column, why) whichever stage meets it first.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

#: A problems file (`curriculum data prepare`): these must be present and non-empty; `source` and a
#: source's own columns may follow.
PROBLEM_COLUMNS: tuple[str, ...] = ("id", "problem", "answer")
#: A scores file (`curriculum score`): one row per problem.
SCORE_COLUMNS: tuple[str, ...] = ("id", "n", "k", "pass_rate", "ci_low", "ci_high", "mean_tokens", "model")
#: A buckets dataset (`curriculum build`): what training and per-bucket evaluation read.
BUCKET_COLUMNS: tuple[str, ...] = ("id", "prompt", "answer", "bucket", "pass_rate")


class ContractError(ValueError):
    """A file that breaks its stage's contract; the message names the file, the row and the column."""


# ---------------------------------------------------------------------------------------------- reading


def read_table(path: str | Path, what: str, *, error: type[Exception] = ContractError) -> pd.DataFrame:
    """A parquet, .jsonl, .json or .csv file as a DataFrame, or one clear error if it cannot be read.

    Args:
        path: the file.
        what: what the file is ("problems", "scores"), for the message.
        error: the exception class to raise (a stage's own error type, so its CLI reports it).
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} file {path} does not exist")
    try:
        if path.suffix == ".jsonl":
            return pd.read_json(path, lines=True, dtype=False)
        if path.suffix == ".json":
            return pd.read_json(path, dtype=False)
        if path.suffix == ".csv":
            return pd.read_csv(path)
        return pd.read_parquet(path)
    except Exception as failure:  # noqa: BLE001 - pyarrow and pandas raise many types for a corrupt file
        raise error(f"cannot read {what} file {path}: {str(failure).splitlines()[0]}") from failure


# ---------------------------------------------------------------------------------------------- checking


def fail_if(path, frame: pd.DataFrame, column: str, mask, why: str, *, error: type[Exception] = ContractError) -> None:
    """Raise one line naming the first row where `mask` holds (its id, the column, the value, why)."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return
    row = int(np.flatnonzero(mask)[0])
    ident = frame["id"].iloc[row] if "id" in frame.columns else "?"
    more = int(mask.sum()) - 1
    value = frame[column].iloc[row]
    value = value.item() if isinstance(value, np.generic) else value
    raise error(f"{path}: row {row} (id {ident}): column {column} = {value!r} {why}"
                + (f" ({more} more row(s) like it)" if more else ""))


def validate_problems(frame: pd.DataFrame, path: str | Path = "problems", *,
                      error: type[Exception] = ContractError) -> None:
    """The problems contract: id, problem and answer present and non-empty in every row, ids unique."""
    missing = [column for column in PROBLEM_COLUMNS if column not in frame.columns]
    if missing:
        raise error(f"{path}: missing column(s) {', '.join(missing)} (a problems file has id, problem, answer, "
                    f"source; found {', '.join(map(str, frame.columns)) or 'none'})")
    if len(frame) == 0:
        raise error(f"{path}: no problems (the file has no rows)")
    for column in PROBLEM_COLUMNS:
        values = frame[column]
        empty = values.isna().to_numpy() | (values.astype(str).str.strip() == "").to_numpy()
        if empty.any():
            row, more = int(np.flatnonzero(empty)[0]), int(empty.sum()) - 1
            raise error(f"{path}: row {row}: field {column!r} is empty" + (f" ({more} more row(s) like it)" if more else ""))
    ids = frame["id"].astype(str)
    duplicated = ids.duplicated(keep=False).to_numpy()
    if duplicated.any():
        rows = np.flatnonzero(duplicated)
        same = [int(r) for r in rows if ids.iloc[r] == ids.iloc[rows[0]]]
        raise error(f"{path}: rows {same[0]} and {same[1]}: duplicate id {ids.iloc[rows[0]]!r}")


def validate_scores(scores: pd.DataFrame, path: str | Path = "scores", *,
                    error: type[Exception] = ContractError) -> None:
    """The scores contract: columns present, one row per id, 0 <= k <= n, n >= 1, rates in [0, 1]."""
    missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise error(f"{path}: missing column(s) {', '.join(missing)} "
                    f"(a scores file has {', '.join(SCORE_COLUMNS)}; found {', '.join(map(str, scores.columns))})")
    if len(scores) == 0:
        raise error(f"{path}: no rows")
    for column in ("n", "k", "pass_rate", "ci_low", "ci_high", "mean_tokens"):
        values = pd.to_numeric(scores[column], errors="coerce")
        bad = values.isna() & scores[column].notna() if column == "mean_tokens" else values.isna()
        fail_if(path, scores, column, bad, "is not a number", error=error)
    for column in ("pass_rate", "ci_low", "ci_high"):
        values = scores[column].astype(float)
        fail_if(path, scores, column, (values < 0) | (values > 1), "is outside [0, 1]", error=error)
    n, k = scores["n"].astype(float), scores["k"].astype(float)
    fail_if(path, scores, "n", n < 1, "must be at least 1", error=error)
    fail_if(path, scores, "k", (k < 0) | (k > n), "must be between 0 and n", error=error)
    fail_if(path, scores, "id", scores["id"].duplicated(), "appears twice", error=error)


# ---------------------------------------------------------------------------------------------- bands


def band_index(pass_rates, edges: Sequence[float]) -> np.ndarray:
    """Band of each pass rate among descending-or-any-order `edges`, 0 = easiest (above the highest edge).

    A rate equal to an edge goes above it (into the easier band). Scoring's stopping rule, the thresholds
    bucketing and the sampler's re-bucketing all place a pass rate with this one function.

    Example:
        >>> band_index([0.9, 0.5, 0.1], (0.8, 0.5, 0.2)).tolist()
        [0, 1, 3]
    """
    cuts = np.sort(np.asarray(edges, dtype=float))
    return len(cuts) - np.searchsorted(cuts, np.asarray(pass_rates, dtype=float), side="right")


def edges_between(pass_rates, buckets, num_buckets: int) -> list[float]:
    """Pass-rate edges between consecutive buckets: the midpoint of bucket k's lowest and k+1's highest rate.

    A bucket pair with an empty side gets no edge.
    """
    pass_rates, buckets = np.asarray(pass_rates, dtype=float), np.asarray(buckets)
    edges = []
    for k in range(num_buckets - 1):
        easier, harder = pass_rates[buckets == k], pass_rates[buckets == k + 1]
        if len(easier) and len(harder):
            edges.append(float((easier.min() + harder.max()) / 2))
    return edges


# ---------------------------------------------------------------------------------------------- writing


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that a reader (or a kill) sees the old file or the new one, never half.

    The bytes are flushed to disk before the rename and the rename itself is flushed, so a power cut after
    the call cannot lose a file the caller already counts as written.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    """`atomic_write_bytes` for text (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_parquet(frame: pd.DataFrame, path: str | Path, *,
                         schema_metadata: dict[bytes, bytes] | None = None) -> None:
    """`atomic_write_bytes` for a DataFrame as parquet, with extra key/value pairs in the file's schema."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    if schema_metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **schema_metadata})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some filesystems do not open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = [
    "BUCKET_COLUMNS", "PROBLEM_COLUMNS", "SCORE_COLUMNS", "ContractError", "atomic_write_bytes",
    "atomic_write_parquet", "atomic_write_text", "band_index", "edges_between", "fail_if", "read_table",
    "validate_problems", "validate_scores",
]
