"""What leaving completions without signal out of the forward/backward pass saves in a real GRPO run, and that
the weights come out the same.

Two arms train one arm of the curriculum study (`studies/curriculum-study.yaml`: its recipe, pool and seed) for
a few steps: `skip` (the default, `skip_zero_advantage: true`) and `no-skip`. By default they run at the same
time, each in its own process on its own core in a study worker's environment, so both see the same machine;
`--one-at-a-time` runs them one after the other, unpinned, one thread each (less memory, for a busy machine).
The timers are bench_train.py's, on the trainer's own methods, with the process's CPU seconds beside the wall
seconds. With the same seed, both arms draw the same completions until their weights differ enough to change
one sampled token; the report says at which step that happened and how far apart the trained weights ended.

    python benchmarks/bench_zero_advantage.py --steps 6 --arm uniform-all

Writes reports/bench_zero_advantage.{json,md}; asserts nothing.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_train  # noqa: E402  (the per-part timers, machine and versions)

REPO = bench_train.REPO
STUDY = REPO / "studies" / "curriculum-study.yaml"
ARMS = {"skip": True, "no-skip": False}


def study_recipe(arm: str, steps: int, seed: int) -> tuple[str, dict]:
    """(buckets, TrainSettings mapping) of one study arm, cut to `steps` and saving nothing."""
    study = yaml.safe_load(STUDY.read_text())
    overrides = dict(study["arms"][arm])
    buckets = overrides.pop("buckets", study["buckets"])
    overrides.pop("needs_scoring", None)
    recipe = copy.deepcopy(study["train"])
    recipe["grpo"] = {**recipe.get("grpo", {}), "seed": seed, "save_strategy": "no", "logging_steps": 1}
    recipe.update(overrides, max_steps=steps, num_generations=study["num_generations"])
    return buckets, recipe


def worker_command(name: str, args, work: Path) -> list[str]:
    return [sys.executable, __file__, "--worker", name, "--steps", str(args.steps), "--arm", args.arm,
            "--seed", str(args.seed), "--fast-generation", args.fast_generation, "--work", str(work)]


def run_arms(args, work: Path) -> dict:
    """Both arms at once, arm i pinned to core i in the environment a study worker gets (thread pools, vLLM's
    core binding, its own rendezvous port); or one after the other, unpinned, one thread each."""
    from curriculum.study_workers import worker_environment

    cores = sorted(os.sched_getaffinity(0))
    running = {}
    for index, name in enumerate(ARMS):
        if args.one_at_a_time:
            environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CURRICULUM_BENCH_THREADS": "1"}
        else:
            environment = worker_environment([cores[index % len(cores)]])
        log = open(work / f"{name}.log", "w")  # noqa: SIM115  (closed below)
        running[name] = (subprocess.Popen(worker_command(name, args, work), stdout=log, stderr=subprocess.STDOUT,
                                          cwd=REPO, env=environment), log)
        if args.one_at_a_time:
            running[name][0].wait()
    arms = {}
    for name, (process, log) in running.items():
        process.wait()
        log.close()
        if process.returncode != 0:
            raise SystemExit(f"{name}: failed, see {work / name}.log")
        arms[name] = json.loads((work / f"{name}.json").read_text())
    return arms


def weight_differences(work: Path) -> dict:
    """How far apart the arms' trained weights are: the largest difference, and the arms' updates (trained minus
    initial weights) compared as whole vectors (relative difference and cosine)."""
    import torch
    from transformers import AutoModelForCausalLM

    from curriculum.models import resolve_model

    skip, full = (torch.load(work / f"{name}.pt") for name in ARMS)
    model = AutoModelForCausalLM.from_pretrained(resolve_model(bench_train.MODEL), dtype=torch.float32)
    start = {name: parameter.detach() for name, parameter in model.named_parameters()}
    names = [name for name in full if name in start]
    skip_update = torch.cat([(skip[n] - start[n]).flatten() for n in names])
    full_update = torch.cat([(full[n] - start[n]).flatten() for n in names])
    return {"max_abs_weight_difference": float((skip_update - full_update).abs().max()),
            "max_abs_weight_change": float(full_update.abs().max()),
            "update_relative_difference": float((skip_update - full_update).norm() / full_update.norm()),
            "update_cosine": float(torch.nn.functional.cosine_similarity(skip_update, full_update, dim=0))}


def median(steps: list[dict], key: str) -> float:
    later = steps[1:] or steps  # step 1 pays for start-up
    return statistics.median(step[key] for step in later)


def first_difference(skip: dict, full: dict) -> int | None:
    pairs = zip(skip["steps"], full["steps"], strict=False)
    return next((step for step, (a, b) in enumerate(pairs, 1) if a.get("reward") != b.get("reward")), None)


def write_report(meta: dict, arms: dict, stem: Path) -> dict:
    skip, full = arms["skip"], arms["no-skip"]
    ratios = {key: median(full["steps"], key) / median(skip["steps"], key)
              for key in ("step_s", "step_cpu_s", "forward_backward", "forward_backward_cpu_s")}
    same_rewards = [s.get("reward") for s in skip["steps"]] == [s.get("reward") for s in full["steps"]]
    skipped = [s.get("completions_skipped") or 0.0 for s in skip["steps"]]
    document = {"meta": meta, "ratios_no_skip_over_skip": ratios, "same_rewards_every_step": same_rewards,
                "bitwise_equal_weights": skip["weights_sha256"] == full["weights_sha256"],
                "max_abs_weight_difference": meta["max_abs_weight_difference"],
                "max_abs_weight_change": meta["max_abs_weight_change"],
                "update_relative_difference": meta["update_relative_difference"],
                "update_cosine": meta["update_cosine"],
                "mean_completions_skipped": statistics.mean(skipped), "arms": arms}
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(document, indent=2) + "\n")
    lines = [
        "# Leaving completions without signal out of the forward/backward pass: time saved, weights kept",
        "",
        f"Produced by `{meta['command']}` on {meta['date']} ({meta['machine']}; {meta['versions']}); load "
        f"average {meta['load_average']:.2f} when it started. The arms ran "
        + ("one after the other" if meta["one_at_a_time"] else "at the same time, one core each")
        + " in the same invocation; compare ratios, and prefer the CPU-second ones when the machine was shared.",
        "",
        f"Both arms: the study's `{meta['arm']}` arm (`studies/curriculum-study.yaml`: SmolLM2-135M, 4 prompts x "
        f"8 completions per step, 8 completions per micro-batch, which TRL shuffles across groups, 128 tokens, lr "
        f"1e-5, beta 0, loss dapo), seed {meta['seed']}, {meta['steps']} steps, one thread, completions from "
        f"{'vLLM' if meta['fast_generation'] != 'off' else 'transformers generate'}. Medians over steps 2..N.",
        "",
        f"- **Weights after {meta['steps']} steps:** the two arms' updates (trained minus initial weights) have "
        f"cosine {meta['update_cosine']:.3f} and differ by {100 * meta['update_relative_difference']:.0f}% of "
        f"the full update's norm; largest single difference {meta['max_abs_weight_difference']:.2g} against a "
        f"largest change of {meta['max_abs_weight_change']:.2g} (bitwise equal: "
        f"{'yes' if document['bitwise_equal_weights'] else 'no'}). Rewards equal at every step: "
        f"{'yes' if same_rewards else 'no'}"
        + ("" if same_rewards else f" (first different at step {first_difference(skip, full)})") + ".",
        "  Under bf16 autocast a micro-batch with fewer rows rounds its matrix products differently, and AdamW's "
        "first steps move a weight by about the learning rate whatever the size of its gradient, so weights "
        "whose gradient is near zero can move either way; once one sampled token differs the arms draw "
        "different completions. That is the same training in distribution, not the same run (as with two "
        "thread counts). In fp32 the skipped and the full pass agree to 1e-6 after 6 steps on the tiny model "
        "(`tests/test_curriculum_trainer.py`).",
        f"- Completions left out: {100 * document['mean_completions_skipped']:.0f}% on average "
        f"(per step: {', '.join(f'{x:.2f}' for x in skipped)}).",
        f"- no-skip / skip, median step: **{ratios['step_cpu_s']:.2f}x** in CPU seconds, {ratios['step_s']:.2f}x "
        f"wall; forward/backward: **{ratios['forward_backward_cpu_s']:.2f}x** CPU, "
        f"{ratios['forward_backward']:.2f}x wall.",
        "",
        "| arm | median step s (wall) | median step CPU s | forward/backward s (wall) | forward/backward CPU s | "
        "generation s | weights sha256 |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, result in arms.items():
        lines.append(f"| {name} | {median(result['steps'], 'step_s'):.1f} | {median(result['steps'], 'step_cpu_s'):.1f} "
                     f"| {median(result['steps'], 'forward_backward'):.1f} | "
                     f"{median(result['steps'], 'forward_backward_cpu_s'):.1f} | "
                     f"{median(result['steps'], 'generation'):.1f} | `{result['weights_sha256'][:16]}` |")
    lines += ["", "Per step (wall s / CPU s / skipped share / reward):", ""]
    for name, result in arms.items():
        lines.append(f"- {name}: " + "; ".join(
            f"{s['step_s']:.0f}/{s['step_cpu_s']:.0f}/{s.get('completions_skipped') or 0:.2f}/{s.get('reward') or 0:.3f}"
            for s in result["steps"]))
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return document


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--arm", default="uniform-all", help="the study arm whose recipe and pool both arms train")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fast-generation", default="auto", help="the recipe's fast_generation (off: no vLLM)")
    parser.add_argument("--one-at-a-time", action="store_true", help="run the arms one after the other")
    parser.add_argument("--work", default=str(REPO / "runs" / "bench_zero_advantage"))
    parser.add_argument("--out", default=str(REPO / "reports" / "bench_zero_advantage"))
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite the report from --out's JSON (and --work's saved weights), no runs")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    work = Path(args.work)
    if args.report_only:
        saved = json.loads(Path(args.out).with_suffix(".json").read_text())
        write_report({**saved["meta"], **weight_differences(work)}, saved["arms"], Path(args.out))
        return
    if args.worker:
        if os.environ.get("CURRICULUM_BENCH_THREADS"):
            import torch

            torch.set_num_threads(int(os.environ["CURRICULUM_BENCH_THREADS"]))
        else:
            from curriculum.study_workers import pin_to_assigned_cores

            pin_to_assigned_cores()
        buckets, recipe = study_recipe(args.arm, args.steps, args.seed)
        recipe.update(skip_zero_advantage=ARMS[args.worker], fast_generation=args.fast_generation)
        result = bench_train.worker(args.worker, str(REPO / buckets), str(work / args.worker), recipe,
                                    keep_weights=str(work / f"{args.worker}.pt"))
        (work / f"{args.worker}.json").write_text(json.dumps(result))
        return

    import shutil

    load_average = os.getloadavg()[0]
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    arms = run_arms(args, work)
    for name in ARMS:
        print(f"{name}: median step {median(arms[name]['steps'], 'step_s'):.1f} s "
              f"(CPU {median(arms[name]['steps'], 'step_cpu_s'):.1f} s)", flush=True)
    meta = {"command": "python benchmarks/bench_zero_advantage.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": bench_train.machine(),
            "versions": ", ".join(f"{k} {v}" for k, v in bench_train.versions().items()), "steps": args.steps,
            "arm": args.arm, "seed": args.seed, "load_average": load_average, "fast_generation": args.fast_generation,
            "one_at_a_time": args.one_at_a_time, **weight_differences(work)}
    document = write_report(meta, arms, Path(args.out))
    print(f"no-skip / skip: {document['ratios_no_skip_over_skip']}; largest weight difference: {document['max_abs_weight_difference']:.2g}")


if __name__ == "__main__":
    main()
