"""AlignmentLoss: the base class of user-defined alignment losses."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_mta.layers import AlignmentLoss
from tests.backend_utils import gradients


class UnitMeanSquared(AlignmentLoss):
    """Mean squared difference of unit-mean states, at every pair.

    Word units at the lowest `word_pairs` pairs, phrase units above; the
    student states pass through a learned projector to the teacher width.
    """

    def __init__(self, teacher_dim, word_pairs=1, **kwargs):
        super().__init__(**kwargs)
        self.teacher_dim = teacher_dim
        self.word_pairs = word_pairs
        self.projector = keras.layers.Dense(
            teacher_dim,
            use_bias=False,
            kernel_initializer="ones",
            dtype=self.dtype_policy,
            name="projector",
        )

    def build(self, student_hidden_shape, teacher_hidden_shape):
        self.projector.build(student_hidden_shape[0])

    def call(
        self,
        student_hidden,
        teacher_hidden,
        word_units,
        phrase_units,
        padding_mask,
    ):
        total = 0.0
        for k, (s, t) in enumerate(zip(student_hidden, teacher_hidden)):
            units = word_units if k < self.word_pairs else phrase_units
            s = unit_means(self.projector(s), units)
            t = unit_means(t, units)
            total = total + ops.mean(ops.square(s - t))
        return total / len(student_hidden)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"teacher_dim": self.teacher_dim, "word_pairs": self.word_pairs}
        )
        return config


def unit_means(hidden, units):
    """`(batch, units, dim)` means over each unit's tokens (0 if empty)."""
    positions = ops.arange(hidden.shape[1])[None, None, :]
    starts = units[..., :1]
    ends = units[..., 1:]
    member = ops.cast(
        ops.logical_and(positions >= starts, positions < ends), "float32"
    )
    count = ops.maximum(ops.sum(member, axis=-1, keepdims=True), 1.0)
    return ops.einsum("but,btd->bud", member, hidden) / count


def reference(student, teacher, words, phrases, word_pairs, kernel):
    """float64 NumPy loop version of UnitMeanSquared."""
    total = 0.0
    for k, (s, t) in enumerate(zip(student, teacher)):
        units = words if k < word_pairs else phrases
        s = s.astype(np.float64) @ kernel.astype(np.float64)
        t = t.astype(np.float64)
        diffs = []
        for b in range(units.shape[0]):
            for start, end in units[b]:
                if end > start:
                    sm = s[b, start:end].mean(0)
                    tm = t[b, start:end].mean(0)
                else:
                    sm = np.zeros(s.shape[-1])
                    tm = np.zeros(t.shape[-1])
                diffs.append((sm - tm) ** 2)
        total += np.mean(diffs)
    return total / len(student)


def inputs(rng):
    student = [rng.normal(size=(2, 6, 4)).astype("float32") for _ in "ab"]
    teacher = [rng.normal(size=(2, 6, 8)).astype("float32") for _ in "ab"]
    words = np.array(
        [[[0, 1], [1, 3], [3, 6]], [[0, 2], [2, 4], [0, 0]]], "int32"
    )
    phrases = np.array([[[0, 3], [3, 6]], [[0, 4], [0, 0]]], "int32")
    mask = np.array([[1] * 6, [1] * 4 + [0] * 2], "float32")
    return student, teacher, words, phrases, mask


def test_base_call_must_be_implemented(rng):
    student, teacher, words, phrases, mask = inputs(rng)
    with pytest.raises(NotImplementedError, match="must implement `call"):
        AlignmentLoss()(student, teacher, words, phrases, mask)


def test_subclass_value_matches_numpy(rng):
    student, teacher, words, phrases, mask = inputs(rng)
    layer = UnitMeanSquared(teacher_dim=8, word_pairs=1)
    value = layer(student, teacher, words, phrases, mask)
    kernel = keras.ops.convert_to_numpy(layer.projector.kernel)
    expected = reference(student, teacher, words, phrases, 1, kernel)
    assert float(keras.ops.convert_to_numpy(value)) == pytest.approx(
        expected, rel=1e-5
    )


def test_gradient_reaches_student_states(rng):
    student, teacher, words, phrases, mask = inputs(rng)
    layer = UnitMeanSquared(teacher_dim=8)

    def fn(s0, s1, t0, t1):
        return layer([s0, s1], [t0, t1], words, phrases, mask)

    value, grads = gradients(fn, *student, *teacher)
    assert np.isfinite(value)
    for grad in grads:
        assert np.all(np.isfinite(grad))
        assert np.abs(grad).max() > 0


def test_defaults_and_loss_weight():
    layer = AlignmentLoss(name="mine")
    assert layer.loss_weight == 1.0
    assert layer.autocast is False
    assert layer.dtype_policy.name == "float32"
    # float32 also under a mixed policy.
    keras.config.set_dtype_policy("mixed_bfloat16")
    assert AlignmentLoss().compute_dtype == "float32"
    assert AlignmentLoss(loss_weight=0).loss_weight == 0.0


@pytest.mark.parametrize("bad", [-0.1, float("nan")])
def test_error_negative_loss_weight(bad):
    with pytest.raises(ValueError, match="`loss_weight` must be >= 0"):
        AlignmentLoss(loss_weight=bad)


@pytest.mark.parametrize("bad", ["0.5", True, None])
def test_error_loss_weight_type(bad):
    with pytest.raises(TypeError, match="`loss_weight` must be a float"):
        AlignmentLoss(loss_weight=bad)


def test_get_config_round_trip(rng):
    layer = UnitMeanSquared(
        teacher_dim=8, word_pairs=2, loss_weight=0.25, name="ums"
    )
    config = layer.get_config()
    assert config["loss_weight"] == 0.25
    clone = UnitMeanSquared.from_config(config)
    assert clone.name == "ums"
    assert clone.loss_weight == 0.25
    assert clone.word_pairs == 2 and clone.teacher_dim == 8
    base = AlignmentLoss.from_config(AlignmentLoss(loss_weight=3).get_config())
    assert base.loss_weight == 3.0
