import keras
import numpy as np
import pytest
from keras import ops

from keras_mta.layers import StructuralAlignmentLoss
from tests import numpy_reference as ref
from tests.backend_utils import gradients
from tests.losses.fixtures import random_case


def test_matches_float64_numpy_with_different_widths():
    student, teacher, units, mask = random_case(
        seed=21, student_dim=5, teacher_dim=17
    )
    layer = StructuralAlignmentLoss()
    got = float(ops.convert_to_numpy(layer(student, teacher, units, mask)))
    want = ref.structural_alignment(student, teacher, units, mask)
    assert abs(got - want) / want < 1e-5
    assert layer.weights == []


def test_gradient_reaches_student_only():
    student, teacher, units, mask = random_case(seed=22)
    layer = StructuralAlignmentLoss()
    value, (g_s, g_t) = gradients(
        lambda s, t: layer(s, t, units, mask), student, teacher
    )
    assert np.isfinite(value)
    assert np.all(np.isfinite(g_s)) and np.abs(g_s).sum() > 0
    np.testing.assert_array_equal(g_t, 0.0)


def test_config_round_trip():
    layer = StructuralAlignmentLoss(name="dsa")
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(restored, StructuralAlignmentLoss)
    assert restored.get_config() == layer.get_config()


def test_float32_result_under_mixed_precision():
    student, teacher, units, mask = random_case(seed=23)
    layer = StructuralAlignmentLoss(dtype="mixed_bfloat16")
    got = layer(student, teacher, units, mask)
    assert keras.backend.standardize_dtype(got.dtype) == "float32"
    want = ref.structural_alignment(student, teacher, units, mask)
    assert float(ops.convert_to_numpy(got)) == pytest.approx(want, rel=1e-5)
