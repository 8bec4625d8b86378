"""Two runs at once on one core each, against one run on both cores: which finishes a study sooner?

A study is many independent runs (arms x seeds), each GRPO training followed by evaluations. On a small CPU
one run may not keep both cores busy (a 135M model's matmuls at a batch of 8 split poorly across threads),
so `curriculum compare --workers 2` runs two side by side, each pinned to one core
(`curriculum.study_workers`). This measures both parts of a run in the two layouts, in the same invocation:

- baseline `1x2`: one process on both cores (two threads);
- `2x1`: two processes at the same time, each on its own core (one thread), started through the same
  `worker_environment` / `pin_to_assigned_cores` as compare's workers.

Parts: `train` (GRPO steps of the study's shape: 4 prompts x 8 completions of up to 128 tokens, SmolLM2-135M,
the default generation path) and `eval` (the harness on synthetic problems, k = 4, 128 tokens).
Throughput is work per second summed over the processes; the ratio `2x1 / 1x2` above 1 means two workers
finish a study sooner. Writes reports/bench_workers.{json,md}; asserts nothing.

    python benchmarks/bench_workers.py --steps 4 --eval-problems 48
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train import MODEL, machine, make_buckets, versions  # noqa: E402

LAYOUTS = {"1x2": 1, "2x1": 2}  # name -> processes at once (each on its share of the cores)
BASELINE = "1x2"


def train_settings(steps: int, seed: int) -> dict:
    """The study's training shape (studies/curriculum-study.yaml), without checkpoints."""
    return {"schedule": "uniform", "reward": "accuracy:1", "max_steps": steps, "num_generations": 8,
            "max_prompt_length": 256,
            "grpo": {"max_completion_length": 128, "per_device_train_batch_size": 8, "gradient_accumulation_steps": 4,
                     "learning_rate": 1e-5, "temperature": 0.7, "top_p": 0.95, "beta": 0.0, "logging_steps": 1,
                     "save_strategy": "no", "report_to": "none", "seed": seed}}


def work_train(work: Path, tag: str, args) -> dict:
    """GRPO steps with a clock on each; returns the step times."""
    from transformers import TrainerCallback

    from curriculum.training.config import TrainSettings
    from curriculum.training.run import prepare

    began = time.perf_counter()
    run = prepare(str(work / "buckets"), MODEL, str(work / f"train-{tag}"),
                  TrainSettings.from_dict(train_settings(args.steps, seed=int(tag[-1]))))
    setup_s = time.perf_counter() - began
    steps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t = time.perf_counter()

        def on_step_end(self, *a, **k):
            steps.append(time.perf_counter() - self.t)

    run.trainer.add_callback(Clock())
    run.run()
    return {"setup_s": setup_s, "step_s": steps, "use_vllm": bool(getattr(run.trainer, "use_vllm", False))}


def work_eval(work: Path, tag: str, args) -> dict:
    """The evaluation harness on the synthetic problems; returns its wall time and completions."""
    from curriculum.evaluation import EvalSettings, evaluate

    began = time.perf_counter()
    result = evaluate(MODEL, [str(work / "eval.jsonl")], settings=EvalSettings(samples=4, max_tokens=128, seed=0))
    wall = time.perf_counter() - began
    (scores,) = result["benchmarks"].values()
    return {"wall_s": wall, "completions": args.eval_problems * 4, "mean_tokens": scores["mean_tokens"]}


def child(part: str, tag: str, args) -> None:
    """One process of a layout: pin to the assigned cores, do the part, write its JSON."""
    from curriculum.study_workers import pin_to_assigned_cores

    cores = pin_to_assigned_cores()
    import torch

    work = Path(args.work)
    result = (work_train if part == "train" else work_eval)(work, tag, args)
    result.update(cores=cores, threads=torch.get_num_threads(),
                  peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    (work / f"{part}-{tag}.json").write_text(json.dumps(result))


def run_layout(layout: str, part: str, args) -> dict:
    """Start the layout's processes together, wait for all, and read their results."""
    from curriculum.study_workers import core_slots, worker_environment

    work = Path(args.work)
    processes = []
    began = time.perf_counter()
    for index, cores in enumerate(core_slots(LAYOUTS[layout])):
        tag = f"{layout}-{index}"
        command = [sys.executable, __file__, "--child", f"{part}:{tag}", "--work", str(work), "--steps",
                   str(args.steps), "--eval-problems", str(args.eval_problems)]
        log = (work / f"{part}-{tag}.log").open("w")
        processes.append((tag, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                                env=worker_environment(cores)), log))
    results = []
    for tag, process, log in processes:
        code = process.wait()
        log.close()
        if code != 0:
            raise SystemExit(f"{part} {tag} failed (exit {code}); see {work / f'{part}-{tag}.log'}")
        results.append(json.loads((work / f"{part}-{tag}.json").read_text()))
    return {"wall_s": time.perf_counter() - began, "processes": results}


def summarize(part: str, layout: dict) -> dict:
    """Throughput summed over the processes: optimizer steps/s (median step, first step dropped) or
    completions/s."""
    rows = layout["processes"]
    if part == "train":
        medians = [statistics.median(r["step_s"][1:] or r["step_s"]) for r in rows]
        return {"throughput": sum(1 / m for m in medians), "unit": "steps/s", "median_step_s": medians,
                "setup_s": [r["setup_s"] for r in rows], "use_vllm": [r["use_vllm"] for r in rows],
                "threads": [r["threads"] for r in rows], "peak_rss_mib": [r["peak_rss_mib"] for r in rows]}
    return {"throughput": sum(r["completions"] / r["wall_s"] for r in rows), "unit": "completions/s",
            "wall_s": [r["wall_s"] for r in rows], "threads": [r["threads"] for r in rows],
            "peak_rss_mib": [r["peak_rss_mib"] for r in rows]}


def write_report(meta: dict, parts: dict, stem: Path) -> dict:
    ratios = {part: parts[part]["2x1"]["throughput"] / parts[part][BASELINE]["throughput"] for part in parts}
    document = {"meta": meta, "parts": parts, "throughput_ratio": ratios}
    stem.with_suffix(".json").write_text(json.dumps(document, indent=2) + "\n")
    lines = [
        "# Two runs on one core each against one run on two cores",
        "",
        f"Command: `{meta['command']}`, {meta['date']}, load average before: {meta['load_average']:.2f}.",
        f"Machine: {meta['machine']}. Versions: {meta['versions']}.",
        "",
        "Throughput is summed over the processes that ran at the same time; the ratio is `2x1 / 1x2`, and above 1",
        "means `curriculum compare --workers 2` finishes a study sooner than `--workers 1`.",
        "",
        "| part | layout | throughput | per process | threads | peak RSS per process |",
        "|---|---|---:|---|---|---|",
    ]
    for part, layouts in parts.items():
        for name, row in layouts.items():
            each = row.get("median_step_s") or row.get("wall_s")
            label = "median step" if part == "train" else "wall"
            lines.append(f"| {part} | {name} | {row['throughput']:.4f} {row['unit']} | {label} "
                         + ", ".join(f"{v:.1f} s" for v in each) + f" | {row['threads']} | "
                         + ", ".join(f"{v / 1024:.1f} GB" for v in row["peak_rss_mib"]) + " |")
    lines += ["", "| part | ratio 2x1 / 1x2 |", "|---|---:|"]
    lines += [f"| {part} | **{ratio:.2f}x** |" for part, ratio in ratios.items()]
    lines += ["", f"Train: {meta['steps']} GRPO steps of 4 prompts x 8 completions (up to 128 tokens) per process, "
              "median over steps 2 onwards. "
              f"Eval: {meta['eval_problems']} synthetic problems x 4 samples, 128 tokens, `hf` engine.", ""]
    if meta.get("discussion"):
        lines += [meta["discussion"], ""]
    stem.with_suffix(".md").write_text("\n".join(lines))
    return document


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--eval-problems", type=int, default=48)
    parser.add_argument("--parts", default="train,eval")
    parser.add_argument("--work", default=str(REPO / "runs" / "bench_workers"))
    parser.add_argument("--out", default=str(REPO / "reports" / "bench_workers"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    work = Path(args.work)
    if args.child:
        part, tag = args.child.split(":")
        child(part, tag, args)
        return
    import shutil

    from curriculum.data.synthetic import Knobs, generate
    from curriculum.models import resolve_model

    resolve_model(MODEL)
    load_average = os.getloadavg()[0]
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    make_buckets(work / "buckets")
    problems = generate(args.eval_problems, seed=3, knobs=Knobs(digits=(1, 2), operands=(2, 3)))
    (work / "eval.jsonl").write_text("".join(json.dumps({"problem": p.problem, "answer": p.answer}) + "\n"
                                             for p in problems))
    parts: dict = {}
    for part in args.parts.split(","):
        parts[part] = {}
        for layout in LAYOUTS:
            parts[part][layout] = summarize(part, run_layout(layout, part, args))
            print(f"{part} {layout}: {parts[part][layout]['throughput']:.4f} {parts[part][layout]['unit']}", flush=True)
    meta = {"command": "python benchmarks/bench_workers.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
            "versions": ", ".join(f"{k} {v}" for k, v in versions().items()), "steps": args.steps,
            "eval_problems": args.eval_problems, "load_average": load_average, "python": platform.python_version()}
    document = write_report(meta, parts, Path(args.out))
    print(", ".join(f"{part} {ratio:.2f}x" for part, ratio in document["throughput_ratio"].items()))


if __name__ == "__main__":
    main()
