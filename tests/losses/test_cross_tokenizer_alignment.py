"""DSA and unit-level HRA across tokenizers: each side pools its own
tokens; checked against float64 NumPy loops and on every backend's
gradients."""

import numpy as np
import pytest
from keras import ops

from keras_mta import losses
from tests import numpy_reference as ref
from tests.backend_utils import compiled
from tests.backend_utils import gradients
from tests.losses.fixtures import random_case
from tests.losses.test_alignment import _finite_difference
from tests.losses.test_alignment import _np
from tests.losses.test_alignment import _rel_err

structural_alignment = compiled(losses.structural_alignment)
unit_hidden_alignment = compiled(losses.unit_hidden_alignment)
token_importance = compiled(losses.token_importance)


def cross_case(seed=0):
    """`random_case`'s student side, and a teacher with 7 tokens per row and
    its own token ranges of the same 5 unit rows. Row 0: every unit on
    both sides; row 1: unit 2 covers no teacher token (padding), so it
    counts on neither; row 2: one unit; row 3: none."""
    student, _, units, mask = random_case(seed=seed)
    rng = np.random.default_rng(seed + 100)
    teacher = rng.normal(size=(4, 7, 10)).astype("float32")
    teacher_mask = np.zeros((4, 7), "int32")
    for b, n in enumerate([7, 4, 2, 3]):
        teacher_mask[b, :n] = 1
    teacher_units = np.zeros((4, 5, 2), "int32")
    teacher_units[0, :5] = [[0, 2], [1, 4], [2, 3], [4, 6], [6, 7]]
    teacher_units[1, :3] = [[0, 1], [1, 3], [5, 7]]
    teacher_units[2, :1] = [[0, 2]]
    return student, teacher, units, mask, teacher_units, teacher_mask


def pooled(hidden, importance, units, mask):
    """Per sample: {unit index: (pooled vector, its normalized token
    weights)} for the units with a token (float64 loops)."""
    members = ref.memberships(units, mask)
    weights = ref.normalized_weights(importance, members)
    out = []
    for b, sample in enumerate(members):
        row = {}
        for u, tokens in sample:
            if tokens:
                w = weights[b, tokens]
                vector = (w[:, None] * hidden[b, tokens]).sum(0)
                row[u] = (vector / max(w.sum(), 1e-5), w)
        out.append(row)
    return out


def _cos(a, b, eps):
    return float(a @ b) / (
        max(np.linalg.norm(a), eps) * max(np.linalg.norm(b), eps)
    )


def reference(
    student,
    teacher,
    units,
    mask,
    teacher_units,
    teacher_mask,
    student_importance=None,
    kind="dsa",
    kernel=None,
    bias=None,
):
    """DSA (`kind="dsa"`) or unit-level HRA (`kind="hra"`, projector
    `z @ kernel + bias`) across tokenizers, float64."""
    student = np.asarray(student, np.float64)
    teacher = np.asarray(teacher, np.float64)
    if student_importance is None:
        student_importance = ref.token_importance(student, mask)
    s_units = pooled(student, student_importance, units, mask)
    t_units = pooled(
        teacher,
        ref.token_importance(teacher, teacher_mask),
        teacher_units,
        teacher_mask,
    )
    numerator = denominator = 0.0
    for s_row, t_row in zip(s_units, t_units):
        both = [u for u in s_row if u in t_row]
        weight = {u: t_row[u][1].sum() for u in both}
        if kind == "hra":
            for u in both:
                projected = s_row[u][0] @ kernel + bias
                numerator += weight[u] * (
                    1.0 - _cos(projected, t_row[u][0], 1e-5)
                )
                denominator += weight[u]
            continue
        for u in both:
            for v in both:
                if u == v:
                    continue
                c_s = _cos(s_row[u][0], s_row[v][0], 1e-8)
                c_t = _cos(t_row[u][0], t_row[v][0], 1e-8)
                numerator += weight[u] * weight[v] * (c_s - c_t) ** 2
                denominator += weight[u] * weight[v]
    return numerator / max(denominator, 1e-5)


def projector(seed):
    rng = np.random.default_rng(seed)
    kernel = rng.normal(size=(6, 10)).astype("float32")
    bias = rng.normal(size=(10,)).astype("float32")
    return kernel, bias


@pytest.mark.parametrize("seed", [0, 1])
def test_cross_dsa_matches_float64_numpy(seed):
    case = cross_case(seed)
    student, teacher, units, mask, teacher_units, teacher_mask = case
    got = _np(
        structural_alignment(
            student,
            teacher,
            units,
            mask,
            teacher_units=teacher_units,
            teacher_padding_mask=teacher_mask,
        )
    )
    want = reference(*case)
    assert want > 0
    assert _rel_err(got, want) < 1e-5


@pytest.mark.parametrize("seed", [0, 1])
def test_unit_hra_matches_float64_numpy(seed):
    case = cross_case(seed)
    kernel, bias = projector(seed)
    got = _np(
        unit_hidden_alignment(
            case[0],
            case[1],
            case[2],
            case[3],
            teacher_units=case[4],
            teacher_padding_mask=case[5],
            projector=lambda z: ops.add(ops.matmul(z, kernel), bias),
        )
    )
    want = reference(*case, kind="hra", kernel=kernel, bias=bias)
    assert want > 0
    assert _rel_err(got, want) < 1e-5


def test_one_tokenization_is_the_same_formula():
    """With the student's own units on both sides the cross-tokenizer DSA
    is today's DSA."""
    student, teacher, units, mask = random_case(seed=3)
    plain = _np(structural_alignment(student, teacher, units, mask))
    cross = _np(
        structural_alignment(
            student,
            teacher,
            units,
            mask,
            teacher_units=units,
            teacher_padding_mask=mask,
        )
    )
    assert abs(plain - cross) <= 1e-6 * abs(plain)


def test_unit_hra_gradients():
    case = cross_case(seed=4)
    student, teacher, units, mask, teacher_units, teacher_mask = case
    kernel, bias = projector(4)
    importance = ops.convert_to_numpy(token_importance(student, mask))

    def fn(s, t, k):
        return unit_hidden_alignment(
            s,
            t,
            units,
            mask,
            teacher_units=teacher_units,
            teacher_padding_mask=teacher_mask,
            projector=lambda z: ops.add(ops.matmul(z, k), bias),
            student_importance=importance,
        )

    value, (g_s, g_t, g_k) = gradients(fn, student, teacher, kernel)
    assert np.isfinite(value)
    assert np.all(np.isfinite(g_s)) and np.abs(g_s).sum() > 0
    assert np.abs(g_k).sum() > 0
    np.testing.assert_array_equal(g_t, 0.0)
    # Rows 3 (no unit) and the padding of row 1 get no gradient.
    assert np.all(g_s[3] == 0.0) and np.all(g_s[1, 6:] == 0.0)
    check_against_differences(
        g_s,
        case,
        importance,
        [(0, 0, 1), (0, 5, 3), (1, 1, 0)],
        kind="hra",
        kernel=kernel,
        bias=bias,
    )


def check_against_differences(grads, case, importance, indices, **kwargs):
    """The gradient is the derivative of the formula (float64 central
    differences), the student's importance held fixed (a constant)."""

    def loss(s):
        return reference(
            s,
            *case[1:],
            student_importance=importance.astype(np.float64),
            **kwargs,
        )

    for index in indices:
        want = _finite_difference(loss, case[0], index)
        np.testing.assert_allclose(grads[index], want, rtol=2e-3, atol=1e-6)


def test_cross_dsa_gradients():
    case = cross_case(seed=5)
    student, teacher, units, mask, teacher_units, teacher_mask = case
    importance = ops.convert_to_numpy(token_importance(student, mask))

    def fn(s, t):
        return structural_alignment(
            s,
            t,
            units,
            mask,
            student_importance=importance,
            teacher_units=teacher_units,
            teacher_padding_mask=teacher_mask,
        )

    value, (g_s, g_t) = gradients(fn, student, teacher)
    assert np.isfinite(value)
    assert np.abs(g_s).sum() > 0
    np.testing.assert_array_equal(g_t, 0.0)
    check_against_differences(
        g_s, case, importance, [(0, 0, 1), (0, 4, 3), (1, 0, 2)]
    )


@pytest.mark.once
def test_bad_cross_tokenizer_inputs_name_the_problem():
    student, teacher, units, mask, teacher_units, teacher_mask = cross_case()
    with pytest.raises(ValueError, match="needs `teacher_padding_mask`"):
        losses.structural_alignment(
            student, teacher, units, mask, teacher_units=teacher_units
        )
    with pytest.raises(ValueError, match="without `teacher_units`"):
        losses.structural_alignment(
            student, teacher, units, mask, teacher_padding_mask=teacher_mask
        )
    with pytest.raises(ValueError, match="max_units"):
        losses.structural_alignment(
            student,
            teacher,
            units,
            mask,
            teacher_units=teacher_units[:, :3],
            teacher_padding_mask=teacher_mask,
        )
    with pytest.raises(ValueError, match="t_len"):
        losses.structural_alignment(
            student,
            teacher,
            units,
            mask,
            teacher_units=teacher_units,
            teacher_padding_mask=teacher_mask[:, :5],
        )
