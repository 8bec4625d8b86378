"""TRL's GRPOTrainer fed by the curriculum sampler, learning each problem's difficulty as it trains.

Three small overrides and nothing else:
- `_get_train_sampler` returns the `CurriculumSampler` (TRL's repeat structure, drawn by the schedule at
  the current optimizer step / max_steps);
- `_calculate_rewards` passes each GRPO group's outcome to the sampler's online difficulty (gathered over
  processes, so every rank draws the same next batch) and logs `curriculum/*` into TRL's metrics;
- `_save_checkpoint` / `_load_optimizer_and_scheduler` write and read `curriculum_state.json` in every
  checkpoint folder, so `train(resume_from_checkpoint=...)` draws the batches an uninterrupted run would.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import torch
from trl import GRPOTrainer

from curriculum.sampler import CurriculumSampler

logger = logging.getLogger(__name__)

STATE_FILE = "curriculum_state.json"
ACCURACY_REWARD = "accuracy"


class CurriculumGRPOTrainer(GRPOTrainer):
    """`GRPOTrainer` over a buckets dataset (columns `id`, `prompt`, `bucket`, `pass_rate`, ...).

    Args:
        schedule: name of a schedule in `curriculum.schedules` (uniform, linear, root-p, step, cosine,
            gaussian, exp, adaptive).
        schedule_options: keyword options of that schedule.
        online_difficulty: update each problem's pass-rate posterior from its training groups and let
            the sampler prefer problems likely to give a non-zero advantage.
        skip_solved: with online difficulty, stop drawing problems that training shows solved.
        Everything else goes to `trl.GRPOTrainer` unchanged.
    """

    def __init__(self, *args, schedule: str = "linear", schedule_options: dict | None = None,
                 online_difficulty: bool = True, skip_solved: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        dataset = self.train_dataset
        if dataset is None or not hasattr(dataset, "column_names"):
            raise ValueError("CurriculumGRPOTrainer needs a map-style buckets dataset as train_dataset")
        if "id" not in dataset.column_names:
            raise ValueError("the training dataset needs an `id` column (train on the output of `curriculum build`)")
        ids = dataset["id"]
        self._index_of = {ident: index for index, ident in enumerate(ids)}
        if len(self._index_of) != len(ids):
            raise ValueError("the training dataset's `id` column has duplicates")
        self.curriculum_sampler = CurriculumSampler.from_dataset(
            dataset,
            online_difficulty=online_difficulty,
            mini_repeat_count=self.num_generations,
            batch_size=self.args.generation_batch_size // self.num_generations,
            repeat_count=self.num_iterations * self.args.steps_per_generation,
            schedule=schedule,
            schedule_options=schedule_options,
            seed=self.args.seed,
            progress=self._progress,
            skip_solved=skip_solved,
        )

    def _progress(self) -> float:
        """Optimizer step / max_steps, read when a chunk is drawn."""
        max_steps = self.state.max_steps if self.state is not None else 0
        return self.state.global_step / max_steps if max_steps else 0.0

    def _get_train_sampler(self, dataset=None):
        # `dataset` may be a column-pruned copy of train_dataset (remove_unused_columns): same rows, same sampler
        if dataset is not None and len(dataset) != len(self.train_dataset):
            raise ValueError("the curriculum sampler is bound to the trainer's train_dataset")
        return self.curriculum_sampler

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if self.model.training:
            self._observe_groups(inputs, rewards_per_func)
        return rewards_per_func

    def _observe_groups(self, inputs, rewards_per_func: torch.Tensor) -> None:
        """Feed each group's passes to the sampler and log the curriculum metrics (all ranks alike)."""
        from accelerate.utils import gather_object

        sampler = self.curriculum_sampler
        group = self.num_generations
        buckets_now = sampler.current_buckets()  # the buckets these problems were drawn from
        ids = gather_object([example["id"] for example in inputs])  # rewards_per_func is gathered already
        rewards = rewards_per_func.detach().float().cpu().numpy()  # tiny: numpy is faster than torch here
        weights = self.reward_weights.detach().float().cpu().numpy()
        total = np.nansum(rewards * weights[None, :], axis=1).reshape(-1, group)
        if ACCURACY_REWARD in self.reward_func_names:
            outcome = rewards[:, self.reward_func_names.index(ACCURACY_REWARD)].reshape(-1, group)
            passed, scored = outcome > 0, ~np.isnan(outcome)
        else:
            passed, scored = total > 0, ~np.isnan(rewards).all(axis=1).reshape(-1, group)
        problems = np.array([self._index_of[ids[g * group]] for g in range(total.shape[0])])
        drawn = buckets_now[problems]
        useful = scored.any(axis=1)
        sampler.observe(problems[useful].tolist(), (passed & scored).sum(axis=1)[useful].tolist(),
                        scored.sum(axis=1)[useful].tolist())

        metrics = self._metrics["train"]
        info = sampler.describe()
        metrics["curriculum/progress"].append(info["progress"])
        for k, weight in enumerate(info["weights"]):
            metrics[f"curriculum/bucket_{k}_weight"].append(weight)
        for key in ("competence", "target"):
            if key in info:
                metrics[f"curriculum/{key}"].append(info[key])
        if sampler.difficulty is not None:
            metrics["curriculum/shift"].append(sampler.difficulty.shift)
        group_reward = total.mean(axis=1)
        for k in np.unique(drawn).tolist():
            metrics[f"curriculum/bucket_{k}_reward"].append(float(group_reward[drawn == k].mean()))
        spread = total.max(axis=1) - total.min(axis=1)
        metrics["curriculum/zero_adv_share"].append(float(np.mean(np.abs(spread) < 1e-6)))

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

            folder = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            path = os.path.join(folder, STATE_FILE)
            with open(path + ".tmp", "w") as handle:
                json.dump(self.curriculum_sampler.state_dict(), handle)
            os.replace(path + ".tmp", path)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        path = os.path.join(checkpoint, STATE_FILE)
        if not os.path.isfile(path):
            logger.warning("%s has no %s: the curriculum restarts from its first batch", checkpoint, STATE_FILE)
            return
        with open(path) as handle:
            self.curriculum_sampler.load_state_dict(json.load(handle))

