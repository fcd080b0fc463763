"""A few `fit` steps on each backend: the fractions of generated,
replayed and ground-truth batches reach the logs and the progress bar,
and a rise of the validation loss switches generation on."""

import threading

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


def trainable_weights(model):
    return [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]


def same_weights(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


class WeightsAfterEachStep(keras.callbacks.Callback):
    """`after[s]`: the trainable weights after global step `s` (one fit
    from step 0)."""

    def on_train_begin(self, logs=None):
        self.after = []

    def on_train_batch_end(self, batch, logs=None):
        self.after.append(trainable_weights(self.model))


def fit_with_a_loss_rise(model, overlap=False):
    arrays, prompts = examples(8)
    # One rise of the validation loss puts the threshold at 1.0 (a
    # threshold_step of 1.0 makes the switch certain in a few steps).
    schedule = GenerationSchedule(
        total_steps=4, capacity=8, threshold_step=1.0, seed=1
    )
    # What the student's weights are when it generates, and on which
    # thread it does.
    weights = []
    threads = []

    def on_generate():
        threads.append(threading.get_ident())
        weights.append(trainable_weights(model))

    responder = FakeResponder(on_generate=on_generate)
    trained = WeightsAfterEachStep()
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
        callbacks=[GenerationMetrics(dataset), adaptive, trained],
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
    # The student generated with its trained weights, on every backend:
    # step 2's batch with the weights after steps 0 and 1, step 3's with
    # those after step 2 (under jax the trainer holds the weights apart
    # during an epoch; they are put back first; TensorFlow's prefetching
    # thread, which reads ahead while a step trains, waits for the
    # training thread to make them). With `overlap`, step 3's batch was
    # sampled with step 2's, the weights of one step earlier.
    assert threads == [threading.get_ident()] * 2
    assert same_weights(weights[0], trained.after[1])
    assert same_weights(weights[1], trained.after[1 if overlap else 2])
    assert not same_weights(trained.after[1], trained.after[2])
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
