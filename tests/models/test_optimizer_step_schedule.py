"""`OptimizerStepSchedule`: under gradient accumulation a Keras optimizer
evaluates its schedule at the batch count; the wrapper turns it into the
update count."""

import keras
import numpy as np
import pytest

from keras_mta.models import OptimizerStepSchedule


def _rates_of_updates(schedule):
    """The rate each of two SGD updates used (gradient 1, accumulation 2,
    four batches)."""
    variable = keras.Variable(np.zeros(()), dtype="float32")
    optimizer = keras.optimizers.SGD(schedule, gradient_accumulation_steps=2)
    values = []
    for _ in range(4):
        optimizer.apply([keras.ops.ones(())], [variable])
        values.append(float(keras.ops.convert_to_numpy(variable)))
    assert values[0] == 0.0 and values[2] == values[1]  # accumulating
    return -values[1], values[1] - values[3]


# Eager optimizer steps: cheap under torch, one compilation per operation
# under jax; Keras reads the schedule the same way under every backend.
@pytest.mark.once(backend="torch")
def test_the_schedule_runs_in_updates_under_accumulation():
    # Rate 1.0 at step 0, 0.1 from step 1 on.
    steps = keras.optimizers.schedules.PiecewiseConstantDecay([0], [1.0, 0.1])
    # Keras alone: the first update (at batch 1) already reads step 1.
    assert _rates_of_updates(steps) == pytest.approx((0.1, 0.1))
    wrapped = OptimizerStepSchedule(steps, gradient_accumulation_steps=2)
    assert _rates_of_updates(wrapped) == pytest.approx((1.0, 0.1))


@pytest.mark.once
def test_config_round_trip_and_checks():
    cosine = keras.optimizers.schedules.CosineDecay(1e-3, decay_steps=10)
    schedule = OptimizerStepSchedule(cosine, 3)
    clone = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(schedule)
    )
    assert clone.gradient_accumulation_steps == 3
    for step in (0, 5, 14, 29):
        assert float(clone(step)) == pytest.approx(float(cosine(step // 3)))
    with pytest.raises(ValueError, match="integer >= 1"):
        OptimizerStepSchedule(cosine, 0)
