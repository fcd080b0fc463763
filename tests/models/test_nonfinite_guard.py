"""The non-finite guard: `fit` stops at the first NaN or infinite loss, term
or gradient, names them and the step, and keeps the last good weights; on
finite steps nothing changes (bit for bit)."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_mta import AlignmentPlan
from keras_mta import DistillationModel
from keras_mta import NonFiniteError
from keras_mta.layers import TrajectoryAlignmentLoss
from keras_mta.losses import ForwardKL
from keras_mta.losses import forward_kl
from keras_mta.models import terms as T
from tests.models import fixtures as F

PLAN = AlignmentPlan(teacher_layers=[2, 3], student_layers=[1, 2])


def _two_batches():
    batches = [F.make_batch(seed=i) for i in range(2)]
    x = {k: np.concatenate([b[0][k] for b in batches]) for k in batches[0][0]}
    y = np.concatenate([b[1] for b in batches])
    sw = np.concatenate([b[2] for b in batches])
    return x, y, sw


class _Record(keras.callbacks.Callback):
    """The model's weights after each batch, by batch."""

    def __init__(self):
        super().__init__()
        self.weights = {}

    def on_train_batch_end(self, batch, logs=None):
        self.weights[batch] = F.weights_numpy(self.model)


def _fit(model, x, y, sw, **kwargs):
    return model.fit(
        x,
        y,
        sample_weight=sw,
        batch_size=F.BATCH,
        shuffle=False,
        verbose=0,
        **kwargs,
    )


def _trained(nonfinite, x, y, sw, **kwargs):
    """A seeded model trained on `(x, y, sw)` by a compiled `fit`."""
    teacher, student = F.shared_teacher_student()
    model = DistillationModel(teacher, student, plan=PLAN, nonfinite=nonfinite)
    F.set_numpy_weights(model.alignment, 3)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    _fit(model, x, y, sw, **kwargs)
    return model


def test_a_nan_stops_fit_naming_terms_and_step_and_keeps_last_good_weights():
    """The compiled `fit` of every backend: batch 1 is fine, batch 2 has a
    NaN token weight (CE and KD go NaN): `fit` stops there and the model
    holds the weights of the first step."""
    x, y, sw = _two_batches()
    teacher, student = F.shared_teacher_student()
    model = DistillationModel(teacher, student, plan=PLAN)
    F.set_numpy_weights(model.alignment, 3)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    sw[F.BATCH + 1, 4] = np.nan
    record = _Record()
    with pytest.raises(NonFiniteError) as caught:
        _fit(model, x, y, sw, epochs=2, callbacks=[record])
    error = caught.value
    assert isinstance(error, ValueError)  # the CLI prints ValueErrors
    assert sorted(error.terms) == ["ce", "kd", "loss"]
    assert (error.epoch, error.batch, error.iteration) == (0, 1, 1)
    message = str(error)
    assert "epoch 1, batch 2 (optimizer step 2)" in message
    assert "ce=nan, kd=nan are not finite" in message
    assert "weights of optimizer step 1" in message
    assert "\n" not in message
    # The bad step was not applied: the weights are those after batch 1.
    assert sorted(record.weights) == [0, 1]
    for want, got in zip(record.weights[0], F.weights_numpy(model)):
        np.testing.assert_array_equal(got, want)
    assert int(ops.convert_to_numpy(model.optimizer.iterations)) == 1


# About 10 s a backend (two compiled fits); the guarded compiled `fit` is
# checked everyday by the test above, its numbers (to rtol 2e-5) by the
# everyday cases of tests/models/test_parity.py.
@pytest.mark.large
def test_finite_steps_are_bit_identical_with_and_without_the_guard():
    x, y, sw = _two_batches()
    bare = _trained("ignore", x, y, sw, epochs=1)
    assert not isinstance(bare.optimizer, keras.optimizers.LossScaleOptimizer)
    guarded = _trained("stop", x, y, sw, epochs=1)
    assert isinstance(guarded.optimizer, keras.optimizers.LossScaleOptimizer)
    for a, b in zip(F.weights_numpy(bare), F.weights_numpy(guarded)):
        np.testing.assert_array_equal(a, b)


class _Root(T.LossTerm):
    """`sqrt(sum((l - stop_gradient(l))^2))`: always 0, its gradient NaN
    (`inf * 0`): a finite loss with non-finite gradients."""

    def call(self, batch):
        logits = ops.cast(batch.student["logits"], "float32")
        gap = logits - ops.stop_gradient(logits)
        return {self.name: ops.sqrt(ops.sum(gap * gap))}


def test_a_non_finite_gradient_with_finite_terms_stops_fit():
    _, student = F.shared_teacher_student()
    model = DistillationModel(
        None, student, terms=[T.CrossEntropyTerm(), _Root(name="root")]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    start = F.weights_numpy(model)
    x, y, sw = F.make_batch()
    with pytest.raises(NonFiniteError, match="a gradient is not finite"):
        _fit(model, x, y, sw, epochs=1)
    for want, got in zip(start, F.weights_numpy(model)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.once
def test_weights_and_ratios_must_be_finite():
    teacher, student = F.shared_teacher_student()
    inf, nan = float("inf"), float("nan")
    for kwargs, match in [
        ({"mta_weight": inf}, r"`mta_weight` must be >= 0 and finite, got inf"),
        ({"mta_weight": nan}, r"`mta_weight` must be >= 0 and finite, got nan"),
        ({"temperature": inf}, r"`temperature` must be > 0 and finite"),
        ({"kd_ratio": nan}, r"`kd_ratio` must lie in \[0, 1\], got nan"),
        ({"nonfinite": "skip"}, r"`nonfinite` must be one of"),
    ]:
        with pytest.raises(ValueError, match=match):
            DistillationModel(teacher, student, plan=PLAN, **kwargs)
    with pytest.raises(ValueError, match=r"`weight` must be >= 0 and finite"):
        T.CrossEntropyTerm(weight=inf)
    with pytest.raises(ValueError, match=r"`hra_scale` must be >= 0 and fin"):
        PLAN.replace(hra_scale=nan)
    with pytest.raises(ValueError, match=r"`hra_scale` must be >= 0 and fin"):
        TrajectoryAlignmentLoss([4], [4], hra_scale=inf)
    with pytest.raises(ValueError, match=r"`temperature` must be > 0 and fin"):
        ForwardKL(temperature=inf)
    with pytest.raises(ValueError, match=r"`temperature` must be > 0 and fin"):
        forward_kl(np.zeros((1, 2)), np.zeros((1, 2)), temperature=nan)


@pytest.mark.once
def test_nonfinite_is_in_the_config_and_kept_on_recompiling():
    teacher, student = F.shared_teacher_student()
    model = DistillationModel(teacher, student, plan=PLAN, nonfinite="ignore")
    assert model.get_config()["nonfinite"] == "ignore"
    guarded = DistillationModel(teacher, student, plan=PLAN)
    assert guarded.get_config()["nonfinite"] == "stop"
    adam = keras.optimizers.Adam(1e-3)
    guarded.compile(optimizer=adam)
    assert guarded.optimizer.inner_optimizer is adam
    # The compile config holds your optimizer (wrapped again on loading).
    config = guarded.get_compile_config()
    assert config["optimizer"]["class_name"] == "Adam"
