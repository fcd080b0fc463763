"""The callback's measuring steps and holds, driven by hand (no `fit`)."""

import types

import pytest

from keras_mta.generation import AdaptiveGenerationCallback
from keras_mta.generation import GenerationSchedule
from keras_mta.generation import StudentGeneratedDataset
from tests.generation.fake_responder import FakeResponder
from tests.generation.fake_responder import examples

pytestmark = pytest.mark.once


def run(eval_interval, epochs, steps, losses, initial_step=0, last=None):
    arrays, prompts = examples(8)
    schedule = GenerationSchedule(total_steps=epochs * steps)
    schedule.last_loss = last
    dataset = StudentGeneratedDataset(
        arrays,
        prompts,
        4,
        FakeResponder(),
        schedule,
        initial_step=initial_step,
    )
    losses = iter(losses)
    callback = AdaptiveGenerationCallback(
        dataset, eval_interval=eval_interval, loss_fn=lambda m: next(losses)
    )
    callback.set_model(types.SimpleNamespace(teacher_source=object()))
    callback.set_params({"steps": steps, "epochs": epochs})
    holds = []
    callback.on_train_begin()
    holds.append(dataset._hold)
    for epoch in range(epochs):
        callback.on_epoch_begin(epoch)
        for batch in range(steps):
            callback.on_train_batch_end(batch)
            holds.append(dataset._hold)
        callback.on_epoch_end(epoch)
        holds.append(dataset._hold)
    callback.on_train_end()
    assert dataset._hold is None
    return callback, holds


def test_once_per_epoch_by_default():
    callback, holds = run(0, epochs=3, steps=4, losses=[2.0, 2.0, 2.2, 2.25])
    assert [step for step, _, _ in callback.losses] == [0, 4, 8, 12]
    assert [t for _, _, t in callback.losses] == [0.0, 0.0, 0.1, 0.1]
    # Batches wait at the next measuring step.
    assert holds[0] == 4 and holds[5] == 8 and holds[-1] == 16


def test_every_eval_interval_steps():
    callback, holds = run(3, epochs=2, steps=4, losses=[1.0, 1.1, 1.1, 1.3])
    assert [step for step, _, _ in callback.losses] == [0, 3, 6]
    assert [t for _, _, t in callback.losses] == [0.0, 0.1, 0.1]
    assert holds[0] == 3


def test_a_resumed_run_counts_global_steps_and_keeps_its_reference():
    callback, _ = run(
        3, epochs=1, steps=4, losses=[5.0, 5.0], initial_step=5, last=1.0
    )
    # No measure before training (the schedule has one); the next
    # multiples of 3 among the steps 6 .. 9 are 6 and 9.
    assert [step for step, _, _ in callback.losses] == [6, 9]
    assert callback.schedule.threshold == pytest.approx(0.1)


def test_on_policy_measures_nothing():
    arrays, prompts = examples(8)
    schedule = GenerationSchedule(mode="on_policy", on_policy_fraction=0.5)
    dataset = StudentGeneratedDataset(
        arrays, prompts, 4, FakeResponder(), schedule
    )
    callback = AdaptiveGenerationCallback(dataset, loss_fn=lambda m: 1 / 0)
    callback.set_model(types.SimpleNamespace(teacher_source=object()))
    callback.set_params({"steps": 2})
    callback.on_train_begin()
    callback.on_epoch_end(0)
    assert callback.losses == [] and dataset._hold is None


def test_needs_validation_data():
    arrays, prompts = examples(8)
    dataset = StudentGeneratedDataset(
        arrays,
        prompts,
        4,
        FakeResponder(),
        GenerationSchedule(total_steps=2),
    )
    with pytest.raises(ValueError, match="validation_data"):
        AdaptiveGenerationCallback(dataset)
