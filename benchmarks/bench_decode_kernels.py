"""The two kernels of a CPU decoding step: grouped-query attention under a padding mask, and top-p.

A profile of the study's evaluation of the untrained SmolLM2 (py-spy, one thread, 32 problems x k = 4 rows)
put 43% of its time in attention and 33% in top-p sampling (a full sort of 49k logits per row and step,
then the draw). Measured here, in one invocation, on the same batch of the eval harness, interleaved:

- `previous (baseline)`: attention through torch's `enable_gqa`, top-p by a full sort (the engine before);
- `grouped attention`: query heads laid side by side per key/value head (`hf.grouped_query_attention`);
- `nucleus from candidates`: top-p among the 256 most likely tokens, the full sort only for rows whose
  nucleus reaches past them (`hf._outside_nucleus`);
- `both (shipped)`.

All four sample the same distribution (the tests check both kernels against transformers' own), but bf16
rounds differently in the two attentions, so rows diverge after a while and their lengths differ a little:
the report gives CPU time per sampled token beside the total. Writes reports/bench_decode_kernels.{json,md};
asserts nothing.

    python benchmarks/bench_decode_kernels.py --problems 32 --k 4 --threads 1 \
        --trained reports/curriculum-study/uniform-all/seed-0/checkpoint-60
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_decode import measure_each_model  # noqa: E402

BASELINE = "previous (baseline)"


def enable_gqa_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None,
                         **kwargs):
    """The engine's attention before: torch's SDPA with `enable_gqa` under the padding mask."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if attention_mask is None or getattr(module, "num_key_value_groups", 1) == 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)
    output = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, enable_gqa=True)
    return output.transpose(1, 2).contiguous(), None


def full_sort_nucleus(logits, top_p: float):
    """The engine's top-p before: sort the whole vocabulary of every row."""
    import torch

    ordered, order = torch.sort(logits, descending=False)
    below = ordered.softmax(dim=-1).cumsum(dim=-1) <= 1 - top_p
    below[..., -1] = False
    return below.scatter(-1, order, below)


def variants() -> dict:
    from curriculum.rollout import hf

    return {
        BASELINE: (enable_gqa_attention, full_sort_nucleus),
        "grouped attention": (hf.grouped_query_attention, full_sort_nucleus),
        "nucleus from candidates": (enable_gqa_attention, hf._outside_nucleus),
        "both (shipped)": (hf.grouped_query_attention, hf._outside_nucleus),
    }


def measure(model: str, problems: list[str], args) -> dict:
    """Every variant on the same batch, `--repeats` times interleaved; the median CPU and wall time of each."""
    from curriculum.prompts import DEFAULT_TEMPLATE
    from curriculum.rollout import Sampling, hf

    engine = hf.HFEngine(model, batch_size=len(problems) * args.k)
    prompts = [engine.encode(DEFAULT_TEMPLATE.messages(p)) for p in problems]
    sampling = Sampling(temperature=0.7, top_p=0.95, max_tokens=args.max_tokens, seed=0)
    shipped_nucleus, plan = hf._outside_nucleus, variants()
    results: dict[str, dict] = {name: {"wall_s": [], "cpu_s": []} for name in plan}
    try:
        for _ in range(args.repeats):
            for name, (attention, nucleus) in plan.items():
                hf._register_gqa_sdpa(attention)
                hf._outside_nucleus = nucleus
                began, began_cpu = time.perf_counter(), time.process_time()
                completions = [c for group in engine.generate_tokens(prompts, args.k, sampling) for c in group]
                results[name]["cpu_s"].append(time.process_time() - began_cpu)
                results[name]["wall_s"].append(time.perf_counter() - began)
                lengths = [c.num_tokens for c in completions]
                results[name].update(rows=len(lengths), mean_tokens=statistics.mean(lengths),
                                     truncated=sum(c.truncated for c in completions) / len(lengths))
    finally:
        hf._register_gqa_sdpa()
        hf._outside_nucleus = shipped_nucleus
    base = statistics.median(results[BASELINE]["cpu_s"])
    for row in results.values():
        row["median_wall_s"], row["median_cpu_s"] = statistics.median(row["wall_s"]), statistics.median(row["cpu_s"])
        row["speedup"] = base / row["median_cpu_s"]
        row["cpu_ms_per_token"] = 1000 * row["median_cpu_s"] / (row["rows"] * row["mean_tokens"])
    return {"dtype": str(engine.dtype).removeprefix("torch."), "variants": results}


def write_report(document: dict, stem: Path) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(document, indent=2) + "\n")
    meta = document["meta"]
    lines = [
        "# CPU decoding kernels: grouped-query attention and top-p",
        "",
        f"Produced by `{meta['command']}` on {meta['date']} ({meta['machine']}; {meta['versions']}), "
        f"{meta['threads']} thread(s). Load average at the start: {meta['load_average']:.2f} (the variants run "
        "interleaved in one invocation, so compare the ratios).",
        "",
        f"One batch of the study's evaluation harness: {meta['problems']} held-out problems x k = {meta['k']} = "
        f"{meta['problems'] * meta['k']} rows, temperature 0.7, top_p 0.95, up to {meta['max_tokens']} tokens, "
        f"seed 0, the engine's own loop; medians of {meta['repeats']} interleaved repeats. Speedup = the "
        "baseline's CPU time / the variant's (one thread: CPU time is the work done).",
        "",
        "| model (dtype) | variant | median CPU s | median wall s | speedup (CPU) | CPU ms / sampled token "
        "| speedup per token | mean tokens | truncated |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model, measured in document["models"].items():
        per_token = measured["variants"][BASELINE]["cpu_ms_per_token"]
        for name, r in measured["variants"].items():
            lines.append(f"| {model} ({measured['dtype']}) | {name} | {r['median_cpu_s']:.1f} | "
                         f"{r['median_wall_s']:.1f} | {r['speedup']:.2f}x | {r['cpu_ms_per_token']:.2f} | "
                         f"{per_token / r['cpu_ms_per_token']:.2f}x | {r['mean_tokens']:.1f} | "
                         f"{100 * r['truncated']:.0f}% |")
    lines += ["", *document.get("discussion", [])]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=32)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--trained", default=None, help="a trained checkpoint to measure beside the base model")
    parser.add_argument("--out", default=str(REPO / "reports/bench_decode_kernels"))
    args = parser.parse_args(argv)

    measure_each_model("bench_decode_kernels", args, argv, measure, write_report)


if __name__ == "__main__":
    main()
