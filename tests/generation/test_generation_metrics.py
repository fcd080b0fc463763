"""A few `fit` steps on each backend: the fractions of generated,
replayed and ground-truth batches reach the logs and the progress bar,
and a rise of the validation loss switches generation on."""

import keras
import numpy as np
import pytest

from keras_mta.generation import AdaptiveGenerationCallback
from keras_mta.generation import GenerationMetrics
from keras_mta.generation import GenerationSchedule
from keras_mta.generation import StudentGeneratedDataset
from tests.generation.fake_responder import FakeResponder
from tests.generation.fake_responder import examples
from tests.generation.fake_responder import tiny_language_model
from tests.generation.fake_responder import tiny_model


def fit_with_a_loss_rise(model, overlap=False):
    arrays, prompts = examples(8)
    # One rise of the validation loss puts the threshold at 1.0 (a
    # threshold_step of 1.0 makes the switch certain in a few steps).
    schedule = GenerationSchedule(
        total_steps=4, capacity=8, threshold_step=1.0, seed=1
    )
    # What the student's weights are when it generates.
    weights = []
    responder = FakeResponder(
        on_generate=lambda: weights.append(
            [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
        )
    )
    dataset = StudentGeneratedDataset(
        arrays, prompts, 4, responder, schedule, seed=1, overlap=overlap
    )
    losses = iter([2.0, 2.5, 2.5])
    adaptive = AdaptiveGenerationCallback(
        dataset, loss_fn=lambda model: next(losses)
    )
    history = model.fit(
        dataset,
        epochs=2,
        steps_per_epoch=2,
        shuffle=False,
        callbacks=[GenerationMetrics(dataset), adaptive],
        verbose=1,
    )
    logs = history.history
    assert logs["generated_fraction"] == [0.0, 1.0]
    assert logs["ground_truth_fraction"] == [1.0, 0.0]
    assert logs["replayed_fraction"] == [0.0, 0.0]
    assert logs["generation_threshold"] == [0.0, 1.0]
    assert np.all(np.isfinite(logs["loss"]))
    assert [step for step, _, _ in adaptive.losses] == [0, 2, 4]
    # TensorFlow may have made batches past the last step (prefetching);
    # the state to resume at step 4 holds the trained ones only.
    assert len(dataset.responder.calls) >= 2
    assert list(dataset.get_state(4)["buffer"]["steps"]) == [2, 3]
    assert dataset.get_state(4)["responder_draws"] == 2
    # The student generated with its trained weights: step 2 trained
    # between the generations of steps 2 and 3 (under jax the trainer
    # holds the weights apart during an epoch; they are put back first).
    # With `overlap`, step 3's batch was sampled with step 2's, the
    # weights of one step earlier.
    if keras.backend.backend() != "tensorflow":
        moved = [not np.array_equal(a, b) for a, b in zip(*weights[:2])]
        assert any(moved) != overlap
    # A second fit continues at step 4.
    assert dataset.initial_step == 4
    return logs


@pytest.mark.parametrize("overlap", [False, True])
def test_fit_logs_the_fractions_and_a_loss_rise_switches_generation_on(
    capsys, overlap
):
    fit_with_a_loss_rise(tiny_language_model(), overlap)
    assert "generated_fraction: 1.0000" in capsys.readouterr().out


@pytest.mark.large
def test_distillation_model_trains_on_generated_batches():
    logs = fit_with_a_loss_rise(tiny_model())
    for term in ("kd", "dsa", "hra"):
        assert np.all(np.isfinite(logs[term])), term
