"""`curriculum compare`: a study of curriculum arms at identical compute, from one command.

A curriculum is only worth its cost if it beats uniform sampling at the same compute. An *arm* is a name
and what its training does differently: its schedule, `schedule_options`, `online_difficulty`,
`skip_solved`, and optionally its own buckets dataset (e.g. uniform sampling over every problem, built
without the zero-signal filter). Everything else is shared by every arm and seed: model, steps, group size,
prompts per step, rewards, GRPO settings, seeds; a recipe that tries to vary anything else is refused at
load. Every arm is evaluated by the one harness of `curriculum.evaluation` (same problems, same sampling
seed) at step 0 (the untrained model, evaluated once and shared), at every `eval_every` steps (the training
checkpoints) and at the end, giving learning curves of held-out accuracy.

What the study reports per arm (seeds pooled):

- accuracy at the end with a 95% bootstrap interval over problems (per-problem accuracy averaged over seeds),
  the per-seed values, and the paired difference to the baseline arm with its interval and p;
- compute: training rollouts (completions sampled in training = steps x prompts per step x group size) and
  scoring rollouts (the `n` summed over the scores parquet its buckets needed), the curves drawn against
  training rollouts and against total rollouts;
- the rollouts it needs to reach the baseline's final accuracy, with an interval: problems and seeds are
  resampled, every curve and the baseline's final accuracy recomputed on the draw, and the first crossing
  read off the curve (linear between evaluated points). Drawn for one draw, with accuracy on the y axis:

      accuracy
        ^                         x-------- baseline's final accuracy (the target)
        |              o----o--/--                    o: the arm's curve at evaluated points
        |        o----/      crossing                 the crossing's x, by linear interpolation between
        |  o----/                                     the last point below and the first point at or
        +--+----+----+----+----+----> training rollouts  above the target, is this draw's answer;
           0   C1   C2   C3   C4                      a curve that never gets there is "not reached"

- the mechanism: the share of GRPO groups with zero advantage (`curriculum/zero_adv_share` in
  metrics.jsonl), its mean over training and its curve.

Layout of `<out>/`:

    base/eval.json                      the untrained model (step 0 of every curve)
    <arm>/seed-<s>/                     one training run: config.yaml, metrics.jsonl, checkpoint-N/, final model
    <arm>/seed-<s>/eval-step-<N>.json   checkpoint N evaluated (N < steps)
    <arm>/seed-<s>/eval.json            the final model evaluated (the curve's last point, N = steps)
    comparison.json                     everything the report shows
    study.json                          the study summary (steps, heldout_problems, samples, arms: {...})
    report/                             report.md, report.html, PNGs

Resuming: finished trainings and evaluations carry a fingerprint of their settings and are skipped on a
rerun; a training run that was interrupted continues from its last checkpoint.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from curriculum import layout, reports
from curriculum.evaluation import EvalSettings, bootstrap_interval, paired_bootstrap_difference
from curriculum.layout import CONFIG, METRICS, REPORT_DIR, journal_path_for
from curriculum.stats import pooled_seed_spread, seed_level_difference, seeds_for_paired_difference

COMPARISON = "comparison.json"
STUDY = "study.json"
DONE = ".compare-done.json"
SO_FAR = "so-far"  # <out>/so-far/: the interim comparison of the runs finished so far
STARTED = ".compare-started.json"
BASE = "base"
FINAL_EVAL = "eval.json"
OPTIMIZER_FILES = ("optimizer.pt", "optimizer.bin")  # what transformers' Trainer saves for resuming
# What an arm may set for itself; everything else is one value for the whole study.
ARM_TRAIN_KEYS = ("schedule", "schedule_options", "online_difficulty", "skip_solved")
ARM_KEYS = (*ARM_TRAIN_KEYS, "buckets", "needs_scoring", "scoring_rollouts_from")
# Keys of a study file (`curriculum compare --config study.yaml`) besides `arms`, `baseline` and `train`.
STUDY_KEYS = ("model", "buckets", "scores", "steps", "num_generations", "seeds", "eval_every", "benchmarks",
              "heldout", "eval", "eval_engine", "eval_engine_options", "eval_base", "data_dir", "primary",
              "keep_optimizer_state", "workers")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class CompareError(ValueError):
    """Settings that cannot give a fair comparison; the message says which."""


@dataclass
class Arm:
    """One arm: a name (its directory) and the training settings it may change; None = the shared value.

    `buckets`: its own buckets dataset instead of the study's. Scoring rollouts are counted from
    `scoring_rollouts_from` (a scores parquet) or, unless `needs_scoring` is false, from the study's `scores`.

    >>> Arm.from_dict("linear-online", {"schedule": "linear", "online_difficulty": True}).overrides()
    {'schedule': 'linear', 'online_difficulty': True}
    """

    name: str
    schedule: str
    schedule_options: dict | None = None
    online_difficulty: bool | None = None
    skip_solved: bool | None = None
    buckets: str | None = None
    needs_scoring: bool | None = None
    scoring_rollouts_from: str | None = None

    @classmethod
    def from_dict(cls, name: str, data: dict | None, *, source: str = "study") -> Arm:
        if not isinstance(name, str) or not _NAME.match(name) or name in (BASE, REPORT_DIR):
            raise CompareError(f"{source}: arm name {name!r} must be a plain directory name (letters, digits, . _ -) "
                               f"other than {BASE!r} and {REPORT_DIR!r}")
        if not isinstance(data, dict):
            raise CompareError(f"{source}: arm {name!r} must be a mapping such as {{schedule: linear}}, got {data!r}")
        for key in data:
            if key not in ARM_KEYS:
                close = difflib.get_close_matches(str(key), ARM_KEYS, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise CompareError(
                    f"{source}: arm {name!r} sets `{key}`{hint}, which every arm must share (steps, group size, "
                    f"prompts per step, rewards, GRPO settings and seeds are one value for the study; set it once "
                    f"under `train:` or at the top); an arm may set only {', '.join(ARM_KEYS)}")
        if not isinstance(data.get("schedule"), str):
            raise CompareError(f"{source}: arm {name!r} needs `schedule: <name>` (e.g. uniform, linear)")
        for key in ("online_difficulty", "skip_solved", "needs_scoring"):
            if data.get(key) is not None and not isinstance(data[key], bool):
                raise CompareError(f"{source}: arm {name!r}: `{key}` must be true or false, got {data[key]!r}")
        if data.get("schedule_options") is not None and not isinstance(data["schedule_options"], dict):
            raise CompareError(f"{source}: arm {name!r}: `schedule_options` must be a mapping")
        for key in ("buckets", "scoring_rollouts_from"):
            if data.get(key) is not None and not isinstance(data[key], (str, Path)):
                raise CompareError(f"{source}: arm {name!r}: `{key}` must be a path, got {data[key]!r}")
        values = {key: str(value) if key in ("buckets", "scoring_rollouts_from") and value is not None else value
                  for key, value in data.items()}
        return cls(name=name, **values)

    def overrides(self) -> dict:
        """The train settings this arm sets (TrainSettings field names)."""
        return {key: copy.deepcopy(getattr(self, key)) for key in ARM_TRAIN_KEYS if getattr(self, key) is not None}

    def training_identity(self) -> dict:
        """What makes this arm's training differ (for fingerprints); scoring accounting does not."""
        return {key: value for key, value in asdict(self).items()
                if value is not None and key not in ("name", "needs_scoring", "scoring_rollouts_from")}


@dataclass
class CompareSettings:
    """One study: the shared training recipe, the arms, and the one evaluation harness.

    Without `arms`, one arm per name in `schedules` (only the schedule differs), as in the first version.
    """

    buckets: str | None
    out: str
    model: str = "smollm2-135m"
    schedules: list[str] = field(default_factory=lambda: ["linear", "uniform"])
    baseline: str = "uniform"
    seeds: list[int] = field(default_factory=lambda: [0])
    steps: int = 50
    num_generations: int = 4
    train: dict = field(default_factory=dict)  # any other TrainSettings field, incl. grpo: {...}
    benchmarks: list[str] = field(default_factory=lambda: ["gsm8k"])
    heldout: str | None = None  # a buckets dataset to evaluate per bucket
    eval: EvalSettings = field(default_factory=EvalSettings)
    eval_engine: str = "hf"
    eval_engine_options: dict = field(default_factory=dict)
    eval_base: bool = True
    data_dir: str | None = None
    arms: list[Arm] | dict | None = None  # {name: {schedule: ..., ...}} or Arm objects
    eval_every: int | None = None  # evaluate the checkpoints every N steps (learning curves)
    scores: str | None = None  # the scores parquet behind the scored arms' buckets (scoring rollouts)
    primary: str | None = None  # the eval set of the study statistics (default: heldout, else the first)
    keep_optimizer_state: bool = False  # else dropped from a finished run's evaluated checkpoints (disk)
    workers: int = 1  # runs trained at once, each in its own process on its share of the cores

    def __post_init__(self) -> None:
        if isinstance(self.eval, dict):  # as a study file writes it
            self.eval = EvalSettings(**self.eval)
        if self.arms is None:
            if len(set(self.schedules)) != len(self.schedules) or len(self.schedules) < 2:
                raise CompareError(f"need at least two distinct schedules, got {self.schedules}")
            self.arms = [Arm(name=schedule, schedule=schedule) for schedule in self.schedules]
        else:
            if isinstance(self.arms, dict):
                self.arms = [Arm.from_dict(name, data) for name, data in self.arms.items()]
            names = [arm.name for arm in self.arms]
            if len(set(names)) != len(names) or len(names) < 2:
                raise CompareError(f"need at least two distinct arms, got {names}")
            self.schedules = [arm.schedule for arm in self.arms]
        names = [arm.name for arm in self.arms]
        if self.baseline not in names:
            raise CompareError(f"the baseline {self.baseline!r} must be one of the arms {names}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise CompareError(f"seeds must be distinct, got {self.seeds}")
        if self.steps < 1 or self.num_generations < 2:
            raise CompareError("steps must be >= 1 and num_generations >= 2 (GRPO needs a group)")
        grpo = self.train.get("grpo") or {}
        for key in ("schedule", "max_steps", "num_generations"):
            if key in self.train or key in grpo:
                raise CompareError(f"`{key}` is set by compare itself (one value for every arm); remove it from the recipe")
        if "seed" in grpo:
            raise CompareError("grpo.seed is set per arm from --seeds; remove it from the recipe")
        missing = [arm.name for arm in self.arms if not (arm.buckets or self.buckets)]
        if missing:
            raise CompareError(f"arm(s) {missing} have no buckets: give the study's `buckets` or the arm's own")
        if self.eval_every is not None:
            if self.eval_every < 1:
                raise CompareError(f"eval_every must be a positive number of steps, got {self.eval_every}")
            for key in ("save_steps", "save_strategy", "save_total_limit"):
                if key in grpo:
                    raise CompareError(f"grpo.{key} is set by compare from eval_every (checkpoints at every "
                                       f"{self.eval_every} steps, all kept for evaluation); remove it")
            if self.train.get("lora"):
                raise CompareError("eval_every with LoRA is not supported: its checkpoints hold only the adapter, "
                                   "which the harness cannot load; drop eval_every (final models are merged)")
        for arm in self.arms:
            if arm.needs_scoring and not (arm.scoring_rollouts_from or self.scores):
                raise CompareError(f"arm {arm.name!r} needs scoring but the study names no `scores` parquet "
                                   "(give `scores:` or the arm's `scoring_rollouts_from:`)")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise CompareError(f"workers must be a positive integer (runs at once), got {self.workers!r}")
        if self.primary is not None and not isinstance(self.primary, str):
            raise CompareError(f"primary must be an eval set name, got {self.primary!r}")

    # ---- the arms

    def arm(self, name: str | Arm) -> Arm:
        if isinstance(name, Arm):
            return name
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise CompareError(f"no arm named {name!r}; arms are {[arm.name for arm in self.arms]}")

    def arm_buckets(self, arm: str | Arm) -> str:
        arm = self.arm(arm)
        return str(arm.buckets or self.buckets)

    def scoring_source(self, arm: str | Arm) -> str | None:
        """The scores parquet whose rollouts this arm's data needed, or None (an unscored pool)."""
        arm = self.arm(arm)
        if arm.scoring_rollouts_from:
            return arm.scoring_rollouts_from
        if arm.needs_scoring is False:
            return None
        return self.scores

    def checkpoint_steps(self) -> list[int]:
        """Steps whose checkpoints are evaluated (the final model, at `steps`, is evaluated as eval.json)."""
        return list(range(self.eval_every, self.steps, self.eval_every)) if self.eval_every else []

    def train_settings(self, arm: str | Arm, seed: int):
        """The TrainSettings of one arm: the shared recipe with this arm's overrides and seed."""
        from curriculum.training.config import TrainSettings

        arm = self.arm(arm)
        recipe = copy.deepcopy(self.train)
        grpo = {**(recipe.get("grpo") or {}), "seed": seed}
        if self.eval_every:
            grpo.update(save_strategy="steps", save_steps=self.eval_every)
        recipe["grpo"] = grpo
        recipe.update(arm.overrides())
        recipe.update({"max_steps": self.steps, "num_generations": self.num_generations})
        return TrainSettings.from_dict(recipe, source=f"compare arm {arm.name}")

    def fingerprint(self, part: str, arm: str | Arm | None = None, seed: int | None = None,
                    step: int | None = None) -> str:
        """A hash of what a training run or evaluation depends on (a first-version study keeps its hashes)."""
        shared = {"buckets": str(self.buckets), "model": self.model, "steps": self.steps,
                  "num_generations": self.num_generations, "train": self.train}
        if self.eval_every:
            shared["eval_every"] = self.eval_every
        harness = {"benchmarks": self.benchmarks, "heldout": self.heldout, "eval": asdict(self.eval),
                   "engine": self.eval_engine, "engine_options": self.eval_engine_options}
        name = self.arm(arm).name if arm is not None else None
        content = {"part": part, "schedule": name, "seed": seed, "harness": harness}
        if part != "base":
            content["shared"] = shared
            identity = self.arm(arm).training_identity() if arm is not None else {}
            if identity != {"schedule": name}:
                content["arm"] = identity
        if step is not None:
            content["step"] = step
        return layout.fingerprint(content)  # the same hash as before the one helper: old studies keep theirs


Event = Callable[[str, str], None]  # (arm, message)


def arm_dir(out: Path, arm: str, seed: int) -> Path:
    return Path(out) / arm / f"seed-{seed}"


def eval_path(directory: Path, step: int | None) -> Path:
    """Where one point of a learning curve is written: eval-step-N.json, or eval.json for the final model."""
    return directory / (FINAL_EVAL if step is None else f"eval-step-{step}.json")


def scoring_rollouts(path: str | Path) -> int:
    """Rollouts spent scoring: the sum of `n` (samples per problem) over a scores parquet."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise CompareError(f"scores parquet {path} does not exist (it is read for the scoring rollouts)")
    try:
        counts = pd.read_parquet(path, columns=["n"])["n"]
    except (KeyError, ValueError, OSError) as error:
        raise CompareError(f"{path} is not a scores parquet with an `n` column: {error}") from error
    return int(counts.sum())


# --------------------------------------------------------------------------------------------------
# the study file


def is_study_file(path: str | Path) -> bool:
    """Whether a `--config` file is a study (it has `arms:`) rather than a training recipe or pipeline."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "arms" in data


def read_study(path: str | Path) -> tuple[dict, dict]:
    """A study file -> (CompareSettings keyword values, the shared `train` section as written).

    Shape (YAML or JSON; every key but `arms` optional, command-line options win over the file):

        model: smollm2-135m
        buckets: runs/x/buckets           # for arms without their own
        scores: runs/x/scores.parquet     # scoring rollouts of the arms whose buckets needed scoring
        steps: 40
        num_generations: 4
        seeds: [0, 1, 2]
        eval_every: 10
        benchmarks: [gsm8k]
        heldout: runs/x/buckets           # its held-out split is evaluated too, as `heldout`
        primary: heldout                  # the eval set of the study statistics
        eval: {samples: 4, limit: 100, max_tokens: 512, temperature: 0.6, seed: 0}
        train: {reward: accuracy:1, grpo: {learning_rate: 1.0e-6}}   # shared by every arm
        arms:
          uniform-all:      {schedule: uniform, online_difficulty: false, buckets: runs/x/buckets-all,
                             needs_scoring: false}
          uniform-filtered: {schedule: uniform, online_difficulty: false}
          linear:           {schedule: linear, online_difficulty: false}
          linear-online:    {schedule: linear, online_difficulty: true}
        baseline: uniform-all
    """
    path = Path(path)
    data = _read_study_mapping(path)
    train = _shared_train_section(path, data)
    arms = [Arm.from_dict(name, spec, source=f"study {path}") for name, spec in data["arms"].items()]
    values: dict = {"arms": arms}
    for key in STUDY_KEYS:
        if key in data and key != "eval":
            values[key] = data[key]
    if "baseline" in data:
        values["baseline"] = data["baseline"]
    _check_study_types(path, data, values)
    if "eval" in data:
        values["eval"] = _study_harness(path, data["eval"])
    for key in ("buckets", "scores", "heldout", "data_dir"):
        if values.get(key) is not None:
            values[key] = str(values[key])
    return values, train


def _read_study_mapping(path: Path) -> dict:
    """The study file as a mapping with `arms:` and only known keys: a typo fails here, not hours later."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise CompareError(f"cannot read study {path}: {error}") from error
    if not isinstance(data, dict) or not isinstance(data.get("arms"), dict):
        raise CompareError(f"study {path} needs `arms:`, a mapping of arm name -> {{schedule: ..., ...}}")
    allowed = (*STUDY_KEYS, "arms", "baseline", "train")
    unknown = [key for key in data if key not in allowed]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), allowed, n=1)
        raise CompareError(f"study {path}: unknown key `{unknown[0]}`" + (f" (did you mean {close[0]}?)" if close
                                                                         else f"; keys are {', '.join(allowed)}"))
    return data


def _shared_train_section(path: Path, data: dict) -> dict:
    """The shared `train:` section, refused where it sets what compare sets itself or what each arm sets."""
    train = data.get("train") or {}
    if not isinstance(train, dict):
        raise CompareError(f"study {path}: `train` must be a mapping of shared training settings")
    for key, where in (("schedule", "per arm"), ("max_steps", "as the top-level `steps`"),
                       ("num_generations", "at the top level"), ("steps", "at the top level")):
        if key in train or key in (train.get("grpo") or {}):
            raise CompareError(f"study {path}: train.{key} is set {where}, not in the shared `train` section")
    for key in ("online_difficulty", "skip_solved", "schedule_options"):
        if key in train:
            raise CompareError(f"study {path}: train.{key} is a per-arm setting; set it in each arm")
    return train


def _check_study_types(path: Path, data: dict, values: dict) -> None:
    """Benchmarks as a list (a comma string is split), seeds and step counts as integers (YAML gives any type)."""
    if "benchmarks" in values and isinstance(values["benchmarks"], str):
        values["benchmarks"] = [part.strip() for part in values["benchmarks"].split(",") if part.strip()]
    if "seeds" in values:
        seeds = values["seeds"]
        if isinstance(seeds, int) and not isinstance(seeds, bool):
            seeds = [seeds]
        if not isinstance(seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise CompareError(f"study {path}: `seeds` must be a list of integers, got {data['seeds']!r}")
        values["seeds"] = seeds
    for key in ("steps", "num_generations", "eval_every", "workers"):
        if key in values and values[key] is not None and (not isinstance(values[key], int)
                                                          or isinstance(values[key], bool)):
            raise CompareError(f"study {path}: `{key}` must be an integer, got {values[key]!r}")


def _study_harness(path: Path, section) -> dict:
    """The `eval:` section, checked against EvalSettings' fields (built later, after command-line options)."""
    if not isinstance(section, dict):
        raise CompareError(f"study {path}: `eval` must be a mapping of harness settings (samples, limit, ...)")
    names = {f for f in EvalSettings.__dataclass_fields__}
    bad = [key for key in section if key not in names]
    if bad:
        raise CompareError(f"study {path}: eval.{bad[0]} is not a harness setting; use {', '.join(sorted(names))}")
    return dict(section)


# --------------------------------------------------------------------------------------------------
# running the study


def run_compare(settings: CompareSettings, *, on_event: Event | None = None,
                on_progress: Callable[[int], None] | None = None,
                on_benchmark: Callable[[str, int], None] | None = None) -> dict:
    """Train and evaluate every arm, checkpoint and seed not already done, then write comparison.json,
    study.json and the report. `on_event(arm, message)` narrates; `on_progress(problems_done)` follows an
    evaluation and `on_benchmark(name, problems)` starts each of its sets. With `workers` > 1 the runs go to
    child processes, that many at a time, each on its own cores (`curriculum.study_workers`); the results on
    disk are the same either way."""
    emit = on_event or (lambda arm, message: None)
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    _check_before_training(settings)
    units = begun_first(settings, study_units(settings))
    if settings.workers > 1:
        from curriculum.study_workers import run_units_in_parallel

        run_units_in_parallel(settings, units, emit=emit)
    else:
        evaluations = len(settings.arms) * len(settings.seeds) * (len(settings.checkpoint_steps()) + 1)
        jobs = StudyJobs(settings, len(units) + evaluations, emit=emit, on_progress=on_progress,
                         on_benchmark=on_benchmark)
        for unit in units:
            run_unit(settings, unit, jobs)
    comparison = summarize_comparison(settings)
    _write_json(out / COMPARISON, comparison)
    write_study_json(comparison, out / STUDY)
    write_compare_report(out)
    return comparison


Unit = tuple[str, int | None]  # (arm, seed), or (BASE, None): the untrained model's evaluation


def study_units(settings: CompareSettings) -> list[Unit]:
    """The study's independent pieces of work, in the order they run: the untrained model's evaluation, then
    every run, seed by seed (so an interrupted study has whole seeds of every arm, not whole arms)."""
    units: list[Unit] = [(BASE, None)] if settings.eval_base else []
    return units + [(arm.name, seed) for seed in settings.seeds for arm in settings.arms]


def begun_first(settings: CompareSettings, units: list[Unit]) -> list[Unit]:
    """`units` with the ones already begun (a run with metrics or a checkpoint, an evaluation with a journal)
    moved to the front, in their order: a study resumed after an arm or seed was added finishes the runs it
    had started before it starts new ones."""

    def begun(unit: Unit) -> bool:
        name, seed = unit
        if name == BASE:
            return journal_path_for(Path(settings.out) / BASE / FINAL_EVAL).exists()
        directory = arm_dir(Path(settings.out), name, seed)
        return (directory / METRICS).exists() or any(directory.glob("checkpoint-*"))

    return sorted(units, key=lambda unit: not begun(unit))


def run_unit(settings: CompareSettings, unit: Unit, jobs: StudyJobs) -> None:
    """Do one unit, skipping whatever of it is already on disk: evaluate the untrained model, or train one
    (arm, seed) and evaluate its learning curve."""
    from curriculum.training.run import train

    name, seed = unit
    if name == BASE:
        jobs.evaluate(Path(settings.out) / BASE / FINAL_EVAL, settings.model, settings.fingerprint("base"), BASE,
                      "the untrained model")
        return
    arm, label = settings.arm(name), f"{name}/seed-{seed}"
    directory = arm_dir(Path(settings.out), name, seed)
    _train_arm(settings, arm, seed, directory, emit=lambda message: jobs.emit(label, message), counter=jobs.next(),
               train=train)
    _evaluate_arm(settings, arm, seed, directory, label, jobs)


def study_status(settings: CompareSettings) -> list[dict]:
    """Where a long study stands, unit by unit, from its files alone (nothing runs): the state, the training
    step reached, the learning-curve points evaluated, and for finished units the final accuracy on every
    eval set and the mean zero-advantage share. Only files written with the study's current settings count."""

    out, rows = Path(settings.out), []
    for name, seed in study_units(settings):
        if name == BASE:
            path = out / BASE / FINAL_EVAL
            done = eval_is_current(path, settings.fingerprint("base"))
            state = "done" if done else "evaluating" if journal_path_for(path).exists() else "not started"
            rows.append({"unit": BASE, "state": state, "step": 0, "evaluated": int(done),
                         "points": 1, "accuracy": _final_accuracy(path) if done else {}, "zero_adv_share": None})
            continue
        arm, directory = settings.arm(name), arm_dir(out, name, seed)
        trained, evaluated = _run_progress(settings, arm, seed)
        metrics = reports.read_metrics(directory / METRICS) if (directory / METRICS).exists() else []
        step = max((int(row["step"]) for row in metrics if "step" in row), default=0)
        state = ("done" if trained and evaluated == _curve_points(settings) else "evaluating" if trained
                 else f"training ({step}/{settings.steps})" if metrics else "not started")
        _, shares = zero_advantage(directory) if metrics else ([], [])
        rows.append({"unit": f"{name}/seed-{seed}", "state": state, "step": settings.steps if trained else step,
                     "evaluated": evaluated, "points": _curve_points(settings),
                     "accuracy": _final_accuracy(eval_path(directory, None)) if state == "done" else {},
                     "zero_adv_share": float(np.mean(shares)) if shares else None})
    return rows


def _curve_points(settings: CompareSettings) -> int:
    """Learning-curve points a run is evaluated at: its checkpoints and the final model."""
    return len(settings.checkpoint_steps()) + 1


def _run_progress(settings: CompareSettings, arm: Arm, seed: int) -> tuple[bool, int]:
    """(whether the run is trained with the current settings, how many of its curve points are evaluated and
    current); finished when both are complete."""
    directory = arm_dir(Path(settings.out), arm.name, seed)
    trained = training_is_current(directory, settings.fingerprint("train", arm, seed))
    evaluated = sum(eval_is_current(eval_path(directory, step), settings.fingerprint("eval", arm, seed, step=step))
                    for step in [*settings.checkpoint_steps(), None])
    return trained, evaluated


def finished_subset(settings: CompareSettings) -> CompareSettings:
    """The study cut down to what is finished, paired seed by seed: the first seeds the baseline has finished
    (trained and fully evaluated) and the arms finished at every one of them, choosing how many seeds to take
    so that the most runs are compared (on a tie, the more arms). A baseline one seed ahead of the other arms
    so leaves out its newest seed rather than every other arm."""

    points = _curve_points(settings)
    finished = {(arm.name, seed): _run_progress(settings, arm, seed) == (True, points)  # each run's files read once
                for arm in settings.arms for seed in settings.seeds}
    baseline_seeds = [seed for seed in settings.seeds if finished[settings.baseline, seed]]
    candidates = []
    for count in range(1, len(baseline_seeds) + 1):
        seeds = baseline_seeds[:count]
        arms = [arm for arm in settings.arms if all(finished[arm.name, seed] for seed in seeds)]
        if len(arms) >= 2:
            candidates.append((len(arms) * count, len(arms), seeds, arms))
    if not candidates:
        raise CompareError(f"nothing to compare yet: no other arm has finished the seeds the baseline "
                           f"{settings.baseline!r} has finished ({baseline_seeds or 'none'})")
    _, _, seeds, arms = max(candidates, key=lambda candidate: candidate[:2])
    return replace(settings, arms=arms, seeds=seeds, workers=1)


def compare_so_far(settings: CompareSettings) -> dict:
    """The interim comparison of a study still running, over `finished_subset`, written with its report to
    `<out>/so-far/` (nothing is trained or evaluated; the study's own comparison.json is left alone)."""
    subset = finished_subset(settings)
    comparison = summarize_comparison(subset)
    comparison["so_far"] = {"arms": [arm.name for arm in subset.arms], "seeds": subset.seeds,
                            "runs": len(subset.arms) * len(subset.seeds),
                            "runs_planned": len(settings.arms) * len(settings.seeds)}
    into = Path(settings.out) / SO_FAR
    _write_json(into / COMPARISON, comparison)
    write_compare_report(settings.out, into=into)
    return comparison


def training_is_current(directory: Path, fingerprint: str) -> bool:
    """Whether a run's done marker exists and was written with these settings (a rerun skips its training)."""
    marker = directory / DONE
    return marker.exists() and json.loads(marker.read_text()).get("fingerprint") == fingerprint


def eval_is_current(path: Path, fingerprint: str) -> bool:
    """Whether an evaluation file exists and was written with these settings (a rerun skips it)."""
    from curriculum.evaluation import read_eval

    return path.exists() and read_eval(path).get("fingerprint") == fingerprint


def _final_accuracy(path: Path) -> dict:
    """Eval set -> avg@k (0-1) of one evaluation file."""
    from curriculum.evaluation import read_eval

    return {name: m["avg_at_k"] for name, m in read_eval(path)["benchmarks"].items()}


def _check_before_training(settings: CompareSettings) -> None:
    """Fail before the first arm trains (hours in) if any buckets dataset, arm recipe or scores parquet is bad."""
    from curriculum.training.run import load_buckets

    for buckets in dict.fromkeys(settings.arm_buckets(arm) for arm in settings.arms):
        load_buckets(buckets)
    for arm in settings.arms:
        settings.train_settings(arm, settings.seeds[0])
        if settings.scoring_source(arm):
            scoring_rollouts(settings.scoring_source(arm))


class StudyJobs:
    """The study's jobs numbered as they come ([3/12]), and its evaluations, skipped when one with the same
    fingerprint is already on disk (a rerun redoes nothing)."""

    def __init__(self, settings: CompareSettings, total: int, *, emit: Event,
                 on_progress: Callable[[int], None] | None,
                 on_benchmark: Callable[[str, int], None] | None = None) -> None:
        self.settings, self.total, self.emit = settings, total, emit
        self.on_progress, self.on_benchmark = on_progress, on_benchmark
        self.done = 0

    def next(self) -> str:
        self.done += 1
        return f"[{self.done}/{self.total}]" if self.total else f"[{self.done}]"

    def evaluate(self, path: Path, model: str, fingerprint: str, arm: str, what: str) -> None:
        from curriculum.evaluation import evaluate, samples_path_for, write_eval

        settings, counter = self.settings, self.next()
        if eval_is_current(path, fingerprint):
            self.emit(arm, f"{counter} evaluation of {what} already done")
            return
        self.emit(arm, f"{counter} evaluating {what}")
        result = evaluate(model, settings.benchmarks, settings=settings.eval, engine=settings.eval_engine,
                          engine_options=settings.eval_engine_options, buckets=settings.heldout,
                          data_dir=settings.data_dir, samples_path=samples_path_for(path),
                          journal_path=journal_path_for(path), on_benchmark=self.on_benchmark,
                          on_progress=self.on_progress)
        result["fingerprint"] = fingerprint
        write_eval(result, path)


def _evaluate_arm(settings: CompareSettings, arm: Arm, seed: int, directory: Path, label: str, jobs: StudyJobs) -> None:
    """Evaluate one trained run along its learning curve (every checkpoint, then the final model), dropping the
    optimizer state of each evaluated checkpoint unless asked to keep it."""

    for step in settings.checkpoint_steps():
        checkpoint = directory / f"checkpoint-{step}"
        path = eval_path(directory, step)
        fingerprint = settings.fingerprint("eval", arm, seed, step=step)
        if not checkpoint.is_dir() and not eval_is_current(path, fingerprint):
            raise CompareError(f"{checkpoint} is missing, so step {step} cannot be evaluated; delete "
                               f"{directory} to train this arm again")
        jobs.evaluate(path, str(checkpoint), fingerprint, label, f"checkpoint-{step}")
        if not settings.keep_optimizer_state:
            drop_optimizer_state(checkpoint)
    jobs.evaluate(eval_path(directory, None), str(directory), settings.fingerprint("eval", arm, seed), label,
                  f"the final model (step {settings.steps})")
    if settings.eval_every and not settings.keep_optimizer_state:
        drop_optimizer_state(directory / f"checkpoint-{settings.steps}")


def _train_arm(settings: CompareSettings, arm: Arm, seed: int, directory: Path, *, emit, counter: str,
               train) -> None:
    """Train one arm and seed unless done; continue an interrupted run from its last checkpoint."""
    fingerprint = settings.fingerprint("train", arm, seed)
    marker, started = directory / DONE, directory / STARTED
    if training_is_current(directory, fingerprint):
        emit(f"{counter} training already done")
        return
    if marker.exists():
        raise CompareError(f"{directory} was trained with other settings; delete it or choose a new --out")
    checkpoints = list(directory.glob("checkpoint-*")) if directory.exists() else []
    if checkpoints and started.exists() and json.loads(started.read_text()).get("fingerprint") != fingerprint:
        raise CompareError(f"{directory} holds an interrupted run with other settings; delete it or choose a new --out")
    resume = bool(checkpoints)
    if resume:
        last = max(checkpoints, key=_step_of)
        if not any((last / name).is_file() for name in OPTIMIZER_FILES):
            raise CompareError(f"{last} has no optimizer state (compare drops it once a run is finished and "
                               f"evaluated), so training cannot continue from it; delete {directory} to train this "
                               "arm again (keep_optimizer_state: true keeps it)")
    directory.mkdir(parents=True, exist_ok=True)
    if not resume and (directory / METRICS).exists():
        (directory / METRICS).unlink()  # a run interrupted before its first checkpoint starts over
    # What training rewrites must be evaluated again: checkpoints after the one it resumes from, the final model.
    kept = max((_step_of(path) for path in checkpoints), default=0)
    for path in [eval_path(directory, None), *directory.glob("eval-step-*.json")]:
        if path.name == FINAL_EVAL or _step_of(path) > kept:
            path.unlink(missing_ok=True)
    _write_json(started, {"fingerprint": fingerprint})
    emit(f"{counter} training {settings.steps} steps" + (" (resuming from the last checkpoint)" if resume else ""))
    began = time.perf_counter()
    train(settings.arm_buckets(arm), settings.model, directory, settings.train_settings(arm, seed), resume=resume)
    import torch

    _write_json(marker, {"fingerprint": fingerprint, "wall_s": round(time.perf_counter() - began, 1),
                         "threads": torch.get_num_threads(), "cores": sorted(os.sched_getaffinity(0))})


def drop_optimizer_state(checkpoint: Path) -> None:
    """Delete the optimizer state of an evaluated checkpoint of a finished run: only resuming needs it, and it
    is twice the model's size (Adam), per checkpoint."""
    for name in OPTIMIZER_FILES:
        (checkpoint / name).unlink(missing_ok=True)


def _step_of(path: Path) -> int:
    """The step in `checkpoint-N` or `eval-step-N.json` (-1 when the name holds none)."""
    match = re.search(r"-(\d+)(?:\.json)?$", path.name)
    return int(match.group(1)) if match else -1


def _write_json(path: Path, data: dict) -> Path:
    """Write JSON atomically: a crash never leaves a half file that looks complete."""
    from curriculum.contracts import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
    return path


# --------------------------------------------------------------------------------------------------
# statistics of learning curves


def bootstrap_curves(curves: dict[str, np.ndarray], *, resamples: int = 2000, seed: int = 0) -> dict[str, np.ndarray]:
    """Every arm's learning curve recomputed on bootstrap draws of problems and seeds.

    Args:
        curves: arm -> per-problem accuracy, shape (seeds, points, problems); the same seeds and problems
            in every arm (problems are paired across arms, and so are seed positions).
        resamples: number of draws.
        seed: the RNG seed of the draws.

    Returns:
        arm -> (resamples, points): the curve (mean over the drawn seeds and problems) on each draw. One draw
        uses the same problems and seeds for every arm, so differences between arms stay paired.

    >>> draws = bootstrap_curves({"a": np.ones((2, 3, 5))}, resamples=4)
    >>> draws["a"].shape, float(draws["a"].min())
    ((4, 3), 1.0)
    """
    shapes = {name: np.shape(values) for name, values in curves.items()}
    first = next(iter(shapes.values()))
    if any(len(shape) != 3 or shape[0] != first[0] or shape[2] != first[2] for shape in shapes.values()):
        raise CompareError(f"curves need the same seeds and problems in every arm, got shapes {shapes}")
    seeds, problems = first[0], first[2]
    rng = np.random.default_rng(seed)
    rows = np.arange(resamples)[:, None]
    problem_weights = np.zeros((resamples, problems))
    np.add.at(problem_weights, (rows, rng.integers(0, problems, size=(resamples, problems))), 1.0 / problems)
    seed_weights = np.zeros((resamples, seeds))
    np.add.at(seed_weights, (rows, rng.integers(0, seeds, size=(resamples, seeds))), 1.0 / seeds)
    return {name: np.einsum("bs,stp,bp->bt", seed_weights, np.asarray(values, dtype=float), problem_weights)
            for name, values in curves.items()}


def first_crossing(curves: np.ndarray, rollouts: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Rollouts at which each curve first reaches its target (linear between points); inf when it never does.

    >>> first_crossing(np.array([[0.2, 0.5, 0.8]]), np.array([0.0, 50.0, 100.0]), np.array([0.6])).round(2)
    array([66.67])
    """
    curves = np.atleast_2d(np.asarray(curves, dtype=float))
    x = np.asarray(rollouts, dtype=float)
    targets = np.asarray(targets, dtype=float).reshape(-1)
    reached = curves >= targets[:, None] - 1e-9
    index = reached.argmax(axis=1)
    rows = np.arange(curves.shape[0])
    before = np.maximum(index - 1, 0)
    low, high = curves[rows, before], curves[rows, index]
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.where(high > low, (targets - low) / (high - low), 1.0)
    crossing = np.where(index == 0, x[0], x[before] + np.clip(fraction, 0.0, 1.0) * (x[index] - x[before]))
    return np.where(reached.any(axis=1), crossing, np.inf)


def rollouts_to_reach(curves: dict[str, np.ndarray], rollouts: dict[str, np.ndarray], baseline: str, *,
                      offsets: dict[str, float] | None = None, confidence: float = 0.95, resamples: int = 2000,
                      seed: int = 0) -> dict[str, dict]:
    """The rollouts each arm needs to reach the baseline's final accuracy, with a bootstrap interval.

    Args:
        curves: arm -> per-problem accuracy (seeds, points, problems), as for `bootstrap_curves`.
        rollouts: arm -> training rollouts at each point (increasing; 0 for the untrained model).
        baseline: the arm whose final accuracy (its last point) is the target.
        offsets: arm -> rollouts spent before training (scoring); the `total` block adds them.
        confidence, resamples, seed: of the percentile bootstrap over problems and seeds.

    Returns:
        arm -> {"target", "estimate" (on the data as observed), "median", "ci_low", "ci_high" (rollouts, None
        when not reached), "reached_frac" (share of draws whose curve reaches the target), "relative" (the
        same divided by the baseline's final training rollouts) and "total" (with the arm's offset added,
        relative to the baseline's total)}. An interval end of None means "not reached" at that quantile.

    Example: the baseline climbs 0.2 -> 0.4 -> 0.6 over 0, 50, 100 rollouts; an arm at 0.2 -> 0.6 -> 0.7
    reaches 0.6 at 50, half the baseline's rollouts.

    >>> flat = lambda values: np.array(values, dtype=float)[None, :, None].repeat(3, axis=2)
    >>> x = np.array([0.0, 50.0, 100.0])
    >>> out = rollouts_to_reach({"u": flat([0.2, 0.4, 0.6]), "c": flat([0.2, 0.6, 0.7])}, {"u": x, "c": x}, "u")
    >>> out["c"]["median"], out["c"]["relative"]["median"], out["c"]["reached_frac"]
    (50.0, 0.5, 1.0)
    """
    if baseline not in curves:
        raise CompareError(f"the baseline {baseline!r} has no learning curve")
    offsets = {name: float((offsets or {}).get(name, 0.0)) for name in curves}
    draws = bootstrap_curves(curves, resamples=resamples, seed=seed)
    observed = {name: np.asarray(values, dtype=float).mean(axis=(0, 2)) for name, values in curves.items()}
    target, targets = float(observed[baseline][-1]), draws[baseline][:, -1]
    budget = float(np.asarray(rollouts[baseline], dtype=float)[-1])
    total_budget = budget + offsets[baseline]
    alpha = (1.0 - confidence) / 2.0
    result = {}
    for name in curves:
        x = np.asarray(rollouts[name], dtype=float)
        if x.shape != observed[name].shape:
            raise CompareError(f"arm {name!r}: {x.size} rollout counts for {observed[name].size} curve points")
        estimate = float(first_crossing(observed[name][None], x, np.array([target]))[0])
        crossings = first_crossing(draws[name], x, targets)
        low, median, high = np.quantile(crossings, [alpha, 0.5, 1.0 - alpha], method="inverted_cdf")
        train = {"estimate": estimate, "median": float(median), "ci_low": float(low), "ci_high": float(high)}
        total = {key: value + offsets[name] for key, value in train.items()}
        result[name] = {
            "target": target,
            **{key: _finite(value) for key, value in train.items()},
            "reached_frac": float(np.isfinite(crossings).mean()),
            "relative": {key: _finite(value / budget) if budget else None for key, value in train.items()},
            "total": {**{key: _finite(value) for key, value in total.items()},
                      "relative": {key: _finite(value / total_budget) if total_budget else None
                                   for key, value in total.items()}},
        }
    return result


def curve_bands(draws: np.ndarray, confidence: float = 0.95) -> tuple[list[float], list[float]]:
    """Pointwise percentile band of bootstrap curves (resamples, points)."""
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(draws, [alpha, 1.0 - alpha], axis=0)
    return low.tolist(), high.tolist()


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


# --------------------------------------------------------------------------------------------------
# numbers


def arm_compute(directory: Path) -> dict:
    """Steps, completions, tokens and wall time one training run used (read from its own files)."""
    import yaml

    metrics = reports.read_metrics(directory / METRICS)
    config = yaml.safe_load((directory / CONFIG).read_text()) if (directory / CONFIG).exists() else {}
    grpo = (config.get("resolved") or {}).get("grpo") or {}
    per_step = int(grpo.get("per_device_train_batch_size", 0)) * int(grpo.get("gradient_accumulation_steps", 1))
    steps = max((row["step"] for row in metrics), default=0)
    lengths = [row["completions/mean_length"] for row in metrics if "completions/mean_length" in row]
    tokens_seen = max((row.get("num_tokens") or 0 for row in metrics), default=0)
    runtime = next((row["train_runtime"] for row in reversed(metrics) if "train_runtime" in row), None)
    marker = directory / DONE
    wall = json.loads(marker.read_text()).get("wall_s") if marker.exists() else None
    skipped = [row["curriculum/completions_skipped"] for row in metrics if "curriculum/completions_skipped" in row]
    step_times = [row["perf/step_time_s"] for row in metrics if row.get("perf/step_time_s")]
    return {
        "steps": int(steps),
        "completions_per_step": per_step,
        "prompts_per_step": per_step / int(grpo["num_generations"]) if grpo.get("num_generations") else None,
        "completions": per_step * len(lengths),
        "completion_tokens": round(sum(lengths) * per_step),
        "tokens_seen": int(tokens_seen),  # TRL's num_tokens: prompt + completion tokens through the model
        "train_runtime_s": runtime,
        "wall_s": wall,
        # a run resumed after a kill has a wall time that counts its restarts; the median step does not
        "median_step_s": round(float(np.median(step_times)), 2) if step_times else None,
        # share of completions whose advantage was 0 and so skipped the forward and backward pass (None: skip off)
        "completions_skipped": round(float(np.mean(skipped)), 3) if skipped else None,
    }


def pooled_rates(evals: list[dict], benchmark: str) -> tuple[list[str], np.ndarray]:
    """Problem ids and per-problem accuracy averaged over the seeds' evals (same problems in each)."""
    ids, rates = _rates(evals, benchmark)
    return ids, np.mean(rates, axis=0)


def _rates(evals: list[dict], benchmark: str) -> tuple[list[str], np.ndarray]:
    """Problem ids and per-problem accuracy of each eval, shape (evals, problems)."""
    ids = evals[0]["benchmarks"][benchmark]["problems"]["id"]
    rates = []
    for result in evals:
        problems = result["benchmarks"][benchmark]["problems"]
        if problems["id"] != ids:
            raise CompareError(f"{benchmark}: the arms were evaluated on different problems; rerun with one harness")
        rates.append(np.asarray(problems["correct"], dtype=float) / result["benchmarks"][benchmark]["k"])
    return ids, np.asarray(rates)


def zero_advantage(directory: Path) -> tuple[list[float], list[float]]:
    """(steps, share of groups with zero advantage) of one training run, from its metrics.jsonl."""
    metrics = reports.read_metrics(directory / METRICS)
    key = reports.zero_advantage_key(metrics)
    return reports.series(metrics, key) if key else ([], [])


def summarize_comparison(settings: CompareSettings) -> dict:
    """comparison.json: settings, compute per arm, accuracy per arm with intervals, differences, the study."""

    out = Path(settings.out)
    arms, evals = _collect_runs(settings, out)
    benchmarks = list(evals[settings.baseline][0]["benchmarks"])
    accuracy = _pooled_accuracy(settings, evals, benchmarks)
    differences = _differences_to_baseline(settings, evals, benchmarks)
    base = _final_accuracy(out / BASE / FINAL_EVAL) if (out / BASE / FINAL_EVAL).exists() else None
    first = evals[settings.baseline][0]
    return {
        "settings": _settings_record(settings, benchmarks),
        "harness": {"engine": first.get("engine"), "engine_decoders": _engine_decoders(settings, out),
                    "sampling": first.get("sampling"), "k": first.get("k"),
                    "limit": first.get("limit"), "seed": first.get("seed")},
        "compute": _compute_totals(arms),
        "arms": arms,
        "base": base,
        "accuracy": accuracy,
        "differences": differences,
        "study": study_statistics(settings, arms, accuracy, differences, benchmarks),
    }


def _engine_decoders(settings: CompareSettings, out: Path) -> list[str]:
    """The sampling loops named by the study's evaluation files ('unrecorded' for files from before the
    record): one name means every number came from the same loop."""
    from curriculum.evaluation import read_eval

    paths = [out / BASE / FINAL_EVAL] + [eval_path(arm_dir(out, arm.name, seed), step) for arm in settings.arms
                                         for seed in settings.seeds for step in [*settings.checkpoint_steps(), None]]
    return sorted({read_eval(path).get("engine_decoder") or "unrecorded" for path in paths if path.exists()})


def _collect_runs(settings: CompareSettings, out: Path) -> tuple[list[dict], dict[str, list[dict]]]:
    """One row per training run (compute, rollouts, final accuracy) and each arm's final evals, seed by seed."""
    from curriculum.evaluation import read_eval

    arms, evals = [], {}
    for arm in settings.arms:
        scoring = scoring_rollouts(settings.scoring_source(arm)) if settings.scoring_source(arm) else 0
        for seed in settings.seeds:
            directory = arm_dir(out, arm.name, seed)
            result = read_eval(eval_path(directory, None))
            evals.setdefault(arm.name, []).append(result)
            compute = arm_compute(directory)
            arms.append({"arm": arm.name, "schedule": arm.schedule, "seed": seed, "dir": str(directory), **compute,
                         "train_rollouts": settings.steps * compute["completions_per_step"],
                         "scoring_rollouts": scoring, "eval_wall_s": result.get("timing", {}).get("wall_s"),
                         "accuracy": {name: m["avg_at_k"] for name, m in result["benchmarks"].items()}})
    return arms, evals


def _pooled_accuracy(settings: CompareSettings, evals: dict[str, list[dict]], benchmarks: list[str]) -> dict:
    """arm -> benchmark -> final accuracy with a bootstrap interval over problems (seeds pooled per problem)."""
    accuracy = {}
    for name, results in evals.items():
        accuracy[name] = {}
        for benchmark in benchmarks:
            _, rates = pooled_rates(results, benchmark)
            interval = bootstrap_interval(rates, confidence=settings.eval.confidence,
                                          resamples=settings.eval.resamples, seed=settings.eval.seed)
            accuracy[name][benchmark] = {**interval.to_dict(), "n_problems": int(rates.size),
                                         "k": results[0]["k"], "seeds": len(results)}
    return accuracy


def _differences_to_baseline(settings: CompareSettings, evals: dict[str, list[dict]], benchmarks: list[str]) -> dict:
    """arm -> benchmark -> the paired bootstrap difference to the baseline, plus the difference seed by seed."""
    differences = {}
    for arm in settings.arms:
        if arm.name == settings.baseline:
            continue
        differences[arm.name] = {}
        for benchmark in benchmarks:
            _, ours = pooled_rates(evals[arm.name], benchmark)
            _, theirs = pooled_rates(evals[settings.baseline], benchmark)
            diff = paired_bootstrap_difference(ours, theirs, confidence=settings.eval.confidence,
                                               resamples=settings.eval.resamples, seed=settings.eval.seed)
            per_seed = []
            for a, b in zip(evals[arm.name], evals[settings.baseline], strict=True):
                ra = np.asarray(a["benchmarks"][benchmark]["problems"]["correct"]) / a["k"]
                rb = np.asarray(b["benchmarks"][benchmark]["problems"]["correct"]) / b["k"]
                per_seed.append(float(np.mean(ra - rb)))
            over_seeds = seed_level_difference(per_seed, confidence=settings.eval.confidence)
            differences[arm.name][benchmark] = {**diff, "per_seed": per_seed, "over_seeds": over_seeds}
    return differences


def _settings_record(settings: CompareSettings, benchmarks: list[str]) -> dict:
    """The study's settings as comparison.json records them (what the report and study.json restate)."""
    return {
        "buckets": str(settings.buckets), "model": settings.model, "schedules": settings.schedules,
        "arms": {arm.name: {key: value for key, value in asdict(arm).items() if key != "name" and value is not None}
                 for arm in settings.arms},
        "baseline": settings.baseline, "seeds": settings.seeds, "steps": settings.steps,
        "num_generations": settings.num_generations, "train": settings.train, "benchmarks": benchmarks,
        "heldout": settings.heldout, "eval": asdict(settings.eval), "eval_engine": settings.eval_engine,
        "eval_every": settings.eval_every, "checkpoint_steps": settings.checkpoint_steps(),
        "scores": settings.scores,
    }


def _compute_totals(arms: list[dict]) -> dict:
    """What the whole study spent, summed over its training runs."""
    return {
        "arms": len(arms),
        "total_steps": sum(a["steps"] for a in arms),
        "total_completions": sum(a["completions"] for a in arms),
        "total_completion_tokens": sum(a["completion_tokens"] for a in arms),
        "total_train_wall_s": round(sum(a["wall_s"] or a["train_runtime_s"] or 0 for a in arms), 1),
        "total_eval_wall_s": round(sum(a["eval_wall_s"] or 0 for a in arms), 1),
    }


def study_statistics(settings: CompareSettings, runs: list[dict], accuracy: dict, differences: dict,
                     benchmarks: list[str]) -> dict:
    """Per arm on the primary eval set: learning curves with bands, compute, rollouts to reach the baseline's
    final accuracy, and the zero-advantage share over training."""
    from curriculum.evaluation import read_eval
    from curriculum.layout import HELDOUT

    out = Path(settings.out)
    primary = settings.primary or (HELDOUT if HELDOUT in benchmarks else benchmarks[0])
    if primary not in benchmarks:
        raise CompareError(f"primary eval set {primary!r} was not evaluated; sets are {benchmarks}")
    base_path = out / BASE / FINAL_EVAL
    base = read_eval(base_path) if settings.eval_base and base_path.exists() else None
    steps = ([0] if base else []) + settings.checkpoint_steps() + [settings.steps]
    per_run = {row["arm"]: [] for row in runs}
    for row in runs:
        per_run[row["arm"]].append(row)
    ids, curves, rollouts, offsets = _curves_and_rollouts(settings, out, primary, base, steps, per_run)
    conf, resamples, seed = settings.eval.confidence, settings.eval.resamples, settings.eval.seed
    reach = rollouts_to_reach(curves, rollouts, settings.baseline, offsets=offsets, confidence=conf,
                              resamples=resamples, seed=seed)
    draws = bootstrap_curves(curves, resamples=resamples, seed=seed)
    arms = {}
    for arm in settings.arms:
        name = arm.name
        low, high = curve_bands(draws[name], conf)
        final = accuracy[name][primary]
        train_rollouts = float(rollouts[name][-1])
        arms[name] = {
            "schedule": arm.schedule,
            "seeds": list(settings.seeds),
            "per_seed": [float(values[-1].mean()) for values in curves[name]],
            "accuracy": final["mean"],
            "ci": [final["ci_low"], final["ci_high"]],
            "difference": differences.get(name, {}).get(primary),
            "train_rollouts": int(train_rollouts),
            "scoring_rollouts": int(offsets[name]),
            "total_rollouts": int(train_rollouts + offsets[name]),
            "rollouts_to_reach_baseline": reach[name],
            **_zero_advantage_summary(per_run[name], confidence=conf),
            "difference_curve": None if name == settings.baseline else _difference_curve(
                curves[name], curves[settings.baseline], draws[name] - draws[settings.baseline], steps, conf),
            "curve": {
                "step": steps,
                "train_rollouts": [int(x) for x in rollouts[name]],
                "total_rollouts": [int(x + offsets[name]) for x in rollouts[name]],
                "accuracy": curves[name].mean(axis=(0, 2)).tolist(),
                "ci_low": low, "ci_high": high,
                "per_seed": curves[name].mean(axis=2).tolist(),
            },
        }
    target = reach[settings.baseline]["target"]
    return {"benchmark": primary, "n_problems": len(ids or []), "k": settings.eval.samples,
            "baseline": settings.baseline, "target": target,
            "target_at_start": bool(base) and bool(arms) and all(
                arm["curve"]["accuracy"][0] >= target - 1e-9 for arm in arms.values()),
            "interval": f"{100 * conf:g}% percentile bootstrap over problems and seeds, {resamples} draws",
            "arms": arms, "scale_to_settle": scale_to_settle(arms, steps)}


SETTLE_EFFECTS = (0.02, 0.03, 0.04)  # accuracy differences (2, 3, 4 points) a study of this kind might look for


def scale_to_settle(arms: dict, steps: list[int], *, effects=SETTLE_EFFECTS, alpha: float = 0.05,
                    power: float = 0.8) -> list[dict]:
    """At every evaluated step after 0: how much a difference to the baseline moves with the training seed
    (the per-seed differences of every arm, pooled) and the seeds per arm a paired t-test needs to find each
    of `effects` at `alpha` with `power`. A null result only rules out effects its seeds could have found."""
    rows = []
    curves = [arm["difference_curve"] for arm in arms.values() if arm.get("difference_curve")]
    for i, step in enumerate(steps):
        spread = pooled_seed_spread([curve["per_seed"][i] for curve in curves]) if step else None
        if spread is None or spread[0] == 0:
            continue
        rows.append({"step": step, "spread": spread[0], "df": spread[1], "alpha": alpha, "power": power,
                     "seeds_needed": {f"{effect:g}": seeds_for_paired_difference(spread[0], effect, alpha=alpha,
                                                                                 power=power)
                                      for effect in effects}})
    return rows


def _difference_curve(ours: np.ndarray, theirs: np.ndarray, paired_draws: np.ndarray, steps: list[int],
                      confidence: float) -> dict:
    """An arm minus the baseline at every curve point: the paired bootstrap over problems and seeds, and the
    t interval over the per-seed differences (which says whether an early lead holds across training seeds)."""
    low, high = curve_bands(paired_draws, confidence)
    per_seed = (ours - theirs).mean(axis=2)  # (seeds, points)
    return {"step": steps, "mean": per_seed.mean(axis=0).tolist(), "ci_low": low, "ci_high": high,
            "per_seed": per_seed.T.tolist(),
            "over_seeds": [seed_level_difference(column, confidence=confidence) for column in per_seed.T]}


def _curves_and_rollouts(settings: CompareSettings, out: Path, primary: str, base: dict | None, steps: list[int],
                         per_run: dict[str, list[dict]]) -> tuple[list[str] | None, dict, dict, dict]:
    """Every arm's learning curve on `primary` (seeds, points, problems), the training rollouts at each of its
    points and the scoring rollouts spent before training, with the problem ids they share."""
    curves, rollouts, offsets, ids = {}, {}, {}, None
    for arm in settings.arms:
        ids, curves[arm.name] = _arm_curve(settings, out, arm, primary, base, ids)
        per_step = {row["completions_per_step"] for row in per_run[arm.name]}
        if len(per_step) != 1:
            raise CompareError(f"arm {arm.name!r}: its seeds sampled {sorted(per_step)} completions per step")
        rollouts[arm.name] = np.asarray(steps, dtype=float) * per_step.pop()
        offsets[arm.name] = per_run[arm.name][0]["scoring_rollouts"]
    return ids, curves, rollouts, offsets


def _arm_curve(settings: CompareSettings, out: Path, arm: Arm, primary: str, base: dict | None,
               ids: list[str] | None) -> tuple[list[str], np.ndarray]:
    """One arm's per-problem accuracy on `primary` at every curve point, shape (seeds, points, problems), and
    the problem ids, which must be those of every arm before it (`ids`, None for the first)."""
    from curriculum.evaluation import read_eval

    seeds = []
    for seed in settings.seeds:
        directory = arm_dir(out, arm.name, seed)
        results = ([base] if base else []) + [read_eval(eval_path(directory, step))
                                              for step in settings.checkpoint_steps()] + \
            [read_eval(eval_path(directory, None))]
        these, rates = _rates(results, primary)
        if ids is not None and these != ids:
            raise CompareError(f"{primary}: the arms were evaluated on different problems; rerun with one harness")
        ids = these
        seeds.append(rates)
    return ids, np.asarray(seeds)


def _zero_advantage_summary(rows: list[dict], *, phases: int = 3, confidence: float = 0.95) -> dict:
    """The share of zero-advantage groups of one arm (the mechanism a curriculum works through): the mean over
    training, pooled with a Student-t interval over seeds and per seed; the mean of each `phases`-th of
    training (early, middle, late) over seeds; and the curve averaged over its seeds at the steps every seed
    logged."""
    shares, share_curves, by_phase = [], [], []
    for row in rows:
        share_steps, values = zero_advantage(Path(row["dir"]))
        if values:
            shares.append(float(np.mean(values)))
            share_curves.append(dict(zip(share_steps, values, strict=True)))
    common = sorted(set.intersection(*(set(c) for c in share_curves))) if share_curves else []
    if len(common) >= phases:
        for part in np.array_split(np.asarray(common), phases):
            per_seed = [float(np.mean([curve[step] for step in part])) for curve in share_curves]
            by_phase.append({"steps": [int(part[0]), int(part[-1])], "share": float(np.mean(per_seed)),
                             "per_seed": per_seed})
    spread = seed_level_difference(shares, confidence=confidence)
    return {
        "zero_adv_share": float(np.mean(shares)) if shares else None,
        "zero_adv_share_ci": [spread["ci_low"], spread["ci_high"]] if spread else None,
        "zero_adv_share_per_seed": shares,
        "zero_adv_by_phase": by_phase,
        "zero_adv_curve": {"step": common, "share": [float(np.mean([c[s] for c in share_curves])) for s in common]},
    }


def study_json(comparison: dict) -> dict:
    """The study summary (reports/curriculum-study.json): steps, heldout_problems, samples and per arm its seeds,
    accuracy, ci, zero_adv_share, train_rollouts, scoring_rollouts and the rest of its statistics."""
    s, study = comparison["settings"], comparison["study"]
    return {
        "steps": s["steps"],
        "heldout_problems": study["n_problems"],
        "samples": study["k"],
        "benchmark": study["benchmark"],
        "model": s["model"],
        "num_generations": s["num_generations"],
        "eval_every": s.get("eval_every"),
        "baseline": study["baseline"],
        "baseline_final_accuracy": study["target"],
        "baseline_final_at_or_below_start": study.get("target_at_start", False),
        "interval": study["interval"],
        "scale_to_settle": study.get("scale_to_settle"),
        **({"so_far": comparison["so_far"]} if comparison.get("so_far") else {}),
        "arms": {name: {"seeds": arm["seeds"], "per_seed": arm["per_seed"], "accuracy": arm["accuracy"],
                        "ci": arm["ci"], "zero_adv_share": arm["zero_adv_share"],
                        "zero_adv_share_ci": arm.get("zero_adv_share_ci"),
                        "zero_adv_share_per_seed": arm.get("zero_adv_share_per_seed"),
                        "zero_adv_by_phase": arm.get("zero_adv_by_phase"),
                        "train_rollouts": arm["train_rollouts"], "scoring_rollouts": arm["scoring_rollouts"],
                        "total_rollouts": arm["total_rollouts"], "difference": arm["difference"],
                        "rollouts_to_reach_baseline": arm["rollouts_to_reach_baseline"], "curve": arm["curve"],
                        "difference_curve": arm.get("difference_curve"),
                        "settings": s["arms"].get(name, {"schedule": arm["schedule"]})}
                 for name, arm in study["arms"].items()},
    }


def write_study_json(comparison: dict, path: str | Path) -> Path:
    """Write `study_json(comparison)` to `path` (atomically)."""
    return _write_json(Path(path), study_json(comparison))


# --------------------------------------------------------------------------------------------------
# the report

COLORS = ["#4c72b0", "#8c8c8c", "#55a868", "#dd8452", "#c44e52", "#8172b3", "#937860", "#da8bc3"]


def _arm_names(settings: dict) -> list[str]:
    return list(settings.get("arms") or settings["schedules"])


def plot_curves(out: Path, comparison: dict, path: Path) -> Path | None:
    """Reward and zero-advantage share over steps, one colour per arm (thin: seeds; thick: mean)."""
    plt = reports.pyplot()
    keys = [("reward", "mean reward"), (None, "zero-advantage share")]
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    drawn = False
    seeds = comparison["settings"]["seeds"]
    for index, name in enumerate(_arm_names(comparison["settings"])):
        color = COLORS[index % len(COLORS)]
        for ax, (key, label) in zip(axes, keys, strict=True):
            runs = []
            for seed in seeds:
                metrics = reports.read_metrics(arm_dir(out, name, seed) / METRICS)
                metric = key or reports.zero_advantage_key(metrics)
                if metric is None:
                    continue
                steps, values = reports.series(metrics, metric)
                if steps:
                    runs.append(dict(zip(steps, values, strict=True)))
                    if len(seeds) > 1:
                        ax.plot(steps, values, color=color, alpha=0.25, linewidth=0.8)
            if not runs:
                continue
            drawn = True
            common = sorted(set.intersection(*(set(r) for r in runs)))
            mean = [float(np.mean([r[s] for r in runs])) for s in common]
            window = len(mean) // 15 if len(mean) >= 45 else 1
            ax.plot(common, reports.smooth(mean, window), color=color, linewidth=2,
                    label=f"{name} (mean of {len(runs)} seed{'s' if len(runs) > 1 else ''})")
            ax.set_xlabel("training step")
            ax.set_ylabel(label)
    if not drawn:
        plt.close(fig)
        return None
    axes[0].set_title("Training reward")
    axes[1].set_title("Groups with zero advantage")
    axes[1].set_ylim(-0.02, 1.02)
    for ax in axes:
        ax.legend(fontsize=8)
    return reports.save_figure(fig, path)


def plot_learning_curves(comparison: dict, path: Path) -> Path | None:
    """Held-out accuracy against training rollouts and against total (training + scoring) rollouts, per arm,
    with the bootstrap band over problems and seeds and the baseline's final accuracy as a dashed line."""
    study = comparison.get("study")
    if not study or not study.get("arms"):
        return None
    plt = reports.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    for index, (name, arm) in enumerate(study["arms"].items()):
        color = COLORS[index % len(COLORS)]
        curve = arm["curve"]
        accuracy = [100 * v for v in curve["accuracy"]]
        low, high = [100 * v for v in curve["ci_low"]], [100 * v for v in curve["ci_high"]]
        for ax, key in zip(axes, ("train_rollouts", "total_rollouts"), strict=True):
            ax.plot(curve[key], accuracy, color=color, marker="o", markersize=3, linewidth=1.8,
                    label=name + (" (baseline)" if name == study["baseline"] else ""))
            ax.fill_between(curve[key], low, high, color=color, alpha=0.15, linewidth=0)
    for ax, label in zip(axes, ("training rollouts (completions sampled in training)",
                                "total rollouts (scoring + training)"), strict=True):
        ax.axhline(100 * study["target"], color="black", linestyle="--", linewidth=0.8)
        ax.set_xlabel(label)
    axes[0].set_ylabel(f"{study['benchmark']} avg@{study['k']} (%)")
    axes[0].set_title("Accuracy against training compute (band: 95% CI)", fontsize=10)
    axes[1].set_title("Accuracy against total compute (dashed: baseline's final)", fontsize=10)
    axes[0].legend(fontsize=8)
    return reports.save_figure(fig, path)


def _as_eval(accuracy: dict, k: int) -> dict:
    return {"k": k, "benchmarks": {name: {"avg_at_k": value} for name, value in accuracy.items()}}


def fmt_reach(reach: dict) -> str:
    """'1,200 [800, not reached]' rollouts (median and interval; None = not reached)."""
    def one(value):
        return "not reached" if value is None else f"{value:,.0f}"
    if reach.get("median") is None and reach.get("ci_low") is None:
        return "not reached"
    return f"{one(reach['median'])} [{one(reach['ci_low'])}, {one(reach['ci_high'])}]"


def _relative(reach: dict) -> str:
    value = (reach.get("relative") or {}).get("median")
    return "–" if value is None else f"{value:.2f}x"


def write_compare_report(out: str | Path, *, into: str | Path | None = None) -> reports.Report:
    """Render report.md / report.html / PNGs from `<into>/comparison.json` (default: the study's own, in
    `out`) and the arms' files in `out`, into `<into>/report/`."""
    out = Path(out)
    into = Path(into) if into is not None else out
    path = into / COMPARISON
    if not path.exists():
        raise CompareError(f"{path} does not exist; run `curriculum compare` first")
    comparison = json.loads(path.read_text())
    s, harness = comparison["settings"], comparison["harness"]
    report_dir = into / REPORT_DIR
    report_dir.mkdir(parents=True, exist_ok=True)
    title = f"Schedules compared at equal compute: {', '.join(_arm_names(s))}"
    so_far = comparison.get("so_far")
    if so_far:
        title = f"So far ({so_far['runs']} of {so_far['runs_planned']} runs): {title[0].lower()}{title[1:]}"
    doc = reports.Document(title)
    if so_far:
        doc.text(f"An interim report of a study still running: the runs finished so far, seeds {so_far['seeds']}, "
                 f"arms {', '.join(so_far['arms'])}. Arms and seeds not listed have not finished; the study's "
                 "final report replaces this one.")
    _report_arms(doc, s)
    doc.h2("Result")
    k = harness.get("k")
    _report_accuracy(doc, comparison, k)
    _report_differences(doc, comparison)
    if comparison.get("study"):
        _report_study(doc, comparison["study"])
    figures = _report_figures(doc, out, comparison, report_dir, k)
    if comparison.get("study"):
        _report_mechanism(doc, comparison["study"])
        _report_scale(doc, comparison["study"])
    _report_compute(doc, comparison)
    _report_harness(doc, s, harness, k)
    return reports.write_document(doc, report_dir, figures, found=[COMPARISON], missing=[])


def _report_arms(doc: reports.Document, s: dict) -> None:
    """What every arm shares, and a table of what each arm sets for itself."""
    arm_specs = s.get("arms") or {}
    differs = "only the schedule differs" if all(set(spec) == {"schedule"} for spec in arm_specs.values()) else \
        "arms differ only in what the table below says"
    doc.text(
        f"Model `{s['model']}`, buckets `{s['buckets']}`. Every arm: {s['steps']} GRPO steps, "
        f"{s['num_generations']} completions per prompt, the same rewards and GRPO settings; {differs}. "
        f"Seeds: {', '.join(map(str, s['seeds']))}. Baseline: `{s['baseline']}`."
    )
    if arm_specs:
        keys = [key for key in ARM_KEYS if any(key in spec for spec in arm_specs.values())]
        doc.table(["arm", *keys], [[name, *(_spec(spec.get(key)) for key in keys)]
                                   for name, spec in arm_specs.items()])


def _report_accuracy(doc: reports.Document, comparison: dict, k) -> None:
    """Final accuracy per arm and benchmark (seeds pooled), and the untrained model's, with intervals."""
    rows = []
    for name, by_name in comparison["accuracy"].items():
        for benchmark, value in by_name.items():
            rows.append([name, benchmark, value["n_problems"], k, value["seeds"], reports.fmt_interval(value)])
    if comparison.get("base"):
        for benchmark, value in comparison["base"].items():
            rows.append(["(untrained model)", benchmark, "", k, "", reports.fmt_interval(value)])
    doc.table(["arm", "benchmark", "problems", "k", "seeds", "avg@k % [95% CI]"], rows)


def _report_differences(doc: reports.Document, comparison: dict) -> None:
    """Each arm minus the baseline, paired over problems, with a verdict in words under the table."""
    baseline = comparison["settings"]["baseline"]
    diff_rows, verdicts = [], []
    for name, by_name in comparison["differences"].items():
        for benchmark, diff in by_name.items():
            seeds = diff.get("over_seeds")
            verdict, sentence = difference_verdict(diff["significant"], seeds)
            diff_rows.append([f"{name} - {baseline}", benchmark, reports.fmt_difference(diff),
                              f"{diff['p_value']:.3f}", ", ".join(f"{100 * d:+.1f}" for d in diff["per_seed"]),
                              reports.fmt_difference(seeds) if seeds else "– (one seed)",
                              f"{seeds['p_value']:.3f}" if seeds else "–", verdict])
            verdicts.append(f"`{name}` minus `{baseline}` on {benchmark}: {reports.fmt_difference(diff)} - {sentence}")
    doc.text("Difference in avg@k, paired over the same problems: per-problem accuracy averaged over seeds, "
             "bootstrap over problems (the trained models held fixed); and over seeds: the per-seed differences "
             "with a Student-t interval, which also counts how much a difference moves with the training seed.")
    doc.table(["difference", "benchmark", "pts [95% CI] over problems", "bootstrap p", "per seed (pts)",
               "pts [95% CI] over seeds (t)", "t p", "verdict"], diff_rows)
    for line in verdicts:
        doc.text(line)


def difference_verdict(over_problems: bool, over_seeds: dict | None) -> tuple[str, str]:
    """(table cell, sentence): a difference counts when both intervals exclude 0, or the only one there is."""
    if not over_problems:
        return ("NOT significant (the interval contains 0)",
                "not significant: this comparison cannot tell the arms apart.")
    if over_seeds is None:
        return "significant", "a significant difference at 95% (one seed: over problems only)."
    if over_seeds["significant"]:
        return "significant", "a significant difference at 95%, over problems and over seeds."
    return ("NOT significant over seeds",
            "significant over problems, but not over seeds: the training seeds disagree, so this is not "
            "yet a difference between the arms.")


def _report_study(doc: reports.Document, study: dict) -> None:
    """The learning-curve section: how the numbers are read, then per arm its compute and rollouts to reach."""
    doc.h2("Learning curves and compute to reach the baseline")
    doc.text(
        f"On `{study['benchmark']}` ({study['n_problems']} problems, k = {study['k']}), evaluated at steps "
        f"{', '.join(map(str, next(iter(study['arms'].values()))['curve']['step']))} (step 0: the untrained "
        f"model). Target: the baseline `{study['baseline']}`'s final accuracy, {100 * study['target']:.1f}%. "
        "Rollouts to reach it: the first crossing of the arm's curve (linear between evaluated points), median "
        f"and interval over a {study['interval']}; 'not reached' where the curve stays below. Training "
        "rollouts = steps x prompts per step x completions per prompt; scoring rollouts = the samples summed "
        "over the scores parquet the arm's buckets needed (0 for an unscored pool)."
    )
    if study.get("target_at_start"):
        doc.text("**The baseline's final accuracy is no higher than the untrained model's**, so every arm "
                 "'reaches' it at 0 training rollouts: here the rollouts-to-reach numbers say nothing; train "
                 "longer or compare the final accuracies.")
    reach_rows = []
    for name, arm in study["arms"].items():
        reach = arm["rollouts_to_reach_baseline"]
        reach_rows.append([
            name, f"{100 * arm['accuracy']:.1f} [{100 * arm['ci'][0]:.1f}, {100 * arm['ci'][1]:.1f}]",
            ", ".join(f"{100 * v:.1f}" for v in arm["per_seed"]),
            f"{arm['train_rollouts']:,}", f"{arm['scoring_rollouts']:,}", f"{arm['total_rollouts']:,}",
            fmt_reach(reach), _relative(reach), f"{100 * reach['reached_frac']:.0f}%",
            fmt_reach(reach["total"]), _relative(reach["total"]),
            "–" if arm["zero_adv_share"] is None else f"{arm['zero_adv_share']:.2f}",
        ])
    doc.table(["arm", "final % [95% CI]", "per seed %", "train rollouts", "scoring rollouts", "total rollouts",
               "train rollouts to reach [95%]", "vs baseline", "draws reaching",
               "total rollouts to reach [95%]", "vs baseline total", "zero-adv share"], reach_rows)
    curve_rows = []
    for name, arm in study["arms"].items():
        difference = arm.get("difference_curve")
        for i, step in enumerate(difference["step"] if difference else []):
            if step == 0:
                continue  # the untrained model, the same for every arm
            seeds = difference["over_seeds"][i]
            curve_rows.append([f"{name} - {study['baseline']}", step, f"{100 * difference['mean'][i]:+.1f}",
                               f"[{100 * difference['ci_low'][i]:+.1f}, {100 * difference['ci_high'][i]:+.1f}]",
                               f"[{100 * seeds['ci_low']:+.1f}, {100 * seeds['ci_high']:+.1f}]" if seeds else "–",
                               ", ".join(f"{100 * d:+.1f}" for d in difference["per_seed"][i])])
    if curve_rows:
        doc.text("Along the learning curve, each arm minus the baseline at the same step, in points: the 95% "
                 "interval of the paired bootstrap over problems and seeds, and the Student-t interval over the "
                 "per-seed differences (with few seeds the wider, and the one that says whether a lead holds "
                 "from one training seed to the next).")
        doc.table(["difference", "step", "pts", "[95%] problems and seeds", "[95%] over seeds (t)", "per seed"],
                  curve_rows)


def _report_mechanism(doc: reports.Document, study: dict) -> None:
    """The zero-advantage share per arm: over training with its interval over seeds, per seed, by thirds of
    training, and as a multiple of the baseline's."""
    baseline = study["arms"][study["baseline"]]["zero_adv_share"]
    rows, phases = [], []
    for name, arm in study["arms"].items():
        share = arm.get("zero_adv_share")
        if share is None:
            continue
        ci = arm.get("zero_adv_share_ci")
        by_phase = arm.get("zero_adv_by_phase") or []
        phases = phases or [f"steps {p['steps'][0]}-{p['steps'][1]}" for p in by_phase]
        rows.append([name, f"{share:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""),
                     ", ".join(f"{v:.2f}" for v in arm.get("zero_adv_share_per_seed", [])),
                     *(f"{p['share']:.2f}" for p in by_phase),
                     f"{share / baseline:.2f}x" if baseline else "–"])
    if not rows:
        return
    doc.h2("Mechanism: groups without signal")
    doc.text("The share of GRPO groups whose completions all got the same reward: their advantage is 0 and they "
             "add nothing to the gradient, the waste a curriculum means to cut. Mean over each run's logged "
             "steps; the interval is a Student t over seeds; the thirds of training are means over seeds.")
    doc.table(["arm", "share over training [95% CI, seeds]", "per seed", *phases,
               f"vs {study['baseline']}"], rows)


def _report_scale(doc: reports.Document, study: dict) -> None:
    """How many seeds would find a difference of a given size, from how much this study's differences moved
    between seeds."""
    rows = study.get("scale_to_settle") or []
    if not rows:
        return
    effects = list(rows[0]["seeds_needed"])
    doc.h2("What scale would settle it")
    doc.text(f"The per-seed differences to {study['baseline']} of every arm, pooled about each arm's mean, give "
             "the standard deviation of a difference from one training seed to the next; from it, the seeds "
             f"per arm at which a two-sided paired t-test at {rows[0]['alpha']:g} finds a true difference of "
             f"that size with probability {rows[0]['power']:g}. A difference this study calls not "
             "significant is only ruled out at sizes its seeds could have found.")
    doc.table(["step", "SD of per-seed differences, pts (df)",
               *(f"seeds per arm for {100 * float(effect):g} pts" for effect in effects)],
              [[row["step"], f"{100 * row['spread']:.1f} ({row['df']})",
                *("more than 100,000" if n is None else f"{n:,}" for n in row["seeds_needed"].values())]
               for row in rows])


def _report_figures(doc: reports.Document, out: Path, comparison: dict, report_dir: Path, k) -> list[Path]:
    """Draw the final-accuracy, learning-curve and training-curve plots; add those that had data."""
    figures: list[Path] = []
    evals = {name: _as_eval(by_name, k) for name, by_name in comparison["accuracy"].items()}
    if comparison.get("base"):
        evals = {"untrained": _as_eval(comparison["base"], k), **evals}
    for figure, caption in (
        (reports.plot_eval(evals, report_dir / "accuracy.png",
                           title="Final accuracy: mean and 95% bootstrap interval over problems"),
         "Final accuracy per arm (seeds pooled) with 95% intervals"),
        (plot_learning_curves(comparison, report_dir / "learning_curves.png"),
         "Held-out accuracy against training rollouts and against total rollouts (training + scoring)"),
        (plot_curves(out, comparison, report_dir / "curves.png"),
         "Training reward and zero-advantage share over steps, all arms on one plot"),
    ):
        if figure is not None:
            figures.append(figure)
            doc.figure(figure, caption)
    return figures


def _report_compute(doc: reports.Document, comparison: dict) -> None:
    """What the study spent: totals, then one row per training run."""
    compute = comparison["compute"]
    doc.h2("Compute used")
    doc.text(
        f"{compute['arms']} training runs, {compute['total_steps']} optimizer steps, "
        f"{compute['total_completions']:,} sampled completions ({compute['total_completion_tokens']:,} completion "
        f"tokens); training {compute['total_train_wall_s'] / 60:.1f} min and evaluation "
        f"{compute['total_eval_wall_s'] / 60:.1f} min of wall time (final models; checkpoint evaluations not counted)."
    )
    doc.table(["arm", "seed", "steps", "completions", "completion tokens", "tokens seen (TRL)",
               "train wall s", "median step s", "completions skipped", "eval wall s"],
              [[a.get("arm", a["schedule"]), a["seed"], a["steps"], a["completions"], a["completion_tokens"],
                a["tokens_seen"], _seconds(a["wall_s"] or a["train_runtime_s"]), _seconds(a.get("median_step_s")),
                _share(a.get("completions_skipped")), _seconds(a["eval_wall_s"])]
               for a in comparison["arms"]])
    doc.text("Completions skipped: the share whose advantage was 0, left out of the forward and backward pass "
             "(`skip_zero_advantage`; \"off\" for runs trained without it). Skipping them changes no update beyond "
             "float rounding; it only saves the time.")


def _report_harness(doc: reports.Document, s: dict, harness: dict, k) -> None:
    """The one evaluation harness every arm and checkpoint was measured with."""
    doc.h2("Harness")
    sampling = harness.get("sampling") or {}
    which = f"first {harness['limit']}" if harness.get("limit") else "all"
    doc.text(
        f"Benchmarks {', '.join(s['benchmarks'])} ({which} problems of each), "
        f"k = {k} samples per problem, engine `{harness.get('engine')}`, temperature {sampling.get('temperature')}, "
        f"top_p {sampling.get('top_p')}, max_tokens {sampling.get('max_tokens')}, seed {harness.get('seed')}: "
        "identical for every arm and checkpoint."
    )
    decoders = harness.get("engine_decoders") or []
    if len(decoders) == 1:
        doc.text(f"Every evaluation file names the same sampling loop: {decoders[0]}.")
    elif decoders:
        doc.text(f"**The evaluation files name different sampling loops** ({'; '.join(decoders)}): the same "
                 "settings, but not the same code; delete the older files and rerun to evaluate them again.")


def _spec(value) -> str:
    if value is None:
        return "(shared)"
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def _share(value) -> str:
    return "off" if value is None else f"{value:.0%}"


def _seconds(value) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.0f}"
