"""Measure model resolution: first build of the smollm2-135m alias vs a cached resolve, and load time.

Usage: python benchmarks/bench_models.py [--rebuild]  -> reports/bench_models.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rebuild", action="store_true", help="also time a fresh build of the alias")
    parser.add_argument("--out", default="reports/bench_models.json")
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from curriculum.models import resolve_model

    results = {}
    if args.rebuild:
        start = time.perf_counter()
        resolve_model("smollm2-135m", refresh=True)
        results["alias_build_s"] = time.perf_counter() - start
    start = time.perf_counter()
    path = resolve_model("smollm2-135m")
    results["cached_resolve_s"] = time.perf_counter() - start
    loads = []
    for _ in range(3):
        start = time.perf_counter()
        AutoModelForCausalLM.from_pretrained(path)
        AutoTokenizer.from_pretrained(path)
        loads.append(time.perf_counter() - start)
    results |= {"load_s_first": loads[0], "load_s_median": statistics.median(loads), "model_dir": path}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
