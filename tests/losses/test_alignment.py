import numpy as np
import pytest
from keras import ops

from keras_mta import losses
from tests import numpy_reference as ref
from tests.backend_utils import compiled
from tests.backend_utils import gradients
from tests.losses.fixtures import random_case

# Compiled under jax (see tests/backend_utils.compiled); eager elsewhere.
entropy_weights = compiled(losses.entropy_weights)
hidden_alignment = compiled(losses.hidden_alignment)
structural_alignment = compiled(losses.structural_alignment)
token_importance = compiled(losses.token_importance)


def _np(x):
    return float(ops.convert_to_numpy(x))


def _rel_err(got, want):
    return abs(got - want) / max(abs(want), 1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_structural_matches_float64_numpy(seed):
    student, teacher, units, mask = random_case(seed=seed)
    got = _np(structural_alignment(student, teacher, units, mask))
    want = ref.structural_alignment(student, teacher, units, mask)
    assert want > 0
    assert _rel_err(got, want) < 1e-5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hidden_matches_float64_numpy(seed):
    _, teacher, units, mask = random_case(seed=seed)
    projected = np.random.default_rng(seed).normal(size=teacher.shape)
    projected = projected.astype("float32")
    got = _np(hidden_alignment(projected, teacher, units, mask))
    want = ref.hidden_alignment(projected, teacher, units, mask)
    assert _rel_err(got, want) < 1e-5


def test_entropy_weighting_matches_float64_numpy():
    student, teacher, units, mask = random_case(seed=7)
    logits = np.random.default_rng(7).normal(size=(4, 9, 11)) * 2
    weights = ops.convert_to_numpy(entropy_weights(logits, mask))
    ref_weights = ref.entropy_weights(logits, mask)
    got = _np(
        structural_alignment(
            student, teacher, units, mask, teacher_token_weights=weights
        )
    )
    want = ref.structural_alignment(
        student, teacher, units, mask, token_weights=ref_weights
    )
    assert _rel_err(got, want) < 1e-5
    projected = np.random.default_rng(8).normal(size=teacher.shape)
    got = _np(
        hidden_alignment(
            projected.astype("float32"),
            teacher,
            units,
            mask,
            teacher_token_weights=weights,
        )
    )
    want = ref.hidden_alignment(
        projected, teacher, units, mask, token_weights=ref_weights
    )
    assert _rel_err(got, want) < 1e-5


def test_precomputed_importance_gives_the_same_value():
    student, teacher, units, mask = random_case(seed=3)
    a_s = token_importance(student, mask)
    a_t = token_importance(teacher, mask)
    plain = _np(structural_alignment(student, teacher, units, mask))
    shared = _np(
        structural_alignment(
            student,
            teacher,
            units,
            mask,
            student_importance=a_s,
            teacher_importance=a_t,
        )
    )
    assert plain == pytest.approx(shared, rel=1e-6)


def _finite_difference(fn, x, index, step=1e-4):
    up = x.astype(np.float64).copy()
    down = x.astype(np.float64).copy()
    up[index] += step
    down[index] -= step
    return (fn(up) - fn(down)) / (2 * step)


def test_structural_gradients():
    student, teacher, units, mask = random_case(seed=4)
    importance = ops.convert_to_numpy(token_importance(student, mask))

    def fn(s, t, a):
        return structural_alignment(s, t, units, mask, student_importance=a)

    value, (g_s, g_t, g_a) = gradients(fn, student, teacher, importance)
    assert np.isfinite(value)
    assert np.all(np.isfinite(g_s))
    assert np.abs(g_s).sum() > 0
    np.testing.assert_array_equal(g_t, 0.0)
    np.testing.assert_array_equal(g_a, 0.0)
    # Padded tokens and tokens outside every unit get no gradient.
    assert np.all(g_s[1, 6:] == 0.0)
    assert np.all(g_s[3] == 0.0)
    # The gradient is the derivative of the formula (float64 differences).
    # The importance weights are constants: hold the student's fixed.
    for index in [(0, 0, 1), (0, 4, 3), (1, 2, 0), (1, 5, 5)]:

        def numpy_loss(s):
            return ref_with_fixed_importance(s, teacher, units, mask, student)

        want = _finite_difference(numpy_loss, student, index)
        np.testing.assert_allclose(g_s[index], want, rtol=2e-3, atol=1e-6)


def ref_with_fixed_importance(student, teacher, units, mask, importance_from):
    """DSA with the student's importance computed from fixed states."""
    original = ref.token_importance
    fixed = original(importance_from, mask)
    calls = {"n": 0}

    def patched(hidden, m):
        calls["n"] += 1
        return fixed if calls["n"] == 1 else original(hidden, m)

    ref.token_importance = patched
    try:
        return ref.structural_alignment(student, teacher, units, mask)
    finally:
        ref.token_importance = original


def test_hidden_gradients():
    _, teacher, units, mask = random_case(seed=5)
    projected = np.random.default_rng(5).normal(size=teacher.shape)
    projected = projected.astype("float32")

    def fn(p, t):
        return hidden_alignment(p, t, units, mask)

    value, (g_p, g_t) = gradients(fn, projected, teacher)
    assert np.isfinite(value)
    assert np.abs(g_p).sum() > 0
    np.testing.assert_array_equal(g_t, 0.0)
    for index in [(0, 0, 1), (0, 8, 9), (1, 4, 2)]:
        want = _finite_difference(
            lambda p: ref.hidden_alignment(p, teacher, units, mask),
            projected,
            index,
        )
        np.testing.assert_allclose(g_p[index], want, rtol=2e-3, atol=1e-6)


def _both(student, teacher, units, mask):
    def fn(s, t):
        return structural_alignment(s, t, units, mask) + hidden_alignment(
            s, t, units, mask
        )

    value, grads = gradients(fn, student, teacher)
    assert np.isfinite(value)
    for grad in grads:
        assert np.all(np.isfinite(grad))
    return (
        _np(structural_alignment(student, teacher, units, mask)),
        _np(hidden_alignment(student, teacher, units, mask)),
    )


def test_batch_without_units_gives_zero():
    student, teacher, _, mask = random_case(seed=6, teacher_dim=6)
    units = np.zeros((4, 3, 2), "int32")
    dsa, hra = _both(student, teacher, units, mask)
    assert dsa == 0.0 and hra == 0.0


def test_one_unit_gives_zero_dsa():
    student, teacher, _, mask = random_case(seed=6, teacher_dim=6)
    units = np.zeros((4, 3, 2), "int32")
    units[0, 0] = [2, 6]
    dsa, hra = _both(student, teacher, units, mask)
    assert dsa == 0.0
    assert hra > 0.0


def test_zero_hidden_vectors_are_finite():
    student, teacher, units, mask = random_case(seed=6, teacher_dim=6)
    student[0] = 0.0
    teacher[1] = 0.0
    student[0, 3] = 1.0
    dsa, hra = _both(student, teacher, units, mask)
    assert np.isfinite(dsa) and np.isfinite(hra)
    want = ref.structural_alignment(student, teacher, units, mask)
    assert dsa == pytest.approx(want, rel=1e-5, abs=1e-7)


def test_one_token_and_all_padding_rows_are_finite():
    student, teacher, units, _ = random_case(seed=6, teacher_dim=6)
    mask = np.zeros((4, 9), "int32")
    mask[0, :] = 1
    mask[2, :1] = 1  # one token; sample 1 and 3 are all padding
    dsa, hra = _both(student, teacher, units, mask)
    want = ref.structural_alignment(student, teacher, units, mask)
    assert dsa == pytest.approx(want, rel=1e-5)
    # A batch whose only real rows are single tokens: no importance at all.
    mask[0, 1:] = 0
    dsa, hra = _both(student, teacher, units, mask)
    assert dsa == 0.0 and hra == 0.0


def test_sample_without_units_changes_nothing():
    student, teacher, units, mask = random_case(seed=9)
    # Sample 3 has no units: dropping it leaves both losses unchanged.
    full = _np(structural_alignment(student, teacher, units, mask))
    part = _np(
        structural_alignment(student[:3], teacher[:3], units[:3], mask[:3])
    )
    assert full == pytest.approx(part, rel=1e-6)


def test_padding_does_not_change_the_losses():
    student, teacher, units, mask = random_case(seed=10)
    extra = 6
    rng = np.random.default_rng(0)

    def pad(h):
        tail = rng.normal(size=(h.shape[0], extra, h.shape[2]))
        return np.concatenate([h, tail.astype("float32")], axis=1)

    mask_long = np.concatenate([mask, np.zeros((4, extra), "int32")], 1)
    units_long = np.concatenate([units, np.zeros((4, 2, 2), "int32")], 1)
    units_long[2, 1] = [3, 12]  # a unit wholly in padding
    for fn in (structural_alignment, hidden_alignment):
        b = teacher if fn is hidden_alignment else student
        short = _np(fn(b, teacher, units, mask))
        long = _np(fn(pad(b), pad(teacher), units_long, mask_long))
        assert long == pytest.approx(short, rel=1e-5)


def test_permuting_units_does_not_change_dsa():
    student, teacher, units, mask = random_case(seed=11)
    permuted = units.copy()
    permuted[0] = units[0, [3, 0, 4, 2, 1]]
    permuted[1] = units[1, [2, 3, 0, 1, 4]]
    a = _np(structural_alignment(student, teacher, units, mask))
    b = _np(structural_alignment(student, teacher, permuted, mask))
    assert a == pytest.approx(b, rel=1e-5)


def test_identical_states_give_zero():
    _, teacher, units, mask = random_case(seed=12)
    assert _np(structural_alignment(teacher, teacher, units, mask)) == (
        pytest.approx(0.0, abs=1e-7)
    )
    assert _np(hidden_alignment(teacher, teacher, units, mask)) == (
        pytest.approx(0.0, abs=1e-6)
    )
