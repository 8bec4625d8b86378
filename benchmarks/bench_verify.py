"""Benchmark answer verification: agreement with raw math-verify on the project's own cases, throughput of
this verifier against the one before it (commit --before), single process vs the worker pool, shared-cache
rewards vs TRL's rewards, and the worst latency of one call on pathological inputs.

    python benchmarks/bench_verify.py [--data-dir ../shared/data] [--n 2000] [--workers N] [--out reports]
                                      [--before 8091e89]

Writes reports/bench_verify.json and reports/bench_verify.md. Prints, never asserts timings.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from curriculum.data.extract import last_boxed  # noqa: E402
from curriculum.extraction import judge as _judge  # noqa: E402
from curriculum.rewards import get_reward  # noqa: E402
from curriculum.verify import (  # noqa: E402
    DEFAULT_TIMEOUT_S,
    cache_info,
    check,
    check_batch,
    clear_cache,
    default_workers,
    get_pool,
    shutdown,
)


def load_rows(data_dir: Path, sizes: list[int], seed: int) -> list[list[dict]]:
    """Disjoint sets of rows, half MATH and half GSM8K each."""
    rng = random.Random(seed)
    math_rows = [json.loads(line) for line in (data_dir / "train/math_train.jsonl").open()]
    gsm_rows = [json.loads(line) for line in (data_dir / "train/gsm8k_train.jsonl").open()]
    rng.shuffle(math_rows)
    rng.shuffle(gsm_rows)
    sets, at_math, at_gsm = [], 0, 0
    for n in sizes:
        sets.append(math_rows[at_math : at_math + n // 2] + gsm_rows[at_gsm : at_gsm + n - n // 2])
        at_math, at_gsm = at_math + n // 2, at_gsm + n - n // 2
    return sets


def wrong_answer(gold: str, other: str, rng: random.Random) -> str:
    if re.fullmatch(r"-?\d+", gold):
        return str(int(gold) + rng.choice([-2, -1, 1, 10]))
    return other if other != gold else gold + "+1"


def make_completions(rows: list[dict], seed: int) -> list[tuple[str, str, str]]:
    """(completion, gold, kind): 50% correct, 35% wrong, 15% malformed, written like model outputs."""
    rng = random.Random(seed)
    golds = [row["answer"] for row in rows]
    items = []
    for row in rows:
        gold = row["answer"]
        reasoning = row["solution"]
        boxed = last_boxed(reasoning)
        if boxed is not None:  # MATH: drop the worked answer, keep the reasoning
            reasoning = reasoning[: reasoning.rfind(boxed) - len("\\boxed{")]
        roll = rng.random()
        if roll < 0.5:
            kind, answer = "correct", gold
        elif roll < 0.85:
            kind, answer = "wrong", wrong_answer(gold, rng.choice(golds), rng)
        else:
            kind, answer = "malformed", None
        style = rng.choice(["boxed", "answer_is", "tags"])
        if answer is None:
            tail = rng.choice([r" so \boxed{" + gold[: max(1, len(gold) // 2)], " and therefore", r" \boxed{}"])
        elif style == "boxed":
            tail = f"\nSo the final answer is $\\boxed{{{answer}}}$."
        elif style == "answer_is":
            tail = f"\nThe answer is ${answer}$."
        else:
            tail = f"\n</think>\n<answer>\n{answer}\n</answer>"
        prefix = "<think>\n" if style == "tags" else ""
        items.append((prefix + reasoning + tail, gold, kind))
    return items


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def warm_pool(warm_items, workers: int) -> float:
    """A fresh pool, warmed on items the measure will not see (sympy and math-verify cache as they go, so
    every configuration is measured as a long-lived process meeting new completions, as in training).
    Returns the pool's start-up time."""
    shutdown()
    _, startup_s = timed(lambda: get_pool(workers).start())
    check_batch([c for c, _, _ in warm_items], [g for _, g, _ in warm_items], workers=workers)
    clear_cache()
    return startup_s


def run_baseline(kind: str, warm_items, items, max_len: int) -> dict:
    """Run a baseline in a fresh Python process (so no cache of ours or of sympy helps or hurts it)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"warm": warm_items, "items": items, "max_len": max_len}, handle)
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--baseline", kind, "--items", handle.name],
            capture_output=True, text=True, check=True,
        )
    finally:
        os.unlink(handle.name)
    return json.loads(done.stdout.strip().splitlines()[-1])


def baseline_main(kind: str, items_path: Path) -> None:
    """Inside the baseline process: warm up on the warm set, then time the measured set."""
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    data = json.loads(items_path.read_text())
    if kind == "single":  # the same judging code as a pool worker, in this process, one item after another
        def judge(items):
            return [_judge(c, g, "auto")[0] for c, g, _ in items]

        judge(data["warm"])
        cpu = time.process_time()
        statuses, seconds = timed(lambda: judge(data["items"]))
        print(json.dumps({"seconds": seconds, "cpu_s": time.process_time() - cpu, "statuses": statuses}))
        return
    from trl.rewards import accuracy_reward, get_cosine_scaled_reward

    cosine = get_cosine_scaled_reward(max_len=data["max_len"])

    def rewards(items):  # TRL parses the gold as solution text: give it math mode, as a solution has
        completions = [[{"role": "assistant", "content": c}] for c, _, _ in items]
        solutions = [f"${g}$" for _, g, _ in items]
        ids = [[0] * (len(c) // 4) for c, _, _ in items]
        return accuracy_reward(completions, solutions), cosine(completions, solutions, ids)

    rewards(data["warm"])
    (accuracy, _), seconds = timed(lambda: rewards(data["items"]))
    print(json.dumps({"seconds": seconds, "accuracy": accuracy}))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_single_vs_pool(warm_items, items, workers: int) -> dict:
    single = run_baseline("single", warm_items, items, 0)
    startup_s = warm_pool(warm_items, workers)
    pids = [worker.pid for worker in get_pool(workers)._workers]
    cpu = time.process_time() + sum(cpu_seconds(pid) for pid in pids)
    pooled, pool_s = timed(lambda: check_batch([c for c, _, _ in items], [g for _, g, _ in items], workers=workers))
    pool_cpu = time.process_time() + sum(cpu_seconds(pid) for pid in pids) - cpu
    agreement = sum(s == v.status for s, v in zip(single["statuses"], pooled, strict=True)) / len(items)
    statuses, by_kind = {}, {}
    for (_, _, kind), verdict in zip(items, pooled, strict=True):
        statuses[verdict.status] = statuses.get(verdict.status, 0) + 1
        by_kind.setdefault(kind, []).append(verdict.correct)
    return {
        "single_process_per_s": len(items) / single["seconds"],
        "pool_per_s": len(items) / pool_s,
        "pool_vs_single_speedup": single["seconds"] / pool_s,
        "pool_startup_s": startup_s,
        # CPU seconds spent on the same items (dispatcher + workers vs one process): the pool's overhead,
        # which is what limits the speed-up on an idle machine.
        "single_cpu_s": single["cpu_s"],
        "pool_cpu_s": pool_cpu,
        # The wall-clock speed-up the pool would reach with its cores to itself (an upper bound).
        "pool_vs_single_cpu_bound_speedup": single["cpu_s"] / (pool_cpu / workers) if pool_cpu else None,
        "pool_single_agreement": agreement,
        "statuses": statuses,
        "correct_rate_by_kind": {kind: sum(v) / len(v) for kind, v in sorted(by_kind.items())},
    }


def ours_rewards(warm_items, items, max_len: int, workers: int) -> tuple[list, float, int]:
    """accuracy + cosine as a GRPO step calls them: the second reward finds every verdict in the cache."""
    completions = [[{"role": "assistant", "content": c}] for c, _, _ in items]
    golds = [g for _, g, _ in items]
    ids = [[0] * (len(c) // 4) for c, _, _ in items]  # ~4 characters a token
    accuracy = get_reward("accuracy", workers=workers)
    cosine = get_reward("cosine", max_len=max_len, workers=workers)
    warm_pool(warm_items, workers)
    (values, _), seconds = timed(lambda: (
        accuracy(completions=completions, answer=golds, completion_ids=ids),
        cosine(completions=completions, answer=golds, completion_ids=ids),
    ))
    return values, seconds, cache_info()["misses"]


def bench_rewards(warm_items, items, max_len: int, workers: int) -> dict:
    """One reward evaluation of a GRPO step, accuracy + cosine: ours (one shared verification, pool) against
    TRL's `accuracy_reward` + `get_cosine_scaled_reward` (each verifies every completion, in-process)."""
    trl = run_baseline("trl", warm_items, items, max_len)
    ours_acc, ours_s, verifications = ours_rewards(warm_items, items, max_len, workers)
    _, ours_one_s, _ = ours_rewards(warm_items, items, max_len, 1)
    agree = sum((a == 1.0) == (b == 1.0) for a, b in zip(ours_acc, trl["accuracy"], strict=True)) / len(items)
    return {
        "ours_accuracy_plus_cosine_s": ours_s,
        "ours_one_worker_accuracy_plus_cosine_s": ours_one_s,
        "trl_accuracy_plus_cosine_s": trl["seconds"],
        "ours_rewards_per_s": len(items) / ours_s,
        "trl_rewards_per_s": len(items) / trl["seconds"],
        "shared_cache_vs_trl_speedup": trl["seconds"] / ours_s,
        "shared_cache_one_worker_vs_trl_speedup": trl["seconds"] / ours_one_s,
        "verifications_ours": verifications,
        "verifications_trl": 2 * len(items),
        "accuracy_agreement_with_trl": agree,
        "ours_accuracy_mean": sum(a or 0.0 for a in ours_acc) / len(items),
        "trl_accuracy_mean": sum(a or 0.0 for a in trl["accuracy"]) / len(items),
    }


def nested_frac(depth: int) -> str:
    text = "1"
    for _ in range(depth):
        text = r"\frac{1}{1+" + text + "}"
    return text


PATHOLOGICAL = {
    "nested_frac_40": r"So \boxed{" + nested_frac(40) + "}",
    "power_tower": r"\boxed{9^{9^{9^{9^{9}}}}}",
    "factorial_of_huge": r"\boxed{(10^{10})!}",
    "100kb_completion": ("step 12 then 7, " * 6500)[:100_000] + r" \boxed{7}",
    "100kb_unclosed_boxes": r"\boxed{" * 14_300,
    "100k_digit_number": "1" * 100_000,
    "unicode_oddities": "答案 \\boxed{\u200b\u202e４２\ufe0f\U0001f600\u0301}\x00\udc80 \ufffd",
}


def bench_latency(bound_s: float, workers: int) -> dict:
    get_pool(workers).start()
    per_input = {}
    for name, completion in PATHOLOGICAL.items():
        clear_cache()
        verdict, elapsed = timed(lambda c=completion: check(c, "1", timeout_s=bound_s))
        per_input[name] = {"status": verdict.status, "latency_s": elapsed}
    return {"bound_s": bound_s, "worst_latency_s": max(v["latency_s"] for v in per_input.values()),
            "pathological": per_input}


CASES = REPO / "benchmarks/data/verify_cases.jsonl"


def bench_agreement(cases_path: Path) -> dict:
    """Our verdicts and raw math-verify's (`verify(parse(gold), parse(completion))`, its defaults) against
    the expected verdicts of the project's own cases, per class."""
    from math_verify import parse, verify

    cases = [json.loads(line) for line in cases_path.open()]
    ours = [v.correct for v in check_batch([c["completion"] for c in cases], [c["gold"] for c in cases])]
    raw = []
    for case in cases:
        try:
            raw.append(bool(verify(parse(case["gold"], parsing_timeout=None),
                                   parse(case["completion"], parsing_timeout=None), timeout_seconds=None)))
        except Exception:  # a crash is a verdict the user would not get
            raw.append(False)
    classes: dict[str, dict] = {}
    for case, o, r in zip(cases, ours, raw, strict=True):
        entry = classes.setdefault(case["class"], {"n": 0, "ours": 0, "raw": 0})
        entry["n"] += 1
        entry["ours"] += o == case["expected"]
        entry["raw"] += r == case["expected"]
    n = len(cases)
    return {"cases": n, "cases_file": str(cases_path.relative_to(REPO)),
            "ours_agreement": sum(o == c["expected"] for o, c in zip(ours, cases, strict=True)) / n,
            "raw_math_verify_agreement": sum(r == c["expected"] for r, c in zip(raw, cases, strict=True)) / n,
            "ours_vs_raw_same_verdict": sum(o == r for o, r in zip(ours, raw, strict=True)) / n,
            "agreement_by_class": classes}


def load_judge_before(commit: str):
    """The judging function of the verifier at `commit` (its verify.py loaded as a module of its own)."""
    import types

    source = subprocess.run(["git", "show", f"{commit}:curriculum/verify.py"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout
    module = types.ModuleType("verify_before")
    module.__file__ = str(REPO / "curriculum/verify.py")
    sys.modules[module.__name__] = module  # dataclasses look their module up there
    exec(compile(source, f"{commit}:curriculum/verify.py", "exec"), module.__dict__)  # noqa: S102
    return module._judge


def bench_before_after(warm_items, items, commit: str) -> dict:
    """Single-process throughput of the judging code before and after, alternated on the same items."""
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    judges = {"before": load_judge_before(commit), "after": _judge}
    for judge in judges.values():  # sympy's lazy imports and caches, paid before the clock for both
        for completion, gold, _ in warm_items:
            judge(completion, gold, "auto")
    seconds = {"before": 0.0, "after": 0.0}
    for start in range(0, len(items), 100):  # alternate in blocks, so load changes hit both alike
        block = items[start : start + 100]
        for name, judge in judges.items():
            began = time.perf_counter()
            for completion, gold, _ in block:
                judge(completion, gold, "auto")
            seconds[name] += time.perf_counter() - began
    return {"before_commit": commit, "before_per_s": len(items) / seconds["before"],
            "after_per_s": len(items) / seconds["after"], "after_vs_before": seconds["before"] / seconds["after"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("CURRICULUM_DATA_DIR", REPO.parent / "shared/data")))
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=400)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--bound", type=float, default=DEFAULT_TIMEOUT_S)
    parser.add_argument("--max-len", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "reports")
    parser.add_argument("--before", default="8091e89", help="commit of the verifier to compare throughput with")
    parser.add_argument("--baseline", choices=["single", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--items", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline:
        baseline_main(args.baseline, args.items)
        return
    workers = args.workers or default_workers()

    warm_rows, rows = load_rows(args.data_dir, [args.warmup, args.n], args.seed)
    warm_items, items = make_completions(warm_rows, args.seed + 1), make_completions(rows, args.seed)
    print(f"{len(items)} completions, {workers} workers, {os.cpu_count()} cores", flush=True)
    results = {"n": len(items), "warmup": len(warm_items), "workers": workers, "cores": os.cpu_count(),
               "python": platform.python_version(), "load_average_before": os.getloadavg()[0]}
    results.update(bench_agreement(CASES))
    print(f"agreement on {results['cases']} own cases: ours {results['ours_agreement']:.3f}, raw math-verify "
          f"{results['raw_math_verify_agreement']:.3f}", flush=True)
    results.update(bench_before_after(warm_items, items, args.before))
    print(f"judging throughput: before {results['before_per_s']:.1f}/s, after {results['after_per_s']:.1f}/s",
          flush=True)
    results.update(bench_single_vs_pool(warm_items, items, workers))
    print(f"single {results['single_process_per_s']:.1f}/s  pool {results['pool_per_s']:.1f}/s  "
          f"speedup {results['pool_vs_single_speedup']:.2f}x", flush=True)
    results.update(bench_rewards(warm_items, items, args.max_len, workers))
    print(f"accuracy+cosine: ours {results['ours_accuracy_plus_cosine_s']:.1f}s "
          f"(one worker {results['ours_one_worker_accuracy_plus_cosine_s']:.1f}s)  "
          f"TRL {results['trl_accuracy_plus_cosine_s']:.1f}s  speedup {results['shared_cache_vs_trl_speedup']:.2f}x",
          flush=True)
    results.update(bench_latency(args.bound, workers))
    print(f"worst latency {results['worst_latency_s']:.2f}s (bound {results['bound_s']:.1f}s)", flush=True)
    results["load_average_after"] = os.getloadavg()[0]

    command = "python benchmarks/bench_verify.py " + " ".join(sys.argv[1:])
    results["command"] = command.strip()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_verify.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    (args.out / "bench_verify.md").write_text(render_markdown(results))
    print(f"wrote {args.out / 'bench_verify.json'} and {args.out / 'bench_verify.md'}")


def render_markdown(r: dict) -> str:
    rows = [
        ("agreement with the expected verdicts, ours", f"{100 * r['ours_agreement']:.1f}%",
         f"{r['cases']} cases in `{r['cases_file']}`"),
        ("agreement with the expected verdicts, raw math-verify", f"{100 * r['raw_math_verify_agreement']:.1f}%",
         "`verify(parse(gold), parse(completion))`, its defaults"),
        ("same verdict, ours and raw math-verify", f"{100 * r['ours_vs_raw_same_verdict']:.1f}%", ""),
        (f"judging throughput, verifier of {r['before_commit']} (before)", f"{r['before_per_s']:.1f} completions/s",
         "one process, same items, alternated in blocks of 100"),
        ("judging throughput, this verifier (after)", f"{r['after_per_s']:.1f} completions/s",
         f"{r['after_vs_before']:.2f}x before"),
        ("verification, single process", f"{r['single_process_per_s']:.1f} completions/s", ""),
        (f"verification, pool of {r['workers']}", f"{r['pool_per_s']:.1f} completions/s",
         f"{r['pool_vs_single_speedup']:.2f}x vs single"),
        ("CPU time for the same items, single vs pool", f"{r['single_cpu_s']:.1f} s vs {r['pool_cpu_s']:.1f} s",
         f"dispatcher + workers; with idle cores the pool could reach "
         f"{r['pool_vs_single_cpu_bound_speedup']:.2f}x"),
        ("accuracy + cosine, TRL rewards (verify twice)", f"{r['trl_rewards_per_s']:.1f} completions/s",
         f"{r['verifications_trl']} verifications"),
        ("accuracy + cosine, ours (shared cache, pool)", f"{r['ours_rewards_per_s']:.1f} completions/s",
         f"{r['shared_cache_vs_trl_speedup']:.2f}x vs TRL, {r['verifications_ours']} verifications"),
        ("accuracy + cosine, ours with one worker", f"{r['n'] / r['ours_one_worker_accuracy_plus_cosine_s']:.1f} "
         "completions/s", f"{r['shared_cache_one_worker_vs_trl_speedup']:.2f}x vs TRL (the cache alone)"),
        ("worst latency of one call, pathological inputs", f"{r['worst_latency_s']:.2f} s",
         f"bound {r['bound_s']:.1f} s"),
    ]
    lines = [
        "# Verification benchmark",
        "",
        "Command (from the repository root):",
        "",
        "```",
        r["command"],
        "```",
        "",
        f"{r['n']} completion-like strings built from MATH and GSM8K train answers (half each; correct, "
        f"wrong and malformed mixed); {r['cores']} CPU cores, Python {r['python']}, load average "
        f"{r['load_average_before']:.1f} before and {r['load_average_after']:.1f} after. When other jobs share "
        "the machine (load above the core count), the kernel's fair scheduling gives this benchmark's processes "
        "about the same CPU share however many there are, so the pool's wall-clock speed-up cannot show; the CPU "
        "time row says what it costs and what it would give on free cores. Each configuration runs in fresh processes first warmed on "
        f"{r['warmup']} other items (sympy and math-verify cache as they go), so none has seen the measured "
        "items: the single-process and TRL baselines each in their own Python process, ours in a fresh pool. "
        f"Pool start-up (once per process, not in the timings): {r['pool_startup_s']:.2f} s.",
        "",
        "| measure | value | note |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
        "Pathological inputs, one `check` call each with the bound above:",
        "",
        "| input | verdict | latency (s) |",
        "|---|---|---|",
        *[f"| {name} | {v['status']} | {v['latency_s']:.2f} |" for name, v in r["pathological"].items()],
        "",
        f"Pool and single-process verdicts agree on {100 * r['pool_single_agreement']:.1f}% of items; our "
        f"accuracy agrees with TRL's `accuracy_reward` on {100 * r['accuracy_agreement_with_trl']:.1f}% "
        f"(mean accuracy ours {r['ours_accuracy_mean']:.3f}, TRL {r['trl_accuracy_mean']:.3f}; TRL reads only "
        "`\\boxed{}` answers, ours also \"the answer is\", `<answer>` tags, math-verify's own extraction of "
        "the whole text and a number standing alone at the end).",
        "",
        "Agreement per class of the project's own cases (written for this project's answer shapes: MATH's bare "
        "LaTeX golds, GSM8K's numbers, escape-damaged golds; raw math-verify reads a bare LaTeX gold such as "
        "`\\frac{1}{2}` or `[0,1)` without `$` poorly, which is most of its misses here):",
        "",
        "| class | cases | ours | raw math-verify |",
        "|---|---|---|---|",
        *[f"| {name} | {c['n']} | {c['ours']} | {c['raw']} |" for name, c in r["agreement_by_class"].items()],
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
