"""The journal of an unfinished evaluation: every finished chunk of completions, so a killed evaluation
resumes where it stopped instead of from the first problem.

Each chunk is sampled with its own seed (`evaluation.chunk_seed`), so a chunk drawn before a kill is the
chunk an uninterrupted run would have drawn: reusing it changes no number. The journal is one JSON line per
chunk, appended and flushed to disk as the chunk finishes; its first line is the key of the evaluation (the
model's weights, engine, sampling, settings, template and the problems), and a journal with another key is
started afresh. A kill in the middle of a line leaves a torn last line, which is dropped on reopening.
The file is deleted once the eval JSON is written (`evaluation.write_eval`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from curriculum.contracts import atomic_write_text
from curriculum.layout import fingerprint
from curriculum.rollout.base import Completion

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")


def weights_identity(model_dir: str | Path) -> list:
    """Name, size and modification time of each weight file at the top of `model_dir`: retraining into the
    same folder changes them, so a journal of the old weights is not reused for the new ones."""
    directory = Path(model_dir)
    if not directory.is_dir():
        return []
    identity = []
    for path in sorted(directory.iterdir()):
        if path.is_file() and path.suffix in _WEIGHT_SUFFIXES:
            stat = path.stat()
            identity.append([path.name, stat.st_size, stat.st_mtime_ns])
    return identity


class EvalJournal:
    """Finished chunks by (benchmark, chunk index), read from `path` if it holds the same key, plus `add`."""

    def __init__(self, path: str | Path, key: dict) -> None:
        self.path = Path(path)
        self.key = fingerprint(key)
        self.chunks: dict[tuple[str, int], list[list[Completion]]] = {}
        lines, entries = self._read_matching_lines()
        for entry in entries[1:]:
            self.chunks[(entry["benchmark"], entry["chunk"])] = [
                [Completion(*completion) for completion in group] for group in entry["groups"]
            ]
        # rewrite what survives (header first), so a torn line never gets glued to the next chunk
        self.path.parent.mkdir(parents=True, exist_ok=True)
        header = json.dumps({"key": self.key})
        atomic_write_text(self.path, "\n".join([header, *lines[1:]]) + "\n")

    def _read_matching_lines(self) -> tuple[list[str], list]:
        """The journal's complete lines and what each holds, or none if the journal is missing or belongs to
        another evaluation."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return [], []
        lines, entries = [], []
        for line in text.split("\n"):
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a torn last line (or garbage): everything after it is untrusted
            lines.append(line)
        header = entries[0] if entries else None
        if not isinstance(header, dict) or header.get("key") != self.key:
            return [], []
        return lines, entries

    def get(self, benchmark: str, chunk: int) -> list[list[Completion]] | None:
        return self.chunks.get((benchmark, chunk))

    def add(self, benchmark: str, chunk: int, groups: list[list[Completion]]) -> None:
        """Append one finished chunk and flush it to disk before the evaluation goes on."""
        entry = {"benchmark": benchmark, "chunk": chunk,
                 "groups": [[[c.text, c.num_tokens, c.finish_reason] for c in group] for group in groups]}
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.chunks[(benchmark, chunk)] = groups
