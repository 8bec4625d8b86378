"""`curriculum pipeline`: data, score, build, train, eval and report from one YAML recipe, resumable.

Every stage writes its files into one run directory and, when it finishes, a marker
`.pipeline/<stage>.json` holding a fingerprint of the settings it ran with (and of the stages before it).
A rerun skips stages whose marker matches; a stage whose files exist without a marker (interrupted) is
resumed where its library supports it (scoring and training) and redone otherwise; a stage whose settings
changed is refused with a message naming `--redo`, so old results are never silently mixed with new ones.

Recipe schema (pipelines/*.yaml):

    name: demo-cpu                 # required
    out: runs/demo-cpu             # default runs/<name>
    model: smollm2-135m            # alias, local directory or hub id
    prompt:  boxed                 # or think-answer, or {system, instruction}: score, build and eval use it
    sampling: {temperature, top_p, max_tokens}   # shared by score, train and eval (see resolve_sampling)
    data:    {sources: [synthetic, gsm8k], synth: {n, seed, digits, operands, operations, word_fraction},
              limit: N or {source: N}, eval_sets: [gsm8k, ...], data_dir}
    score:   {engine, samples, max_tokens, temperature, top_p, seed, engine_options, ...}
    build:   {buckets, strategy, edges, drop_solved, drop_unsolved, keep_frac, max_ci_width,
              max_per_bucket, seed, heldout}
    train:   {schedule, reward, max_steps, num_generations, lora, train_layers, layer_schedule, launch,
              grpo: {any GRPOConfig field}, ...}       # see curriculum.training.config
    eval:    {benchmarks, samples, limit, max_tokens, temperature, top_p, seed, before, engine,
              engine_options}
    report:  {title}
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from curriculum import reports

logger = logging.getLogger(__name__)

STAGES = ("data", "score", "build", "train", "eval", "report")
MARKERS = ".pipeline"
HELDOUT = "heldout"
SECTIONS = {"name", "out", "model", "prompt", "sampling", "data", "score", "build", "train", "eval", "report"}
DATA_KEYS = {"sources", "synth", "limit", "eval_sets", "data_dir", "ngram", "overlap"}
EVAL_KEYS = {"benchmarks", "samples", "limit", "max_tokens", "temperature", "top_p", "seed", "before", "engine",
             "engine_options", "extraction"}
BUILD_KEYS = {"buckets", "strategy", "edges", "drop_solved", "drop_unsolved", "keep_frac", "max_ci_width",
              "max_per_bucket", "seed", "heldout"}
REPORT_KEYS = {"title"}
# Source-config names accepted where a benchmark name is expected (datasets_cfg/ name -> benchmark name).
BENCHMARK_ALIASES = {"gsm8k_test": "gsm8k", "minerva_math": "minerva"}


class PipelineError(ValueError):
    """A recipe or run directory the pipeline cannot use; the message names the file and key."""


class StageFailed(PipelineError):
    """A stage stopped with an error; the stages before it are complete and kept."""

    def __init__(self, stage: str, error: BaseException):
        super().__init__(f"stage {stage} failed: {error}")
        self.stage = stage


# --------------------------------------------------------------------------------------------------
# the recipe


@dataclass
class PipelineConfig:
    """A pipeline recipe, validated; sections other than the named keys are passed to each stage's library."""

    name: str
    out: Path
    model: str = "smollm2-135m"
    data: dict = field(default_factory=dict)
    score: dict = field(default_factory=dict)
    build: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    eval: dict = field(default_factory=dict)
    report: dict = field(default_factory=dict)
    prompt: str | dict | None = None
    sampling: dict = field(default_factory=dict)
    source: str = "recipe"

    @property
    def template(self):
        """The prompt template that score, build (hence train) and eval share."""
        from curriculum.prompts import get_template

        return get_template(self.prompt)

    def to_dict(self) -> dict:
        return {"name": self.name, "out": str(self.out), "model": self.model,
                **({"prompt": self.prompt} if self.prompt is not None else {}), "sampling": self.sampling,
                "data": self.data, "score": self.score, "build": self.build, "train": self.train,
                "eval": self.eval, "report": self.report}


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> PipelineConfig:
    """Read and validate a pipeline YAML; `overrides` are `section.key=value` (YAML values)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as error:
        raise PipelineError(f"pipeline file {path} does not exist") from error
    except yaml.YAMLError as error:
        raise PipelineError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise PipelineError(f"{path}: a pipeline must be a mapping, got {type(data).__name__}")
    for assignment in overrides:
        key, sep, text = assignment.partition("=")
        if not sep or not key.strip():
            raise PipelineError(f"override {assignment!r} must look like section.key=value")
        _set_path(data, key.strip().split("."), yaml.safe_load(text) if text.strip() else None)
    return config_from_dict(data, source=str(path))


def config_from_dict(data: dict, *, source: str = "recipe") -> PipelineConfig:
    unknown = sorted(set(data) - SECTIONS)
    if unknown:
        raise PipelineError(f"{source}: unknown top-level key(s) {unknown}; expected {sorted(SECTIONS)}")
    name = data.get("name")
    if not name or not isinstance(name, str):
        raise PipelineError(f"{source}: `name` is required (a short run name such as demo-cpu)")
    sections = {}
    for section in ("data", "score", "build", "train", "eval", "report"):
        value = data.get(section) or {}
        if not isinstance(value, dict):
            raise PipelineError(f"{source}: `{section}` must be a mapping, got {type(value).__name__}")
        sections[section] = copy.deepcopy(value)
    for section, allowed in (("data", DATA_KEYS), ("build", BUILD_KEYS), ("eval", EVAL_KEYS), ("report", REPORT_KEYS)):
        extra = sorted(set(sections[section]) - allowed)
        if extra:
            raise PipelineError(f"{source}: unknown key(s) {extra} in `{section}`; expected some of {sorted(allowed)}")
    if not sections["data"].get("sources"):
        raise PipelineError(f"{source}: `data.sources` must list at least one source (e.g. [synthetic, gsm8k])")
    prompt = copy.deepcopy(data.get("prompt"))
    try:
        from curriculum.prompts import get_template

        get_template(prompt)
    except ValueError as error:
        raise PipelineError(f"{source}: prompt: {error}") from error
    sampling = resolve_sampling(sections, data.get("sampling"), source)
    _check_train(sections["train"], source)
    _check_score(sections["score"], source)
    sections["eval"]["benchmarks"] = [benchmark_name(b) for b in _as_list(sections["eval"].get("benchmarks", ["gsm8k"]))]
    if "eval_sets" in sections["data"]:
        sections["data"]["eval_sets"] = [benchmark_name(b) for b in _as_list(sections["data"]["eval_sets"])]
    out = Path(data.get("out") or Path("runs") / name)
    return PipelineConfig(name=name, out=out, model=str(data.get("model") or "smollm2-135m"), source=source,
                          prompt=prompt, sampling=sampling, **sections)


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
        raise PipelineError(f"{source}: `sampling` must be a mapping of {', '.join(SAMPLING_KEYS)}")
    block = {key: value for key, value in (block or {}).items() if value is not None}
    unknown = sorted(set(block) - set(SAMPLING_KEYS))
    if unknown:
        raise PipelineError(f"{source}: unknown key(s) {unknown} in `sampling`; expected some of "
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


def benchmark_name(name: str) -> str:
    """A benchmark name, accepting the datasets_cfg source names too (minerva_math -> minerva)."""
    return BENCHMARK_ALIASES.get(str(name), str(name))


def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return list(value)


def _check_train(section: dict, source: str) -> None:
    from curriculum.training.config import ConfigError, TrainSettings

    try:
        TrainSettings.from_dict(section, source=f"{source}: train")
    except ConfigError as error:
        raise PipelineError(str(error)) from error


def _check_score(section: dict, source: str) -> None:
    allowed = set(_score_parameters()) | {"engine_options"}
    extra = sorted(set(section) - allowed)
    if extra:
        raise PipelineError(f"{source}: unknown key(s) {extra} in `score`; expected some of {sorted(allowed)}")


def _set_path(data: dict, path: list[str], value: Any) -> None:
    for part in path[:-1]:
        data = data.setdefault(part, {})
        if not isinstance(data, dict):
            raise PipelineError(f"override {'.'.join(path)}: {part} is not a mapping")
    data[path[-1]] = value


# --------------------------------------------------------------------------------------------------
# stages


@dataclass
class StageState:
    """What a stage would do now: `done` (skip), `pending`, `partial` (resume/redo) or `stale` (refuse)."""

    name: str
    outputs: list[Path]
    status: str
    fingerprint: str
    note: str = ""


@dataclass
class StageOutcome:
    name: str
    action: str  # "ran" | "resumed" | "skipped"
    wall_s: float
    summary: str


Event = Callable[[str, str, str], None]  # (kind: start|skip|done|info, stage, message)
Progress = Callable[[str, int, int], None]  # (stage, done, total): the CLI draws a bar


class Pipeline:
    """The stages of one recipe over one run directory."""

    def __init__(self, config: PipelineConfig, *, progress: Progress | None = None):
        self.config = config
        self.root = Path(config.out)
        self.progress: Progress = progress or (lambda stage, done, total: None)

    # -- layout ---------------------------------------------------------------------------------------

    @property
    def paths(self) -> dict[str, Path]:
        root = self.root
        return {
            "problems": root / reports.PROBLEMS, "scores": root / reports.SCORES, "buckets": root / reports.BUCKETS,
            "heldout": root / HELDOUT, "train": root / reports.TRAIN, "before": root / reports.EVAL_BEFORE,
            "after": root / reports.EVAL_AFTER, "report": root / reports.REPORT_DIR, "config": root / reports.CONFIG,
        }

    def outputs(self, stage: str) -> list[Path]:
        """Everything `stage` writes (removed by `redo`)."""
        p = self.paths
        scores = p["scores"]
        return {
            "data": [p["problems"], p["problems"].with_name("problems.rejects.jsonl"), self.root / "sources"],
            "score": [scores, scores.with_name(scores.name + ".parts"), scores.with_name("scores.completions.parquet")],
            "build": [p["buckets"], p["heldout"]],
            "train": [p["train"]],
            "eval": [p["before"], p["after"], p["before"].with_name("eval_before.samples.jsonl"),
                     p["after"].with_name("eval_after.samples.jsonl")],
            "report": [p["report"]],
        }[stage]

    def complete_files(self, stage: str) -> list[Path]:
        """The files that exist once `stage` has finished."""
        p = self.paths
        return {
            "data": [p["problems"]],
            "score": [p["scores"]],
            "build": [p["buckets"] / "manifest.json"] + ([p["heldout"] / "manifest.json"] if self._heldout() else []),
            "train": [p["train"] / "config.json", p["train"] / "metrics.jsonl"],
            "eval": ([p["before"]] if self.config.eval.get("before", True) else []) + [p["after"]],
            "report": [p["report"] / "report.md"],
        }[stage]

    def _heldout(self) -> int:
        return int(self.config.build.get("heldout") or 0)

    # -- fingerprints and markers ---------------------------------------------------------------------

    def fingerprints(self) -> dict[str, str]:
        c = self.config
        prompt = {"prompt": c.prompt} if c.prompt is not None else {}  # absent: the default, as before
        inputs = {
            "data": {"data": c.data},
            "score": {"model": c.model, "score": c.score, **prompt},
            "build": {"build": c.build, **prompt},
            "train": {"model": c.model, "train": c.train},
            "eval": {"model": c.model, "eval": c.eval, **prompt},
            "report": {},
        }
        prints, upstream = {}, ""
        for stage in STAGES:
            text = json.dumps({"stage": stage, "inputs": inputs[stage], "upstream": upstream}, sort_keys=True,
                              default=str)
            prints[stage] = upstream = hashlib.sha256(text.encode()).hexdigest()[:16]
        return prints

    def eval_fingerprint(self, label: str) -> str:
        """`before` depends on the model, eval settings and held-out split only, so it survives a retrain."""
        prints = self.fingerprints()
        if label == "after":
            return prints["eval"]
        prompt = {"prompt": self.config.prompt} if self.config.prompt is not None else {}
        text = json.dumps({"model": self.config.model, "eval": self.config.eval, "build": prints["build"], **prompt},
                          sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def marker(self, stage: str) -> Path:
        return self.root / MARKERS / f"{stage}.json"

    def plan(self) -> list[StageState]:
        """The state of every stage, in order; a stage after a non-done one cannot be done."""
        prints = self.fingerprints()
        states, blocked = [], False
        for stage in STAGES:
            marker = self.marker(stage)
            recorded = json.loads(marker.read_text()).get("fingerprint") if marker.is_file() else None
            complete = all(path.exists() for path in self.complete_files(stage))
            if stage == "report":
                status, note = "pending", "always rewritten"
            elif recorded is not None and recorded != prints[stage]:
                status, note = "stale", "settings (or an earlier stage) changed since it ran"
            elif recorded == prints[stage] and complete and not blocked:
                status, note = "done", ""
            elif any(path.exists() for path in self.outputs(stage)):
                status, note = "partial", "output present without a completion marker (interrupted?)"
            else:
                status, note = "pending", ""
            blocked = blocked or status != "done"
            states.append(StageState(stage, self.complete_files(stage), status, prints[stage], note))
        return states

    def redo(self, stage: str) -> list[Path]:
        """Delete the outputs and markers of `stage` and every later stage; return what was removed."""
        if stage not in STAGES:
            raise PipelineError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
        removed = []
        keep = {self.paths["before"], self.paths["before"].with_name("eval_before.samples.jsonl")}
        for later in STAGES[STAGES.index(stage):]:
            for path in [*self.outputs(later), self.marker(later)]:
                if path in keep and stage not in ("data", "score", "build"):
                    continue  # rechecked by its own fingerprint: a retrain does not change the base model
                if path.is_dir():
                    shutil.rmtree(path)
                    removed.append(path)
                elif path.exists():
                    path.unlink()
                    removed.append(path)
        return removed

    # -- running ---------------------------------------------------------------------------------------

    def run(self, *, until: str | None = None, on_event: Event | None = None) -> list[StageOutcome]:
        """Run every stage not yet done (up to `until`), in order; return what each did."""
        emit = on_event or (lambda kind, stage, message: None)
        states = self.plan()
        stale = [s.name for s in states if s.status == "stale"]
        if stale:
            raise PipelineError(
                f"the settings of stage {stale[0]!r} changed since it ran in {self.root}; pass --redo {stale[0]} "
                f"to recompute it and every later stage, or set a new `out`"
            )
        last = STAGES.index(until) if until else len(STAGES) - 1
        self.root.mkdir(parents=True, exist_ok=True)
        self._write_config()
        outcomes = []
        for state in states[:last + 1]:
            if state.status == "done":
                outcomes.append(StageOutcome(state.name, "skipped", 0.0, self._summary(state.name)))
                emit("skip", state.name, "complete, skipped")
                continue
            emit("start", state.name, state.note)
            started = time.perf_counter()
            try:
                resumed = getattr(self, f"_run_{state.name}")(state.status == "partial", emit)
            except (ValueError, RuntimeError, OSError) as error:  # library errors all derive from these
                raise StageFailed(state.name, error) from error
            wall = time.perf_counter() - started
            if state.name != "report":
                self.marker(state.name).parent.mkdir(parents=True, exist_ok=True)
                self.marker(state.name).write_text(json.dumps(
                    {"fingerprint": state.fingerprint, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                     "wall_s": round(wall, 1)}) + "\n")
            outcome = StageOutcome(state.name, "resumed" if resumed else "ran", wall, self._summary(state.name))
            outcomes.append(outcome)
            emit("done", state.name, f"{wall:.0f}s: {outcome.summary}")
        return outcomes

    def _write_config(self) -> None:
        text = f"# Resolved by `curriculum pipeline {self.config.source}`\n"
        self.paths["config"].write_text(text + yaml.safe_dump(self.config.to_dict(), sort_keys=False, width=110))

    # -- the stages -----------------------------------------------------------------------------------

    def _run_data(self, partial: bool, emit: Event) -> bool:
        from curriculum.data import PrepareOptions, SourceError, prepare

        data = self.config.data
        limit = data.get("limit")
        options = PrepareOptions(
            decontaminate=tuple(data["eval_sets"]) if "eval_sets" in data else PrepareOptions().decontaminate,
            limit_per_source=limit if isinstance(limit, int) else None,
            **({"ngram": data["ngram"]} if "ngram" in data else {}),
            **({"threshold": data["overlap"]} if "overlap" in data else {}),
        )
        try:
            sources = self._materialize_sources(emit)
            result = prepare(sources, self.paths["problems"], data_dir=data.get("data_dir") or _default_data_dir(),
                             options=options)
        except SourceError as error:
            raise PipelineError(f"data: {error}") from error
        if result.kept == 0:
            raise PipelineError("data: no valid problems left; nothing to train on")
        return False

    def _materialize_sources(self, emit: Event) -> list[str]:
        """The sources handed to `data prepare`. Two things are written to <run>/sources/ first, so they can be
        inspected: the synthetic problems (generated here when `synth` sets knobs such as digits), and the
        first N problems of a source whose `limit` is given per source ({gsm8k: 40})."""
        from curriculum.data import generate_synthetic, load_problems
        from curriculum.data.synthetic import Knobs

        data = self.config.data
        synth = dict(data.get("synth") or {})
        limits = data.get("limit") if isinstance(data.get("limit"), dict) else {}
        folder = self.root / "sources"
        sources = []
        for source in _as_list(data["sources"]):
            source = str(source)
            if source in ("synthetic", "datasets_cfg/synthetic.yaml"):
                n, seed = int(synth.pop("n", 500)), int(synth.pop("seed", 0))
                unknown = set(synth) - set(Knobs.__dataclass_fields__)
                if unknown:
                    raise PipelineError(f"data.synth: unknown knob(s) {sorted(unknown)}; expected n, seed, "
                                        f"{', '.join(Knobs.__dataclass_fields__)}")
                try:
                    knobs = Knobs(**{key: tuple(v) if isinstance(v, list) else v for key, v in synth.items()})
                except ValueError as error:
                    raise PipelineError(f"data.synth: {error}") from error
                rows = [problem.to_row() for problem in generate_synthetic(min(n, limits.get(source, n)), seed, knobs)]
            elif source in limits:
                rows = load_problems(source, data_dir_option=data.get("data_dir") or _default_data_dir())
                rows = rows.head(int(limits[source])).to_dict("records")
            else:
                sources.append(source)
                continue
            import pandas as pd

            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{Path(source).stem}.parquet"
            pd.DataFrame(rows).drop(columns=["id", "source"], errors="ignore").to_parquet(path, index=False)
            emit("info", "data", f"{source}: {len(rows)} problems written to {path}")
            sources.append(str(path))
        return sources

    def _run_score(self, partial: bool, emit: Event) -> bool:
        from curriculum import scoring
        from curriculum.models import ModelResolutionError, model_label
        from curriculum.rollout import RolloutError, get_engine

        config, engine_name, engine_options, keep = score_config(self.config.score, self.config.template)
        out = self.paths["scores"]
        # Finished chunks (parts) or a finished file are reused; scoring refuses them if its settings differ.
        resume = scoring.parts_dir(out).exists() or out.exists()
        try:
            problems = scoring.load_problems(self.paths["problems"])
            engine = get_engine(engine_name, self.config.model, **engine_options)
        except (scoring.ScoringError, ModelResolutionError, RolloutError, TypeError, ValueError) as error:
            raise PipelineError(f"score: {error}") from error
        try:
            scoring.score(problems, engine, config, out, model=model_label(self.config.model), resume=resume,
                          keep_completions=keep,
                          on_progress=lambda p: self.progress("score", p.problems_done, p.problems_total))
        except (scoring.ScoringError, RolloutError) as error:
            raise PipelineError(f"score: {error} (finished chunks are kept: rerun to resume, or pass --redo score "
                                "to start over)") from error
        finally:
            engine.close()
        return resume

    def _run_build(self, partial: bool, emit: Event) -> bool:
        from curriculum import buckets as lib

        section = dict(self.config.build)
        heldout = int(section.pop("heldout", 0) or 0)
        config = lib.BuildConfig(num_buckets=section.pop("buckets", 4), **section)
        scores = lib.read_table(self.paths["scores"], "scores")
        problems = lib.read_table(self.paths["problems"], "problems")
        for path in (self.paths["buckets"], self.paths["heldout"]):
            if path.exists():
                shutil.rmtree(path)
        try:
            result = lib.build(scores, problems, config, scores_path=self.paths["scores"],
                               problems_path=self.paths["problems"], template=self.config.template)
            sources = {"scores": str(self.paths["scores"]), "problems": str(self.paths["problems"])}
            if heldout:
                train_result, heldout_result = split_heldout(result, scores, problems, config, heldout,
                                                             template=self.config.template)
                lib.save(heldout_result, self.paths["heldout"], sources={**sources, "heldout_of": "all kept problems"})
                result = train_result
            lib.save(result, self.paths["buckets"], sources=sources)
        except lib.BuildError as error:
            raise PipelineError(f"build: {error}") from error
        return False

    def _run_train(self, partial: bool, emit: Event) -> bool:
        from curriculum.training.config import TrainSettings

        settings = TrainSettings.from_dict(self.config.train, source=f"{self.config.source}: train")
        out = self.paths["train"]
        resume = partial and any(out.glob("checkpoint-*"))
        if partial and not resume and out.exists():
            shutil.rmtree(out)  # interrupted before its first checkpoint: start over
        launch = settings.launch or {}
        if int(launch.get("num_processes", 1) or 1) > 1:
            self._launch_train(launch, resume, emit)
            return resume
        from curriculum.training.run import train

        train(self.paths["buckets"], self.config.model, out, settings, resume=resume)
        return resume

    def _launch_train(self, launch: dict, resume: bool, emit: Event) -> None:
        """Multi-GPU: the same `curriculum train` under `accelerate launch`, fed the resolved recipe."""
        command = [sys.executable, "-m", "accelerate.commands.launch"]
        if launch.get("accelerate_config"):
            command += ["--config_file", str(launch["accelerate_config"])]
        else:  # else accelerate starts one process where it sees fewer than 2 GPUs (CPU: also grpo.use_cpu)
            command += ["--multi_gpu"]
        command += ["--num_processes", str(launch["num_processes"]), "-m", "curriculum.cli", "train",
                    "--config", str(self.paths["config"]), "--model", self.config.model,
                    "--buckets", str(self.paths["buckets"]), "--out", str(self.paths["train"])]
        if resume:
            command.append("--resume")
        emit("info", "train", " ".join(command))
        if subprocess.run(command).returncode != 0:
            raise PipelineError("train: `accelerate launch` failed (see its output above)")

    def _run_eval(self, partial: bool, emit: Event) -> bool:
        from curriculum.evaluation import EvalSettings, evaluate, read_eval, samples_path_for, write_eval

        section = self.config.eval
        settings = EvalSettings(**{key: section[key] for key in ("samples", "limit", "max_tokens", "temperature",
                                                                 "top_p", "seed", "extraction") if key in section})
        runs = [("before", self.config.model)] if section.get("before", True) else []
        runs.append(("after", str(self.paths["train"])))
        heldout = self.paths["heldout"] if self.paths["heldout"].exists() else None
        total = [0]
        for label, model in runs:
            out = self.paths[label]
            if out.exists():
                previous = read_eval(out)
                if previous.get("fingerprint") == self.eval_fingerprint(label):
                    emit("info", "eval", f"{out.name} already complete")
                    continue
            emit("info", "eval", f"{label}: {model}")
            result = evaluate(
                model, section.get("benchmarks", ["gsm8k"]), settings=settings, engine=section.get("engine", "hf"),
                engine_options=section.get("engine_options") or {}, buckets=heldout, template=self.config.template,
                data_dir=self.config.data.get("data_dir"), samples_path=samples_path_for(out),
                on_benchmark=lambda name, n, label=label: (total.__setitem__(0, n),
                                                           emit("info", "eval", f"{label}: {name}, {n} problems")),
                on_progress=lambda done: self.progress("eval", done, total[0]),
            )
            result["fingerprint"] = self.eval_fingerprint(label)
            write_eval(result, out)
        return partial

    def _run_report(self, partial: bool, emit: Event) -> bool:
        reports.write_report(self.root, self.paths["report"], title=self.config.report.get("title"))
        return False

    # -- summaries ------------------------------------------------------------------------------------

    def _summary(self, stage: str) -> str:
        """One line of the numbers each stage produced (read back from its files)."""
        try:
            return _SUMMARIES[stage](self)
        except Exception as error:  # a summary must never fail a finished run
            return f"(no summary: {error})"


def _summary_data(p: Pipeline) -> str:
    import pandas as pd

    frame = pd.read_parquet(p.paths["problems"])
    sources = frame["source"].astype(str).value_counts().to_dict() if "source" in frame else {}
    return f"{len(frame)} problems ({', '.join(f'{k}: {v}' for k, v in sources.items())})"


def _summary_score(p: Pipeline) -> str:
    import pandas as pd

    frame = pd.read_parquet(p.paths["scores"])
    return (f"{len(frame)} scored, mean pass rate {frame['pass_rate'].mean():.2f}, "
            f"{(frame['pass_rate'] == 0).mean():.0%} never solved, {(frame['pass_rate'] == 1).mean():.0%} always")


def _summary_build(p: Pipeline) -> str:
    manifest = json.loads((p.paths["buckets"] / "manifest.json").read_text())
    text = f"{manifest.get('total')} problems in buckets {manifest.get('counts')}, dropped {manifest.get('dropped')}"
    if p.paths["heldout"].exists():
        held = json.loads((p.paths["heldout"] / "manifest.json").read_text())
        text += f"; held out {held.get('total')} {held.get('counts')}"
    return text


def _summary_train(p: Pipeline) -> str:
    metrics = reports.read_metrics(p.paths["train"] / "metrics.jsonl")
    rewards = [row["reward"] for row in metrics if isinstance(row.get("reward"), (int, float))]
    if not rewards:
        return "no logged steps"
    head, tail = rewards[: max(1, len(rewards) // 4)], rewards[-max(1, len(rewards) // 4):]
    return (f"{metrics[-1]['step']} steps, reward {sum(head) / len(head):.2f} (first quarter) -> "
            f"{sum(tail) / len(tail):.2f} (last quarter)")


def _summary_eval(p: Pipeline) -> str:
    from curriculum.evaluation import read_eval

    parts = []
    for label in ("before", "after"):
        if p.paths[label].exists():
            result = read_eval(p.paths[label])
            for name, metrics in result["benchmarks"].items():
                parts.append(f"{label} {name} avg@{result['k']} {reports.fmt_interval(metrics['avg_at_k'])}%")
    return "; ".join(parts)


def _summary_report(p: Pipeline) -> str:
    return f"{p.paths['report'] / 'report.md'} (and report.html)"


_SUMMARIES = {"data": _summary_data, "score": _summary_score, "build": _summary_build, "train": _summary_train,
              "eval": _summary_eval, "report": _summary_report}


# --------------------------------------------------------------------------------------------------
# helpers


def split_heldout(result, scores, problems, config, count: int, *, template=None):
    """Hold `count` bucketed problems out of training, stratified by bucket, seeded.

    Returns (train BuildResult rebuilt on the rest, so its edges and manifest describe what trains;
    held-out BuildResult with the bucket labels of the full build and a manifest counting them).
    """
    import numpy as np

    from curriculum import buckets as lib

    frame = result.frame
    if not 0 < count <= len(frame) - 2 * config.num_buckets:
        raise PipelineError(
            f"build.heldout={count} leaves too little to train on: {len(frame)} problems kept after dropping "
            f"zero-signal ones, {config.num_buckets} buckets need at least {2 * config.num_buckets}; lower "
            "build.heldout, or score more (or easier) problems"
        )
    rng = np.random.default_rng(config.seed)
    share = count / len(frame)
    chosen = []
    for bucket in sorted(frame["bucket"].unique()):
        members = np.flatnonzero(frame["bucket"].to_numpy() == bucket)
        take = min(len(members), max(1, round(share * len(members))))
        chosen.extend(rng.choice(members, take, replace=False).tolist())
    chosen = sorted(chosen)[:count]
    held_ids = set(frame["id"].iloc[chosen])
    held = frame.iloc[chosen].reset_index(drop=True)
    train = lib.build(scores[~scores["id"].isin(held_ids)], problems, config,
                      **({"template": template} if template is not None else {}))
    manifest = copy.deepcopy(result.manifest)
    counts = [int((held["bucket"] == k).sum()) for k in range(config.num_buckets)]
    manifest.update({"counts": counts, "total": int(len(held)), "role": "held out of training",
                     "buckets": [{**b, "count": counts[b["bucket"]]} for b in manifest.get("buckets", [])]})
    return train, lib.BuildResult(frame=held, held_back=held.iloc[0:0], manifest=manifest)


def _default_data_dir():
    from curriculum.evaluation import default_data_dir

    return default_data_dir()


SCORE_SAMPLING_KEYS = ("temperature", "top_p", "max_tokens", "seed")


def _score_parameters() -> list[str]:
    import dataclasses

    from curriculum.scoring import ScoreConfig

    fields = [f.name for f in dataclasses.fields(ScoreConfig) if f.name not in ("sampling", "template")]
    return [*fields, *SCORE_SAMPLING_KEYS, "engine", "keep_completions"]


def score_config(section: dict, template=None):
    """The `score:` section (and the recipe's prompt template) -> (ScoreConfig, engine name, engine options,
    keep_completions)."""
    from curriculum.rollout.base import Sampling
    from curriculum.scoring import ScoreConfig, ScoringError

    section = dict(section)
    engine = section.pop("engine", "hf")
    engine_options = dict(section.pop("engine_options", None) or {})
    keep = bool(section.pop("keep_completions", False))
    sampling = Sampling(**{key: section.pop(key) for key in SCORE_SAMPLING_KEYS if key in section})
    if "edges" in section:
        section["edges"] = tuple(section["edges"])
    try:
        if template is not None:
            section["template"] = template
        return ScoreConfig(sampling=sampling, **section), engine, engine_options, keep
    except (ScoringError, TypeError) as error:
        raise PipelineError(f"score: {error}") from error
