"""TRL's GRPOTrainer fed by the curriculum sampler, learning each problem's difficulty as it trains.

Small overrides and nothing else:
- `_get_train_sampler` returns the `CurriculumSampler` (TRL's repeat structure; chunk c of the run is drawn
  at schedule progress c / total chunks of the run, whenever the dataloader reads it);
- `_calculate_rewards` hands each generation's chunk back to the sampler (`consume`), with every GRPO
  group's verdict-based passes for the online difficulty (gathered over processes, so every rank draws the
  same next chunk), and logs `curriculum/*` into TRL's metrics;
- `_save_checkpoint` / `_load_optimizer_and_scheduler` write and read `curriculum_state.json` in every
  checkpoint folder, so `train(resume_from_checkpoint=...)` draws the batches an uninterrupted run would;
- `compute_loss` leaves completions without signal out of the forward and backward pass where that keeps
  the gradient (`curriculum.training.zero_advantage`).

How stale are the estimates a chunk is drawn with? accelerate's dataloader reads one batch ahead and the
Trainer reads an optimizer step's micro-batches at once, so a chunk is drawn one read ahead of its use:

    steps_per_generation = gradient_accumulation_steps (TRL's default; chunk k trains at step k):
    step k-1 starts ─► gets chunk k-1 (drawn earlier), reads ahead: draws chunk k
                   ─► generates for chunk k-1, observes its groups, optimizer step
    step k   starts ─► gets chunk k, draws chunk k+1 ─► observes chunk k ─► ...
    => the chunk that trains at step k is drawn with the estimates as of the end of step k-2: one
       optimizer step (one chunk) older than the freshest possible.

With a generation that spans several optimizer steps (steps_per_generation > gradient_accumulation_steps)
the next chunk is read at the start of the generation's last optimizer step, after its groups were observed.
A checkpoint is only valid on a generation boundary (TRL does not save its buffered completions): the
trainer refuses a `save_steps` that would write one inside a generation, and refuses to resume from one.
"""

from __future__ import annotations

import json
import logging
import math
import os

import numpy as np
import torch
from trl import GRPOTrainer

from curriculum.contracts import atomic_write_text
from curriculum.sampler import CurriculumSampler
from curriculum.training import zero_advantage

logger = logging.getLogger(__name__)

STATE_FILE = "curriculum_state.json"
UNPARSEABLE_GOLD = "unparseable_gold"
_INDEXED_CPU_REGISTERED = False


class CurriculumGRPOTrainer(GRPOTrainer):
    """`GRPOTrainer` over a buckets dataset (columns `id`, `prompt`, `bucket`, `pass_rate`, `answer`, ...).

    A completion passes when the verifier says it is correct (`curriculum.verify.check_batch`, with the
    extraction rule, gold column and timeout of the configured `accuracy` or `cosine` reward, else "auto" on
    `answer`), whatever the reward spec: a well-formatted wrong answer is a failure even under
    `format:1,cosine:1`. Completions whose gold answer does not parse are not observed. The verdicts come
    from the verifier's cache when a reward already checked them.

    Args:
        schedule: name of a schedule in `curriculum.schedules` (uniform, linear, root-p, step, cosine,
            gaussian, exp, adaptive).
        schedule_options: keyword options of that schedule.
        online_difficulty: update each problem's pass-rate posterior from its training groups and let
            the sampler prefer problems likely to give a non-zero advantage.
        skip_solved: with online difficulty, stop drawing problems that training shows solved.
        skip_zero_advantage: leave completions whose advantage is 0 out of the forward and backward pass, where
            their gradient is exactly 0 (`curriculum.training.zero_advantage`; otherwise a note says why not).
        Everything else goes to `trl.GRPOTrainer` unchanged.
    """

    def __init__(self, *args, schedule: str = "linear", schedule_options: dict | None = None,
                 online_difficulty: bool = True, skip_solved: bool = False, skip_zero_advantage: bool = True,
                 **kwargs):
        super().__init__(*args, **kwargs)
        launched = int(os.environ.get("WORLD_SIZE", "1"))
        if launched > 1 and self.accelerator.num_processes != launched:
            raise RuntimeError(
                f"this process is one of {launched} (WORLD_SIZE) but accelerate runs it alone "
                f"({self.accelerator.distributed_type}): each process would train its own copy into the same output "
                "directory. Without a GPU, several processes need accelerate's CPU backend (gloo): set use_cpu "
                "(--set use_cpu=true) or the environment variable ACCELERATE_USE_CPU=true")
        dataset = self.train_dataset
        if dataset is None or not hasattr(dataset, "column_names"):
            raise ValueError("CurriculumGRPOTrainer needs a map-style buckets dataset as train_dataset")
        if "id" not in dataset.column_names:
            raise ValueError("the training dataset needs an `id` column (train on the output of `curriculum build`)")
        ids = dataset["id"]
        self._index_of = {ident: index for index, ident in enumerate(ids)}
        if len(self._index_of) != len(ids):
            raise ValueError("the training dataset's `id` column has duplicates")
        # micro-batches (per process) one generation serves: TRL generates once per chunk
        self._chunk_micro_batches = self.num_iterations * self.args.steps_per_generation
        self.curriculum_sampler = CurriculumSampler.from_dataset(
            dataset,
            online_difficulty=online_difficulty,
            mini_repeat_count=self.num_generations,
            batch_size=self.args.generation_batch_size // self.num_generations,
            repeat_count=self._chunk_micro_batches,
            schedule=schedule,
            schedule_options=schedule_options,
            seed=self.args.seed,
            skip_solved=skip_solved,
        )
        max_steps = self._planned_max_steps()
        self.curriculum_sampler.total_chunks = math.ceil(self._micro_batches_after(max_steps) / self._chunk_micro_batches)
        self._check_save_steps(max_steps)
        self._verify = self._verifier_settings()
        self._observes = online_difficulty or self.curriculum_sampler.schedule.name == "adaptive"
        self.skips_zero_advantage = skip_zero_advantage and zero_advantage.why_not_exact(self) is None
        if self._observes and self._verify["answer_key"] not in dataset.column_names:
            raise ValueError(f"online difficulty and the adaptive schedule verify completions against the gold "
                             f"answer column {self._verify['answer_key']!r}, which the training dataset lacks")

    # The step plan: how the Trainer walks the dataloader (`Trainer.set_initial_training_values`).

    def _micro_batches_per_epoch(self) -> int:
        """Dataloader batches per process in one pass: every chunk serves one generation's micro-batches."""
        return self.curriculum_sampler.chunks_per_pass * self._chunk_micro_batches

    def _steps_per_epoch(self) -> int:
        return math.ceil(self._micro_batches_per_epoch() / self.args.gradient_accumulation_steps)

    def _planned_max_steps(self) -> int:
        if self.args.max_steps > 0:
            return int(self.args.max_steps)
        return math.ceil(self.args.num_train_epochs * self._steps_per_epoch())

    def _micro_batches_after(self, steps: int) -> int:
        """Micro-batches the Trainer has consumed after `steps` optimizer steps (an epoch may end on a short step)."""
        per_epoch = self._steps_per_epoch()
        return (steps // per_epoch) * self._micro_batches_per_epoch() + (steps % per_epoch) * \
            self.args.gradient_accumulation_steps

    def _inside_generation(self, steps: int) -> bool:
        return self._micro_batches_after(steps) % self._chunk_micro_batches != 0

    def _check_save_steps(self, max_steps: int) -> None:
        """Refuse checkpoints inside a generation: TRL does not save the buffered completions, so a run resumed
        there would generate the rest of the generation anew and the sampler would count its groups twice."""
        args = self.args
        if args.save_strategy != "steps" or not args.save_steps:
            return
        every = math.ceil(max_steps * args.save_steps) if args.save_steps < 1 else int(args.save_steps)
        bad = [step for step in range(every, max_steps, every) if self._inside_generation(step)]
        if bad:
            safe = next(unit for unit in range(1, max_steps + 1)
                        if not any(self._inside_generation(s) for s in range(unit, max_steps, unit)))
            raise ValueError(
                f"save_steps={args.save_steps} would write checkpoint-{bad[0]} inside a generation: one generation "
                f"serves steps_per_generation x num_iterations = {self._chunk_micro_batches} micro-batches and an "
                f"optimizer step takes gradient_accumulation_steps = {args.gradient_accumulation_steps}; TRL does not "
                f"checkpoint its buffered completions, so a run resumed there would not continue this one. Use a "
                f"save_steps that is a multiple of {safe} (e.g. {safe}, {2 * safe}, {4 * safe}).")
        if self._inside_generation(max_steps):
            logger.warning("max_steps=%d ends inside a generation: training stops before using all of its "
                           "completions, and the final checkpoint cannot be resumed", max_steps)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        keep = zero_advantage.with_signal(inputs) if self.skips_zero_advantage and model.training else None
        if keep is not None:
            skipped = self._metrics["train"]["curriculum/completions_skipped"]  # share of the micro-batch left out
            if not keep.any():
                skipped.append(1.0)
                return zero_advantage.zero_gradient_loss(model)
            if not keep.all() and zero_advantage.can_drop_rows(inputs, self.loss_type):
                skipped.append(1.0 - float(keep.float().mean()))
                inputs = zero_advantage.rows_with_signal(inputs, keep)
            else:
                skipped.append(0.0)
        return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)

    def _verifier_settings(self) -> dict:
        """The verification the correctness rewards use (the first `accuracy`/`cosine`), else the defaults."""
        from curriculum.verify import DEFAULT_TIMEOUT_S

        for func in self.reward_funcs:
            if hasattr(func, "extraction") and hasattr(func, "answer_key"):
                return {"extraction": func.extraction, "answer_key": func.answer_key,
                        "timeout_s": getattr(func, "timeout_s", DEFAULT_TIMEOUT_S),
                        "workers": getattr(func, "workers", None)}
        return {"extraction": "auto", "answer_key": "answer", "timeout_s": DEFAULT_TIMEOUT_S, "workers": None}

    def _get_train_sampler(self, dataset=None):
        # `dataset` may be a column-pruned copy of train_dataset (remove_unused_columns): same rows, same sampler
        if dataset is not None and len(dataset) != len(self.train_dataset):
            raise ValueError("the curriculum sampler is bound to the trainer's train_dataset")
        return self.curriculum_sampler

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if self.model.training:
            self._observe_groups(inputs, completions, rewards_per_func)
        return rewards_per_func

    def _outcomes(self, inputs, completions) -> list[tuple[bool, bool]]:
        """(passed, verified) per local completion, from the verifier's verdict; (False, False) if unused."""
        if not self._observes:
            return [(False, False)] * len(inputs)
        from curriculum.rewards import completion_text
        from curriculum.verify import check_batch

        extraction = self._verify["extraction"]
        if isinstance(extraction, str):
            rules: str | list[str] = extraction
        else:  # per source, as the rewards read it: {"gsm8k": "last_number", "default": "auto"}
            rules = [extraction.get(example.get("source"), extraction.get("default", "auto")) for example in inputs]
        golds = [example.get(self._verify["answer_key"]) for example in inputs]
        verdicts = check_batch([completion_text(c) for c in completions], golds, extraction=rules,
                               timeout_s=self._verify["timeout_s"], workers=self._verify["workers"])
        return [(verdict.correct, verdict.status != UNPARSEABLE_GOLD) for verdict in verdicts]

    def _observe_groups(self, inputs, completions, rewards_per_func: torch.Tensor) -> None:
        """Mark the generation's chunk consumed, feed its groups' passes to the sampler, log `curriculum/*`."""
        from accelerate.utils import gather_object

        sampler = self.curriculum_sampler
        group = self.num_generations
        local = [(example["id"], passed, verified)
                 for example, (passed, verified) in zip(inputs, self._outcomes(inputs, completions), strict=True)]
        rows = gather_object(local)  # the whole chunk, in the sampler's order (rewards_per_func is gathered too)
        problems = [self._index_of[ident] for ident, _, _ in rows[::group]]
        chunk = sampler.consume(problems)
        passed = np.array([p and v for _, p, v in rows], dtype=bool).reshape(-1, group)
        verified = np.array([v for _, _, v in rows], dtype=bool).reshape(-1, group)
        if self._observes:
            sampler.observe(problems, passed.sum(axis=1).tolist(), verified.sum(axis=1).tolist())

        rewards = rewards_per_func.detach().float().cpu().numpy()  # tiny: numpy is faster than torch here
        weights = self.reward_weights.detach().float().cpu().numpy()
        total = np.nansum(rewards * weights[None, :], axis=1).reshape(-1, group)
        metrics = self._metrics["train"]
        metrics["curriculum/progress"].append(chunk.progress)
        for k, weight in enumerate(chunk.weights):
            metrics[f"curriculum/bucket_{k}_weight"].append(weight)
        for key, value in sampler.schedule.describe(chunk.progress).items():
            metrics[f"curriculum/{key}"].append(value)
        if sampler.difficulty is not None:
            metrics["curriculum/shift"].append(sampler.difficulty.shift)
        if self._observes:
            metrics["curriculum/verified_pass_rate"].append(float(passed.sum() / max(verified.sum(), 1)))
        drawn = np.asarray(chunk.buckets)  # the buckets these problems were drawn from, not where they are now
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
            atomic_write_text(path, json.dumps(self.curriculum_sampler.state_dict()))

    def _load_optimizer_and_scheduler(self, checkpoint):
        if checkpoint is not None and self.args.world_size > 1 and self.args.device.type == "cpu":
            _allow_indexed_cpu_location()
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        step = self.state.global_step
        if self._inside_generation(step):
            raise ValueError(
                f"{checkpoint} was written at step {step}, inside a generation (steps_per_generation x "
                f"num_iterations = {self._chunk_micro_batches} micro-batches, gradient_accumulation_steps = "
                f"{self.args.gradient_accumulation_steps}): TRL did not save the buffered completions, so this run "
                "cannot continue it exactly; resume from an earlier checkpoint on a generation boundary")
        expected = self._micro_batches_after(step) // self._chunk_micro_batches
        path = os.path.join(checkpoint, STATE_FILE)
        if not os.path.isfile(path):
            logger.warning("%s has no %s: the curriculum restarts from its first batch", checkpoint, STATE_FILE)
            if not self.args.ignore_data_skip:  # the Trainer skips the epoch's used batches: draws never seen
                in_epoch = self._micro_batches_after(step) % self._micro_batches_per_epoch()
                self.curriculum_sampler.skip_unseen(in_epoch // self._chunk_micro_batches)
            return
        with open(path) as handle:
            state = json.load(handle)
        if state.get("chunks_consumed", expected) != expected:
            raise ValueError(f"{checkpoint}/{STATE_FILE} records {state['chunks_consumed']} chunks used, but step "
                             f"{step} of this configuration means {expected}: was it written by another setup?")
        self.curriculum_sampler.load_state_dict(state)
        if self.args.ignore_data_skip:  # the Trainer starts its epoch over instead of skipping the used batches
            self.curriculum_sampler.start_new_pass()


def _indexed_cpu(storage, location: str):
    return storage if location.startswith("cpu:") else None


def _allow_indexed_cpu_location() -> None:
    """Let `torch.load(map_location="cpu:0")` work. Several CPU processes (gloo) run on `cpu:<rank>` (accelerate),
    and the Trainer loads the optimizer state of a multi-process resume onto `args.device`, a location torch
    has no restorer for; registered once, through torch's own extension point."""
    global _INDEXED_CPU_REGISTERED
    if not _INDEXED_CPU_REGISTERED:
        torch.serialization.register_package(11, lambda storage: None, _indexed_cpu)
        _INDEXED_CPU_REGISTERED = True
