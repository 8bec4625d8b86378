"""Train with the curriculum from a plain TRL script: a buckets dataset, TRL's GRPOConfig, our trainer.

    python examples/train_with_trl.py --buckets runs/demo-cpu/buckets --model smollm2-135m --out runs/mine

The buckets come from `curriculum build` (columns id, prompt, answer, bucket, pass_rate, n, k). Everything
else is TRL: any GRPOConfig field can be set here as in any TRL script.
"""

import argparse

import torch
from trl import GRPOConfig

from curriculum import CurriculumGRPOTrainer, get_reward, load_buckets, resolve_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--buckets", required=True)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    dataset, _manifest = load_buckets(args.buckets)
    gpu = torch.cuda.is_available()
    config = GRPOConfig(
        output_dir=args.out, max_steps=args.steps, learning_rate=1e-5, per_device_train_batch_size=8,
        num_generations=4, max_completion_length=128, logging_steps=1, save_steps=args.steps, report_to=[],
        use_cpu=not gpu, bf16=gpu and torch.cuda.is_bf16_supported(),
    )
    trainer = CurriculumGRPOTrainer(
        model=resolve_model(args.model),  # an alias, a hub id or a local directory -> a local directory
        args=config,
        train_dataset=dataset,
        reward_funcs=[get_reward("accuracy")],  # answers checked against the dataset's `answer` column
        schedule="linear",  # easy buckets first, all buckets by 80% of training
        online_difficulty=True,  # learn each problem's pass rate from its own GRPO groups
    )
    trainer.train()
    trainer.save_model(args.out)


if __name__ == "__main__":
    main()
