"""The curriculum sampler: TRL's repeat structure, determinism by seed, exact continuation after a state
round trip (through JSON, as in a checkpoint), the schedule's mixture, and online difficulty at work."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curriculum.difficulty import OnlineDifficulty
from curriculum.sampler import CurriculumSampler
from curriculum.schedules import SCHEDULES, schedule_names


def pool(count: int = 40, buckets: int = 4, seed: int = 0):
    """Pass rates spread over (0, 1) and quantile buckets, easiest first."""
    rates = np.random.default_rng(seed).uniform(0.05, 0.95, count)
    order = np.argsort(-rates, kind="stable")
    assigned = np.empty(count, dtype=np.int64)
    assigned[order] = np.arange(count) * buckets // count
    return assigned, rates


def sampler(schedule="linear", *, online=False, seed=0, count=40, batch_size=4, mini=2, repeat=1, **kwargs):
    buckets, rates = pool(count)
    difficulty = OnlineDifficulty(rates, [8] * count) if online else None
    return CurriculumSampler(buckets, rates, mini_repeat_count=mini, batch_size=batch_size, repeat_count=repeat,
                             schedule=schedule, seed=seed, difficulty=difficulty, **kwargs)


def chunks_of(indices, size):
    return [indices[i:i + size] for i in range(0, len(indices), size)]


@settings(max_examples=60, deadline=None)
@given(mini=st.integers(1, 4), batch_size=st.integers(1, 6), repeat=st.integers(1, 3),
       name=st.sampled_from(schedule_names()), online=st.booleans())
def test_output_has_trl_repeat_structure(mini, batch_size, repeat, name, online):
    from trl.trainer.utils import RepeatSampler

    s = sampler(name, online=online, batch_size=batch_size, mini=mini, repeat=repeat, count=23)
    reference = RepeatSampler(list(range(23)), mini_repeat_count=mini, batch_size=batch_size, repeat_count=repeat)
    indices = list(s)
    assert len(indices) == len(s) == len(reference) == len(list(reference))
    for chunk in chunks_of(indices, batch_size * mini * repeat):
        block = chunk[: batch_size * mini]
        assert chunk == block * repeat  # the whole generation batch repeats (num_iterations × steps_per_generation)
        distinct = block[::mini]
        assert block == [i for i in distinct for _ in range(mini)]  # each prompt num_generations times in a row
        assert len(set(distinct)) == batch_size  # distinct problems within a generation batch


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), name=st.sampled_from(schedule_names()), online=st.booleans())
def test_same_seed_same_order(seed, name, online):
    first = list(itertools.islice(iter(sampler(name, online=online, seed=seed, total_chunks=30)), 200))
    second = list(itertools.islice(iter(sampler(name, online=online, seed=seed, total_chunks=30)), 200))
    assert first == second


def test_different_seeds_differ():
    assert list(sampler("uniform", seed=1)) != list(sampler("uniform", seed=2))


def drive(s, *, chunks: int, outcome_seed: int, start: int = 0, skip: int = 0, read_ahead: bool = False):
    """Consume `chunks` generation batches the way the trainer does: take a chunk, consume it, observe its groups.

    `skip` leading chunks are read without using them (the trainer's fast-forward on resume); with `read_ahead`
    the next chunk's first index is read before a chunk is observed (accelerate's dataloader; within a pass).
    Outcomes depend only on (chunk number, problem), so two runs over the same draws see the same rewards.
    """
    size = s.batch_size * s.mini_repeat_count * s.repeat_count
    iterator, drawn, number, ahead = iter(s), [], start, []
    while len(drawn) < chunks:
        chunk, ahead = ahead, []
        try:
            chunk += [next(iterator) for _ in range(size - len(chunk))]
        except StopIteration:  # a pass is over: the trainer starts the next epoch (a generator starts lazily)
            iterator = iter(s)
            continue
        if read_ahead and not skip:
            try:
                ahead = [next(iterator)]
            except StopIteration:
                iterator = iter(s)
        if skip:
            skip -= 1
            continue
        problems = chunk[: s.batch_size * s.mini_repeat_count : s.mini_repeat_count]
        assert s.consume(problems).problems == problems
        outcomes = [int(np.random.default_rng([outcome_seed, number, p]).integers(0, s.mini_repeat_count + 1))
                    for p in problems]
        s.observe(problems, outcomes, [s.mini_repeat_count] * len(problems))
        drawn.append(problems)
        number += 1
    return drawn


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(schedule_names()), online=st.booleans(), seed=st.integers(0, 1000),
       stop=st.integers(1, 25), outcome_seed=st.integers(0, 1000))
def test_state_round_trip_continues_the_identical_sequence(name, online, seed, stop, outcome_seed):
    total = 30  # 40 problems / 4 per chunk = 10 chunks per pass: several passes, stops mid-pass and at its end
    uninterrupted = drive(sampler(name, online=online, seed=seed, total_chunks=total), chunks=total,
                          outcome_seed=outcome_seed)

    original = sampler(name, online=online, seed=seed, total_chunks=total)
    before = drive(original, chunks=stop, outcome_seed=outcome_seed)
    state = json.loads(json.dumps(original.state_dict()))  # what a checkpoint holds

    resumed = sampler(name, online=online, seed=seed + 1, total_chunks=total)  # seed comes from the state
    resumed.load_state_dict(state)
    after = drive(resumed, chunks=total - stop, outcome_seed=outcome_seed, start=stop,
                  skip=stop % resumed.chunks_per_pass)
    assert before + after == uninterrupted


@pytest.mark.parametrize("online", [False, True])
def test_read_ahead_resume_at_every_chunk_of_a_pass(online):
    """The dataloader reads the next chunk before the current one is observed: a checkpoint holds one pending
    chunk more than was used. Resuming at any position, the last of a pass included, continues identically."""
    total = 25  # 10 chunks per pass
    uninterrupted = drive(sampler("linear", online=online, total_chunks=total), chunks=total, outcome_seed=3,
                          read_ahead=True)
    for stop in range(1, total):
        original = sampler("linear", online=online, total_chunks=total)
        before = drive(original, chunks=stop, outcome_seed=3, read_ahead=True)
        state = json.loads(json.dumps(original.state_dict()))
        resumed = sampler("linear", online=online, total_chunks=total)
        resumed.load_state_dict(state)
        after = drive(resumed, chunks=total - stop, outcome_seed=3, start=stop,
                      skip=stop % resumed.chunks_per_pass, read_ahead=True)
        assert before + after == uninterrupted, f"resumed after chunk {stop}"


def test_progress_is_the_chunk_number_not_the_moment_of_the_draw():
    s = sampler("linear", total_chunks=8)
    iterator = iter(s)
    size = s.batch_size * s.mini_repeat_count
    for _ in range(3 * size + 1):  # three chunks and the first index of a fourth: four draws
        next(iterator)
    chunks = [s.consume(s._pending[0].problems) for _ in range(4)]
    assert [c.number for c in chunks] == [0, 1, 2, 3]
    assert [c.progress for c in chunks] == [0.0, 0.125, 0.25, 0.375]
    assert all(set(c.buckets) <= {0, 1} and sum(c.weights) == pytest.approx(1.0) for c in chunks)
    with pytest.raises(RuntimeError, match="out of step"):
        s.consume([0, 1, 2, 3])  # nothing pending: the trainer would be ahead of the sampler


def test_uniform_matches_size_proportional_sampling():
    buckets = np.repeat([0, 1, 2, 3], [10, 20, 30, 40])
    rates = np.linspace(0.9, 0.1, 100)
    s = CurriculumSampler(buckets, rates, mini_repeat_count=1, batch_size=5, schedule="uniform", seed=3)
    assert np.allclose(s.probabilities(), 1 / 100)  # every problem equally likely
    counts = np.zeros(4)
    for _ in range(40):
        counts += np.bincount(buckets[list(s)], minlength=4)
    expected = np.array([10, 20, 30, 40]) / 100 * counts.sum()
    chi_square = float(((counts - expected) ** 2 / expected).sum())
    assert chi_square < 16.3  # 3 degrees of freedom, p = 0.001


def test_linear_first_batches_come_from_bucket_0_and_every_bucket_is_reached():
    s = sampler("linear", total_chunks=40)
    buckets = s.buckets
    drawn = drive(s, chunks=40, outcome_seed=0)
    assert {int(buckets[i]) for chunk in drawn[:2] for i in chunk} == {0}
    assert {int(buckets[i]) for chunk in drawn for i in chunk} == {0, 1, 2, 3}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_describe_reports_the_mixture(name):
    info = sampler(name, total_chunks=10).describe()
    assert info["schedule"] == name and info["progress"] == 0.0
    assert sum(info["weights"]) == pytest.approx(1.0) and len(info["weights"]) == 4
    assert ("competence" in info) == (name in ("linear", "root-p", "exp"))


def test_online_difficulty_learns_rebuckets_and_skips_solved():
    s = sampler("uniform", online=True, skip_solved=True, mini=8)
    hard = int(np.flatnonzero(s.buckets == 3)[0])
    before = s.current_pass_rates()[hard]
    assert (s.current_buckets() == s.buckets).all()  # nothing moves before evidence
    for _ in range(6):
        s.observe([hard], [8], [8])  # the model now solves it every time
    assert s.current_pass_rates()[hard] > before
    assert s.current_buckets()[hard] < 3
    assert s.probabilities()[hard] == 0.0  # certainly solved: skipped
    assert s.describe()["skipped"] >= 1


def test_online_preference_favours_problems_likely_to_give_an_advantage():
    buckets = np.zeros(3, dtype=np.int64)
    rates = np.array([0.02, 0.5, 0.98])
    s = CurriculumSampler(buckets, rates, mini_repeat_count=8, schedule="uniform",
                          difficulty=OnlineDifficulty(rates, [64] * 3))
    probabilities = s.probabilities()
    assert probabilities.argmax() == 1 and probabilities.min() > 0


def test_shared_shift_moves_unseen_problems_too():
    rates = np.full(20, 0.3)
    difficulty = OnlineDifficulty(rates, [16] * 20)
    difficulty.update(list(range(10)), [8] * 10, [8] * 10)  # the first half: all solved
    assert difficulty.shift > 0
    untouched = OnlineDifficulty(rates, [16] * 20)
    assert difficulty.mean()[15] > untouched.mean()[15]  # never observed, yet estimated easier


def test_zero_advantage_probability_in_closed_form():
    # with a very confident prior the posterior predictive matches p^G + (1 - p)^G
    difficulty = OnlineDifficulty([0.1, 0.5], [10**6] * 2, prior_strength=10**6)
    same = 1 - difficulty.informativeness(8)
    assert same == pytest.approx([0.1**8 + 0.9**8, 2 * 0.5**8], rel=1e-3)


def test_state_from_another_setup_is_refused():
    state = sampler("linear").state_dict()
    with pytest.raises(ValueError, match="schedule"):
        sampler("uniform").load_state_dict(state)
    with pytest.raises(ValueError, match="problems"):
        sampler("linear", count=30).load_state_dict(state)
    with pytest.raises(ValueError, match="batch_size"):
        sampler("linear", batch_size=2).load_state_dict(state)
    with pytest.raises(ValueError, match="version 1 did not record which chunks were consumed"):
        sampler("linear").load_state_dict({**state, "version": 1})


def test_bad_construction_is_refused():
    buckets, rates = pool(10)
    with pytest.raises(ValueError, match="distinct problems"):
        CurriculumSampler(buckets, rates, mini_repeat_count=2, batch_size=11)
    with pytest.raises(ValueError, match="online difficulty"):
        CurriculumSampler(buckets, rates, mini_repeat_count=2, skip_solved=True)
    with pytest.raises(ValueError, match="unknown schedule"):
        CurriculumSampler(buckets, rates, mini_repeat_count=2, schedule="nope")


def test_a_pass_rate_shipped_with_the_data_is_a_weak_prior_not_none():
    """n = 0 (`build --difficulty-column`): the published rate sets the prior mean, with little weight."""
    difficulty = OnlineDifficulty([0.9, 0.1], [0, 0])
    mean = difficulty.mean()
    assert mean[0] > 0.6 and mean[1] < 0.4  # not 0.5 for both
    difficulty.update([0], [0], [8])  # one all-fail group outweighs it
    assert difficulty.mean()[0] < 0.5


def test_pass_rates_that_do_not_order_the_buckets_keep_the_built_buckets():
    """Rating buckets carry pass rate 0.5 everywhere: there are no edges to re-bucket across."""
    buckets = np.repeat(np.arange(4), 10)
    difficulty = OnlineDifficulty([0.5] * 40, [0] * 40)
    sampler = CurriculumSampler(buckets, [0.5] * 40, mini_repeat_count=2, batch_size=4, repeat_count=1,
                                schedule="linear", difficulty=difficulty)
    sampler.observe([0, 1, 30], [0, 0, 2], [2, 2, 2])
    assert sampler.current_buckets().tolist() == buckets.tolist()
