"""`GenerationMetrics`: the fractions of generated, replayed and
ground-truth batches in `fit`'s logs."""

import threading

import keras

from keras_mta.generation.generation_schedule import GENERATE
from keras_mta.generation.generation_schedule import GROUND_TRUTH
from keras_mta.generation.generation_schedule import REPLAY
from keras_mta.generation.live_teacher_check import require_live_teacher

# Log names of the fraction of each source.
FRACTION_NAMES = {
    GENERATE: "generated_fraction",
    REPLAY: "replayed_fraction",
    GROUND_TRUTH: "ground_truth_fraction",
}
THRESHOLD_NAME = "generation_threshold"


class GenerationMetrics(keras.callbacks.Callback):
    """Adds what the batches of a `StudentGeneratedDataset` were to the
    logs of `fit`: `generated_fraction`, `replayed_fraction` and
    `ground_truth_fraction` (over the batches trained on so far in the
    epoch; at the epoch's end, over the epoch, which `History` keeps) and,
    in the adaptive mode, `generation_threshold`. They show in the
    progress bar beside the loss.

    The callback counts the steps actually trained on (a batch made ahead of
    training, as TensorFlow prefetches them, counts when its step runs, and
    one read ahead of the last step is not made:
    `StudentGeneratedDataset.end_fit`), checks at the start that the model
    has a live teacher (`require_live_teacher`), has the batches to
    generate made on the training thread when their step begins, with the
    weights of exactly the steps before (under jax, with the trained
    weights put back into the student: the jax trainer holds them apart
    from the model during an epoch and empties the variables while a step
    runs; under TensorFlow, while the prefetching thread waits for them),
    and at the end of `fit` lets the dataset continue from the next step in
    a later `fit`.

    Args:
        dataset: the `StudentGeneratedDataset` that `fit` reads.

    Examples:

    ```python
    model.fit(dataset, epochs=2, steps_per_epoch=100,
              callbacks=[GenerationMetrics(dataset)])
    # history.history["generated_fraction"]: one value per epoch.
    ```
    """

    def __init__(self, dataset):
        super().__init__()
        self.dataset = dataset
        self.step = dataset.initial_step
        self._epoch_start = self.step

    def on_train_begin(self, logs=None):
        require_live_teacher(self.model)
        self.dataset.begin_fit(threading.get_ident(), makes_generated=True)
        self.step = self.dataset.initial_step
        self._epoch_start = self.step

    def on_train_batch_begin(self, batch, logs=None):
        # A batch to generate is made here, on the training thread, with
        # the weights of exactly the steps before it: under jax the trainer
        # takes the weights out of the model for the step (the variables
        # are empty while it runs and reads its batch), so they are put
        # back first (`Callback.model` syncs them); under TensorFlow the
        # prefetching thread reads ahead while a step trains and waits for
        # this batch (`StudentGeneratedDataset.begin_fit`); under torch
        # the training thread has already read it when its step began.
        first = self._epoch_start + int(batch)
        count = int(getattr(self._model, "steps_per_execution", 1) or 1)
        for step in range(first, first + count):
            if self.dataset.will_generate(step):
                self.model  # noqa: B018 (syncs the weights under jax)
                self.dataset.batch(step)
        if self.dataset.overlap and self.dataset.will_generate(first + count):
            self.model  # noqa: B018
            self.dataset.submit_ahead(first + count)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = self.step

    def _add(self, logs):
        if logs is None:
            return
        steps = range(self._epoch_start, self.step)
        sources = self.dataset.sources
        counts = {source: 0 for source in FRACTION_NAMES}
        for step in steps:
            counts[sources.get(step, GROUND_TRUTH)] += 1
        total = max(len(steps), 1)
        for source, name in FRACTION_NAMES.items():
            logs[name] = counts[source] / total
        if self.dataset.schedule.uses_buffer:
            logs[THRESHOLD_NAME] = self.dataset.schedule.threshold

    def on_train_batch_end(self, batch, logs=None):
        # `batch` is the epoch's index of the last batch run (with
        # `steps_per_execution`, one call covers several).
        self.step = self._epoch_start + int(batch) + 1
        self._add(logs)

    def on_epoch_end(self, epoch, logs=None):
        self._add(logs)

    def on_train_end(self, logs=None):
        # Batches read ahead of the last step are never trained on.
        self.dataset.end_fit()
        self.dataset.start_at(self.step)
