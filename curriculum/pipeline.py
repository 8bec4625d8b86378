"""`curriculum pipeline`: data, score, build, train, eval and report from one YAML recipe, resumable.

Every stage writes its files into one run directory and, when it finishes, a marker
`.pipeline/<stage>.json` holding a fingerprint of the settings it ran with (and of the stages before it).
A rerun skips stages whose marker matches; a stage whose files exist without a marker (interrupted) is
resumed where its library supports it (scoring and training) and redone otherwise; a stage whose settings
changed is refused with a message naming `--redo`, so old results are never silently mixed with new ones.

The pipeline only plans, marks and calls. Where each file goes is `curriculum.layout.RunLayout`; each section
of the recipe becomes its stage's own config object when the recipe loads (`StageSettings`), so a bad value
anywhere is refused before the first stage runs; each stage's logic (the held-out split, source limits,
synthetic knobs) and its one-line summary belong to the stage, and the summary is kept in its marker.

Recipe schema (pipelines/*.yaml):

    name: demo-cpu                 # required
    out: runs/demo-cpu             # default runs/<name>
    model: smollm2-135m            # alias, local directory or hub id
    prompt:  boxed                 # or think-answer, or {system, instruction}: score, build and eval use it
    sampling: {temperature, top_p, max_tokens}   # shared by score, train and eval (see recipe.resolve_sampling)
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
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from curriculum import recipe
from curriculum.contracts import atomic_write_text
from curriculum.data.loaders import BENCHMARKS as BENCHMARK_SOURCES
from curriculum.layout import MARKERS, STAGES, RunLayout, fingerprint  # noqa: F401 - MARKERS, STAGES re-exported

SECTIONS = {"name", "out", "model", "prompt", "sampling", "data", "score", "build", "train", "eval", "report"}
DATA_KEYS = {"sources", "synth", "limit", "eval_sets", "data_dir", "ngram", "overlap"}
EVAL_KEYS = {"benchmarks", "samples", "limit", "max_tokens", "temperature", "top_p", "seed", "before", "engine",
             "engine_options", "extraction"}
BUILD_KEYS = {"buckets", "strategy", "edges", "drop_solved", "drop_unsolved", "keep_frac", "max_ci_width",
              "max_per_bucket", "seed", "heldout"}
REPORT_KEYS = {"title"}
# Source-config names accepted where a benchmark name is expected (datasets_cfg/ name -> benchmark name).
BENCHMARK_ALIASES = {source: name for name, source in BENCHMARK_SOURCES.items() if source != name}


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
class StageSettings:
    """Each section of a recipe as its stage's own config object, built (and so checked) when the recipe loads."""

    data: Any  # curriculum.data.PrepareOptions
    score: Any  # ScoreSection: curriculum.scoring.ScoreConfig + engine
    build: Any  # curriculum.buckets.BuildConfig
    train: Any  # curriculum.training.config.TrainSettings
    eval: Any  # curriculum.evaluation.EvalSettings


@dataclass
class ScoreSection:
    """The `score:` section: how to score (ScoreConfig) and with what (engine, its options, side file)."""

    config: Any  # curriculum.scoring.ScoreConfig
    engine: str = "hf"
    engine_options: dict = field(default_factory=dict)
    keep_completions: bool = False


@dataclass
class PipelineConfig:
    """A pipeline recipe, validated. The sections stay as written (resolved: shared sampling filled in) for the
    fingerprints and config.yaml; `settings` holds each as its stage's config object."""

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
    settings: StageSettings | None = None

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
    try:
        data = recipe.load(path, overrides, what="pipeline file")
    except recipe.RecipeError as error:
        raise PipelineError(str(error)) from error
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
    try:
        sampling = recipe.resolve_sampling(sections, data.get("sampling"), source)
    except recipe.RecipeError as error:
        raise PipelineError(str(error)) from error
    sections["eval"]["benchmarks"] = [benchmark_name(b) for b in _as_list(sections["eval"].get("benchmarks", ["gsm8k"]))]
    if "eval_sets" in sections["data"]:
        sections["data"]["eval_sets"] = [benchmark_name(b) for b in _as_list(sections["data"]["eval_sets"])]
    out = Path(data.get("out") or Path("runs") / name)
    config = PipelineConfig(name=name, out=out, model=str(data.get("model") or "smollm2-135m"), source=source,
                            prompt=prompt, sampling=sampling, **sections)
    config.settings = stage_settings(config)
    return config


def stage_settings(config: PipelineConfig) -> StageSettings:
    """Build every section's config object, so a bad value in any section is refused at load, naming
    `section.key`, instead of when its stage runs (perhaps hours later)."""
    from curriculum.buckets import BuildConfig, BuildError
    from curriculum.data import PrepareOptions, SourceError
    from curriculum.evaluation import BENCHMARKS, EvalSettings, EvaluationError
    from curriculum.rollout import ENGINES
    from curriculum.training.config import ConfigError, TrainSettings

    source = config.source

    def fail(section: str, error: Exception) -> PipelineError:
        """`recipe.yaml: section.key: why`, whichever way the stage's message names its key."""
        text = " ".join(str(error).split())
        named = re.match(r"(\w+) (must .*)", text)
        if named and named.group(1) in (getattr(config, section) or {}):
            text = f"{named.group(1)}: {named.group(2)}"
        key = re.match(r"(\w+(?:\.\w+)*): ", text)
        return PipelineError(f"{source}: {section}.{text}" if key else f"{source}: {section}: {text}")

    try:
        data = PrepareOptions.from_recipe(config.data)
    except (SourceError, ValueError) as error:
        raise fail("data", error) from error
    _check_score_keys(config.score, source)
    score = _score_section(config.score, config.template, fail)
    try:
        build = BuildConfig.from_recipe(config.build)
    except BuildError as error:
        raise fail("build", error) from error
    try:
        train = TrainSettings.from_dict(config.train, source=f"{source}: train")
    except ConfigError as error:
        raise fail("train", ValueError(str(error).removeprefix(f"{source}: train: "))) from error
    try:
        evaluation = EvalSettings.from_recipe(config.eval)
    except EvaluationError as error:
        raise fail("eval", error) from error
    for name in config.eval["benchmarks"]:
        if name not in BENCHMARKS and Path(name).suffix not in (".parquet", ".jsonl", ".json"):
            raise PipelineError(f"{source}: eval.benchmarks: unknown benchmark {name!r}; expected one of "
                                f"{', '.join(BENCHMARKS)} or a .parquet/.jsonl problems file")
    engine = config.eval.get("engine", "hf")
    if engine not in ENGINES:
        raise PipelineError(f"{source}: eval.engine: unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    if not isinstance(config.eval.get("before", True), bool):
        raise PipelineError(f"{source}: eval.before: expected true/false, got {config.eval['before']!r}")
    return StageSettings(data=data, score=score, build=build, train=train, eval=evaluation)


def benchmark_name(name: str) -> str:
    """A benchmark name, accepting the datasets_cfg source names too (minerva_math -> minerva)."""
    return BENCHMARK_ALIASES.get(str(name), str(name))


def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return list(value)


def _check_score_keys(section: dict, source: str) -> None:
    from curriculum.scoring import ScoreConfig

    allowed = set(ScoreConfig.recipe_keys())
    extra = sorted(set(section) - allowed)
    if extra:
        raise PipelineError(f"{source}: unknown key(s) {extra} in `score`; expected some of {sorted(allowed)}")


def _score_section(section: dict, template, fail) -> ScoreSection:
    from curriculum.rollout import ENGINES

    try:
        config, engine, engine_options, keep = score_config(section, template)
    except PipelineError as error:
        raise fail("score", error.__cause__ or error) from error
    if engine not in ENGINES:
        raise fail("score", ValueError(f"engine: unknown engine {engine!r}; expected one of {', '.join(ENGINES)}"))
    return ScoreSection(config=config, engine=engine, engine_options=engine_options, keep_completions=keep)


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
        self.settings = config.settings or stage_settings(config)
        self.root = Path(config.out)
        self.layout = RunLayout(self.root)
        self.progress: Progress = progress or (lambda stage, done, total: None)

    # -- layout ---------------------------------------------------------------------------------------

    @property
    def paths(self) -> dict[str, Path]:
        """The run directory's main paths by name (see `curriculum.layout.RunLayout` for all of them)."""
        layout = self.layout
        return {"problems": layout.problems, "scores": layout.scores, "buckets": layout.buckets,
                "heldout": layout.heldout, "train": layout.train, "before": layout.eval("before"),
                "after": layout.eval("after"), "report": layout.report, "config": layout.config}

    def outputs(self, stage: str) -> list[Path]:
        """Everything `stage` writes (removed by `redo`)."""
        return self.layout.outputs(stage)

    def complete_files(self, stage: str) -> list[Path]:
        """The files that exist once `stage` has finished."""
        layout = self.layout
        return {
            "data": [layout.problems],
            "score": [layout.scores],
            "build": [layout.manifest] + ([layout.heldout_manifest] if self.settings.build.heldout else []),
            "train": [layout.train / "config.json", layout.metrics],
            "eval": ([layout.eval("before")] if self.config.eval.get("before", True) else []) + [layout.eval("after")],
            "report": [layout.report_md],
        }[stage]

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
            prints[stage] = upstream = fingerprint({"stage": stage, "inputs": inputs[stage], "upstream": upstream})
        return prints

    def eval_fingerprint(self, label: str) -> str:
        """`before` depends on the model, eval settings and held-out split only, so it survives a retrain."""
        prints = self.fingerprints()
        if label == "after":
            return prints["eval"]
        prompt = {"prompt": self.config.prompt} if self.config.prompt is not None else {}
        return fingerprint({"model": self.config.model, "eval": self.config.eval, "build": prints["build"], **prompt})

    def marker(self, stage: str) -> Path:
        return self.layout.marker(stage)

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
        keep = {self.layout.eval("before"), self.layout.samples("before")}
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
                outcomes.append(StageOutcome(state.name, "skipped", 0.0, self._recorded_summary(state.name)))
                emit("skip", state.name, "complete, skipped")
                continue
            emit("start", state.name, state.note)
            started = time.perf_counter()
            try:
                resumed, summary = getattr(self, f"_run_{state.name}")(state.status == "partial", emit)
            except (ValueError, RuntimeError, OSError) as error:  # library errors all derive from these
                raise StageFailed(state.name, error) from error
            wall = time.perf_counter() - started
            if state.name != "report":
                self.marker(state.name).parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(self.marker(state.name), json.dumps(
                    {"fingerprint": state.fingerprint, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                     "wall_s": round(wall, 1), "summary": summary}) + "\n")
            outcome = StageOutcome(state.name, "resumed" if resumed else "ran", wall, summary)
            outcomes.append(outcome)
            emit("done", state.name, f"{wall:.0f}s: {outcome.summary}")
        return outcomes

    def _recorded_summary(self, stage: str) -> str:
        """A finished stage's summary line, as its marker recorded it."""
        try:
            return json.loads(self.marker(stage).read_text()).get("summary") or "(no summary recorded)"
        except (OSError, ValueError):
            return "(no summary recorded)"

    def _write_config(self) -> None:
        text = f"# Resolved by `curriculum pipeline {self.config.source}`\n"
        self.layout.config.write_text(text + yaml.safe_dump(self.config.to_dict(), sort_keys=False, width=110))

    # -- the stages: each returns (resumed, its own one-line summary) -----------------------------------

    def _run_data(self, partial: bool, emit: Event) -> tuple[bool, str]:
        from curriculum.data import SourceError, prepare
        from curriculum.data.sources import data_dir

        data = self.config.data
        try:
            result = prepare([str(source) for source in _as_list(data["sources"])], self.layout.problems,
                             data_dir=data_dir(data.get("data_dir")), options=self.settings.data)
        except SourceError as error:
            raise PipelineError(f"data: {error}") from error
        if result.kept == 0:
            raise PipelineError("data: no valid problems left; nothing to train on")
        return False, result.summary()

    def _run_score(self, partial: bool, emit: Event) -> tuple[bool, str]:
        from curriculum import scoring
        from curriculum.models import ModelResolutionError, model_label
        from curriculum.rollout import RolloutError, get_engine

        section = self.settings.score
        out = self.layout.scores
        # Finished chunks (parts) or a finished file are reused; scoring refuses them if its settings differ.
        resume = self.layout.score_parts.exists() or out.exists()
        try:
            problems = scoring.load_problems(self.layout.problems)
            engine = get_engine(section.engine, self.config.model, **section.engine_options)
        except (scoring.ScoringError, ModelResolutionError, RolloutError, TypeError, ValueError) as error:
            raise PipelineError(f"score: {error}") from error
        try:
            result = scoring.score(problems, engine, section.config, out, model=model_label(self.config.model),
                                   resume=resume, keep_completions=section.keep_completions,
                                   on_progress=lambda p: self.progress("score", p.problems_done, p.problems_total))
        except (scoring.ScoringError, RolloutError) as error:
            raise PipelineError(f"score: {error} (finished chunks are kept: rerun to resume, or pass --redo score "
                                "to start over)") from error
        finally:
            engine.close()
        return resume, result.summary()

    def _run_build(self, partial: bool, emit: Event) -> tuple[bool, str]:
        from curriculum import buckets as lib

        layout = self.layout
        for path in (layout.buckets, layout.heldout):
            if path.exists():
                shutil.rmtree(path)
        try:
            result = lib.build(lib.read_table(layout.scores, "scores"), lib.read_table(layout.problems, "problems"),
                               self.settings.build, scores_path=layout.scores, problems_path=layout.problems,
                               template=self.config.template)
            lib.save(result, layout.buckets, sources={"scores": str(layout.scores), "problems": str(layout.problems)},
                     heldout_dir=layout.heldout)
        except lib.BuildError as error:
            raise PipelineError(f"build: {error}") from error
        return False, result.summary()

    def _run_train(self, partial: bool, emit: Event) -> tuple[bool, str]:
        from curriculum.training.run import TrainResult

        settings = self.settings.train
        out = self.layout.train
        resume = partial and bool(self.layout.checkpoints())
        if partial and not resume and out.exists():
            shutil.rmtree(out)  # interrupted before its first checkpoint: start over
        launch = settings.launch or {}
        if int(launch.get("num_processes", 1) or 1) > 1:
            self._launch_train(launch, resume, emit)
            return resume, TrainResult.describe_metrics(self.layout.metrics)
        from curriculum.training.run import train

        result = train(self.layout.buckets, self.config.model, out, settings, resume=resume)
        return resume, result.summary()

    def _launch_train(self, launch: dict, resume: bool, emit: Event) -> None:
        """Multi-GPU: the same `curriculum train` under `accelerate launch`, fed the resolved recipe."""
        command = [sys.executable, "-m", "accelerate.commands.launch"]
        if launch.get("accelerate_config"):
            command += ["--config_file", str(launch["accelerate_config"])]
        else:
            # One process per rank through torchrun. Plain `--num_processes N` (or `--cpu`) runs a single process
            # where accelerate sees fewer than N GPUs; without a GPU the ranks talk over gloo (use_cpu).
            command.append("--multi_gpu")
        command += ["--num_processes", str(launch["num_processes"]), "-m", "curriculum.cli", "train",
                    "--config", str(self.layout.config), "--model", self.config.model,
                    "--buckets", str(self.layout.buckets), "--out", str(self.layout.train)]
        if resume:
            command.append("--resume")
        emit("info", "train", " ".join(command))
        if subprocess.run(command).returncode != 0:
            raise PipelineError("train: `accelerate launch` failed (see its output above)")

    def _run_eval(self, partial: bool, emit: Event) -> tuple[bool, str]:
        from curriculum.data.sources import data_dir
        from curriculum.evaluation import describe, evaluate, read_eval, write_eval

        section = self.config.eval
        runs = [("before", self.config.model)] if section.get("before", True) else []
        runs.append(("after", str(self.layout.train)))
        heldout = self.layout.heldout if self.layout.heldout.exists() else None
        total, lines = [0], []
        for label, model in runs:
            out = self.layout.eval(label)
            if out.exists():
                previous = read_eval(out)
                if previous.get("fingerprint") == self.eval_fingerprint(label):
                    emit("info", "eval", f"{out.name} already complete")
                    lines.append(describe(previous, label))
                    continue
            emit("info", "eval", f"{label}: {model}")
            result = evaluate(
                model, section.get("benchmarks", ["gsm8k"]), settings=self.settings.eval,
                engine=section.get("engine", "hf"), engine_options=section.get("engine_options") or {},
                buckets=heldout, template=self.config.template, data_dir=data_dir(self.config.data.get("data_dir")),
                samples_path=self.layout.samples(label), journal_path=self.layout.journal(label),
                on_benchmark=lambda name, n, label=label: (total.__setitem__(0, n),
                                                           emit("info", "eval", f"{label}: {name}, {n} problems")),
                on_progress=lambda done: self.progress("eval", done, total[0]),
            )
            result["fingerprint"] = self.eval_fingerprint(label)
            write_eval(result, out)
            lines.append(describe(result, label))
        return partial, "; ".join(line for line in lines if line)

    def _run_report(self, partial: bool, emit: Event) -> tuple[bool, str]:
        from curriculum import reports

        report = reports.write_report(self.root, self.layout.report, title=self.config.report.get("title"))
        return False, f"{report.markdown} (and {report.html.name})"


# --------------------------------------------------------------------------------------------------
# helpers


def score_config(section: dict, template=None):
    """The `score:` section (and the recipe's prompt template) -> (ScoreConfig, engine name, engine options,
    keep_completions); a bad value is refused with `score: key: ...`. How to score is ScoreConfig.from_recipe's."""
    from curriculum.scoring import ScoreConfig, ScoringError

    section = dict(section)
    engine = section.pop("engine", "hf")
    engine_options = section.pop("engine_options", None) or {}
    keep = section.pop("keep_completions", False)
    try:
        if not isinstance(engine_options, dict):
            raise ScoringError(f"engine_options: expected a mapping, got {engine_options!r}")
        if not isinstance(keep, bool):
            raise ScoringError(f"keep_completions: expected true/false, got {keep!r}")
        return ScoreConfig.from_recipe(section, template), engine, dict(engine_options), keep
    except (ScoringError, TypeError) as error:
        raise PipelineError(f"score: {error}") from error
