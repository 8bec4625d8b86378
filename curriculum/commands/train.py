"""`curriculum train`: GRPO on the curriculum over a buckets directory (thin: parse, call, print)."""

from __future__ import annotations

from pathlib import Path

import click

from curriculum.layout import CONFIG


@click.command(name="train")
@click.option("--buckets", type=click.Path(file_okay=False, path_type=Path),
              help="Buckets directory from `curriculum build` (default: the recipe's `buckets`).")
@click.option("--model", "model", help="Model to train: alias, local directory or hub id "
              "(default: the recipe's `model`, else the model the buckets were scored with).")
@click.option("--schedule", help="Curriculum schedule, e.g. linear, uniform, root_p, adaptive (default: linear).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Recipe YAML: a train section, a pipeline file (its `train:`), or a run's config.yaml.")
@click.option("--reward", help="Rewards and weights, e.g. accuracy:1,format:1,cosine:2.")
@click.option("--max-steps", type=int, help="Optimizer steps to train.")
@click.option("--num-generations", type=int, help="Completions per prompt (the GRPO group size).")
@click.option("--lora", help="LoRA instead of full training, e.g. r=16,alpha=32,dropout=0.05,targets=all-linear "
              "(`default` for exactly that).")
@click.option("--train-layers", help="Train only these decoder layers: all, first:K, last:K, middle:K or 10-15,20.")
@click.option("--train-embeddings/--freeze-embeddings", default=None,
              help="Train the input embeddings (default: only when all layers train).")
@click.option("--train-head/--freeze-head", default=None,
              help="Train the output head and final norm (default: only when all layers train).")
@click.option("--layer-schedule", help="Change the trained layers during training: rotate:K@S (LISA-like, K layers "
              "every S steps) or unfreeze:top-down@S (one more layer every S steps).")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Set any GRPOConfig field or train setting, e.g. --set learning_rate=2e-6 --set beta=0 (a "
                   "pipeline's spelling works too: --set train.grpo.learning_rate=2e-6). Values are YAML. Repeatable.")
@click.option("--allow-model-mismatch", is_flag=True, default=None,
              help="Train even though the buckets were scored with another model.")
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in --out (same curriculum state).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Run directory.")
def train(buckets, model, schedule, config_path, reward, max_steps, num_generations, lora, train_layers,
          train_embeddings, train_head, layer_schedule, assignments, allow_model_mismatch, resume, out):
    """Run TRL's GRPO trainer fed by a curriculum schedule over the buckets.

    Every GRPOConfig field is reachable from the recipe's `grpo:` mapping or with --set; the resolved recipe
    is saved to OUT/config.yaml, metrics to OUT/metrics.jsonl (and TensorBoard), checkpoints with their
    curriculum state to OUT/checkpoint-N. On a CPU, GRPO completions come from vLLM where it can run the
    model (`fast_generation: auto`; --set fast_generation=off for transformers' generate; where it cannot,
    one line says why), and training runs under bf16 autocast where the CPU does bf16 natively (AMX or
    AVX512-BF16; --set bf16=false for fp32). Multi-GPU: launch through accelerate, e.g.

        accelerate launch --config_file pipelines/accelerate/zero2.yaml --num_processes 4
        -m curriculum.cli train --config pipelines/open-rs-1.5b.yaml --buckets B --out O
    """
    from curriculum.commands.common import fail_on
    from curriculum.training.config import ConfigError, TrainSettings, apply_overrides, load_recipe
    from curriculum.training.layers import LayerSpecError
    from curriculum.training.lora import LoraSpecError
    from curriculum.training.run import TrainSetupError, load_buckets, prepare

    with fail_on(ConfigError, LayerSpecError, LoraSpecError, TrainSetupError):
        settings, extras = TrainSettings(), {}
        if config_path is None and resume and (out / CONFIG).is_file():
            config_path = out / CONFIG
        if config_path is not None:
            settings, extras = load_recipe(config_path)
        cli_values = {
            "schedule": schedule, "reward": reward, "lora": lora, "train_layers": train_layers,
            "train_embeddings": train_embeddings, "train_head": train_head, "layer_schedule": layer_schedule,
            "allow_model_mismatch": allow_model_mismatch, "max_steps": max_steps, "num_generations": num_generations,
        }
        overrides = [f"{key}={_yaml_scalar(value)}" for key, value in cli_values.items() if value is not None]
        settings = apply_overrides(settings, overrides + list(assignments))

        buckets = buckets or extras.get("buckets")
        if buckets is None:
            raise click.UsageError("--buckets is required (or a recipe with a top-level `buckets`)")
        if model is None:
            model = extras.get("model") or load_buckets(buckets)[1].get("model")
        if model is None:
            raise click.UsageError("--model is required: the buckets' manifest.json names no scoring model")
        run = prepare(buckets, str(model), out, settings, resume=resume)

    for note in run.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"training {model} on {buckets} with schedule {settings.schedule}"
               f"{' (resuming ' + run.resume_from + ')' if run.resume_from else ''} -> {out}", err=True)
    result = run.run()
    loss = f"{result.train_loss:.4g}" if result.train_loss is not None else "n/a"
    click.echo(f"done: {result.global_step} steps, train loss {loss}; model in {result.model_dir}, "
               f"metrics in {result.metrics_path}, last checkpoint {result.last_checkpoint}")
    click.echo(f"summary: {result.summary()}")


def _yaml_scalar(value) -> str:
    """Render a CLI value so that apply_overrides' YAML parsing gives it back unchanged."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    return "'" + text.replace("'", "''") + "'"
