"""The unit cosine is scale-free: tiny (1e-10) and huge (1e20) states give
the exact answer, and a zero vector still has a finite gradient."""

import numpy as np
import pytest
from keras import ops

from keras_mta import losses
from keras_mta.losses.units import safe_l2_normalize
from tests.backend_utils import compiled
from tests.backend_utils import gradients
from tests.losses.fixtures import random_case

hidden_alignment = compiled(losses.hidden_alignment)
structural_alignment = compiled(losses.structural_alignment)
token_importance = compiled(losses.token_importance)


@pytest.mark.parametrize("scale", [1e-10, 1e20])
def test_dsa_and_hra_of_rescaled_states_are_zero(scale):
    student, _, units, mask = random_case(seed=5, teacher_dim=6)
    # The same importance on both sides: only the cosine sees the scale.
    importance = ops.convert_to_numpy(token_importance(student, mask))
    dsa = structural_alignment(
        student,
        student * np.float32(scale),
        units,
        mask,
        student_importance=importance,
        teacher_importance=importance,
    )
    hra = hidden_alignment(
        student * np.float32(scale),
        student,
        units,
        mask,
        teacher_importance=importance,
    )
    assert abs(float(dsa)) < 1e-6
    assert abs(float(hra)) < 1e-6


@pytest.mark.parametrize("scale", [1e-10, 1.0, 1e20])
def test_normalized_vectors_have_unit_norm(scale):
    x = np.random.default_rng(0).normal(size=(3, 8)).astype("float32")
    got = ops.convert_to_numpy(safe_l2_normalize(x * np.float32(scale)))
    np.testing.assert_allclose(np.linalg.norm(got, axis=-1), 1.0, rtol=1e-6)


def test_zero_vector_is_zero_with_a_finite_gradient():
    x = np.zeros((2, 4), "float32")
    x[1] = [1.0, 2.0, 0.0, -1.0]
    got = ops.convert_to_numpy(safe_l2_normalize(x))
    assert (got[0] == 0).all()
    value, (grad,) = gradients(lambda v: ops.sum(safe_l2_normalize(v)), x)
    assert np.isfinite(value) and np.isfinite(grad).all()
