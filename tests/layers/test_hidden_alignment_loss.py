import keras
import numpy as np
import pytest
from keras import ops

from keras_mta.layers import HiddenAlignmentLoss
from tests import numpy_reference as ref
from tests.backend_utils import variable_gradients
from tests.losses.fixtures import random_case


def _projected(layer, student):
    kernel = ops.convert_to_numpy(layer.projector.kernel).astype(np.float64)
    bias = ops.convert_to_numpy(layer.projector.bias).astype(np.float64)
    return student.astype(np.float64) @ kernel + bias


def test_matches_float64_numpy_with_different_widths():
    student, teacher, units, mask = random_case(
        seed=31, student_dim=5, teacher_dim=12
    )
    layer = HiddenAlignmentLoss(teacher_dim=12)
    got = float(ops.convert_to_numpy(layer(student, teacher, units, mask)))
    # A nonzero bias, so that the test sees it.
    layer.projector.bias.assign(np.linspace(-1, 1, 12).astype("float32"))
    got = float(ops.convert_to_numpy(layer(student, teacher, units, mask)))
    want = ref.hidden_alignment(
        _projected(layer, student), teacher, units, mask
    )
    assert abs(got - want) / want < 1e-5


def test_builds_at_construction_when_student_dim_is_given():
    layer = HiddenAlignmentLoss(teacher_dim=12, student_dim=5)
    assert layer.built
    assert [tuple(w.shape) for w in layer.trainable_weights] == [
        (5, 12),
        (12,),
    ]


def test_gradients_reach_projector_not_teacher():
    student, teacher, units, mask = random_case(seed=32)
    layer = HiddenAlignmentLoss(teacher_dim=10, student_dim=6)
    s = keras.Variable(student)
    t = keras.Variable(teacher)
    grads = variable_gradients(
        lambda: layer(s.value, t.value, units, mask),
        [layer.projector.kernel, layer.projector.bias, s, t],
    )
    g_kernel, g_bias, g_student, g_teacher = grads
    for g in (g_kernel, g_bias, g_student):
        assert np.all(np.isfinite(g)) and np.abs(g).sum() > 0
    np.testing.assert_array_equal(g_teacher, 0.0)


def test_identity_projector_and_identical_states_give_zero():
    _, teacher, units, mask = random_case(seed=33)
    layer = HiddenAlignmentLoss(teacher_dim=10, student_dim=10)
    layer.projector.kernel.assign(np.eye(10, dtype="float32"))
    layer.projector.bias.assign(np.zeros(10, "float32"))
    got = float(ops.convert_to_numpy(layer(teacher, teacher, units, mask)))
    assert got == pytest.approx(0.0, abs=1e-6)


def test_config_round_trip_keeps_weights_layout():
    layer = HiddenAlignmentLoss(teacher_dim=8, student_dim=4, name="hra")
    config = keras.layers.serialize(layer)
    restored = keras.layers.deserialize(config)
    assert isinstance(restored, HiddenAlignmentLoss)
    assert restored.get_config() == layer.get_config()
    assert restored.built
    restored.set_weights(layer.get_weights())
    student, teacher, units, mask = random_case(
        seed=34, student_dim=4, teacher_dim=8
    )
    a = ops.convert_to_numpy(layer(student, teacher, units, mask))
    b = ops.convert_to_numpy(restored(student, teacher, units, mask))
    assert float(a) == float(b)


def test_bad_widths_are_named():
    with pytest.raises(ValueError, match="teacher_dim"):
        HiddenAlignmentLoss(teacher_dim=0)
    student, teacher, units, mask = random_case(seed=35)
    layer = HiddenAlignmentLoss(teacher_dim=7)
    with pytest.raises(ValueError, match="teacher_dim=7"):
        layer(student, teacher, units, mask)
    layer = HiddenAlignmentLoss(teacher_dim=10, student_dim=3)
    with pytest.raises(ValueError, match="student_dim=3"):
        layer(student, teacher, units, mask)


def test_float32_result_under_mixed_precision():
    student, teacher, units, mask = random_case(seed=36)
    layer = HiddenAlignmentLoss(
        teacher_dim=10, student_dim=6, dtype="mixed_bfloat16"
    )
    got = layer(student, teacher, units, mask)
    assert keras.backend.standardize_dtype(got.dtype) == "float32"
    assert np.isfinite(float(ops.convert_to_numpy(got)))
