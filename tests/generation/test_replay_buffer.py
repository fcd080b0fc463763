import numpy as np
import pytest

from keras_mta.generation import ReplayBuffer

pytestmark = pytest.mark.once


def batch(value):
    x = {
        "token_ids": np.full((2, 4), value, "int32"),
        "word_units": np.full((2, 3, 2), value, "int32"),
    }
    return x, np.full((2, 4), value, "int32"), np.ones((2, 4), "float32")


def value_of(sampled):
    return int(sampled[0]["token_ids"][0, 0])


def test_capacity_drops_the_oldest_batch():
    buffer = ReplayBuffer(capacity=3)
    for step in range(5):
        buffer.push(batch(step), step=step)
    assert len(buffer) == 3
    assert buffer.steps == [2, 3, 4]
    kept = {value_of(buffer.sample(s)) for s in range(200)}
    assert kept == {2, 3, 4}


def test_push_keeps_a_copy():
    buffer = ReplayBuffer(capacity=2)
    pushed = batch(1)
    buffer.push(pushed, step=0)
    pushed[0]["token_ids"][:] = 99
    assert value_of(buffer.sample(0)) == 1


def test_sampling_is_uniform_and_seeded_per_step():
    buffer = ReplayBuffer(capacity=4, seed=3)
    for step in range(4):
        buffer.push(batch(step), step=step)
    draws = [value_of(buffer.sample(s)) for s in range(4000)]
    counts = np.bincount(draws, minlength=4)
    # Binomial(4000, 1/4): sd 27.4; 4 sd either side.
    assert np.all(np.abs(counts - 1000) < 110), counts
    assert [value_of(buffer.sample(s)) for s in (10, 5, 10)] == [
        draws[10],
        draws[5],
        draws[10],
    ]
    other = ReplayBuffer(capacity=4, seed=4)
    other.set_state(buffer.get_state())
    assert [value_of(other.sample(s)) for s in range(50)] != draws[:50]


def test_state_round_trip_continues_the_same_draws():
    buffer = ReplayBuffer(capacity=5, seed=1)
    for step in range(7):
        buffer.push(batch(step), step=step)
    restored = ReplayBuffer(capacity=5, seed=1)
    restored.set_state(buffer.get_state())
    assert restored.steps == buffer.steps
    for step in range(100, 130):
        a, b = buffer.sample(step), restored.sample(step)
        np.testing.assert_array_equal(a[0]["word_units"], b[0]["word_units"])
        np.testing.assert_array_equal(a[1], b[1])


def test_state_before_a_step_leaves_later_batches_out():
    buffer = ReplayBuffer(capacity=5)
    for step in (0, 2, 4, 6):
        buffer.push(batch(step), step=step)
    state = buffer.get_state(before_step=4)
    assert list(state["steps"]) == [0, 2]
    assert state["x/token_ids"].shape == (2, 2, 4)
    buffer.discard_from(4)
    assert buffer.steps == [0, 2]


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(capacity=0)
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer().sample(3)
    buffer = ReplayBuffer(capacity=2)
    buffer.push(batch(0), step=0)
    with pytest.raises(ValueError, match="same structure"):
        buffer.push(({"token_ids": np.zeros((2, 4))}, *batch(0)[1:]), step=1)
    small = ReplayBuffer(capacity=1)
    with pytest.raises(ValueError, match="capacity"):
        full = ReplayBuffer(capacity=2)
        full.push(batch(0), step=0)
        full.push(batch(1), step=1)
        small.set_state(full.get_state())
