import math

import numpy as np
import pytest

from keras_mta.generation import GenerationSchedule

pytestmark = pytest.mark.once


def reference_decision(r, threshold, step, total, ratio, size, capacity):
    """Issue 20's statement of DistiLLM's adaptive rule, written again."""
    if ratio == "decreasing":
        s = threshold * (1 - step / total)
    elif ratio == "constant":
        s = threshold * 0.5
    else:
        s = threshold * step / total
    if r < s or (r < threshold and size < capacity):
        return "generate"
    if r < threshold:
        return "replay"
    return "ground_truth"


def binomial_ok(count, n, p, sigmas=4.0):
    return abs(count / n - p) <= sigmas * math.sqrt(p * (1 - p) / n) + 1e-12


@pytest.mark.parametrize("ratio", ["decreasing", "constant", "increasing"])
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.7, 1.0])
def test_decisions_follow_the_reference_rule(ratio, threshold):
    total, capacity = 50, 4
    schedule = GenerationSchedule(
        total_steps=total,
        init_threshold=threshold,
        capacity=capacity,
        replay_ratio=ratio,
        seed=3,
    )
    for step in range(total + 5):
        for size in (0, capacity - 1, capacity, capacity + 1):
            r = schedule.draw(step)
            want = reference_decision(
                r, threshold, min(step, total), total, ratio, size, capacity
            )
            assert schedule.decide(step, size) == want, (step, size, r)


def test_the_replay_ratios():
    for ratio, at in (
        ("decreasing", lambda t: 0.6 * (1 - t / 10)),
        ("constant", lambda t: 0.3),
        ("increasing", lambda t: 0.6 * t / 10),
    ):
        schedule = GenerationSchedule(
            total_steps=10, init_threshold=0.6, replay_ratio=ratio
        )
        for step in range(11):
            assert schedule.replay_ratio_at(step) == pytest.approx(at(step))


def test_threshold_rises_exactly_when_the_loss_rises_by_loss_eps():
    losses = [2.0, 2.05, 2.1, 2.1, 2.15, 2.2, 2.3, 1.0, 1.5, 1.6, 1.69]
    schedule = GenerationSchedule(total_steps=10, loss_eps=0.1)
    reference, threshold, thresholds = None, 0.0, []
    for loss in losses:
        rose = schedule.record_validation_loss(loss)
        if reference is None:
            reference, want = loss, False
        elif loss >= reference + 0.1 - 1e-9:
            reference, want = loss, True
            threshold = min(threshold + 0.1, 1.0)
        else:
            want = False
        assert rose == want, loss
        assert schedule.last_loss == reference
        assert schedule.threshold == pytest.approx(threshold)
        thresholds.append(schedule.threshold)
    # 2.1 (from 2.0), 2.2 (from 2.1), 2.3 (from 2.2): three rises.
    assert thresholds[-1] == pytest.approx(0.3)


def test_threshold_is_capped_at_one():
    schedule = GenerationSchedule(total_steps=10, init_threshold=0.95)
    schedule.record_validation_loss(1.0)
    assert schedule.record_validation_loss(2.0)
    assert schedule.threshold == 1.0
    assert schedule.record_validation_loss(3.0)
    assert schedule.threshold == 1.0


def test_proportions_over_many_seeded_draws():
    n, threshold = 4000, 0.6
    schedule = GenerationSchedule(
        total_steps=n, init_threshold=threshold, capacity=10, seed=11
    )
    # Buffer full, constant ratio: generate 0.3, replay 0.3, data 0.4.
    schedule.replay_ratio = "constant"
    full = [schedule.decide(step, 10) for step in range(n)]
    assert binomial_ok(full.count("generate"), n, 0.3)
    assert binomial_ok(full.count("replay"), n, 0.3)
    assert binomial_ok(full.count("ground_truth"), n, 0.4)
    # Buffer not full: every draw under the threshold generates.
    filling = [schedule.decide(step, 0) for step in range(n)]
    assert binomial_ok(filling.count("generate"), n, threshold)
    assert filling.count("replay") == 0
    # Decreasing: generate with probability 0.6 * (1 - t / n), on average
    # 0.3 over the run; the first half more often than the second.
    schedule.replay_ratio = "decreasing"
    decisions = [schedule.decide(step, 10) for step in range(n)]
    assert binomial_ok(decisions.count("generate"), n, 0.3)
    half = n // 2
    early = decisions[:half].count("generate")
    assert binomial_ok(early, half, 0.45)
    assert binomial_ok(decisions[half:].count("generate"), half, 0.15)


def test_on_policy_generates_a_fixed_fraction():
    n = 4000
    schedule = GenerationSchedule(
        mode="on_policy", on_policy_fraction=0.25, seed=5
    )
    decisions = [schedule.decide(step) for step in range(n)]
    assert binomial_ok(decisions.count("generate"), n, 0.25)
    assert decisions.count("replay") == 0
    # The validation loss does not move it.
    schedule.record_validation_loss(1.0)
    schedule.record_validation_loss(9.0)
    assert [schedule.decide(step) for step in range(n)] == decisions


def test_draws_are_seeded_per_step():
    a = GenerationSchedule(total_steps=100, seed=1)
    b = GenerationSchedule(total_steps=100, seed=1)
    c = GenerationSchedule(total_steps=100, seed=2)
    steps = [7, 3, 99, 0, 42]
    assert [a.draw(s) for s in steps] == [b.draw(s) for s in reversed(steps)][
        ::-1
    ]
    assert [a.draw(s) for s in steps] != [c.draw(s) for s in steps]
    assert len({a.draw(s) for s in range(100)}) == 100


def test_config_and_state_round_trip():
    schedule = GenerationSchedule(
        total_steps=30,
        init_threshold=0.2,
        loss_eps=0.05,
        capacity=7,
        replay_ratio="increasing",
        seed=9,
    )
    schedule.record_validation_loss(1.0)
    schedule.record_validation_loss(1.2)
    copy = GenerationSchedule.from_config(schedule.get_config())
    assert copy.get_config() == schedule.get_config()
    assert copy.threshold == 0.2
    copy.set_state(schedule.get_state())
    assert copy.threshold == pytest.approx(0.3)
    assert copy.last_loss == 1.2
    assert [copy.decide(s, 3) for s in range(30)] == [
        schedule.decide(s, 3) for s in range(30)
    ]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mode": "offline"}, "`mode`"),
        ({"replay_ratio": "linear"}, "`replay_ratio`"),
        ({"init_threshold": 1.5}, "`init_threshold`"),
        ({"capacity": 0}, "`capacity`"),
        ({"on_policy_fraction": -0.1}, "`on_policy_fraction`"),
        ({"total_steps": None}, "total_steps"),
    ],
)
def test_bad_settings_name_the_problem(kwargs, message):
    settings = {"total_steps": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        GenerationSchedule(**settings)


def test_non_finite_validation_loss_is_refused():
    schedule = GenerationSchedule(total_steps=10)
    with pytest.raises(ValueError, match="not finite"):
        schedule.record_validation_loss(np.nan)


def test_the_recipe_names_the_same_modes_and_ratios():
    from keras_mta import recipe
    from keras_mta.generation import generation_schedule

    assert recipe.STUDENT_GENERATION_MODES == ("off",) + (
        generation_schedule.MODES
    )
    assert recipe.REPLAY_RATIOS == generation_schedule.REPLAY_RATIOS
