"""The non-finite guard of `DistillationModel` training.

With `DistillationModel(..., nonfinite="stop")` (the default), `model.fit`
stops at the first step whose loss, one of the loss terms' values or one
of the gradients is NaN or infinite, raises a `NonFiniteError` that names
the terms that went non-finite and the step (epoch, batch and optimizer
step), and the model keeps the weights of the last good step: the bad
step is never applied. `nonfinite="ignore"` trains on regardless (the
behaviour of a plain `keras.Model`).

How, on every backend (jax, torch, tensorflow) and without a train step of
our own:

1. Skipping the bad step. `compile` wraps the optimizer in a
   `keras.optimizers.LossScaleOptimizer` with `initial_scale=1.0` and a
   growth interval that is never reached. Keras's trainers then multiply
   the loss by the scale before differentiating and the wrapper divides
   the gradients by it, both by exactly 1 (exact in floating point), and
   the wrapper applies the step only when every gradient is finite (a
   `cond` in the step on all three backends, under `jit` and
   `tf.function` alike): a skipped step changes neither the weights nor
   the optimizer's moments nor its `iterations`, and halves the scale
   (which stays a power of two, so later steps stay exact). On finite
   steps the numbers are bit for bit those of the bare optimizer
   (`tests/models/test_nonfinite_guard.py` checks it on every backend, in
   the full tier).
2. A non-finite loss with finite gradients (a NaN that a `where` or a
   `stop_gradient` keeps out of the backward pass) must not be applied
   either: `compute_loss` multiplies the training loss by a
   `stop_gradient` factor that is exactly 1 when the loss and every
   term's value are finite and NaN otherwise, so such a step has NaN
   gradients and is skipped by 1.
3. Stopping and naming. A callback (`NonFiniteGuard`, added by
   `DistillationModel.fit`) reads the batch's logs (the loss and the
   terms' own metrics: `ce`, `kd`, `dsa`, `hra`, a custom loss's name) and
   the wrapper's scale (halved: a step was skipped because of its
   gradients) after every batch, and raises. The error leaves `fit`
   through Keras's own `finally`, which writes the state of the last step
   (under jax) back to the model's variables: the last good weights.

The check of gradients alone was not enough inside `compute_loss`
(gradients do not exist there), and a check in a callback alone comes one
step late (the bad step has been applied); the optimizer wrapper is the
one place all three trainers pass the gradients through before applying
them. A model compiled with your own `LossScaleOptimizer` (or under a
`mixed_float16` policy, where Keras adds one) keeps it: such an optimizer
skips steps with overflowing gradients as part of its scaling, so the
guard then stops on a non-finite loss or term only. `train_on_batch`
skips a bad step the same way, without raising: check the logs it
returns.
"""

import math

import keras
from keras import ops

# `DistillationModel(nonfinite=...)`.
NONFINITE_MODES = ("stop", "ignore")

# The guard's loss scale never grows: the growth interval is never reached.
_NEVER = 2**30


class NonFiniteError(ValueError):
    """Training met a NaN or an infinity; the bad step was not applied.

    A `ValueError`, so that the `keras-mta` command line prints its
    message as a one-paragraph error.

    Attributes:
        terms: `{metric name: value}` of the loss and terms that were not
            finite (empty when only the gradients were).
        epoch: the epoch of the bad step (0-based, as Keras counts).
        batch: the batch of the bad step within its epoch (0-based).
        iteration: optimizer steps applied before the bad one (the step
            whose weights the model keeps).
    """

    def __init__(self, message, terms, epoch, batch, iteration):
        super().__init__(message)
        self.terms = terms
        self.epoch = epoch
        self.batch = batch
        self.iteration = iteration

    @classmethod
    def at(cls, terms, epoch, batch, iteration, remedy=None, subject=None):
        """The error of a bad step with its one-paragraph message: the
        `subject` (`"Training"`; `"Training the teacher"`), what went
        non-finite and where, the weights kept, and the `remedy` (the
        Python API's by default)."""
        what = describe(terms, epoch, batch, iteration, subject or "Training")
        message = f"{what} {remedy or PYTHON_REMEDY}"
        return cls(message, terms, epoch, batch, iteration)

    def with_remedy(self, remedy, subject="Training"):
        """The same error with another remedy (e.g. the command line's)
        and subject."""
        return type(self).at(
            self.terms, self.epoch, self.batch, self.iteration, remedy, subject
        )


def check_nonfinite_mode(nonfinite):
    """`nonfinite` checked against `NONFINITE_MODES`."""
    if nonfinite not in NONFINITE_MODES:
        raise ValueError(
            f"`nonfinite` must be one of {NONFINITE_MODES}, got "
            f"{nonfinite!r}: 'stop' stops training at the first NaN or "
            "infinite loss or gradient and keeps the last good weights, "
            "'ignore' trains on regardless."
        )
    return nonfinite


def guard_optimizer(optimizer):
    """`optimizer` wrapped so that a step with a non-finite gradient is
    skipped; an optimizer that already scales its loss is kept as is.

    Returns:
        `(optimizer, guards_gradients)`: the optimizer to train with, and
        whether its skipped steps mean non-finite gradients (True for the
        wrapper made here).
    """
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer, False
    wrapped = keras.optimizers.LossScaleOptimizer(
        optimizer,
        initial_scale=1.0,
        dynamic_growth_steps=_NEVER,
        name="nonfinite_guard",
    )
    return wrapped, True


def gate_loss(loss, values):
    """`loss` times a `stop_gradient` factor: exactly 1 when `loss` and
    every scalar of `values` are finite, NaN otherwise (so that the
    gradients of a step with a non-finite loss are NaN too)."""
    checks = [ops.isfinite(loss)]
    checks += [ops.all(ops.isfinite(v)) for v in values]
    finite = ops.all(ops.stack(checks))
    factor = ops.where(finite, 1.0, float("nan"))
    return loss * ops.stop_gradient(ops.cast(factor, loss.dtype))


def _number(value):
    return float(ops.convert_to_numpy(value))


class NonFiniteGuard(keras.callbacks.Callback):
    """Stop `fit` at the first non-finite loss, term or gradient.

    `DistillationModel.fit` adds it when the model's `nonfinite` is
    `"stop"`; see the module docstring for how the bad step is kept out.

    Args:
        metric_names: the metrics to check in each batch's logs (the
            loss and the terms' metrics).
        guards_gradients: whether the model's optimizer is the guard's
            wrapper (a drop of its scale is a skipped step).
    """

    def __init__(self, metric_names, guards_gradients):
        super().__init__()
        self.metric_names = tuple(metric_names)
        self.guards_gradients = bool(guards_gradients)
        self._epoch = 0
        self._scale = None

    def _read_scale(self):
        # `self.model` brings the step's state back to the variables under
        # jax. The optimizer is built at the first step (tensorflow).
        optimizer = self.model.optimizer
        if not optimizer.built:
            return float(optimizer.initial_scale)
        return _number(optimizer.dynamic_scale)

    def on_train_begin(self, logs=None):
        self._epoch = 0
        if self.guards_gradients:
            self._scale = self._read_scale()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        bad = {}
        for name in self.metric_names:
            if name in logs:
                value = _number(logs[name])
                if not math.isfinite(value):
                    bad[name] = value
        skipped = False
        if self.guards_gradients:
            scale = self._read_scale()
            skipped = scale < self._scale
            self._scale = scale
        if bad or skipped:
            iteration = int(_number(self.model.optimizer.iterations))
            raise NonFiniteError.at(bad, self._epoch, batch, iteration)


PYTHON_REMEDY = (
    "Look for NaN or infinite weights in the teacher or student, extreme "
    "inputs or logits, a learning rate that is too high, or loss weights "
    "that are too large; pass `DistillationModel(..., nonfinite='ignore')` "
    "to train on regardless."
)


def describe(bad, epoch, batch, iteration, subject="Training"):
    """What went non-finite, where, and which weights the model kept."""
    where = (
        f"at epoch {epoch + 1}, batch {batch + 1} (optimizer step "
        f"{iteration + 1})"
    )
    terms = {k: v for k, v in bad.items() if k != "loss"}
    if terms:
        what = "the loss terms " if len(terms) > 1 else "the loss term "
        what += ", ".join(f"{name}={value}" for name, value in terms.items())
        what += " are not finite" if len(terms) > 1 else " is not finite"
    elif bad:
        what = (
            f"the loss is {bad['loss']} while every term is finite (a "
            "regularization loss of the student?)"
        )
    else:
        what = (
            "a gradient is not finite while the loss and every term are "
            "finite (an overflow or a singular point in the backward pass)"
        )
    return (
        f"{subject} stopped {where}: {what}. That step was not applied: the "
        f"model keeps the weights of optimizer step {iteration}, the last "
        "good one."
    )
