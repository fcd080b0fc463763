"""`AdaptiveGenerationCallback`: the student's validation loss drives the
generation threshold."""

import threading

import keras

from keras_mta.generation.live_teacher_check import require_live_teacher
from keras_mta.models.validation_loss import validation_loss
from keras_mta.models.validation_loss import validation_model


class AdaptiveGenerationCallback(keras.callbacks.Callback):
    """Measures the student's validation loss and gives it to the
    `GenerationSchedule` of a `StudentGeneratedDataset` (DistiLLM's
    adaptive threshold).

    The loss is measured before training (unless the schedule already has
    one, as after a resume) and then every `eval_interval` steps, or at
    the end of every epoch when `eval_interval` is 0. Each measure goes to
    `schedule.record_validation_loss`, which raises the threshold when the
    loss rose by `loss_eps`; a measure after step `t` decides the batches
    from step `t + 1` on (the dataset holds batches it would make ahead,
    `StudentGeneratedDataset.hold_from`). The loss is the student's
    cross-entropy on the validation responses
    (`keras_mta.models.validation_loss`), from one evaluation model that
    shares the student's weights. In the on-policy mode nothing is
    measured.

    Steps are global: the first `fit` step is the dataset's
    `initial_step` (after `StudentGeneratedDataset.set_state`, the resumed
    step), and `eval_interval` counts from step 0 of the whole training.

    Args:
        dataset: the `StudentGeneratedDataset` that `fit` reads.
        validation_data: the validation batches `(x, y, sample_weight)`
            (a tf.data dataset, a `PyDataset`, ...).
        eval_interval: int, steps between measures (0: once per epoch).
        loss_fn: optional callable `loss_fn(model) -> float` that measures
            the loss instead (`model` is the model being trained).
        verbose: bool, print each measure and threshold.
        evaluator: optional `validation_model` of the student to measure
            with (a run shares one across its variants: compiled once);
            None: one built at the first measure.

    Examples:

    ```python
    callback = AdaptiveGenerationCallback(dataset, valid)
    model.fit(dataset, epochs=5, steps_per_epoch=100,
              callbacks=[GenerationMetrics(dataset), callback])
    ```
    """

    def __init__(
        self,
        dataset,
        validation_data=None,
        eval_interval=0,
        loss_fn=None,
        verbose=False,
        evaluator=None,
    ):
        super().__init__()
        if validation_data is None and loss_fn is None:
            raise ValueError(
                "AdaptiveGenerationCallback needs `validation_data` (or a "
                "`loss_fn`) to measure the student's validation loss."
            )
        if int(eval_interval) < 0:
            raise ValueError(
                f"`eval_interval` must be >= 0 (0: once per epoch), got "
                f"{eval_interval}."
            )
        self.dataset = dataset
        self.schedule = dataset.schedule
        self.validation_data = validation_data
        self.eval_interval = int(eval_interval)
        self.loss_fn = loss_fn
        self.verbose = bool(verbose)
        # (global step, loss, threshold after it) of every measure.
        self.losses = []
        self.step = dataset.initial_step
        self._epoch_start = self.step
        self._steps_per_epoch = None
        self._evaluator = evaluator

    def measure(self):
        """The student's validation loss now."""
        model = self.model
        if self.loss_fn is not None:
            return float(self.loss_fn(model))
        if self._evaluator is None:
            self._evaluator = validation_model(model.student)
        return validation_loss(
            model.student, self.validation_data, model=self._evaluator
        )

    def _record(self):
        if not self.schedule.measures_validation_loss:
            return  # on-policy: a fixed fraction, no threshold
        loss = self.measure()
        rose = self.schedule.record_validation_loss(loss)
        self.losses.append((self.step, loss, self.schedule.threshold))
        if self.verbose:
            change = " (rose: threshold up)" if rose else ""
            print(
                f"step {self.step}: validation loss {loss:.4f}{change}, "
                f"generation threshold {self.schedule.threshold}"
            )

    def _next_measure(self):
        """The global step whose batch needs the next measure."""
        if not self.schedule.measures_validation_loss:
            return None
        if self.eval_interval:
            return (self.step // self.eval_interval + 1) * self.eval_interval
        if self._steps_per_epoch:
            return self._epoch_start + self._steps_per_epoch
        return None

    def _hold(self):
        self.dataset.hold_from(self._next_measure(), threading.get_ident())

    def on_train_begin(self, logs=None):
        require_live_teacher(self.model)
        self.dataset.begin_fit(threading.get_ident())
        self.step = self._epoch_start = self.dataset.initial_step
        self._steps_per_epoch = (self.params or {}).get("steps")
        if self.schedule.last_loss is None:
            self._record()
        self._hold()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = self.step

    def on_train_batch_end(self, batch, logs=None):
        before = self.step
        self.step = self._epoch_start + int(batch) + 1
        if self.eval_interval and (
            self.step // self.eval_interval > before // self.eval_interval
        ):
            self._record()
            self._hold()

    def on_epoch_end(self, epoch, logs=None):
        if not self.eval_interval:
            self._record()
            self._epoch_start = self.step
            self._hold()

    def on_train_end(self, logs=None):
        self.dataset.end_fit()  # and no hold: nothing more is measured
