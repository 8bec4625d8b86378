"""Completions without signal cost no forward or backward pass.

A GRPO group whose completions all got the same reward has advantage 0 for every completion. Every TRL
policy loss multiplies by the advantage, so such a completion adds exactly zero to the gradient, yet TRL still
runs the model over it, forward and backward: with 30-50% of groups without signal, a third or more of a CPU
training step goes to adding zeros.

Where the rest of the loss is zero for them too (no KL term, no entropy bonus, no router loss), they are left out:
- **completions** (rows of a micro-batch) without signal are dropped before the forward pass, and the
  micro-batch's right padding is cut to its longest remaining completion, where the loss's normalizer does
  not depend on the micro-batch (`dapo`, TRL's default, `cispo`, `vespo`: the active tokens of the whole
  generation batch). The gradient is the same sum without its zero terms: equal in exact arithmetic, equal to
  float rounding in practice (smaller matrices add in another order);
- a **micro-batch** whose every completion lacks signal gets, for every loss type, a loss that only gives each
  trainable parameter a zero gradient. That is bitwise what the full pass gives, and keeps a step without any
  signal an optimizer step over zero gradients (AdamW still decays its moments), not a step without gradients.

TRL's per-token metrics (entropy, clip ratios) are then averaged over the completions that ran.
"""

from __future__ import annotations

import torch

# TRL 1.16 loss types whose per-token loss is a product with the advantage (grpo_trainer._compute_loss).
ADVANTAGE_WEIGHTED_LOSSES = frozenset({"grpo", "bnpo", "dr_grpo", "dapo", "luspo", "cispo", "sapo", "vespo"})
# ... and of those, the ones normalized by the generation batch's active tokens, not by the micro-batch's rows.
BATCH_NORMALIZED_LOSSES = frozenset({"dapo", "cispo", "vespo"})
# The keys of a text-only micro-batch; `num_items_in_batch` is a scalar and stays as it is.
ROW_KEYS = frozenset({"prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "advantages", "tool_mask",
                      "old_per_token_logps", "ref_per_token_logps", "sampling_per_token_logps",
                      "importance_sampling_ratio", "num_items_in_batch"})
PER_TOKEN_KEYS = ("completion_ids", "completion_mask", "tool_mask", "old_per_token_logps", "ref_per_token_logps",
                  "sampling_per_token_logps", "importance_sampling_ratio")


def why_not_exact(trainer) -> str | None:
    """Why leaving completions without signal out would change the gradient here, or None when it would not."""
    if trainer.beta != 0.0:
        return f"beta={trainer.beta} gives a completion without advantage a KL gradient"
    if getattr(trainer, "_entropy_bonus_enabled", False):
        return "the entropy bonus gives a completion without advantage a gradient"
    if getattr(trainer, "aux_loss_enabled", False):
        return "the router's auxiliary loss gives a completion without advantage a gradient"
    if trainer.loss_type not in ADVANTAGE_WEIGHTED_LOSSES:
        return f"loss_type={trainer.loss_type!r} is not known to be a product with the advantage"
    if trainer.args.use_liger_kernel:
        return "the Liger loss runs its own forward pass"
    if trainer.accelerator.num_processes > 1:
        return "with several processes every rank must run the model for the gradient all-reduce"
    return None


def with_signal(inputs: dict) -> torch.Tensor | None:
    """Which completions of this micro-batch have a non-zero advantage (None when it carries no advantages)."""
    advantages = inputs.get("advantages")
    if advantages is None or advantages.numel() == 0:
        return None
    return (advantages != 0).reshape(len(advantages), -1).any(dim=1)


def can_drop_rows(inputs: dict, loss_type: str) -> bool:
    """Dropping rows keeps the loss only where its normalizer is the generation batch's, for text-only inputs."""
    return loss_type in BATCH_NORMALIZED_LOSSES and set(inputs) <= ROW_KEYS


def rows_with_signal(inputs: dict, keep: torch.Tensor) -> dict:
    """The micro-batch without the rows `keep` leaves out, its completions cut after the last active token.

    Cutting right padding is exact: the model is causal, so the tokens before the cut see what they saw."""
    kept = {key: value[keep] if isinstance(value, torch.Tensor) and value.dim() > 0 else value
            for key, value in inputs.items()}
    active = kept["completion_mask"].any(dim=0).nonzero()
    length = int(active[-1]) + 1 if len(active) else 1
    width = kept["completion_ids"].size(1)
    for key in PER_TOKEN_KEYS:
        value = kept.get(key)
        if isinstance(value, torch.Tensor) and value.dim() == 2 and value.size(1) == width:
            kept[key] = value[:, :length]
    return kept


def zero_gradient_loss(model: torch.nn.Module) -> torch.Tensor:
    """A zero loss whose backward pass gives every trainable parameter an all-zero gradient, cheaply."""
    first_entries = [parameter.reshape(-1)[0] for parameter in model.parameters() if parameter.requires_grad]
    return torch.stack(first_entries).sum() * 0.0
