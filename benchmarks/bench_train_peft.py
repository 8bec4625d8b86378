"""Full GRPO against LoRA and layer selection on the same short CPU run: what each costs and what it learns.

Each arm is one `curriculum train` process (so peak RSS is that arm's alone) on the same buckets (synthetic
sums with a made-up difficulty bucket by number of digits), the same steps, seed and sampling; only the
parameter-efficient option changes. From each run's metrics.jsonl: trainable parameters, optimizer-state
size, peak memory, seconds per step (first step excluded: it pays for start-up) and the reward trend.
Prints a table and writes reports/train_peft_comparison.{json,md}; asserts nothing.

    python benchmarks/bench_train_peft.py --steps 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARMS: dict[str, list[str]] = {
    "full": [],
    "lora": ["--lora", "r=16,alpha=32,dropout=0.05,targets=all-linear"],
    "last:4": ["--train-layers", "last:4"],
    "middle:4": ["--train-layers", "middle:4"],
    "rotate:2@10": ["--layer-schedule", "rotate:2@10"],
}


def make_buckets(path: Path, model: str, *, n: int = 96, seed: int = 0) -> Path:
    """Sums of 1-, 2- and 3-digit numbers; bucket = digits - 1, pass rates made up to match."""
    from datasets import Dataset

    from curriculum.models import model_label
    from curriculum.prompts import DEFAULT_TEMPLATE

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        bucket = i % 3
        low, high = 10 ** bucket if bucket else 1, 10 ** (bucket + 1) - 1
        a, b = rng.randint(low, high), rng.randint(low, high)
        rows.append({"id": f"sum-{i}", "prompt": DEFAULT_TEMPLATE.messages(f"What is {a} + {b}?"),
                     "answer": str(a + b), "bucket": bucket, "pass_rate": [0.8, 0.5, 0.2][bucket]})
    path.mkdir(parents=True, exist_ok=True)
    Dataset.from_list(rows).save_to_disk(str(path))
    (path / "manifest.json").write_text(json.dumps({"model": model_label(model), "strategy": "synthetic",
                                                    "num_buckets": 3}))
    return path


def run_arm(name: str, flags: list[str], *, buckets: Path, model: str, out: Path, common: list[str]) -> dict:
    command = [sys.executable, "-m", "curriculum.cli", "train", "--buckets", str(buckets), "--model", model,
               *common, *flags, "--out", str(out)]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - started
    (out.parent / f"{out.name}.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"arm {name} failed:\n{result.stderr[-3000:]}")
    return {"wall_s": wall, **summarize(out / "metrics.jsonl")}


def summarize(path: Path) -> dict:
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    steps = [r for r in records if "loss" in r]
    rewards = [r["reward"] for r in steps]
    half = len(rewards) // 2
    times = [r["perf/step_time_s"] for r in steps[1:]] or [steps[0]["perf/step_time_s"]]
    return {
        "steps": len(steps),
        "trainable_params": steps[0]["perf/trainable_params"],
        "optimizer_state_mib": max(r["perf/optimizer_state_mib"] for r in steps),
        "peak_memory_mib": max(r["perf/peak_memory_mib"] for r in steps),
        "memory_kind": steps[-1].get("memory_kind"),
        "step_time_s": sum(times) / len(times),
        "step_time_median_s": statistics.median(times),
        "step_times_s": [r["perf/step_time_s"] for r in steps],
        "reward_first_half": sum(rewards[:half]) / max(1, half),
        "reward_second_half": sum(rewards[half:]) / max(1, len(rewards) - half),
        "reward_slope_per_step": _slope(rewards),
        "rewards": rewards,
        "zero_adv_share": sum(r.get("curriculum/zero_adv_share", 0.0) for r in steps) / len(steps),
        "mean_completion_tokens": sum(r["completions/mean_length"] for r in steps) / len(steps),
    }


def _folder(arm: str) -> str:
    return arm.replace(":", "-").replace("@", "-")


def _slope(values: list[float]) -> float:
    n = len(values)
    if n < 2:
        return 0.0
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    num = sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values))
    return num / sum((i - mean_x) ** 2 for i in range(n))


def write_report(results: dict, meta: dict, stem: Path) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "arms": results}, indent=2) + "\n")
    full = results.get("full", {})
    lines = [
        "# Parameter-efficient GRPO on CPU: full vs LoRA vs layer selection",
        "",
        f"Produced by `{meta['command']}` on {meta['date']} ({meta['machine']}).",
        "",
        f"Same run for every arm: {meta['model']}, {meta['steps']} GRPO steps, {meta['num_generations']} completions "
        f"per prompt, {meta['batch']} completions per step, completions up to {meta['max_completion_length']} tokens, "
        f"temperature 0.7, beta 0.04, reward `{meta['reward']}`, schedule `linear`, seed {meta['seed']}, "
        "open-rs learning rates (1e-6; LoRA 1e-5). Buckets: synthetic sums of 1/2/3-digit numbers "
        "(bucket = digits - 1).",
        "",
        "| arm | trainable params | % of full | optimizer state (MiB) | peak memory (MiB) | s / step (median) | "
        "reward 1st half | reward 2nd half | slope / step |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        share = 100 * r["trainable_params"] / full["trainable_params"] if full else float("nan")
        lines.append(
            f"| {name} | {r['trainable_params']:,} | {share:.1f} | {r['optimizer_state_mib']:.1f} | "
            f"{r['peak_memory_mib']:.0f} | {r['step_time_median_s']:.1f} | {r['reward_first_half']:.3f} | "
            f"{r['reward_second_half']:.3f} | {r['reward_slope_per_step']:+.4f} |"
        )
    lines += [
        "",
        "How to read it:",
        "- Trainable parameters and optimizer state are exact (AdamW keeps two fp32 moments per trained weight; "
        "frozen weights are never handed to it). `rotate:2@10` trains 2 of 30 layers at a time plus the "
        "embeddings/head as LISA does (SmolLM2 ties them: 28.3M parameters); its optimizer state is the "
        "largest it held.",
        f"- Peak memory is the process's peak resident set ({full.get('memory_kind', 'rss')}): it includes Python, "
        "torch, the policy and, for every arm but LoRA, a reference copy of the model for the KL term (LoRA gets "
        "reference log-probs by disabling the adapter).",
        "- Seconds per step are the median wall-clock time of steps 2 onwards on a shared 2-core machine where "
        "other jobs ran at the same time (load average 4-8), so differences of less than about a third are noise "
        "(per-step times are in the JSON). Freezing shortens only the backward pass and the optimizer update; "
        "sampling the completions and the reference model's forward pass cost every arm the same, so at this "
        "precision the arms' step times do not separate, while their memory does.",
        f"- The reward trend over {meta['steps']} steps of {meta['batch'] // meta['num_generations']} "
        f"prompt{'s' if meta['batch'] // meta['num_generations'] != 1 else ''} each is noise at these learning rates: with one seed, the arms sample nearly the same completions in the "
        "first steps, so their rewards coincide. The columns show that no arm breaks training, not which learns "
        "best; that needs the longer runs of pipelines/layer-freeze-study.yaml.",
    ]
    lines += ["", f"![reward per step]({stem.name}.png)"]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    plot_rewards(results, stem.with_suffix(".png"))


def plot_rewards(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    for name, r in results.items():
        axis.plot(range(1, len(r["rewards"]) + 1), r["rewards"], marker="o", markersize=3, label=name)
    axis.set_xlabel("GRPO step")
    axis.set_ylabel("mean reward of the step's completions")
    axis.set_title("Reward per step by parameter-efficient option (SmolLM2-135M, CPU)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--num-generations", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8, help="completions per step (per_device_train_batch_size)")
    parser.add_argument("--max-completion-length", type=int, default=64)
    parser.add_argument("--reward", default="accuracy:1")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {', '.join(ARMS)}")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "bench_train_peft")
    parser.add_argument("--report", type=Path, default=REPO / "reports" / "train_peft_comparison")
    parser.add_argument("--from-runs", action="store_true",
                        help="do not train: re-read the arms' metrics under --work and rewrite the report")
    args = parser.parse_args(argv)
    if args.from_runs:
        saved = json.loads(args.report.with_suffix(".json").read_text())
        arms = {name: {"wall_s": arm.get("wall_s"), **summarize(args.work / _folder(name) / "metrics.jsonl")}
                for name, arm in saved["arms"].items()}
        write_report(arms, saved["meta"], args.report)
        return

    from curriculum.models import resolve_model

    resolve_model(args.model)
    buckets = make_buckets(args.work / "buckets", args.model)
    common = ["--schedule", "linear", "--reward", args.reward, "--max-steps", str(args.steps),
              "--num-generations", str(args.num_generations),
              "--set", f"per_device_train_batch_size={args.batch}",
              "--set", f"max_completion_length={args.max_completion_length}",
              "--set", f"seed={args.seed}", "--set", f"save_steps={args.steps}", "--set", "report_to=none"]
    results = {}
    for name in args.arms.split(","):
        out = args.work / _folder(name)
        if out.exists():
            import shutil

            shutil.rmtree(out)
        print(f"[{name}] training ...", flush=True)
        results[name] = run_arm(name, ARMS[name], buckets=buckets, model=args.model, out=out, common=common)
        r = results[name]
        print(f"[{name}] trainable {r['trainable_params']:,}  optimizer {r['optimizer_state_mib']:.1f} MiB  "
              f"peak {r['peak_memory_mib']:.0f} MiB  {r['step_time_s']:.2f} s/step  "
              f"reward {r['reward_first_half']:.3f} -> {r['reward_second_half']:.3f}", flush=True)
    import torch
    import trl

    meta = {
        "command": "python benchmarks/bench_train_peft.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, trl {trl.__version__}",
        "load_average": os.getloadavg(),
        "model": args.model, "steps": args.steps, "num_generations": args.num_generations, "batch": args.batch,
        "max_completion_length": args.max_completion_length, "reward": args.reward, "seed": args.seed,
    }
    write_report(results, meta, args.report)
    print(f"wrote {args.report.with_suffix('.json')} and {args.report.with_suffix('.md')}")


if __name__ == "__main__":
    main()
