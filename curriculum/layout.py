"""The run directory: every file name a stage writes, the stage order and the completion markers.

One module spells each name once; stages, the pipeline, the report and compare import it. A run directory
as `curriculum pipeline` lays it out (the single-stage commands write the same names wherever `--out` says):

    runs/<name>/
    ├── config.yaml                      the resolved recipe
    ├── problems.parquet                 data   (+ problems.rejects.jsonl, problems.repairs.jsonl)
    ├── scores.parquet                   score  (+ scores.completions.parquet; scores.parquet.parts/ while running)
    ├── buckets/                         build  (HF dataset + manifest.json + pass_rates.png)
    ├── heldout/                         build  (build.heldout: same format, never trained on)
    ├── train/                           train  (config.yaml, metrics.jsonl, checkpoint-N/, the final model)
    ├── eval_before.json                 eval   (+ eval_before.samples.jsonl; eval_before.journal.jsonl while running)
    ├── eval_after.json                  eval   (+ eval_after.samples.jsonl)
    ├── report/                          report (report.md, report.html, *.png)
    └── .pipeline/<stage>.json           a stage's completion marker: {fingerprint, finished, wall_s}

Side files are named from their main file, wherever that is, by the helpers below
(`rejects_path_for("x/p.parquet")` is `x/p.rejects.jsonl`), so a stage run by hand writes the same pairs.

Example:
    >>> layout = RunLayout("runs/demo")
    >>> str(layout.heldout_manifest)
    'runs/demo/heldout/manifest.json'
    >>> str(layout.samples("after"))
    'runs/demo/eval_after.samples.jsonl'
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STAGES = ("data", "score", "build", "train", "eval", "report")
MARKERS = ".pipeline"

CONFIG = "config.yaml"
PROBLEMS = "problems.parquet"
SCORES = "scores.parquet"
BUCKETS = "buckets"
HELDOUT = "heldout"  # the held-out split's folder, and its benchmark name in eval results
MANIFEST = "manifest.json"
TRAIN = "train"
METRICS = "metrics.jsonl"
EVAL_BEFORE = "eval_before.json"
EVAL_AFTER = "eval_after.json"
EVAL_LABELS = {"before": EVAL_BEFORE, "after": EVAL_AFTER}
REPORT_DIR = "report"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
LEGACY_SOURCES = "sources"  # written by the data stage before 14.3; still removed by --redo data


# ------------------------------------------------------------------------------------------- side files


def rejects_path_for(problems: str | Path) -> Path:
    """runs/x/problems.parquet -> runs/x/problems.rejects.jsonl (rows `data prepare` did not keep)."""
    problems = Path(problems)
    return problems.with_name(problems.name.removesuffix(".parquet") + ".rejects.jsonl")


def repairs_path_for(problems: str | Path) -> Path:
    """runs/x/problems.parquet -> runs/x/problems.repairs.jsonl (fields whose LaTeX escapes were repaired)."""
    problems = Path(problems)
    return problems.with_name(problems.name.removesuffix(".parquet") + ".repairs.jsonl")


def completions_path(scores: str | Path) -> Path:
    """runs/x/scores.parquet -> runs/x/scores.completions.parquet (per-sample rows of a scoring run)."""
    scores = Path(scores)
    return scores.with_name(scores.name.removesuffix(".parquet") + ".completions.parquet")


def parts_dir(scores: str | Path) -> Path:
    """runs/x/scores.parquet -> runs/x/scores.parquet.parts/ (finished chunks of an unfinished scoring run)."""
    scores = Path(scores)
    return scores.with_name(scores.name + ".parts")


def samples_path_for(eval_json: str | Path) -> Path:
    """eval.json -> eval.samples.jsonl (every completion an evaluation drew)."""
    eval_json = Path(eval_json)
    return eval_json.with_name(eval_json.stem + ".samples.jsonl")


def journal_path_for(eval_json: str | Path) -> Path:
    """eval.json -> eval.journal.jsonl (the finished chunks of an evaluation still running)."""
    eval_json = Path(eval_json)
    return eval_json.with_name(eval_json.stem + ".journal.jsonl")


def manifest_path(dataset_dir: str | Path) -> Path:
    """A buckets (or held-out) folder's manifest.json."""
    return Path(dataset_dir) / MANIFEST


def fingerprint(inputs: Any) -> str:
    """A short stable hash of JSON-able settings: what a resume marker records and a rerun compares.

    >>> fingerprint({"b": 1, "a": [1, 2]}) == fingerprint({"a": [1, 2], "b": 1})
    True
    """
    text = json.dumps(inputs, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class RunLayout:
    """Every path of one run directory. Pure: nothing is created or read here."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    # data
    @property
    def problems(self) -> Path:
        return self.root / PROBLEMS

    @property
    def rejects(self) -> Path:
        return rejects_path_for(self.problems)

    @property
    def repairs(self) -> Path:
        return repairs_path_for(self.problems)

    # score
    @property
    def scores(self) -> Path:
        return self.root / SCORES

    @property
    def completions(self) -> Path:
        return completions_path(self.scores)

    @property
    def score_parts(self) -> Path:
        return parts_dir(self.scores)

    # build
    @property
    def buckets(self) -> Path:
        return self.root / BUCKETS

    @property
    def manifest(self) -> Path:
        return manifest_path(self.buckets)

    @property
    def heldout(self) -> Path:
        return self.root / HELDOUT

    @property
    def heldout_manifest(self) -> Path:
        return manifest_path(self.heldout)

    # train
    @property
    def train(self) -> Path:
        return self.root / TRAIN

    @property
    def metrics(self) -> Path:
        return self.train / METRICS

    def checkpoints(self) -> list[Path]:
        """The train folder's checkpoint-N folders, by step."""
        found = [p for p in self.train.glob("checkpoint-*") if p.name.removeprefix("checkpoint-").isdigit()]
        return sorted(found, key=lambda p: int(p.name.removeprefix("checkpoint-")))

    # eval
    def eval(self, label: str) -> Path:
        """`before` (the untrained model) or `after` (the trained one)."""
        return self.root / EVAL_LABELS[label]

    def samples(self, label: str) -> Path:
        return samples_path_for(self.eval(label))

    def journal(self, label: str) -> Path:
        return journal_path_for(self.eval(label))

    # report, config, markers
    @property
    def report(self) -> Path:
        return self.root / REPORT_DIR

    @property
    def report_md(self) -> Path:
        return self.report / REPORT_MD

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def markers(self) -> Path:
        return self.root / MARKERS

    def marker(self, stage: str) -> Path:
        return self.markers / f"{stage}.json"

    def outputs(self, stage: str) -> list[Path]:
        """Everything `stage` writes, side files included (what `--redo` removes)."""
        return {
            "data": [self.problems, self.rejects, self.repairs, self.root / LEGACY_SOURCES],
            "score": [self.scores, self.score_parts, self.completions],
            "build": [self.buckets, self.heldout],
            "train": [self.train],
            "eval": [self.eval("before"), self.eval("after"), self.samples("before"), self.samples("after")],
            "report": [self.report],
        }[stage]
