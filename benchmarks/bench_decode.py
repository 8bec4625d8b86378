"""Evaluation decoding on CPU: transformers' `generate` against the hf engine's own loop that drops finished rows.

`generate` keeps every row of a batch until the longest one ends. After GRPO training SmolLM2's completions
are short (the study's uniform run: 92 -> 42 tokens) while a few still run to `max_tokens`, so most rows
spend most steps on padding. `HFEngine._sample_rows` removes finished rows from the KV cache every few
steps. Measured here, in one invocation, on the same prompts and batch (one batch of the eval harness:
problems x k rows, prompts prefilled once and shared by their samples, as the engine does):

- `generate` (baseline): transformers' `generate` continuing from the shared prompt cache (the engine's
  path before this change, with top-k off so that all variants sample the same distribution);
- `own loop, drop every N (shipped)`: the engine as shipped (N = `_DROP_FINISHED_EVERY`);
- with `--no-drops` / `--intervals`: the loop that never drops (isolates the loop itself), other intervals.

For each model: the untrained SmolLM2-135M (long completions) and a trained checkpoint (short ones) when
given. Writes reports/bench_decode.{json,md}; asserts nothing.

    python benchmarks/bench_decode.py --problems 16 --k 4 --threads 1 \
        --trained reports/curriculum-study/uniform-all/seed-0/checkpoint-60
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train import MODEL, machine, versions  # noqa: E402

HELDOUT = REPO / "reports/curriculum-study/pool/heldout.parquet"
BASELINE = "generate"


def variants(intervals: list[int], no_drops: bool) -> dict[str, int | None]:
    """Variant name -> drop interval (None: transformers' generate; a huge interval: never drop)."""
    from curriculum.rollout import hf

    shipped = hf._DROP_FINISHED_EVERY
    return {BASELINE: None, **({"own loop, no drops": 10**9} if no_drops else {}),
            f"own loop, drop every {shipped} (shipped)": shipped,
            **{f"own loop, drop every {n}": n for n in intervals if n != shipped}}


def generate_rows(engine, cache, last_tokens, attention, positions, sampling):
    """The pre-change path: `generate` from the shared prompt cache. Its input_ids only need the right width
    (the cache already holds every position but the last), so the prefix is filled with padding."""
    import torch

    width = attention.shape[1]
    input_ids = torch.cat([torch.full((len(last_tokens), width - 1), engine.pad_id), last_tokens], dim=1)
    output = engine.model.generate(input_ids=input_ids, attention_mask=attention, past_key_values=cache,
                                   generation_config=engine._generation_config(sampling))
    return output[:, width:].tolist()


def measure(model: str, problems: list[str], args) -> dict:
    """Every variant on the same batch, `--repeats` times interleaved; the median CPU and wall time of each.
    CPU time (this process, one thread) is the measure: another job on the machine stretches wall time."""
    from curriculum.prompts import DEFAULT_TEMPLATE
    from curriculum.rollout import Sampling, hf

    engine = hf.HFEngine(model, batch_size=len(problems) * args.k)
    prompts = [engine.encode(DEFAULT_TEMPLATE.messages(p)) for p in problems]
    sampling = Sampling(temperature=0.7, top_p=0.95, max_tokens=args.max_tokens, seed=0)
    shipped_loop, shipped_every = hf.HFEngine._sample_rows, hf._DROP_FINISHED_EVERY
    plan = variants(args.intervals, args.no_drops)
    results: dict[str, dict] = {name: {"wall_s": [], "cpu_s": []} for name in plan}
    for _ in range(args.repeats):
        for name, every in plan.items():
            if every is None:
                engine._sample_rows = lambda *a, **kw: generate_rows(engine, *a, **kw)  # noqa: E731
            else:
                engine._sample_rows = shipped_loop.__get__(engine)
                hf._DROP_FINISHED_EVERY = every
            began, began_cpu = time.perf_counter(), time.process_time()
            completions = [c for group in engine.generate_tokens(prompts, args.k, sampling) for c in group]
            results[name]["cpu_s"].append(time.process_time() - began_cpu)
            results[name]["wall_s"].append(time.perf_counter() - began)
            lengths = [c.num_tokens for c in completions]
            results[name].update(rows=len(lengths), mean_tokens=statistics.mean(lengths),
                                 truncated=sum(c.truncated for c in completions) / len(lengths))
    hf._DROP_FINISHED_EVERY = shipped_every
    base = statistics.median(results[BASELINE]["cpu_s"])
    for row in results.values():
        row["median_wall_s"], row["median_cpu_s"] = statistics.median(row["wall_s"]), statistics.median(row["cpu_s"])
        row["speedup"] = base / row["median_cpu_s"]
        row["sampled_tokens_per_cpu_s"] = row["rows"] * row["mean_tokens"] / row["median_cpu_s"]
    return results


def write_report(document: dict, stem: Path) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(document, indent=2) + "\n")
    meta = document["meta"]
    lines = [
        "# Evaluation decoding: transformers' generate against the own loop that drops finished rows",
        "",
        f"Produced by `{meta['command']}` on {meta['date']} ({meta['machine']}; {meta['versions']}), "
        f"{meta['threads']} thread(s). Load average at the start: {meta['load_average']:.2f} (another job may "
        "share the machine; the variants run interleaved in one invocation, so compare the ratios).",
        "",
        f"One batch of the study's evaluation harness: {meta['problems']} held-out problems x k = {meta['k']} = "
        f"{meta['problems'] * meta['k']} rows, temperature 0.7, top_p 0.95, up to {meta['max_tokens']} tokens, "
        f"seed 0; medians of {meta['repeats']} interleaved repeats. Speedup = generate's CPU time / the variant's "
        "(one thread: CPU time is the work done, whatever else the machine runs). Mean "
        "tokens and truncated share differ a little between variants: after the first drop the rows draw "
        "different random numbers (same distribution, other samples).",
        "",
        "| model | variant | median CPU s | median wall s | speedup (CPU) | sampled tok / CPU s | mean tokens "
        "| truncated |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for model, rows in document["models"].items():
        for name, r in rows.items():
            lines.append(f"| {model} | {name} | {r['median_cpu_s']:.1f} | {r['median_wall_s']:.1f} | "
                         f"{r['speedup']:.2f}x | {r['sampled_tokens_per_cpu_s']:.0f} | {r['mean_tokens']:.1f} | "
                         f"{100 * r['truncated']:.0f}% |")
    lines += ["", *document.get("discussion", [])]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--intervals", type=int, nargs="*", default=[], help="other drop intervals to measure")
    parser.add_argument("--no-drops", action="store_true", help="also the own loop that never drops a row")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--trained", default=None, help="a trained checkpoint to measure beside the base model")
    parser.add_argument("--out", default=str(REPO / "reports/bench_decode"))
    args = parser.parse_args(argv)

    measure_each_model("bench_decode", args, argv, measure, write_report)


def measure_each_model(name: str, args, argv: list[str] | None, measure, write_report) -> None:
    """The decode benchmarks' driver: the command, machine and settings in `meta`, then the trained checkpoint
    (if any) and the untrained model measured in turn on the first held-out problems, the report rewritten after
    each model so that a stopped run keeps what it measured."""
    import pandas as pd
    import torch

    from curriculum.models import resolve_model

    torch.set_num_threads(args.threads)
    problems = pd.read_parquet(HELDOUT)["problem"].head(args.problems).tolist()
    meta = {"command": f"python benchmarks/{name}.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
            "versions": versions(), "threads": args.threads, "load_average": os.getloadavg()[0],
            "problems": args.problems, "k": args.k, "max_tokens": args.max_tokens, "repeats": args.repeats}
    models = {f"trained: {args.trained}": args.trained} if args.trained else {}
    models[f"{MODEL} (untrained)"] = resolve_model(MODEL)
    document = {"meta": meta, "models": {}}
    for label, path in models.items():
        print(f"[{name}] {label}", flush=True)
        document["models"][label] = measure(path, problems, args)
        write_report(document, Path(args.out))
    print(Path(args.out).with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
