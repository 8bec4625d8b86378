"""Schedules: weights are a distribution over the non-empty buckets at every t, competence only grows, and
each schedule moves from easy to hard the way its formula says."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curriculum.schedules import (
    COMPETENCE,
    SCHEDULES,
    AdaptiveSchedule,
    adaptive_update,
    get_schedule,
    schedule_names,
)

PACED = sorted(SCHEDULES)
progress = st.floats(min_value=0.0, max_value=1.0)
bucket_sizes = st.lists(st.integers(min_value=0, max_value=500), min_size=1, max_size=8).filter(lambda s: sum(s) > 0)


def test_registry_has_the_issue_schedules():
    assert set(schedule_names()) == {"uniform", "linear", "root-p", "step", "cosine", "gaussian", "exp", "adaptive"}


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(PACED), t=progress, sizes=bucket_sizes)
def test_weights_are_a_distribution_over_non_empty_buckets(name, t, sizes):
    weights = get_schedule(name).weights(t, sizes)
    assert weights.shape == (len(sizes),)
    assert (weights >= 0).all()
    assert weights.sum() == pytest.approx(1.0)
    assert (weights[np.asarray(sizes) == 0] == 0).all()


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(sorted(COMPETENCE)), a=progress, b=progress,
       c0=st.floats(min_value=0.01, max_value=0.9), duration=st.floats(min_value=0.1, max_value=1.0))
def test_competence_is_monotone_from_c0_to_one(name, a, b, c0, duration):
    competence = COMPETENCE[name]
    low, high = sorted((a, b))
    assert competence(low, c0=c0, duration=duration) <= competence(high, c0=c0, duration=duration) + 1e-12
    assert competence(0.0, c0=c0, duration=duration) == pytest.approx(c0)
    assert competence(duration, c0=c0, duration=duration) == pytest.approx(1.0)


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(["linear", "root-p", "exp", "step"]),
       sizes=st.lists(st.integers(min_value=1, max_value=500), min_size=2, max_size=8))
def test_competence_schedules_start_in_bucket_0_and_reach_every_bucket(name, sizes):
    schedule = get_schedule(name, c0=0.01) if name != "step" else get_schedule(name)
    if name != "step" and sizes[0] < 0.01 * sum(sizes):
        sizes[0] = sum(sizes)  # c0·N problems fit inside bucket 0
    start = schedule.weights(0.0, sizes)
    assert start[0] == pytest.approx(1.0)
    assert (schedule.weights(0.99, sizes) > 0).all()


@settings(deadline=None)
@given(t=progress, sizes=bucket_sizes)
def test_uniform_is_size_proportional(t, sizes):
    assert np.allclose(get_schedule("uniform").weights(t, sizes), np.asarray(sizes) / sum(sizes))


def test_linear_opens_buckets_in_order_as_competence_grows():
    schedule = get_schedule("linear", c0=0.1, duration=1.0)
    sizes = [25, 25, 25, 25]
    opened = [int((schedule.weights(t, sizes) > 0).sum()) for t in np.linspace(0, 1, 101)]
    assert opened == sorted(opened) and opened[0] == 1 and opened[-1] == 4
    # c(0.5) = 0.55: the easiest 55% are open, sampled uniformly
    assert np.allclose(schedule.weights(0.5, sizes), [25 / 55, 25 / 55, 5 / 55, 0])


def test_step_adds_bucket_k_at_stage_k():
    schedule = get_schedule("step", duration=1.0)
    assert np.allclose(schedule.weights(0.0, [10, 10, 10, 10]), [1, 0, 0, 0])
    assert np.allclose(schedule.weights(0.26, [10, 10, 10, 10]), [0.5, 0.5, 0, 0])
    assert np.allclose(schedule.weights(0.8, [10, 30, 10, 10]), [1 / 6, 3 / 6, 1 / 6, 1 / 6])


def test_cosine_and_gaussian_shift_mass_from_easy_to_hard():
    sizes = [10, 10, 10, 10]
    for name in ("cosine", "gaussian"):
        schedule = get_schedule(name)
        early, late = schedule.weights(0.0, sizes), schedule.weights(1.0, sizes)
        assert early[0] > early[-1] and late[-1] > late[0], name
    floor = get_schedule("gaussian", floor=0.05)
    assert all((floor.weights(t, sizes) >= 0.05 - 1e-12).all() for t in np.linspace(0, 1, 11))


@settings(deadline=None)
@given(target=progress, reward=progress)
def test_adaptive_target_moves_against_the_reward(target, reward):
    moved = adaptive_update(target, reward, eta=0.1, alpha=2.0, beta=0.5)
    assert 0.0 <= moved <= 1.0
    if reward > 0.5:
        assert moved >= target  # too easy: aim harder
    if reward < 0.5:
        assert moved <= target


def test_adaptive_prefers_problems_near_its_target_and_keeps_state():
    schedule = get_schedule("adaptive", target=0.5, width=0.1)
    assert isinstance(schedule, AdaptiveSchedule)
    pass_rates = np.array([0.9, 0.5, 0.1])
    probabilities = schedule.probabilities(0.0, np.array([0, 1, 2]), 3, pass_rates, np.ones(3))
    assert probabilities.sum() == pytest.approx(1.0) and probabilities.argmax() == 1
    schedule.observe(1.0)  # everything solved: move to harder problems
    assert schedule.target > 0.5
    restored = get_schedule("adaptive")
    restored.load_state_dict(schedule.state_dict())
    assert restored.target == schedule.target


def test_unknown_schedule_or_option_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown schedule 'lineer'.*uniform.*adaptive"):
        get_schedule("lineer")
    with pytest.raises(ValueError, match="bad options for schedule 'linear'"):
        get_schedule("linear", speed=2)
    with pytest.raises(ValueError, match="adaptive"):
        get_schedule("adaptive", momentum=0.9)


def test_root_p_also_accepts_underscore_spelling():
    assert get_schedule("root_p").name == "root-p"
