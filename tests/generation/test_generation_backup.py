"""An interrupted `fit` on student-generated batches, resumed from its
`GenerationBackupAndRestore` backup, trains on the same batches as an
uninterrupted one (tiny model, six steps, every backend)."""

import os
import time

import keras
import numpy as np
import pytest

from keras_mta.generation import AdaptiveGenerationCallback
from keras_mta.generation import GenerationBackupAndRestore
from keras_mta.generation import GenerationMetrics
from keras_mta.generation import GenerationSchedule
from keras_mta.generation import StudentGeneratedDataset
from tests.generation.fake_responder import FakeResponder
from tests.generation.fake_responder import examples
from tests.generation.fake_responder import tiny_language_model

EPOCHS, STEPS = 3, 2
# Validation losses measured before training (step 0) and after each epoch:
# one rise of loss_eps (threshold 0.8 -> 0.9 after step 2).
LOSSES = {0: 2.0, 2: 2.2, 4: 2.15, 6: 2.1}


class DrawResponder(FakeResponder):
    """Token ids of a batch tell its draw (`draws`, what a resumed
    `StudentResponses` seeds its sampler with), not its call."""

    def generate_batch(self, prompts):
        x, y, sample_weight = super().generate_batch(prompts)
        x["token_ids"][:] = y[:] = 20 + self.draws % 10
        return x, y, sample_weight


class Interrupt(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if self.params and self._epoch == 2:
            raise KeyboardInterrupt("interrupted in epoch 2")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch


class Record(keras.callbacks.Callback):
    """`{step: (source, token ids)}` of the batches trained on."""

    def __init__(self, dataset, metrics):
        super().__init__()
        self.dataset, self.metrics, self.trained = dataset, metrics, {}

    def on_train_batch_end(self, batch, logs=None):
        step = self.metrics.step - 1
        x = self.dataset.batch(step)[0]  # made already: not drawn again
        source = self.dataset.sources[step]
        self.trained[step] = (source, x["token_ids"].tolist())


# Every dataset `train` made (an interrupted `train` returns none).
MADE = []


def train(backup_dir, interrupt=False):
    arrays, prompts = examples(8)
    model = tiny_language_model()
    model(arrays[0])  # BackupAndRestore wants a built model
    schedule = GenerationSchedule(
        total_steps=EPOCHS * STEPS, capacity=2, init_threshold=0.8, seed=5
    )
    dataset = StudentGeneratedDataset(
        arrays, prompts, 4, DrawResponder(), schedule, seed=5
    )
    MADE.append(dataset)
    backup = GenerationBackupAndRestore(dataset, str(backup_dir))
    metrics = GenerationMetrics(dataset)
    adaptive = AdaptiveGenerationCallback(
        dataset, loss_fn=lambda model: LOSSES[adaptive.step]
    )
    record = Record(dataset, metrics)
    callbacks = [backup, metrics, adaptive, record]
    if interrupt:
        callbacks.append(Interrupt())
    model.fit(
        dataset,
        epochs=EPOCHS,
        steps_per_epoch=STEPS,
        shuffle=False,
        callbacks=callbacks,
        verbose=0,
    )
    return record.trained, backup, dataset, model


def test_a_resumed_fit_trains_on_the_same_batches(tmp_path):
    expected, _, straight, model = train(tmp_path / "straight")
    # Nothing is made for the steps that TensorFlow's prefetching reads
    # after the last one (6, 7, ...): no source, draw or buffer entry.
    time.sleep(0.5)
    generated = [
        s for s, source in straight.sources.items() if source == "generate"
    ]
    assert max(straight.sources) == EPOCHS * STEPS - 1
    assert straight.responder.draws == len(generated)
    assert all(s < EPOCHS * STEPS for s in straight.buffer.get_state()["steps"])
    sources = [expected[step][0] for step in range(EPOCHS * STEPS)]
    # Steps 4 and 5 (after the interruption) generate and replay.
    assert sources[4:] == ["generate", "replay"], sources
    assert not os.path.exists(tmp_path / "straight")  # deleted at the end

    backup_dir = tmp_path / "backup"
    with pytest.raises(KeyboardInterrupt):
        train(backup_dir, interrupt=True)
    # The backup after two epochs: the weights, the dataset's state of
    # epochs 1 and 2, a non-empty replay buffer.
    files = sorted(os.listdir(backup_dir))
    assert "generation-epoch-2.npz" in files
    assert "generation-epoch-1.npz" in files
    with np.load(backup_dir / "generation-epoch-2.npz") as state:
        assert int(state["step"]) == 4
        assert len(state["buffer/steps"]) == 2
        assert float(state["threshold"]) == 0.9

    trained, backup, dataset, resumed = train(backup_dir)
    assert backup.resumed_at == 4
    assert sorted(trained) == [4, 5]
    assert {step: expected[step] for step in (4, 5)} == trained
    assert dataset.schedule.threshold == 0.9
    # Under TensorFlow the interrupted fit's prefetching thread waited for
    # the measure at step 6; the resumed fit released it (a fit that
    # raised never reaches on_train_end), and nothing more was made.
    interrupted = MADE[-2]
    assert interrupted.waiting == 0
    assert max(interrupted.sources) < 6
    for a, b in zip(model.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.once
def test_a_backup_without_the_generation_state_is_refused(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path, interrupt=True)
    os.remove(tmp_path / "generation-epoch-2.npz")
    with pytest.raises(ValueError, match="generation-epoch-2.npz is missing"):
        train(tmp_path)
