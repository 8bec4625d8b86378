"""Benchmark `curriculum score`: engine throughput against baselines, adaptive against fixed sampling.

    python benchmarks/bench_score.py [--full] [--parts hf,vllm,adaptive] [--problems 16] [--samples 8]
        [--max-tokens 128] [--naive-problems 2] [--synthetic 48] [--adaptive-engine vllm] [--out reports]

The defaults take about 15 minutes on 2 idle cores; `--full` uses the issue's sizes (64 GSM8K problems, 8 of
them for the naive loop; 200 synthetic problems), which takes hours on such a machine.

- hf: tokens/s of the `hf` engine (batched across problems) against a naive loop, one
  `model.generate(num_return_sequences=n)` per problem with the stock model, on the same GSM8K-test problems
  in the same process. The naive loop is slow, so it runs on `--naive-problems` of those problems (a
  per-problem loop has the same rate on any subset), in blocks alternating with the engine's so that the
  machine's changing load hits both alike.
- vllm: tokens/s of the `vllm` engine against raw `vllm.LLM.generate` on the same prompts (chat template
  rendered to text, one request per prompt with `n` samples), alternating raw/engine/engine/raw on one `LLM`.
- adaptive: `--synthetic` problems from `curriculum.data.synthetic` scored with fixed n = `--fixed-n` through
  `curriculum.scoring.score` (completions kept); adaptive scoring (rounds of `--round`, max `--fixed-n`) is
  replayed on the same ordered samples, which is exactly what an adaptive run drawing those samples would
  do. Reports the share of problems in the same band and the share of rollouts used, plus Spearman
  correlations between pass rate and the generator's difficulty knobs.

Writes reports/bench_score.json (merged with earlier parts) and reports/bench_score.md. Prints; never
asserts timings. Machine noise is large when other jobs share the CPU: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from curriculum.models import resolve_model  # noqa: E402
from curriculum.prompts import DEFAULT_TEMPLATE  # noqa: E402
from curriculum.rollout import Sampling  # noqa: E402


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def gsm8k_problems(data_dir: Path, count: int) -> pd.DataFrame:
    frame = pd.read_json(data_dir / "eval" / "gsm8k_test.jsonl", lines=True, dtype=False).head(count)
    return frame.reset_index(drop=True)


# ------------------------------------------------------------------------------------------------- hf


def bench_hf(args, problems: pd.DataFrame) -> dict:
    """Engine and naive loop in alternating blocks, so a change in the machine's load hits both alike."""
    import torch
    from transformers import AutoModelForCausalLM

    from curriculum.rollout.hf import HFEngine

    model_dir = resolve_model(args.model)
    sampling = Sampling(temperature=0.7, top_p=0.95, max_tokens=args.max_tokens, seed=0)
    prompts = [DEFAULT_TEMPLATE.messages(p) for p in problems["problem"]]
    engine = HFEngine(model_dir, mode=args.hf_mode, batch_size=args.hf_batch_size)
    stock = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()  # default attention
    engine.generate(prompts[:2], 1, Sampling(max_tokens=4))  # warm-up
    naive_config = engine._generation_config(sampling)
    naive_config.num_return_sequences = args.samples
    blocks = max(1, min(args.naive_problems, len(prompts)))
    per_block = -(-len(prompts) // blocks)
    result = {"hf_mode": engine.mode, "hf_engine_problems": len(prompts), "naive_problems": blocks,
              "hf_batch_size": engine.pick_batch_size(max(len(engine.encode(p)) for p in prompts), args.max_tokens)}
    totals = {"engine": [0, 0.0], "naive": [0, 0.0]}
    log(f"hf engine ({engine.mode}) on {len(prompts)} problems and a naive loop (one "
        f"generate(num_return_sequences={args.samples}) per problem) on {blocks} of them, in {blocks} "
        f"alternating blocks; max {args.max_tokens} tokens")
    for block in range(blocks):
        chunk = prompts[block * per_block:(block + 1) * per_block]
        start = time.perf_counter()
        out = engine.generate(chunk, args.samples, replace(sampling, seed=block))
        seconds = time.perf_counter() - start
        tokens = sum(c.num_tokens for group in out for c in group)
        totals["engine"][0] += tokens
        totals["engine"][1] += seconds
        log(f"  block {block}: engine {len(chunk)} problems, {tokens} tokens in {seconds:.1f}s = "
            f"{tokens / seconds:.1f} tok/s")

        torch.manual_seed(block)
        ids = torch.tensor([engine.encode(prompts[block * per_block])])
        start = time.perf_counter()
        with torch.inference_mode():
            output = stock.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=naive_config)
        seconds = time.perf_counter() - start
        tokens = sum(engine._completion(row, args.max_tokens).num_tokens for row in output[:, ids.shape[1]:].tolist())
        totals["naive"][0] += tokens
        totals["naive"][1] += seconds
        log(f"  block {block}: naive 1 problem, {tokens} tokens in {seconds:.1f}s = {tokens / seconds:.1f} tok/s")
    for name, key in (("engine", "hf_engine"), ("naive", "naive")):
        tokens, seconds = totals[name]
        result.update({f"{key}_tokens": tokens, f"{key}_s": round(seconds, 2),
                       f"{key}_tokens_per_s": round(tokens / seconds, 2)})
    result["hf_vs_naive_speedup"] = round(result["hf_engine_tokens_per_s"] / result["naive_tokens_per_s"], 2)
    log(f"hf engine {result['hf_engine_tokens_per_s']:.1f} tok/s / naive {result['naive_tokens_per_s']:.1f} tok/s "
        f"= {result['hf_vs_naive_speedup']:.2f}x")

    if args.hf_compare_continuous and engine.mode != "continuous":
        continuous = HFEngine(model_dir, mode="continuous")
        chunk = prompts[:per_block]
        log(f"hf engine with continuous batching on the first {len(chunk)} problems")
        start = time.perf_counter()
        out = continuous.generate(chunk, args.samples, sampling)
        seconds = time.perf_counter() - start
        tokens = sum(c.num_tokens for group in out for c in group)
        result.update(hf_continuous_problems=len(chunk), hf_continuous_tokens_per_s=round(tokens / seconds, 2))
        log(f"  {tokens} tokens in {seconds:.1f}s = {tokens / seconds:.1f} tok/s")
        continuous.close()
    engine.close()
    return result


# ----------------------------------------------------------------------------------------------- vllm


_VLLM: dict = {}


def vllm_engine(args):
    """One vLLM engine for the vllm and adaptive parts (a start costs minutes on CPU)."""
    if "engine" not in _VLLM:
        from curriculum.rollout.vllm_engine import VLLMEngine

        log("starting vLLM")
        start = time.perf_counter()
        _VLLM["engine"] = VLLMEngine(resolve_model(args.model), seed=0)
        _VLLM["startup_s"] = round(time.perf_counter() - start, 1)
        log(f"  started in {_VLLM['startup_s']:.0f}s")
    return _VLLM["engine"]


def bench_vllm(args, problems: pd.DataFrame) -> dict:
    from vllm import SamplingParams

    sampling = Sampling(temperature=0.7, top_p=0.95, max_tokens=args.max_tokens, seed=0)
    prompts = [DEFAULT_TEMPLATE.messages(p) for p in problems["problem"]]
    engine = vllm_engine(args)
    llm, tokenizer = engine.llm, engine.tokenizer
    texts = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    params = SamplingParams(n=args.samples, temperature=0.7, top_p=0.95, max_tokens=args.max_tokens)
    llm.generate(texts[:2], SamplingParams(max_tokens=4), use_tqdm=False)  # warm-up

    def raw() -> tuple[int, float]:
        start = time.perf_counter()
        outputs = llm.generate(texts, params, use_tqdm=False)
        return sum(len(c.token_ids) for o in outputs for c in o.outputs), time.perf_counter() - start

    def ours() -> tuple[int, float]:
        start = time.perf_counter()
        out = engine.generate(prompts, args.samples, sampling)
        return sum(c.num_tokens for group in out for c in group), time.perf_counter() - start

    runs = {"raw": [], "engine": []}
    for name in ["raw", "engine", "engine", "raw"][: 2 * args.vllm_rounds]:
        tokens, seconds = (raw if name == "raw" else ours)()
        runs[name].append({"tokens": tokens, "s": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 2)})
        log(f"  {name}: {tokens} tokens in {seconds:.1f}s = {tokens / seconds:.1f} tok/s")
    raw_rate = sum(r["tokens"] for r in runs["raw"]) / sum(r["s"] for r in runs["raw"])
    our_rate = sum(r["tokens"] for r in runs["engine"]) / sum(r["s"] for r in runs["engine"])
    overhead = 1 - our_rate / raw_rate
    log(f"vllm engine overhead against raw LLM.generate: {100 * overhead:.1f}%")
    return {
        "vllm_startup_s": _VLLM["startup_s"], "vllm_problems": len(prompts), "vllm_runs": runs,
        "vllm_raw_tokens_per_s": round(raw_rate, 2), "vllm_engine_tokens_per_s": round(our_rate, 2),
        "vllm_overhead_frac": round(overhead, 4),
    }


# ------------------------------------------------------------------------------------------- adaptive


def synthetic_problems(count: int, seed: int, digits: str, operands: str, operations: str) -> pd.DataFrame:
    from curriculum.data.synthetic import Knobs, generate

    knobs = Knobs(digits=tuple(int(x) for x in digits.split(",")), operands=tuple(int(x) for x in operands.split(",")),
                  operations=tuple(operations.split(",")))
    return pd.DataFrame([problem.to_row() for problem in generate(count, seed=seed, knobs=knobs)])


def bench_adaptive(args) -> dict:
    from scipy.stats import spearmanr

    from curriculum.models import model_label
    from curriculum.rollout import get_engine
    from curriculum.scoring import (
        ScoreConfig,
        adaptive_sample_sizes,
        band_index,
        completions_path,
        score,
    )

    problems = synthetic_problems(args.synthetic, 0, args.synthetic_digits, args.synthetic_operands,
                                  args.synthetic_operations)
    log(f"adaptive: {len(problems)} synthetic problems x {args.fixed_n} samples on {args.adaptive_engine}, "
        f"max {args.adaptive_max_tokens} tokens")
    engine = vllm_engine(args) if args.adaptive_engine == "vllm" else get_engine("hf", args.model)
    fixed = ScoreConfig(samples=args.fixed_n, sampling=Sampling(max_tokens=args.adaptive_max_tokens, seed=0),
                        chunk_size=len(problems))
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "scores.parquet"
        start = time.perf_counter()
        summary = score(problems, engine, fixed, out, model=model_label(args.model), keep_completions=True)
        seconds = time.perf_counter() - start
        scores = pd.read_parquet(out)
        completions = pd.read_parquet(completions_path(out))
    if args.adaptive_engine != "vllm":
        engine.close()
    log(f"  scored in {seconds:.0f}s ({summary.tokens_now / seconds:.1f} tok/s)")

    order = {pid: i for i, pid in enumerate(problems["id"])}
    outcomes = np.zeros((len(problems), args.fixed_n), dtype=bool)
    for row in completions.itertuples(index=False):
        outcomes[order[row.id], row.sample] = row.correct
    adaptive = ScoreConfig(samples=args.round, adaptive=True, max_samples=args.fixed_n, edges=tuple(args.edges))
    sizes = adaptive_sample_sizes(outcomes, adaptive)
    fixed_rate = outcomes.mean(axis=1)
    adaptive_rate = np.array([outcomes[i, : sizes[i]].mean() for i in range(len(sizes))])
    same = band_index(fixed_rate, adaptive.edges) == band_index(adaptive_rate, adaptive.edges)
    result = {
        "adaptive_problems": len(problems), "adaptive_fixed_n": args.fixed_n, "adaptive_round": args.round,
        "adaptive_edges": list(adaptive.edges), "adaptive_interval": adaptive.interval,
        "adaptive_engine": args.adaptive_engine,
        "synthetic_knobs": {"digits": args.synthetic_digits, "operands": args.synthetic_operands,
                            "operations": args.synthetic_operations}, "adaptive_max_tokens": args.adaptive_max_tokens,
        "adaptive_scoring_s": round(seconds, 1), "adaptive_tokens_per_s": round(summary.tokens_now / seconds, 2),
        "adaptive_bucket_agreement": round(float(same.mean()), 4),
        "adaptive_rollout_ratio": round(float(sizes.sum() / outcomes.size), 4),
        "adaptive_sizes_histogram": {str(k): int(v) for k, v in zip(*np.unique(sizes, return_counts=True),
                                                                     strict=True)},
        "fixed_pass_rate_mean": round(float(fixed_rate.mean()), 4),
        "fixed_band_counts": {str(k): int(v) for k, v in zip(*np.unique(band_index(fixed_rate, adaptive.edges),
                                                                         return_counts=True), strict=True)},
        "truncated_frac": round(float((scores["truncated_frac"] * scores["n"]).sum() / scores["n"].sum()), 4),
    }
    log(f"  same band: {100 * same.mean():.1f}%, rollouts used: {100 * sizes.sum() / outcomes.size:.1f}%")

    knobs = problems.assign(operation_index=problems["operation_set"].map({"add": 0, "addsub": 1, "mixed": 2}),
                            word=(problems["style"] == "word").astype(int))
    rates = scores.set_index("id").loc[problems["id"], "pass_rate"].to_numpy()
    spearman = {}
    for knob in ("difficulty", "digits", "operands", "operation_index", "word"):
        rho, p_value = spearmanr(rates, knobs[knob].to_numpy())
        spearman[knob] = {"rho": round(float(rho), 4), "p": float(f"{p_value:.3g}")}
        log(f"  spearman(pass rate, {knob}) = {rho:+.3f} (p = {p_value:.2g})")
    result["spearman_knobs"] = spearman
    return result


# --------------------------------------------------------------------------------------------- report


def write_markdown(results: dict, path: Path) -> None:
    lines = ["# `curriculum score` benchmark", ""]
    machine = results.get("machine", {})
    lines += [f"Machine: {machine.get('cpus')} CPU cores, {machine.get('platform')}, torch {machine.get('torch')}, "
              f"transformers {machine.get('transformers')}, vllm {machine.get('vllm')}; other jobs share the CPU, "
              "so compare ratios measured in the same run.", ""]
    for part, command in results.get("commands", {}).items():
        lines.append(f"- {part}: `{command}`")
    lines += ["", "| figure | value | target |", "|---|---|---|"]
    if "hf_vs_naive_speedup" in results:
        lines.append(f"| hf engine tokens/s ({results['hf_mode']}, {results['hf_engine_problems']} problems) / naive "
                     f"loop tokens/s ({results['naive_problems']} of the same problems) | "
                     f"{results['hf_engine_tokens_per_s']:.1f} / {results['naive_tokens_per_s']:.1f} = "
                     f"**{results['hf_vs_naive_speedup']:.2f}x** | >= 4x |")
    if "hf_fp32_run" in results:
        fp32 = results["hf_fp32_run"]
        lines.append(f"| the same, with the engine in fp32 like the stock model (before bf16 on AMX CPUs) | "
                     f"{fp32['hf_engine_tokens_per_s']:.1f} / {fp32['naive_tokens_per_s']:.1f} = "
                     f"{fp32['hf_vs_naive_speedup']:.2f}x | - |")
    if "vllm_overhead_frac" in results:
        lines.append(f"| vllm engine overhead against raw `LLM.generate` ({results['vllm_problems']} problems; "
                     f"{results['vllm_engine_tokens_per_s']:.1f} vs {results['vllm_raw_tokens_per_s']:.1f} tok/s) | "
                     f"**{100 * results['vllm_overhead_frac']:.1f}%** | <= 10% |")
    if "adaptive_bucket_agreement" in results:
        lines.append(f"| adaptive (rounds of {results['adaptive_round']}, max {results['adaptive_fixed_n']}) vs "
                     f"fixed n = {results['adaptive_fixed_n']}, {results['adaptive_problems']} synthetic problems: "
                     f"same band | **{100 * results['adaptive_bucket_agreement']:.1f}%** | >= 90% |")
        lines.append(f"| adaptive rollouts / fixed rollouts | **{100 * results['adaptive_rollout_ratio']:.1f}%** "
                     "| <= 50% |")
        lines.append(f"| fixed-n scoring of the {results['adaptive_problems']} problems "
                     f"({results['adaptive_engine']} engine, max {results['adaptive_max_tokens']} tokens) | "
                     f"{results['adaptive_scoring_s']:.0f} s, {results['adaptive_tokens_per_s']:.0f} tok/s, mean pass "
                     f"rate {results['fixed_pass_rate_mean']:.3f}, truncated {100 * results['truncated_frac']:.0f}% | - |")
        for knob, value in results.get("spearman_knobs", {}).items():
            lines.append(f"| Spearman(pass rate, {knob}) | {value['rho']:+.3f} (p = {value['p']:.2g}) | report |")
    lines += ["", "How these were run: each part pinned to one core with one thread (`OMP_NUM_THREADS=1 taskset -c 1`, "
              "and `VLLM_CPU_OMP_THREADS_BIND=1` for vLLM) while a single-threaded training job used the other core."]
    if results.get("hf_vs_naive_speedup", 4) < 4:
        lines += ["", "The hf engine misses the 4x target on this CPU. The naive baseline already batches the 8 samples "
                  "of a problem (`num_return_sequences=8`), and on one CPU thread a batch of 64 sequences is "
                  "compute-bound: batching across problems buys ~2.3x in fp32 (tokens/s 42 -> 99), and bf16 on AMX "
                  "another ~1.6x (-> 163). What remains is arithmetic, not overhead; on a GPU the same batching is "
                  "memory-bound and gains far more. For CPU scoring the `vllm` engine is the faster choice (about "
                  "220 tok/s on one thread here)."]
    if "adaptive_bucket_agreement" in results:
        knobs = results.get("synthetic_knobs", {})
        lines += ["", f"Adaptive against fixed: the synthetic problems (knobs {knobs}) are scored once with fixed n; "
                  "adaptive scoring is replayed on each problem's samples in the order they were drawn, which is "
                  "what an adaptive run drawing those samples would do, so both sides see the same randomness. "
                  f"Bands are those of the edges {results['adaptive_edges']} ({results['adaptive_interval']} "
                  "intervals). The Spearman rows correlate each problem's fixed-n pass rate with the generator's "
                  "knobs (negative: more of the knob, lower pass rate)."]
    lines += ["", "Raw figures, per-run timings and settings: `reports/bench_score.json`."]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="hf,vllm,adaptive")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("CURRICULUM_DATA_DIR",
                                                                            REPO.parent / "shared" / "data")))
    parser.add_argument("--problems", type=int, default=16, help="GSM8K-test problems for the throughput parts")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--naive-problems", type=int, default=2)
    parser.add_argument("--hf-mode", default="auto", choices=["auto", "padded", "continuous"])
    parser.add_argument("--hf-batch-size", type=int, default=None, help="sequences per batch (default: from memory)")
    parser.add_argument("--vllm-rounds", type=int, default=2, choices=[1, 2],
                        help="1: raw then engine; 2: raw, engine, engine, raw")
    parser.add_argument("--synthetic", type=int, default=48)
    parser.add_argument("--synthetic-digits", default="1,2", help="generator knob values (SmolLM2 rarely solves 3 digits)")
    parser.add_argument("--synthetic-operands", default="2,3")
    parser.add_argument("--synthetic-operations", default="add,addsub,mixed")
    parser.add_argument("--fixed-n", type=int, default=32)
    parser.add_argument("--round", type=int, default=8, help="adaptive round size (samples per round)")
    parser.add_argument("--edges", type=lambda text: [float(x) for x in text.split(",")], default=[0.8, 0.5, 0.2])
    parser.add_argument("--adaptive-engine", default="vllm", choices=["hf", "vllm"])
    parser.add_argument("--adaptive-max-tokens", type=int, default=128)
    parser.add_argument("--out", type=Path, default=REPO / "reports")
    parser.add_argument("--hf-compare-continuous", action="store_true",
                        help="also time the hf engine with continuous batching on the same problems")
    parser.add_argument("--full", action="store_true",
                        help="the issue's sizes: 64 problems (8 of them for the naive loop), 200 synthetic problems")
    parser.add_argument("--markdown-only", action="store_true", help="rewrite bench_score.md from the JSON, run nothing")
    args = parser.parse_args()
    if args.markdown_only:
        write_markdown(json.loads((args.out / "bench_score.json").read_text()), args.out / "bench_score.md")
        return
    if args.full:
        args.problems, args.naive_problems, args.synthetic = 64, 8, 200
    parts = [part.strip() for part in args.parts.split(",") if part.strip()]

    json_path = args.out / "bench_score.json"
    results = json.loads(json_path.read_text()) if json_path.exists() else {}
    results.setdefault("commands", {})
    import torch
    import transformers

    try:
        import vllm

        vllm_version = vllm.__version__
    except ImportError:
        vllm_version = None
    results["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                          "transformers": transformers.__version__, "vllm": vllm_version,
                          "load_average_at_start": os.getloadavg()}
    command = "python benchmarks/bench_score.py " + shlex.join(sys.argv[1:])
    problems = gsm8k_problems(args.data_dir, args.problems)
    started = time.perf_counter()
    for part in parts:
        part_start = time.perf_counter()
        if part == "hf":
            results.update(bench_hf(args, problems))
        elif part == "vllm":
            results.update(bench_vllm(args, problems))
        elif part == "adaptive":
            results.update(bench_adaptive(args))
        else:
            raise SystemExit(f"unknown part {part!r}")
        results["commands"][part] = command
        results.setdefault("part_seconds", {})[part] = round(time.perf_counter() - part_start, 1)
        args.out.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=2) + "\n")
        write_markdown(results, args.out / "bench_score.md")
    if "engine" in _VLLM:
        _VLLM.pop("engine").close()
    log(f"done in {time.perf_counter() - started:.0f}s; wrote {json_path}")


if __name__ == "__main__":
    main()
