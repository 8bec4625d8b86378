"""`curriculum compare`: schedules side by side at identical compute, with a paired difference and its interval.

A curriculum is only worth its cost if it beats uniform sampling at the same compute. Every arm (schedule x
seed) trains with the same buckets, model, steps, group size, rewards and GRPO settings (only `schedule`
differs; the training seed is the arm's seed), and is evaluated by the one harness of
`curriculum.evaluation` with the same sampling seed. The difference of each schedule from the baseline is
the mean over the same problems of (schedule - baseline) per-problem accuracy, with a paired bootstrap
interval over problems. Problems are the unit that is resampled; with several seeds the per-problem
accuracy is first averaged over seeds, so seed-to-seed training noise is averaged, not modelled: the
per-seed differences are listed too, so you can see whether they agree.

Layout of `<out>/`: `<schedule>/seed-<s>/` (the training run, its `metrics.jsonl` and final model, and
`eval.json`), `base/eval.json` (the untrained model, for reference), `comparison.json` (everything the
report shows) and `report/` (report.md, report.html, PNGs). Finished arms are skipped on a rerun.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from curriculum import reports
from curriculum.evaluation import EvalSettings, bootstrap_interval, paired_bootstrap_difference

COMPARISON = "comparison.json"
DONE = ".compare-done.json"


class CompareError(ValueError):
    """Settings that cannot give a fair comparison; the message says which."""


@dataclass
class CompareSettings:
    """One comparison: the shared training recipe, the arms, and the one evaluation harness."""

    buckets: str
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

    def __post_init__(self) -> None:
        if len(set(self.schedules)) != len(self.schedules) or len(self.schedules) < 2:
            raise CompareError(f"need at least two distinct schedules, got {self.schedules}")
        if self.baseline not in self.schedules:
            raise CompareError(f"the baseline {self.baseline!r} must be one of the schedules {self.schedules}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise CompareError(f"seeds must be distinct, got {self.seeds}")
        if self.steps < 1 or self.num_generations < 2:
            raise CompareError("steps must be >= 1 and num_generations >= 2 (GRPO needs a group)")
        for key in ("schedule", "max_steps", "num_generations"):
            if key in self.train or key in (self.train.get("grpo") or {}):
                raise CompareError(f"`{key}` is set by compare itself (one value for every arm); remove it from the recipe")
        if "seed" in (self.train.get("grpo") or {}):
            raise CompareError("grpo.seed is set per arm from --seeds; remove it from the recipe")

    def train_settings(self, schedule: str, seed: int):
        """The TrainSettings of one arm: the shared recipe with this schedule and seed."""
        from curriculum.training.config import TrainSettings

        recipe = copy.deepcopy(self.train)
        recipe["grpo"] = {**(recipe.get("grpo") or {}), "seed": seed}
        recipe.update({"schedule": schedule, "max_steps": self.steps, "num_generations": self.num_generations})
        return TrainSettings.from_dict(recipe, source="compare")

    def fingerprint(self, part: str, schedule: str | None = None, seed: int | None = None) -> str:
        shared = {"buckets": str(self.buckets), "model": self.model, "steps": self.steps,
                  "num_generations": self.num_generations, "train": self.train}
        harness = {"benchmarks": self.benchmarks, "heldout": self.heldout, "eval": asdict(self.eval),
                   "engine": self.eval_engine, "engine_options": self.eval_engine_options}
        content = {"part": part, "schedule": schedule, "seed": seed, "harness": harness}
        if part != "base":
            content["shared"] = shared
        return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


Event = Callable[[str, str], None]  # (arm, message)


def arm_dir(out: Path, schedule: str, seed: int) -> Path:
    return out / schedule / f"seed-{seed}"


def run_compare(settings: CompareSettings, *, on_event: Event | None = None,
                on_progress: Callable[[int], None] | None = None) -> dict:
    """Train and evaluate every arm not already done, then write comparison.json and the report."""
    from curriculum.evaluation import evaluate, read_eval, write_eval
    from curriculum.training.run import load_buckets, train

    emit = on_event or (lambda arm, message: None)
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    load_buckets(settings.buckets)  # fail before any training if the buckets are unusable
    for schedule in settings.schedules:  # every arm's recipe must be valid before the first one trains
        settings.train_settings(schedule, settings.seeds[0])

    def evaluate_into(path: Path, model: str, fingerprint: str, arm: str) -> None:
        if path.exists() and read_eval(path).get("fingerprint") == fingerprint:
            emit(arm, "evaluation already done")
            return
        emit(arm, f"evaluating {model}")
        result = evaluate(model, settings.benchmarks, settings=settings.eval, engine=settings.eval_engine,
                          engine_options=settings.eval_engine_options, buckets=settings.heldout,
                          data_dir=settings.data_dir, samples_path=path.with_name("eval.samples.jsonl"),
                          on_progress=on_progress)
        result["fingerprint"] = fingerprint
        write_eval(result, path)

    if settings.eval_base:
        evaluate_into(out / "base" / "eval.json", settings.model, settings.fingerprint("base"), "base")
    for seed in settings.seeds:
        for schedule in settings.schedules:
            arm = f"{schedule}/seed-{seed}"
            directory = arm_dir(out, schedule, seed)
            fingerprint = settings.fingerprint("train", schedule, seed)
            marker = directory / DONE
            done = marker.exists() and json.loads(marker.read_text()).get("fingerprint") == fingerprint
            if not done:
                if directory.exists() and marker.exists():
                    raise CompareError(f"{directory} was trained with other settings; delete it or choose a new --out")
                resume = directory.exists() and any(directory.glob("checkpoint-*"))
                emit(arm, f"training {settings.steps} steps" + (" (resuming)" if resume else ""))
                started = time.perf_counter()
                train(settings.buckets, settings.model, directory, settings.train_settings(schedule, seed),
                      resume=resume)
                marker.write_text(json.dumps({"fingerprint": fingerprint,
                                              "wall_s": round(time.perf_counter() - started, 1)}) + "\n")
            else:
                emit(arm, "training already done")
            evaluate_into(directory / "eval.json", str(directory), settings.fingerprint("eval", schedule, seed), arm)
    comparison = summarize_comparison(settings)
    (out / COMPARISON).write_text(json.dumps(comparison, indent=2) + "\n")
    write_compare_report(out)
    return comparison


# --------------------------------------------------------------------------------------------------
# numbers


def arm_compute(directory: Path) -> dict:
    """Steps, completions, tokens and wall time one training run used (read from its own files)."""
    import yaml

    metrics = reports.read_metrics(directory / "metrics.jsonl")
    config = yaml.safe_load((directory / "config.yaml").read_text()) if (directory / "config.yaml").exists() else {}
    grpo = (config.get("resolved") or {}).get("grpo") or {}
    per_step = int(grpo.get("per_device_train_batch_size", 0)) * int(grpo.get("gradient_accumulation_steps", 1))
    steps = max((row["step"] for row in metrics), default=0)
    lengths = [row["completions/mean_length"] for row in metrics if "completions/mean_length" in row]
    tokens_seen = max((row.get("num_tokens") or 0 for row in metrics), default=0)
    runtime = next((row["train_runtime"] for row in reversed(metrics) if "train_runtime" in row), None)
    marker = directory / DONE
    wall = json.loads(marker.read_text()).get("wall_s") if marker.exists() else None
    return {
        "steps": int(steps),
        "completions_per_step": per_step,
        "completions": per_step * len(lengths),
        "completion_tokens": round(sum(lengths) * per_step),
        "tokens_seen": int(tokens_seen),  # TRL's num_tokens: prompt + completion tokens through the model
        "train_runtime_s": runtime,
        "wall_s": wall,
    }


def pooled_rates(evals: list[dict], benchmark: str) -> tuple[list[str], np.ndarray]:
    """Problem ids and per-problem accuracy averaged over the seeds' evals (same problems in each)."""
    ids = evals[0]["benchmarks"][benchmark]["problems"]["id"]
    rates = []
    for result in evals:
        problems = result["benchmarks"][benchmark]["problems"]
        if problems["id"] != ids:
            raise CompareError(f"{benchmark}: the arms were evaluated on different problems; rerun with one harness")
        rates.append(np.asarray(problems["correct"], dtype=float) / result["benchmarks"][benchmark]["k"])
    return ids, np.mean(rates, axis=0)


def summarize_comparison(settings: CompareSettings) -> dict:
    """comparison.json: settings, compute per arm, accuracy per schedule with intervals, differences."""
    from curriculum.evaluation import read_eval

    out = Path(settings.out)
    arms, evals = [], {}
    for schedule in settings.schedules:
        for seed in settings.seeds:
            directory = arm_dir(out, schedule, seed)
            result = read_eval(directory / "eval.json")
            evals.setdefault(schedule, []).append(result)
            arms.append({"schedule": schedule, "seed": seed, "dir": str(directory), **arm_compute(directory),
                         "eval_wall_s": result.get("timing", {}).get("wall_s"),
                         "accuracy": {name: m["avg_at_k"] for name, m in result["benchmarks"].items()}})
    benchmarks = list(evals[settings.baseline][0]["benchmarks"])
    accuracy, differences = {}, {}
    seed = settings.eval.seed
    for schedule, results in evals.items():
        accuracy[schedule] = {}
        for name in benchmarks:
            _, rates = pooled_rates(results, name)
            interval = bootstrap_interval(rates, confidence=settings.eval.confidence,
                                          resamples=settings.eval.resamples, seed=seed)
            accuracy[schedule][name] = {**interval.to_dict(), "n_problems": int(rates.size),
                                        "k": results[0]["k"], "seeds": len(results)}
    for schedule in settings.schedules:
        if schedule == settings.baseline:
            continue
        differences[schedule] = {}
        for name in benchmarks:
            _, ours = pooled_rates(evals[schedule], name)
            _, theirs = pooled_rates(evals[settings.baseline], name)
            diff = paired_bootstrap_difference(ours, theirs, confidence=settings.eval.confidence,
                                               resamples=settings.eval.resamples, seed=seed)
            per_seed = []
            for a, b in zip(evals[schedule], evals[settings.baseline], strict=True):
                ra = np.asarray(a["benchmarks"][name]["problems"]["correct"]) / a["k"]
                rb = np.asarray(b["benchmarks"][name]["problems"]["correct"]) / b["k"]
                per_seed.append(float(np.mean(ra - rb)))
            differences[schedule][name] = {**diff, "per_seed": per_seed}
    base = None
    if (out / "base" / "eval.json").exists():
        base_result = read_eval(out / "base" / "eval.json")
        base = {name: m["avg_at_k"] for name, m in base_result["benchmarks"].items()}
    first = evals[settings.baseline][0]
    return {
        "settings": {
            "buckets": str(settings.buckets), "model": settings.model, "schedules": settings.schedules,
            "baseline": settings.baseline, "seeds": settings.seeds, "steps": settings.steps,
            "num_generations": settings.num_generations, "train": settings.train, "benchmarks": benchmarks,
            "heldout": settings.heldout, "eval": asdict(settings.eval), "eval_engine": settings.eval_engine,
        },
        "harness": {"engine": first.get("engine"), "sampling": first.get("sampling"), "k": first.get("k"),
                    "limit": first.get("limit"), "seed": first.get("seed")},
        "compute": {
            "arms": len(arms),
            "total_steps": sum(a["steps"] for a in arms),
            "total_completions": sum(a["completions"] for a in arms),
            "total_completion_tokens": sum(a["completion_tokens"] for a in arms),
            "total_train_wall_s": round(sum(a["wall_s"] or a["train_runtime_s"] or 0 for a in arms), 1),
            "total_eval_wall_s": round(sum(a["eval_wall_s"] or 0 for a in arms), 1),
        },
        "arms": arms,
        "base": base,
        "accuracy": accuracy,
        "differences": differences,
    }


# --------------------------------------------------------------------------------------------------
# the report


def plot_curves(out: Path, comparison: dict, path: Path) -> Path | None:
    """Reward and zero-advantage share over steps, one colour per schedule (thin: seeds; thick: mean)."""
    plt = reports._pyplot()
    keys = [("reward", "mean reward"), (None, "zero-advantage share")]
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    colors = ["#4c72b0", "#8c8c8c", "#55a868", "#dd8452", "#c44e52", "#8172b3"]
    drawn = False
    for index, schedule in enumerate(comparison["settings"]["schedules"]):
        color = colors[index % len(colors)]
        for ax, (key, label) in zip(axes, keys, strict=True):
            runs = []
            for seed in comparison["settings"]["seeds"]:
                metrics = reports.read_metrics(arm_dir(out, schedule, seed) / "metrics.jsonl")
                metric = key or reports.zero_advantage_key(metrics)
                if metric is None:
                    continue
                steps, values = reports.series(metrics, metric)
                if steps:
                    runs.append(dict(zip(steps, values, strict=True)))
                    if len(comparison["settings"]["seeds"]) > 1:
                        ax.plot(steps, values, color=color, alpha=0.25, linewidth=0.8)
            if not runs:
                continue
            drawn = True
            common = sorted(set.intersection(*(set(r) for r in runs)))
            mean = [float(np.mean([r[s] for r in runs])) for s in common]
            window = len(mean) // 15 if len(mean) >= 45 else 1
            ax.plot(common, reports._smooth(mean, window), color=color, linewidth=2,
                    label=f"{schedule} (mean of {len(runs)} seed{'s' if len(runs) > 1 else ''})")
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
    return reports._save(fig, path)


def _as_eval(accuracy: dict, k: int) -> dict:
    return {"k": k, "benchmarks": {name: {"avg_at_k": value} for name, value in accuracy.items()}}


def write_compare_report(out: str | Path) -> reports.Report:
    """Render report.md / report.html / PNGs from `<out>/comparison.json` and the arms' files."""
    out = Path(out)
    path = out / COMPARISON
    if not path.exists():
        raise CompareError(f"{path} does not exist; run `curriculum compare` first")
    comparison = json.loads(path.read_text())
    s, harness, compute = comparison["settings"], comparison["harness"], comparison["compute"]
    report_dir = out / reports.REPORT_DIR
    report_dir.mkdir(parents=True, exist_ok=True)
    doc = reports.Document(f"Schedules compared at equal compute: {', '.join(s['schedules'])}")
    figures: list[Path] = []
    doc.text(
        f"Model `{s['model']}`, buckets `{s['buckets']}`. Every arm: {s['steps']} GRPO steps, "
        f"{s['num_generations']} completions per prompt, the same data, rewards and GRPO settings; only the "
        f"schedule differs. Seeds: {', '.join(map(str, s['seeds']))}. Baseline: `{s['baseline']}`."
    )
    doc.h2("Result")
    k = harness.get("k")
    rows = []
    for schedule, by_name in comparison["accuracy"].items():
        for name, value in by_name.items():
            rows.append([schedule, name, value["n_problems"], k, value["seeds"], reports.fmt_interval(value)])
    if comparison.get("base"):
        for name, value in comparison["base"].items():
            rows.append(["(untrained model)", name, "", k, "", reports.fmt_interval(value)])
    doc.table(["schedule", "benchmark", "problems", "k", "seeds", "avg@k % [95% CI]"], rows)
    diff_rows, verdicts = [], []
    for schedule, by_name in comparison["differences"].items():
        for name, diff in by_name.items():
            significant = diff["significant"]
            verdict = "significant" if significant else "NOT significant (the interval contains 0)"
            diff_rows.append([f"{schedule} - {s['baseline']}", name, reports.fmt_difference(diff),
                              f"{diff['p_value']:.3f}", ", ".join(f"{100 * d:+.1f}" for d in diff["per_seed"]),
                              verdict])
            verdicts.append(
                f"`{schedule}` minus `{s['baseline']}` on {name}: {reports.fmt_difference(diff)} "
                + ("- a significant difference at 95%." if significant else
                   "- not significant: this comparison cannot tell the schedules apart.")
            )
    doc.text("Difference in avg@k, paired over the same problems (per-problem accuracy averaged over seeds, "
             "bootstrap over problems):")
    doc.table(["difference", "benchmark", "pts [95% CI]", "bootstrap p", "per seed (pts)", "verdict"], diff_rows)
    for line in verdicts:
        doc.text(line)
    evals = {schedule: _as_eval(by_name, k) for schedule, by_name in comparison["accuracy"].items()}
    if comparison.get("base"):
        evals = {"untrained": _as_eval(comparison["base"], k), **evals}
    for figure, caption in (
        (reports.plot_eval(evals, report_dir / "accuracy.png",
                           title="Final accuracy: mean and 95% bootstrap interval over problems"),
         "Final accuracy per schedule (seeds pooled) with 95% intervals"),
        (plot_curves(out, comparison, report_dir / "curves.png"), "Training curves, all schedules on one plot"),
    ):
        if figure is not None:
            figures.append(figure)
            doc.figure(figure, caption)
    doc.h2("Compute used")
    doc.text(
        f"{compute['arms']} training runs, {compute['total_steps']} optimizer steps, "
        f"{compute['total_completions']:,} sampled completions ({compute['total_completion_tokens']:,} completion "
        f"tokens); training {compute['total_train_wall_s'] / 60:.1f} min and evaluation "
        f"{compute['total_eval_wall_s'] / 60:.1f} min of wall time."
    )
    doc.table(["schedule", "seed", "steps", "completions", "completion tokens", "tokens seen (TRL)",
               "train wall s", "eval wall s"],
              [[a["schedule"], a["seed"], a["steps"], a["completions"], a["completion_tokens"], a["tokens_seen"],
                _seconds(a["wall_s"] or a["train_runtime_s"]), _seconds(a["eval_wall_s"])]
               for a in comparison["arms"]])
    doc.h2("Harness")
    sampling = harness.get("sampling") or {}
    which = f"first {harness['limit']}" if harness.get("limit") else "all"
    doc.text(
        f"Benchmarks {', '.join(s['benchmarks'])} ({which} problems of each), "
        f"k = {k} samples per problem, engine `{harness.get('engine')}`, temperature {sampling.get('temperature')}, "
        f"top_p {sampling.get('top_p')}, max_tokens {sampling.get('max_tokens')}, seed {harness.get('seed')}: "
        "identical for every arm."
    )
    markdown = doc.to_markdown(report_dir)
    (report_dir / "report.md").write_text(markdown)
    (report_dir / "report.html").write_text(doc.to_html())
    return reports.Report(markdown=report_dir / "report.md", html=report_dir / "report.html", figures=figures,
                          found=[COMPARISON], missing=[])


def _seconds(value) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.0f}"
