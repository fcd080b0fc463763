"""Top-k form of the divergences, against a float64 NumPy reference.

The teacher keeps its `k` most likely tokens plus the log of the mass of all
the others; both laws are coarsened to those `k + 1` outcomes and the
divergence is taken over them. The reference below builds the coarse laws in
float64 straight from the full logits (the rest bucket as the sum of the
other tokens' probabilities, with no cancellation) and reuses
`tests.numpy_reference.divergence` on them.
"""

import numpy as np
import pytest
from keras import ops

from keras_mta import losses
from keras_mta.losses import divergences
from tests import numpy_reference as ref
from tests.backend_utils import compiled
from tests.backend_utils import gradients

# Compiled under jax (see tests/backend_utils.compiled); eager elsewhere.
top_k_log_probs = compiled(divergences.top_k_log_probs)

# name, Loss class, mixing argument name (None: no mixture), non-default mix
CASES = [
    ("forward_kl", losses.ForwardKL, None, None),
    ("reverse_kl", losses.ReverseKL, None, None),
    ("jensen_shannon", losses.JensenShannon, "beta", 0.3),
    ("total_variation", losses.TotalVariation, None, None),
    ("skew_forward_kl", losses.SkewForwardKL, "skew", 0.25),
    ("skew_reverse_kl", losses.SkewReverseKL, "skew", 0.25),
]
IDS = [case[0] for case in CASES]
VOCAB = 17
TEMPERATURE = 2.0


def test_cases_cover_every_divergence():
    assert sorted(IDS) == sorted(losses.DIVERGENCES)
    for name, cls, _, _ in CASES:
        assert losses.DIVERGENCES[name] is cls


def _logits(seed, shape=(3, 5, VOCAB), scale=3.0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=shape) * scale).astype("float32")


def _weight():
    return np.array(
        [[0, 1, 1, 2, 1], [0, 0, 1, 1, 0.5], [1, 0, 0, 0, 0]], "float32"
    )


def _loss(cls, mix_name, mix, **kwargs):
    if mix_name:
        kwargs[mix_name] = mix
    return cls(temperature=TEMPERATURE, **kwargs)


def _np_top_k(logits, k, temperature):
    """float64 `(values, indices, log_rest)`; rest summed, not subtracted."""
    log_p = ref.log_softmax(logits, temperature)
    # Stable sort on -log_p: decreasing values, ties broken by lower id.
    indices = np.argsort(-log_p, axis=-1, kind="stable")[..., :k]
    values = np.take_along_axis(log_p, indices, axis=-1)
    rest = np.exp(log_p)
    np.put_along_axis(rest, indices, 0.0, axis=-1)
    with np.errstate(divide="ignore"):
        log_rest = np.log(rest.sum(-1))
    return values, indices, log_rest


def _np_coarse(logits, indices, temperature):
    """float64 `(..., k + 1)` log-law on the teacher's top k plus the rest."""
    log_p = ref.log_softmax(logits, temperature)
    top = np.take_along_axis(log_p, indices, axis=-1)
    rest = np.exp(log_p)
    np.put_along_axis(rest, indices, 0.0, axis=-1)
    with np.errstate(divide="ignore"):
        log_rest = np.log(rest.sum(-1))
    return np.concatenate([top, log_rest[..., None]], axis=-1)


def _np_top_k_divergence(name, teacher, student, k, temperature, mix):
    """Per-position divergence over the `k + 1` coarse outcomes, float64."""
    _, indices, _ = _np_top_k(teacher, k, temperature)
    coarse_t = _np_coarse(teacher, indices, temperature)
    coarse_s = _np_coarse(student, indices, temperature)
    # Normalized log-probabilities are their own log_softmax at temperature 1.
    return ref.divergence(name, coarse_t, coarse_s, 1.0, mix)


def _teacher_top_k(teacher, k, temperature=TEMPERATURE):
    values, indices, log_rest = top_k_log_probs(teacher, k, temperature)
    return (
        ops.convert_to_numpy(values),
        ops.convert_to_numpy(indices),
        ops.convert_to_numpy(log_rest),
    )


# 1. top_k_log_probs ---------------------------------------------------------


def test_top_k_log_probs_matches_float64_numpy():
    logits = _logits(0)
    for k, temperature in [(1, 1.0), (4, 2.0), (10, 2.0)]:
        values, indices, log_rest = top_k_log_probs(logits, k, temperature)
        assert ops.convert_to_numpy(values).dtype == np.float32
        assert ops.convert_to_numpy(indices).dtype == np.int32
        assert ops.convert_to_numpy(log_rest).dtype == np.float32
        values, indices, log_rest = _teacher_top_k(logits, k, temperature)
        want_values, want_indices, want_log_rest = _np_top_k(
            logits, k, temperature
        )
        assert values.shape == indices.shape == (3, 5, k)
        assert log_rest.shape == (3, 5)
        np.testing.assert_array_equal(indices, want_indices)
        np.testing.assert_allclose(values, want_values, rtol=1e-5, atol=1e-5)
        assert np.all(np.diff(values, axis=-1) <= 0.0)
        # In probability space the rest is right to float32 rounding
        # everywhere; in log space wherever the rest mass is not tiny.
        want_rest = np.exp(want_log_rest)
        np.testing.assert_allclose(np.exp(log_rest), want_rest, atol=2e-6)
        not_tiny = want_rest > 1e-3
        assert not_tiny.sum() >= 3, k
        np.testing.assert_allclose(
            log_rest[not_tiny], want_log_rest[not_tiny], rtol=0, atol=5e-4
        )


def test_top_k_log_probs_full_vocabulary_leaves_no_rest_mass():
    logits = _logits(1)
    values, indices, log_rest = _teacher_top_k(logits, VOCAB)
    want_values, want_indices, _ = _np_top_k(logits, VOCAB, TEMPERATURE)
    np.testing.assert_array_equal(indices, want_indices)
    np.testing.assert_allclose(values, want_values, rtol=1e-5, atol=1e-5)
    assert np.all(np.isfinite(log_rest))
    # Up to float32 rounding of logsumexp(values) the rest is empty.
    assert np.all(np.exp(log_rest.astype(np.float64)) <= 1e-6)


def test_top_k_log_probs_full_vocabulary_rest_is_exactly_empty():
    _, _, log_rest = _teacher_top_k(_logits(1), VOCAB)
    np.testing.assert_array_equal(np.exp(log_rest), 0.0)
    np.testing.assert_array_equal(log_rest, divergences._EMPTY_LOG_PROB)


# 2. top_k against the float64 coarse reference -----------------------------


@pytest.mark.parametrize("name,cls,mix_name,mix", CASES, ids=IDS)
def test_top_k_matches_float64_coarse_reference(name, cls, mix_name, mix):
    teacher, student = _logits(2), _logits(3)
    weight = _weight()
    for k in [1, 5]:
        _check_top_k_against_reference(
            name, cls, mix_name, mix, k, teacher, student, weight
        )


def _check_top_k_against_reference(
    name, cls, mix_name, mix, k, teacher, student, weight
):
    values, indices, log_rest = _teacher_top_k(teacher, k)
    want_per_position = _np_top_k_divergence(
        name, teacher, student, k, TEMPERATURE, mix
    )

    per_position = compiled(_loss(cls, mix_name, mix, reduction="none").top_k)(
        values, indices, log_rest, student
    )
    per_position = ops.convert_to_numpy(per_position)
    assert per_position.shape == (3, 5)
    np.testing.assert_allclose(
        per_position, want_per_position, rtol=1e-5, atol=1e-6
    )

    got = compiled(_loss(cls, mix_name, mix).top_k)(
        values, indices, log_rest, student, sample_weight=weight
    )
    want = (want_per_position * weight).sum() / weight.sum()
    assert float(ops.convert_to_numpy(got)) == pytest.approx(want, rel=1e-5)


# 3. k = vocabulary size: the full divergence --------------------------------


@pytest.mark.parametrize("name,cls,mix_name,mix", CASES, ids=IDS)
def test_top_k_with_full_vocabulary_equals_full_loss(name, cls, mix_name, mix):
    teacher, student = _logits(7), _logits(8)
    weight = _weight()
    loss = _loss(cls, mix_name, mix)
    values, indices, log_rest = _teacher_top_k(teacher, VOCAB)
    got = float(
        ops.convert_to_numpy(
            compiled(loss.top_k)(
                values, indices, log_rest, student, sample_weight=weight
            )
        )
    )
    full = float(
        ops.convert_to_numpy(loss(teacher, student, sample_weight=weight))
    )
    assert got == pytest.approx(full, rel=1e-5)
    per_token = ref.divergence(name, teacher, student, TEMPERATURE, mix)
    want = (per_token * weight).sum() / weight.sum()
    assert got == pytest.approx(want, rel=1e-5)


# 4. Data processing inequality ----------------------------------------------


@pytest.mark.parametrize("cls", [losses.ForwardKL, losses.ReverseKL])
def test_top_k_never_exceeds_full_divergence(cls):
    teacher, student = _logits(9), _logits(10)
    loss = cls(temperature=TEMPERATURE, reduction="none")
    full = ops.convert_to_numpy(compiled(loss)(teacher, student))
    previous = np.zeros_like(full)
    for k in [1, 3, 8, 16, VOCAB]:
        values, indices, log_rest = _teacher_top_k(teacher, k)
        got = ops.convert_to_numpy(
            compiled(loss.top_k)(values, indices, log_rest, student)
        )
        assert np.all(got >= -1e-6)
        assert np.all(got <= full + 1e-5 + 1e-5 * np.abs(full)), k
        # Refining the partition (a larger k) can only raise the divergence.
        assert np.all(got >= previous - 1e-5 - 1e-5 * np.abs(previous)), k
        previous = got


# 5. Gradients ---------------------------------------------------------------


def _forward_kl_top_k_gradient(teacher, student, k, temperature, weight):
    """Analytic float64 gradient of the weighted coarse forward KL.

    With s = softmax(z / T), p_o and q_o the coarse teacher and student
    masses and o(j) the outcome of token j,
    d/dz_j sum_o p_o (log p_o - log q_o) = s_j (1 - p_o(j) / q_o(j)) / T.
    """
    _, indices, _ = _np_top_k(teacher, k, temperature)
    p = np.exp(_np_coarse(teacher, indices, temperature))
    q = np.exp(_np_coarse(student, indices, temperature))
    ratio = p / q
    # Every token starts in the rest bucket; the top k get their own ratio.
    per_token = np.repeat(ratio[..., -1:], student.shape[-1], axis=-1)
    np.put_along_axis(per_token, indices, ratio[..., :-1], axis=-1)
    s = ref.softmax(student, temperature)
    grad = s * (1.0 - per_token) / temperature
    return grad * (weight / weight.sum())[..., None]


def _np_weighted_forward_kl(teacher, student, k, temperature, weight):
    per_position = _np_top_k_divergence(
        "forward_kl", teacher, student, k, temperature, None
    )
    return (per_position * weight).sum() / weight.sum()


def _forward_kl_top_k_fn(teacher, k, weight):
    values, indices, log_rest = _teacher_top_k(teacher, k)
    loss = losses.ForwardKL(temperature=TEMPERATURE)

    def fn(student):
        return loss.top_k(
            values, indices, log_rest, student, sample_weight=weight
        )

    return fn


def test_forward_kl_top_k_gradient_matches_float64():
    k = 3
    shape = (3, 5, VOCAB)
    teacher, student = _logits(11, shape), _logits(12, shape)
    weight = _weight()
    value, (grad,) = gradients(
        _forward_kl_top_k_fn(teacher, k, weight), student
    )
    assert np.all(np.isfinite(grad))
    want_value = _np_weighted_forward_kl(
        teacher, student, k, TEMPERATURE, weight
    )
    assert float(value) == pytest.approx(want_value, rel=1e-5)
    want = _forward_kl_top_k_gradient(teacher, student, k, TEMPERATURE, weight)
    np.testing.assert_allclose(grad, want, rtol=1e-4, atol=1e-6)
    # Positions of weight 0 get no gradient.
    np.testing.assert_array_equal(grad[weight == 0], 0.0)
    # The analytic reference itself against central finite differences.
    step = 1e-5
    for index in [(0, 1, 0), (1, 2, 5), (0, 3, 16), (2, 0, 7)]:
        up = student.astype(np.float64)
        down = student.astype(np.float64)
        up[index] += step
        down[index] -= step
        finite_difference = (
            _np_weighted_forward_kl(teacher, up, k, TEMPERATURE, weight)
            - _np_weighted_forward_kl(teacher, down, k, TEMPERATURE, weight)
        ) / (2 * step)
        assert want[index] == pytest.approx(
            finite_difference, rel=1e-5, abs=1e-9
        )


def test_forward_kl_top_k_gradient_full_vocabulary():
    shape = (3, 5, VOCAB)
    teacher, student = _logits(13, shape), _logits(14, shape)
    weight = _weight()
    value, (grad,) = gradients(
        _forward_kl_top_k_fn(teacher, shape[-1], weight), student
    )
    assert np.isfinite(value)
    assert np.all(np.isfinite(grad))
    # Empty rest bucket: the full forward KL gradient (s - p) / T.
    want = (
        (ref.softmax(student, TEMPERATURE) - ref.softmax(teacher, TEMPERATURE))
        / TEMPERATURE
        * (weight / weight.sum())[..., None]
    )
    np.testing.assert_allclose(grad, want, rtol=1e-4, atol=1e-6)


def _student_peaked_on(indices, seed, offset, vocab):
    """Student logits with `offset` added to the teacher's top-k tokens."""
    student = _logits(seed, indices.shape[:-1] + (vocab,), scale=1.0)
    boosted = np.take_along_axis(student, indices, axis=-1) + offset
    np.put_along_axis(student, indices, boosted, axis=-1)
    return student


def test_forward_kl_top_k_gradient_finite_when_student_covers_top_k():
    # +60 on the top-k logits, i.e. +30 after temperature 2: the rest mass
    # (~1e-13) is below float32 resolution next to 1.
    shape = (3, 5, VOCAB)
    teacher = _logits(15, shape)
    weight = _weight()
    _, indices, _ = _teacher_top_k(teacher, 3)
    student = _student_peaked_on(indices, 16, 60.0, shape[-1])
    # Almost all the student's mass is on the teacher's top k.
    assert np.all(_np_coarse(student, indices, TEMPERATURE)[..., -1] < -10.0)
    fn = _forward_kl_top_k_fn(teacher, 3, weight)
    value, (grad,) = gradients(fn, student)
    assert np.isfinite(value)
    assert np.all(np.isfinite(grad))


def test_forward_kl_top_k_accurate_when_student_rest_below_float32_eps():
    shape = (3, 5, VOCAB)
    teacher = _logits(15, shape)
    weight = _weight()
    _, indices, _ = _teacher_top_k(teacher, 3)
    # Rest log-mass about -20 at temperature 2: representable in float32.
    student = _student_peaked_on(indices, 16, 40.0, shape[-1])
    fn = _forward_kl_top_k_fn(teacher, 3, weight)
    value, (grad,) = gradients(fn, student)
    want_value = _np_weighted_forward_kl(
        teacher, student, 3, TEMPERATURE, weight
    )
    want = _forward_kl_top_k_gradient(teacher, student, 3, TEMPERATURE, weight)
    assert float(value) == pytest.approx(want_value, rel=1e-3)
    np.testing.assert_allclose(grad, want, rtol=1e-3, atol=1e-6)


def test_reverse_kl_top_k_accurate_when_teacher_rest_below_float32_eps():
    teacher = _logits(17, scale=1.0)
    teacher[..., :3] += 40.0
    student = _logits(18)
    values, indices, log_rest = _teacher_top_k(teacher, 3)
    loss = losses.ReverseKL(temperature=TEMPERATURE, reduction="none")
    got = ops.convert_to_numpy(
        compiled(loss.top_k)(values, indices, log_rest, student)
    )
    want = _np_top_k_divergence(
        "reverse_kl", teacher, student, 3, TEMPERATURE, None
    )
    np.testing.assert_allclose(got, want, rtol=1e-3)


# 6. Errors ------------------------------------------------------------------


def test_top_k_out_of_range_is_rejected():
    for k in [0, -1, VOCAB + 1]:
        with pytest.raises(ValueError, match="top_k"):
            top_k_log_probs(_logits(19), k)
