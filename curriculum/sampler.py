"""The curriculum sampler TRL's GRPO trainer draws prompts from.

It keeps the structure of TRL's `RepeatSampler`: prompts come in chunks of `batch_size` distinct problems
(one generation batch), each problem repeated `mini_repeat_count` (= num_generations) times in a row, and
each chunk repeated `repeat_count` (= num_iterations × steps_per_generation) times; every process holds an
identical copy, so all ranks see the same order. What differs is which problems form a chunk: they are
drawn lazily, when the trainer asks for the chunk, without replacement, with probability

    P(i) ∝ q_i · w_b(i)(t) / n_b(i)

where w(t) is the schedule's bucket mixture at the current progress t and n_b the bucket's size. Without
online difficulty q_i = 1, so bucket k gets exactly w_k. With it, problems are re-bucketed by their current
estimate and q_i = max(I_i^sharpness, min_preference), I_i being the posterior chance that a group of G
completions disagrees (a non-zero advantage): problems the model now always or never solves fade out,
and with `skip_solved` those shown solved are not drawn at all.

When is a chunk drawn? When the dataloader first reads one of its indices. accelerate's dataloader reads
one batch ahead, and the Trainer reads all micro-batches of an optimizer step at once, so the chunk that
trains at optimizer step k+1 is usually drawn at the start of step k, before step k's groups are observed.
The schedule's progress is therefore a function of the chunk's number, t = c / total_chunks, never of the
moment it is drawn; the online estimates a chunk is drawn with are those of the chunks consumed before
(see `CurriculumGRPOTrainer` for how stale that is in the trainer).

    drawn:     c0 c1 . c2 . c3 . ...        (read-ahead: c_{k+1} is drawn while c_k is read)
    consumed:     c0   c1   c2   ...        (`consume`: the trainer generates for the chunk, observes it)
    pending:      [c1] [c2] [c3]             <- drawn, not consumed: part of a checkpoint's state

A pass over the sampler holds as many chunks as RepeatSampler would (one "epoch" to the trainer). The
chunks drawn in the current pass (pending ones included) and the count of consumed chunks are part of the
state, so after `load_state_dict` the trainer's own skipping of already-seen batches on resume replays the
pass exactly (a pass whose every chunk was consumed is over: the next one starts fresh), the pending chunk
is replayed as drawn, and the draws that follow continue from the saved random state: a resumed run sees
the same prompts as an uninterrupted one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from curriculum.contracts import band_index, edges_between
from curriculum.difficulty import OnlineDifficulty
from curriculum.schedules import Schedule, get_schedule

STATE_VERSION = 2


@dataclass(frozen=True)
class DrawnChunk:
    """One chunk as it was drawn: its number in the run, its problems and what the schedule saw then.

    `buckets` holds each problem's bucket at draw time (online difficulty re-buckets problems later, so
    per-bucket metrics read this, not `current_buckets()`); `weights` is the bucket mixture it was drawn from.
    """

    number: int
    problems: list[int]
    buckets: list[int]
    progress: float
    weights: list[float]


class CurriculumSampler:
    """Indices into the buckets dataset, in TRL's repeat structure, drawn by a curriculum schedule.

    Args:
        buckets: bucket of each problem (0 = easiest), as written by `curriculum build`.
        pass_rates: scored pass rate of each problem.
        mini_repeat_count: how many times each index repeats in a row (TRL: num_generations).
        batch_size: distinct problems per chunk (TRL: generation_batch_size // num_generations).
        repeat_count: how many times each chunk repeats (TRL: num_iterations × steps_per_generation).
        schedule: a `Schedule` or a registered name (see `curriculum.schedules`).
        schedule_options: options for a schedule given by name.
        seed: seed of the sampler's own random generator (the same on every process).
        total_chunks: chunks the whole run will consume; chunk c is drawn at progress t = c / total_chunks
            (0 if not given), whenever the dataloader happens to read it.
        progress: instead of that, a callable read when a chunk is drawn (simulations without read-ahead).
        difficulty: online per-problem posteriors; None samples from the scored buckets as they are.
        skip_solved: with online difficulty, stop drawing problems that training shows solved.
        solved_threshold: "solved": the posterior chance that a whole group passes is at least this. With
            discounted evidence the chance stays below 1 (after many all-pass groups, Beta(17, 1) with the
            default decay gives 0.68 for G = 8), so "more likely than not" is the practical bar.
        sharpness: exponent on a problem's chance of a useful group in its weight q; higher values
            concentrate the draws on problems near a 50% pass rate.
        min_preference: floor of q, so that no problem is starved on a possibly stale estimate.
    """

    def __init__(self, buckets: Sequence[int], pass_rates: Sequence[float], *, mini_repeat_count: int,
                 batch_size: int = 1, repeat_count: int = 1, schedule: Schedule | str = "linear",
                 schedule_options: dict | None = None, seed: int = 0,
                 progress: Callable[[], float] | None = None, total_chunks: int | None = None,
                 difficulty: OnlineDifficulty | None = None, skip_solved: bool = False,
                 solved_threshold: float = 0.5, min_preference: float = 0.02, sharpness: float = 8.0):
        self.buckets = np.asarray(buckets, dtype=np.int64)
        self.pass_rates = np.asarray(pass_rates, dtype=float)
        if self.buckets.ndim != 1 or len(self.buckets) != len(self.pass_rates) or len(self.buckets) == 0:
            raise ValueError("buckets and pass_rates must be non-empty lists of the same length")
        if (self.buckets < 0).any():
            raise ValueError("bucket numbers must be >= 0")
        if min(mini_repeat_count, batch_size, repeat_count) < 1:
            raise ValueError("mini_repeat_count, batch_size and repeat_count must be >= 1")
        if batch_size > len(self.buckets):
            raise ValueError(f"a chunk needs {batch_size} distinct problems but the dataset has {len(self.buckets)}")
        if difficulty is not None and len(difficulty) != len(self.buckets):
            raise ValueError("online difficulty must cover exactly the dataset's problems")
        if skip_solved and difficulty is None:
            raise ValueError("skip_solved needs online difficulty estimates")
        self.num_buckets = int(self.buckets.max()) + 1
        self.mini_repeat_count = mini_repeat_count
        self.batch_size = batch_size
        self.repeat_count = repeat_count
        self.schedule = schedule if isinstance(schedule, Schedule) else get_schedule(
            schedule, **(schedule_options or {}))
        self.seed = seed
        self.difficulty = difficulty
        self.skip_solved = skip_solved
        self.solved_threshold = solved_threshold
        self.min_preference = min_preference
        self.sharpness = sharpness
        self.chunks_per_pass = len(self.buckets) // batch_size
        self.total_chunks = total_chunks
        self._progress = progress
        # Edges on the scale of the estimates; a problem moves by the edges its estimate has crossed since
        # the start, so the buckets are exactly the built ones until there is evidence (ties included).
        # Pass rates that do not order the buckets (ratings: every pass rate unknown, 0.5) give no edges to
        # move across: those problems keep their built bucket.
        initial = self.current_pass_rates()
        edges = np.asarray(edges_between(initial, self.buckets, self.num_buckets))
        ordered = len(edges) == self.num_buckets - 1 and bool(np.all(np.diff(edges) < 0))
        self._edges = edges if ordered else np.array([])
        self._initial_position = band_index(initial, self._edges)
        self._rng = np.random.default_rng(seed)
        self._pass: list[list[int]] = []  # chunks drawn in the current pass
        self._replay = False  # set by load_state_dict: the next pass first replays self._pass
        self._pending: deque[DrawnChunk] = deque()  # drawn, not yet consumed (the dataloader's read-ahead)
        self.chunks_drawn = 0
        self.chunks_consumed = 0
        self._unseen = 0  # see skip_unseen

    @classmethod
    def from_dataset(cls, dataset, *, online_difficulty: bool = True, prior_strength: float = 16.0,
                     decay: float = 0.5, drift_rate: float = 0.3, **kwargs) -> CurriculumSampler:
        """Build from a buckets dataset (columns `bucket`, `pass_rate`, and `n` if present)."""
        missing = {"bucket", "pass_rate"} - set(dataset.column_names)
        if missing:
            raise ValueError(f"the training dataset lacks the column(s) {sorted(missing)}: "
                             "train on the output of `curriculum build`")
        pass_rates = dataset["pass_rate"]
        difficulty = None
        if online_difficulty:
            trials = dataset["n"] if "n" in dataset.column_names else None
            difficulty = OnlineDifficulty(pass_rates, trials, prior_strength=prior_strength, decay=decay,
                                          drift_rate=drift_rate)
        return cls(dataset["bucket"], pass_rates, difficulty=difficulty, **kwargs)

    def __len__(self) -> int:
        return self.chunks_per_pass * self.batch_size * self.mini_repeat_count * self.repeat_count

    def __iter__(self) -> Iterator[int]:
        replay = self._pass if self._replay else []
        self._replay = False
        self._pass = []
        for position in range(self.chunks_per_pass):
            chunk = replay[position] if position < len(replay) else self._draw_chunk()
            self._pass.append(chunk)
            for _ in range(self.repeat_count):
                for index in chunk:
                    for _ in range(self.mini_repeat_count):
                        yield index

    # What the schedule sees.

    def progress(self) -> float:
        """Progress t of the next chunk to draw: its number / total_chunks, clipped to [0, 1]."""
        if self._progress is not None:
            return float(min(1.0, max(0.0, self._progress())))
        return min(1.0, self.chunks_drawn / self.total_chunks) if self.total_chunks else 0.0

    def current_pass_rates(self) -> np.ndarray:
        return self.difficulty.mean() if self.difficulty is not None else self.pass_rates

    def current_buckets(self) -> np.ndarray:
        """Static buckets, or with online difficulty the bucket each estimate falls in now (same edges)."""
        if self.difficulty is None:
            return self.buckets
        moved = band_index(self.difficulty.mean(), self._edges) - self._initial_position
        return np.clip(self.buckets + moved, 0, self.num_buckets - 1)

    def preference(self) -> np.ndarray:
        """Within-bucket weight of each problem: 1, or its chance of a non-zero advantage (0 = skipped)."""
        if self.difficulty is None:
            return np.ones(len(self.buckets))
        group = self.mini_repeat_count
        preference = np.maximum(self.difficulty.informativeness(group) ** self.sharpness, self.min_preference)
        if self.skip_solved:
            solved = self.difficulty.all_pass_probability(group) >= self.solved_threshold
            if not solved.all():
                preference = np.where(solved, 0.0, preference)
        return preference

    def probabilities(self, t: float | None = None) -> np.ndarray:
        """P(problem i is drawn next) under the schedule at progress t (default: now)."""
        t = self.progress() if t is None else t
        probabilities = self.schedule.probabilities(t, self.current_buckets(), self.num_buckets,
                                                    self.current_pass_rates(), self.preference())
        if not probabilities.sum() > 0:  # nothing eligible (e.g. min_preference=0 and all groups certain)
            return np.full(len(self.buckets), 1.0 / len(self.buckets))
        return probabilities

    def describe(self) -> dict[str, Any]:
        """Progress, bucket mixture and sizes, and the schedule's competence or target: for logs."""
        t = self.progress()
        buckets = self.current_buckets()
        weights = np.bincount(buckets, weights=self.probabilities(t), minlength=self.num_buckets)
        info: dict[str, Any] = {
            "schedule": self.schedule.name,
            "progress": t,
            "weights": [float(w) for w in weights],
            "sizes": np.bincount(buckets, minlength=self.num_buckets).tolist(),
            "online": self.difficulty is not None,
            "chunks_drawn": self.chunks_drawn,
        }
        info.update(self.schedule.describe(t))
        if self.difficulty is not None:
            info["observed_problems"] = int((self.difficulty.observations > 0).sum())
            if self.skip_solved:
                info["skipped"] = int((self.preference() == 0).sum())
        return info

    # Learning from training.

    def consume(self, problems: Sequence[int]) -> DrawnChunk:
        """The trainer starts using the oldest pending chunk (it generates for it): mark it consumed, return it.

        `problems` are the chunk's problems as the trainer got them, in order; a different chunk means the
        trainer and the sampler disagree on where the run is (e.g. a resume inside a generation), an error.
        """
        problems = [int(i) for i in problems]
        if not self._pending or self._pending[0].problems != problems:
            expected = self._pending[0].problems if self._pending else "no pending chunk"
            raise RuntimeError(f"the trainer used the chunk {problems} but the sampler's next chunk is "
                               f"{expected} (chunk {self.chunks_consumed}): the curriculum is out of step")
        self.chunks_consumed += 1
        return self._pending.popleft()

    def skip_unseen(self, count: int) -> None:
        """The next `count` chunks drawn are skipped by the trainer without being used (a resume without this
        sampler's state): they count as consumed as soon as they are drawn."""
        self._unseen = int(count)

    def start_new_pass(self) -> None:
        """Forget the replay and the pending chunks of a loaded state: the trainer restarts its epoch from the
        first batch without skipping (TrainingArguments.ignore_data_skip)."""
        self._replay = False
        self._pending.clear()
        self.chunks_consumed = self.chunks_drawn

    def observe(self, indices: Sequence[int], successes: Sequence[float], trials: Sequence[float]) -> None:
        """One entry per GRPO group: problem index, passes and group size (the same on every rank).

        Groups with 0 trials (nothing verifiable, e.g. an unparseable gold answer) are left out.
        """
        if not len(indices) == len(successes) == len(trials):
            raise ValueError("indices, successes and trials must have the same length")
        keep = [j for j, n in enumerate(trials) if n > 0]
        indices, successes, trials = ([x[j] for j in keep] for x in (indices, successes, trials))
        if len(indices) == 0:
            return
        if self.difficulty is not None:
            self.difficulty.update(indices, successes, trials)
        self.schedule.observe(float(np.sum(successes) / np.sum(trials)))

    # Drawing.

    def _draw_chunk(self) -> list[int]:
        """`batch_size` distinct problems, weighted sampling without replacement (Gumbel top-k)."""
        t = self.progress()
        probabilities = self.probabilities(t)
        with np.errstate(divide="ignore"):
            keys = np.log(probabilities) + self._rng.gumbel(size=len(probabilities))
        available = int((probabilities > 0).sum())
        take = min(self.batch_size, available)
        top = np.argpartition(-keys, take - 1)[:take]
        chosen = top[np.argsort(-keys[top], kind="stable")]
        chunk = [int(i) for i in chosen]
        if take < self.batch_size:  # fewer eligible problems than a chunk needs: repeat some
            extra = self._rng.choice(len(probabilities), self.batch_size - take, p=probabilities)
            chunk += [int(i) for i in extra]
        if self._unseen:
            self._unseen -= 1
            self.chunks_consumed += 1
        else:
            buckets = self.current_buckets()
            weights = np.bincount(buckets, weights=probabilities, minlength=self.num_buckets)
            self._pending.append(DrawnChunk(self.chunks_drawn, chunk, buckets[chunk].tolist(), t,
                                            [float(w) for w in weights]))
        self.chunks_drawn += 1
        return chunk

    # Checkpointing.

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the identical sequence: JSON-serializable."""
        return {
            "version": STATE_VERSION,
            "seed": self.seed,
            "num_problems": len(self.buckets),
            "chunk": [self.batch_size, self.mini_repeat_count, self.repeat_count],
            "rng": self._rng.bit_generator.state,
            "pass": self._pass,
            "chunks_drawn": self.chunks_drawn,
            "chunks_consumed": self.chunks_consumed,
            "pending": [asdict(chunk) for chunk in self._pending],
            "schedule": {"name": self.schedule.name, **self.schedule.state_dict()},
            "difficulty": self.difficulty.state_dict() if self.difficulty is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported curriculum sampler state version {state.get('version')} (this version "
                             f"reads {STATE_VERSION}; version 1 did not record which chunks were consumed, so its "
                             "resume was not exact): resume with the version that wrote it, or start over")
        if state["num_problems"] != len(self.buckets):
            raise ValueError(f"sampler state is for {state['num_problems']} problems, "
                             f"this dataset has {len(self.buckets)}")
        if list(state["chunk"]) != [self.batch_size, self.mini_repeat_count, self.repeat_count]:
            raise ValueError(f"sampler state was saved with (batch_size, num_generations, repeats) = "
                             f"{tuple(state['chunk'])}, now {(self.batch_size, self.mini_repeat_count, self.repeat_count)}")
        if state["schedule"]["name"] != self.schedule.name:
            raise ValueError(f"sampler state was saved with schedule {state['schedule']['name']!r}, "
                             f"now {self.schedule.name!r}")
        if (state["difficulty"] is None) != (self.difficulty is None):
            raise ValueError("sampler state and sampler disagree on online difficulty")
        pending = [DrawnChunk(**chunk) for chunk in state["pending"]]
        drawn, consumed = int(state["chunks_drawn"]), int(state["chunks_consumed"])
        if drawn - consumed != len(pending):
            raise ValueError(f"inconsistent sampler state: {drawn} chunks drawn, {consumed} consumed, "
                             f"{len(pending)} pending")
        self._rng.bit_generator.state = state["rng"]
        self._pass = [list(map(int, chunk)) for chunk in state["pass"]]
        self._pending = deque(pending)
        self.chunks_drawn, self.chunks_consumed = drawn, consumed
        # The pass continues (the trainer resumes inside its epoch and skips the consumed chunks, so the
        # iterator replays them) unless every chunk of it was consumed: then the trainer starts a new epoch.
        consumed_in_pass = consumed - (drawn - len(self._pass))
        self._replay = len(self._pass) > 0 and consumed_in_pass < self.chunks_per_pass
        self.schedule.load_state_dict(state["schedule"])
        if self.difficulty is not None:
            self.difficulty.load_state_dict(state["difficulty"])
