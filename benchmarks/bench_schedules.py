"""How often does each schedule waste a GRPO group, and what does the sampler cost per step?

Zero-advantage share: a simulated model with known per-problem pass rates that improve as it learns.
Scores come from `--score-n` Bernoulli rollouts per problem; the real `curriculum.buckets.build` filters
and buckets them; the real `CurriculumSampler` draws generation batches in TRL's repeat structure; each
drawn problem gets a group of G Bernoulli outcomes at its *current* pass rate, which is a zero-advantage
group if all G agree, and the outcomes are fed back (`observe`) as the trainer does. Two learning models:
`shift` (every problem gains the same logit shift over training) and `uneven` (each problem learns at its
own log-normal rate, so a shared shift is only roughly right).

Overhead: wall time of drawing one generation batch and observing its groups (what the trainer adds per
generation step) on datasets of realistic size, next to TRL's RepeatSampler, and optionally inside a real
`CurriculumGRPOTrainer` run on the tiny test model, next to TRL's own step time.

    python benchmarks/bench_schedules.py --out reports/bench_schedules.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from curriculum.buckets import BuildConfig, build
from curriculum.difficulty import OnlineDifficulty
from curriculum.sampler import CurriculumSampler
from curriculum.schedules import schedule_names


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def make_pool(count: int, score_n: int, rng: np.random.Generator):
    """True initial pass rates (a small model on math: mostly hard), scores from score_n rollouts, buckets."""
    true_logit = rng.normal(-1.0, 1.8, count)
    k = rng.binomial(score_n, sigmoid(true_logit))
    ids = [f"p{i:05d}" for i in range(count)]
    scores = pd.DataFrame({"id": ids, "n": score_n, "k": k, "pass_rate": k / score_n, "ci_low": 0.0, "ci_high": 1.0,
                           "mean_tokens": 100.0, "model": "simulated"})
    problems = pd.DataFrame({"id": ids, "problem": ids, "answer": "0"})
    frame = build(scores, problems, BuildConfig(num_buckets=4, strategy="quantile")).frame
    index = frame["id"].str[1:].astype(int).to_numpy()
    return frame, true_logit[index]


def simulate(schedule: str, online: bool, *, seed: int, learning: str, steps: int, batch: int, group: int,
             count: int, score_n: int, gain: float, skip_solved: bool = False) -> np.ndarray:
    """Zero-advantage share of each step's generation batch."""
    rng = np.random.default_rng(seed)
    frame, true_logit = make_pool(count, score_n, rng)
    rate = rng.lognormal(0.0, 0.6, len(frame)) if learning == "uneven" else np.ones(len(frame))
    step = [0]
    difficulty = OnlineDifficulty(frame["pass_rate"], frame["n"]) if online else None
    sampler = CurriculumSampler(frame["bucket"], frame["pass_rate"], mini_repeat_count=group, batch_size=batch,
                                schedule=schedule, seed=seed, progress=lambda: step[0] / steps,
                                difficulty=difficulty, skip_solved=skip_solved)
    iterator, shares = iter(sampler), []
    while step[0] < steps:
        try:
            chunk = [next(iterator) for _ in range(batch * group)]
        except StopIteration:
            iterator = iter(sampler)
            continue
        problems = np.array(chunk[::group])
        p_now = sigmoid(true_logit[problems] + gain * rate[problems] * step[0] / steps)
        passes = rng.binomial(group, p_now)
        shares.append(float(np.mean((passes == 0) | (passes == group))))
        sampler.observe(problems.tolist(), passes.tolist(), [group] * batch)
        step[0] += 1
    return np.array(shares)


def zero_advantage(args) -> dict:
    variants = [(name, False) for name in schedule_names()] + [(name, True) for name in schedule_names()]
    results = {}
    for learning in ("shift", "uneven"):
        table, curves = {}, {}
        for name, online in variants:
            key = f"{name}+online" if online else name
            runs = np.stack([simulate(name, online, seed=seed, learning=learning, steps=args.steps, batch=args.batch,
                                      group=args.group, count=args.problems, score_n=args.score_n, gain=args.gain)
                             for seed in range(args.seeds)])
            table[key] = round(float(runs.mean()), 4)
            curves[key] = [round(float(x), 4) for x in runs.mean(axis=0).reshape(10, -1).mean(axis=1)]
        skip = np.stack([simulate("linear", True, seed=seed, learning=learning, steps=args.steps, batch=args.batch,
                                  group=args.group, count=args.problems, score_n=args.score_n, gain=args.gain,
                                  skip_solved=True) for seed in range(args.seeds)])
        table["linear+online+skip_solved"] = round(float(skip.mean()), 4)
        results[learning] = {"zero_adv_share": table, "by_tenth_of_training": curves}
        print(f"\n[{learning}] share of zero-advantage groups (mean over {args.steps} steps, {args.seeds} seeds)")
        for key, value in table.items():
            ratio = value / table["uniform"]
            print(f"  {key:28s} {value:.3f}   ({ratio:.2f} x uniform)")
    return results


def overhead(args) -> dict:
    """Milliseconds per generation step: draw one chunk, observe its groups, describe (as the trainer logs)."""
    from trl.trainer.utils import RepeatSampler

    out = {}
    rng = np.random.default_rng(0)
    for count in (7_500, 40_000):
        rates = rng.uniform(0.02, 0.98, count)
        buckets = np.minimum((1 - rates) * 4, 3).astype(int)
        row = {}
        for label, online in (("linear", False), ("linear+online", True)):
            difficulty = OnlineDifficulty(rates, np.full(count, 16)) if online else None
            sampler = CurriculumSampler(buckets, rates, mini_repeat_count=args.group, batch_size=args.batch,
                                        schedule="linear", difficulty=difficulty, total_chunks=200)
            iterator = iter(sampler)
            start = time.perf_counter()
            for _ in range(100):
                chunk = [next(iterator) for _ in range(args.batch * args.group)]
                problems = chunk[:: args.group]
                sampler.observe(problems, rng.integers(0, args.group + 1, args.batch).tolist(),
                                [args.group] * args.batch)
                sampler.describe()
            row[label] = round((time.perf_counter() - start) / 100 * 1e3, 3)
        reference = RepeatSampler(list(range(count)), mini_repeat_count=args.group, batch_size=args.batch, seed=0)
        start = time.perf_counter()
        iterator = iter(reference)  # TRL shuffles the whole dataset once per epoch, then slices
        for _ in range(100):
            [next(iterator) for _ in range(args.batch * args.group)]
        row["trl_repeat_sampler"] = round((time.perf_counter() - start) / 100 * 1e3, 3)
        out[str(count)] = row
        print(f"\nsampler ms per generation step, {count} problems: {row}")
    return out


def in_trainer(args) -> dict:
    """A real CurriculumGRPOTrainer on the tiny model: sampler time against TRL's step time."""
    import tempfile

    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from curriculum.training.trainer import CurriculumGRPOTrainer
    from tests.tiny_model import build_tiny_model

    spent = {"draw": 0.0, "observe": 0.0}

    def timed(function, key):
        def wrapper(*a, **k):
            start = time.perf_counter()
            try:
                return function(*a, **k)
            finally:
                spent[key] += time.perf_counter() - start
        return wrapper

    rng = np.random.default_rng(0)
    count = 7_500
    k = rng.integers(1, 16, count)
    ids = [f"p{i:05d}" for i in range(count)]
    frame = build(pd.DataFrame({"id": ids, "n": 16, "k": k, "pass_rate": k / 16, "ci_low": 0.0, "ci_high": 1.0,
                                "mean_tokens": 100.0, "model": "tiny"}),
                  pd.DataFrame({"id": ids, "problem": [f"What is {i} + 1?" for i in range(count)],
                                "answer": [str(i + 1) for i in range(count)]}), BuildConfig()).frame

    def digit(completions, **kwargs):
        return [float(any(ch.isdigit() for ch in c[-1]["content"])) for c in completions]

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_model(Path(tmp) / "model")
        config = GRPOConfig(output_dir=str(Path(tmp) / "run"), use_cpu=True, report_to=[], bf16=False,
                            per_device_train_batch_size=4 * args.group, num_generations=args.group,
                            max_completion_length=16, max_steps=args.trainer_steps, logging_steps=1,
                            save_strategy="no", disable_tqdm=True)
        trainer = CurriculumGRPOTrainer(model=str(model_dir), reward_funcs=[digit], args=config,
                                        train_dataset=Dataset.from_pandas(frame, preserve_index=False),
                                        processing_class=AutoTokenizer.from_pretrained(model_dir),
                                        schedule="linear")
        sampler = trainer.curriculum_sampler
        sampler._draw_chunk = timed(sampler._draw_chunk, "draw")
        trainer._observe_groups = timed(trainer._observe_groups, "observe")
        start = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - start
    steps = args.trainer_steps
    step_times = [e["step_time"] for e in trainer.state.log_history if "step_time" in e]
    result = {"problems": count, "steps": steps, "model": "tiny random Llama (tests/tiny_model.py), CPU",
              "trl_step_time_s": round(float(np.mean(step_times)), 4),
              "sampler_draw_ms_per_step": round(spent["draw"] / steps * 1e3, 3),
              "observe_and_log_ms_per_step": round(spent["observe"] / steps * 1e3, 3),
              "wall_s": round(wall, 2)}
    result["overhead_share_of_step"] = round(
        (spent["draw"] + spent["observe"]) / steps / max(result["trl_step_time_s"], 1e-9), 5)
    print(f"\nin a real trainer run: {result}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=2000, help="problems scored (before filtering)")
    parser.add_argument("--score-n", type=int, default=16, help="scoring rollouts per problem")
    parser.add_argument("--steps", type=int, default=300, help="generation steps per simulated run")
    parser.add_argument("--batch", type=int, default=16, help="distinct prompts per generation batch")
    parser.add_argument("--group", type=int, default=8, help="completions per prompt (num_generations)")
    parser.add_argument("--gain", type=float, default=2.0, help="logit gain of the simulated model over training")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trainer-steps", type=int, default=8,
                        help="steps of a real trainer run on the tiny model, 4 prompts per step (0 to skip)")
    parser.add_argument("--out", type=Path, default=Path("reports/bench_schedules.json"))
    args = parser.parse_args()

    scenarios = zero_advantage(args)
    report = {
        "benchmark": "bench_schedules",
        "command": "python " + " ".join(sys.argv),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": f"{platform.processor() or platform.machine()}, python {platform.python_version()}",
        "zero_adv_share": scenarios["shift"]["zero_adv_share"],
        "scenarios": scenarios,
        "sampler_ms_per_step": overhead(args),
    }
    if args.trainer_steps:
        report["in_trainer"] = in_trainer(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
