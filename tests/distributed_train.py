"""A few curriculum GRPO steps on the tiny model, one process per rank (run by tests/test_distributed.py).

    accelerate launch --multi_gpu --num_processes 2 tests/distributed_train.py  (with use_cpu: gloo) --model M --out O --record R.json
        [--max-steps 4] [--resume O/checkpoint-3]

Every rank writes `R.rank<k>.json`: the ids its reward function saw at each generation (its part of the
chunk), the chunks its sampler handed to the trainer (`consume`), and its online difficulty at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tiny_model import Recorder  # this script runs from tests/ (sys.path[0])


def buckets_dataset():
    """16 sums with known pass rates in 4 quantile buckets (easiest first), in the columns `curriculum build` writes."""
    from datasets import Dataset

    rows = []
    for i in range(16):
        pass_rate = (1 + i % 7) / 8
        rows.append({"id": f"q{i:02d}", "prompt": [{"role": "user", "content": f"What is {i} + {i}?"}],
                     "answer": str(2 * i), "pass_rate": pass_rate, "n": 8, "k": 1 + i % 7})
    order = sorted(range(16), key=lambda i: (-rows[i]["pass_rate"], i))
    for position, i in enumerate(order):
        rows[i]["bucket"] = position * 4 // 16
    return Dataset.from_list(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--record", required=True)
    parser.add_argument("--max-steps", type=int, default=4)
    parser.add_argument("--resume")
    args = parser.parse_args(argv)

    from transformers import AutoTokenizer
    from trl import GRPOConfig

    from curriculum.training.trainer import CurriculumGRPOTrainer

    config = GRPOConfig(
        output_dir=args.out, use_cpu=True, report_to=[], bf16=False, seed=7,
        per_device_train_batch_size=4, num_generations=2, max_completion_length=3,
        max_steps=args.max_steps, save_steps=1, logging_steps=1, learning_rate=1e-3,
        temperature=1.0, disable_tqdm=True,
    )
    recorder = Recorder()
    tokenizer = AutoTokenizer.from_pretrained(args.model, padding_side="left")
    trainer = CurriculumGRPOTrainer(model=args.model, reward_funcs=[recorder], args=config,
                                    train_dataset=buckets_dataset(), processing_class=tokenizer)
    sampler = trainer.curriculum_sampler
    consumed: list[list[int]] = []
    consume = sampler.consume

    def recording_consume(problems):
        consumed.append([int(i) for i in problems])
        return consume(problems)

    sampler.consume = recording_consume
    trainer.train(resume_from_checkpoint=args.resume)

    rank = trainer.accelerator.process_index
    record = {
        "rank": rank,
        "world_size": trainer.accelerator.num_processes,
        "local_batches": recorder.batches,
        "chunks": [[trainer.train_dataset[i]["id"] for i in chunk] for chunk in consumed],
        "batch_size": sampler.batch_size,
        "num_generations": trainer.num_generations,
        "observations": sampler.difficulty.observations.tolist(),
        "successes": sampler.difficulty.successes.tolist(),
        "shift": sampler.difficulty.shift,
    }
    Path(f"{args.record}.rank{rank}.json").write_text(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
