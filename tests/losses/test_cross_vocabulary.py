"""Universal Logit Distillation against a float64 NumPy reference."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_mta import losses
from tests.backend_utils import gradients

# (teacher vocabulary, student vocabulary): larger, smaller, equal, and
# one much larger than the other (a long tail outside the top), each way.
VOCABULARIES = [(13, 7), (7, 13), (9, 9), (300, 5), (5, 300)]


def reference_uld(teacher_logits, student_logits, temperature=1.0):
    """Float64, one position at a time: both laws sorted in decreasing
    order, the shorter one padded with zeros at the end (as the paper
    states it), then the sum of absolute differences."""
    teacher = np.asarray(teacher_logits, np.float64)
    student = np.asarray(student_logits, np.float64)
    size = max(teacher.shape[-1], student.shape[-1])
    out = np.zeros(teacher.shape[:-1])
    for index in np.ndindex(*out.shape):
        t = _sorted_padded(teacher[index], temperature, size)
        s = _sorted_padded(student[index], temperature, size)
        out[index] = np.abs(s - t).sum()
    return out


def _sorted_padded(logits, temperature, size):
    """One position's law, float64, in decreasing order, zero-padded to
    `size`."""
    z = np.asarray(logits, np.float64) / temperature
    p = np.exp(z - z.max())
    p = np.sort(p / p.sum())[::-1]
    return np.concatenate([p, np.zeros(size - len(p))])


def _logits(seed, shape, scale=2.0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=shape) * scale).astype("float32")


@pytest.mark.parametrize("teacher_vocab,student_vocab", VOCABULARIES)
@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_function_matches_float64_numpy(
    teacher_vocab, student_vocab, temperature
):
    teacher = _logits(0, (2, 3, teacher_vocab))
    student = _logits(1, (2, 3, student_vocab))
    got = ops.convert_to_numpy(
        losses.universal_logit_distillation(teacher, student, temperature)
    )
    assert got.shape == (2, 3)
    want = reference_uld(teacher, student, temperature)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("larger", ["teacher", "student"])
def test_ties_at_the_edge_of_the_top_match_float64_numpy(larger):
    # The larger law has many tokens tied with its 5th largest probability
    # (the smaller vocabulary's size): the ones left out of the top still
    # count once each in the rest mass.
    tied = np.array([3.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, -2.0, 0.5, 1.0])
    large = np.broadcast_to(tied, (2, 3, 11)).astype("float32")
    small = _logits(10, (2, 3, 5))
    teacher, student = (large, small) if larger == "teacher" else (small, large)
    got = ops.convert_to_numpy(
        losses.universal_logit_distillation(teacher, student, 1.5)
    )
    want = reference_uld(teacher, student, 1.5)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.once  # what is sorted: backend-independent
def test_the_larger_vocabulary_is_never_sorted_whole(monkeypatch):
    # Sorting the teacher's whole vocabulary (49,152 for SmolLM2) at every
    # position took most of a CPU training step: only the smaller one is
    # sorted, the larger one's top comes from `top_k`.
    from keras_mta.losses import cross_vocabulary

    sorted_sizes = []
    sort = cross_vocabulary.ops.sort

    def recording_sort(x, axis=-1):
        sorted_sizes.append(int(x.shape[axis]))
        return sort(x, axis=axis)

    monkeypatch.setattr(cross_vocabulary.ops, "sort", recording_sort)
    for teacher_vocab, student_vocab in ((300, 5), (5, 300)):
        losses.universal_logit_distillation(
            _logits(11, (2, 3, teacher_vocab)),
            _logits(12, (2, 3, student_vocab)),
        )
    assert sorted_sizes == [5, 5]
    # Truncated ULD (issue 21) sorts neither vocabulary.
    losses.universal_logit_distillation(
        _logits(25, (2, 3, 300)), _logits(26, (2, 3, 50)), truncation=8
    )
    assert sorted_sizes == [5, 5]


def test_jax_compiles_no_sort_of_the_larger_vocabulary():
    # XLA turns a `top_k` whose values are also sliced elsewhere into a
    # sort of the whole vocabulary (20x slower on a CPU at 49,152 tokens):
    # the compiled loss must keep a TopK and sort nothing that long.
    if keras.backend.backend() != "jax":
        pytest.skip("what XLA compiles under jax")
    import jax

    teacher, student = _logits(13, (2, 3, 4096)), _logits(14, (2, 3, 7))

    def loss(t, s):
        return losses.universal_logit_distillation(t, s, 2.0)

    hlo = jax.jit(loss).lower(teacher, student).compile().as_text()
    sorts = [line for line in hlo.splitlines() if " sort(" in line]
    assert not [line for line in sorts if "4096" in line], sorts


def test_loss_is_weighted_mean_and_ignores_padding():
    teacher, student = _logits(2, (3, 4, 11)), _logits(3, (3, 4, 5))
    # Row 2 is all padding; weight 2 counts twice.
    weight = np.array([[0, 1, 1, 1], [0, 0, 2, 1], [0, 0, 0, 0]], "float32")
    loss = losses.UniversalLogitDistillation(temperature=1.5)
    got = float(ops.convert_to_numpy(loss(teacher, student, weight)))
    per_position = reference_uld(teacher, student, 1.5)
    want = (per_position * weight).sum() / weight.sum()
    assert got == pytest.approx(want, rel=1e-5)
    # A padded position may hold anything: it changes nothing.
    changed = student.copy()
    changed[2] = 1e3 * _logits(4, (4, 5))
    changed[0, 0] = -changed[0, 0]
    assert float(ops.convert_to_numpy(loss(teacher, changed, weight))) == got


@pytest.mark.once  # a property of the formula, backend-independent
def test_zero_for_a_permuted_law_padded_with_impossible_tokens():
    student = _logits(5, (2, 3, 6))
    permutation = np.random.default_rng(0).permutation(6)
    # The teacher's law is the student's, its ids permuted, plus 4 tokens
    # it never predicts: ULD sees the same sorted profile.
    teacher = np.concatenate(
        [student[..., permutation], np.full((2, 3, 4), -1e4, "float32")],
        axis=-1,
    )
    got = ops.convert_to_numpy(
        losses.universal_logit_distillation(teacher, student)
    )
    np.testing.assert_allclose(got, 0.0, atol=1e-6)
    other = ops.convert_to_numpy(
        losses.universal_logit_distillation(teacher, student[..., ::-1] * 2)
    )
    assert np.all(other > 1e-2)


def assert_gradient_matches_finite_differences(seed, shapes, truncation):
    """The loss's gradient wrt both logits against central differences of
    the float64 reference (exact or truncated ULD) at a few logits."""
    teacher, student = _logits(seed, shapes[0]), _logits(seed + 1, shapes[1])
    weight = np.array([1.0, 0.5])

    def reference(t, s):
        if truncation is None:
            return reference_uld(t, s, 2.0)
        return reference_truncated_uld(t, s, 2.0, truncation)

    def total(t, s):
        per_position = losses.universal_logit_distillation(
            t, s, 2.0, truncation
        )
        return ops.sum(per_position * ops.convert_to_tensor(weight, "float32"))

    _, (g_t, g_s) = gradients(total, teacher, student)
    step = 1e-5
    for name, logits, grad in (
        ("teacher", teacher, g_t),
        ("student", student, g_s),
    ):
        for index in [(0, 0), (0, 4), (1, logits.shape[-1] - 1)]:
            up = logits.astype(np.float64)
            down = logits.astype(np.float64)
            up[index] += step
            down[index] -= step
            pairs = (up, student), (down, student)
            if name == "student":
                pairs = (teacher, up), (teacher, down)
            f_up, f_down = (reference(t, s) for t, s in pairs)
            want = ((f_up - f_down) * weight).sum() / (2 * step)
            assert grad[index] == pytest.approx(want, rel=2e-3, abs=1e-6), (
                name,
                index,
            )


@pytest.mark.parametrize("teacher_vocab,student_vocab", VOCABULARIES[:2])
def test_gradient_matches_finite_differences(teacher_vocab, student_vocab):
    assert_gradient_matches_finite_differences(
        6, ((2, teacher_vocab), (2, student_vocab)), None
    )


def test_config_round_trip_and_get_divergence():
    loss = losses.UniversalLogitDistillation(temperature=2.0, name="my_uld")
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is losses.UniversalLogitDistillation
    assert restored.get_config() == loss.get_config()
    assert restored.get_config()["temperature"] == 2.0
    teacher, student = _logits(8, (2, 3, 10)), _logits(9, (2, 3, 4))
    assert float(ops.convert_to_numpy(restored(teacher, student))) == (
        pytest.approx(float(ops.convert_to_numpy(loss(teacher, student))))
    )
    uld = losses.get_divergence("ULD", temperature=3.0)
    assert isinstance(uld, losses.UniversalLogitDistillation)
    assert uld.temperature == 3.0
    assert uld.cross_vocabulary is True
    assert losses.get_divergence("forward_kl").cross_vocabulary is False
    # The same-vocabulary names stay what recipes and the top-k path use.
    assert "uld" not in losses.DIVERGENCES


@pytest.mark.once
def test_bad_inputs_are_rejected_early():
    with pytest.raises(ValueError, match="temperature"):
        losses.UniversalLogitDistillation(temperature=0.0)
    with pytest.raises(ValueError, match="every dimension but the last"):
        losses.universal_logit_distillation(
            np.zeros((2, 4, 9)), np.zeros((2, 3, 5))
        )
    with pytest.raises(NotImplementedError, match="top-k teacher cache"):
        losses.UniversalLogitDistillation().top_k(None, None, None, None)
    with pytest.raises(ValueError, match="'uld'"):
        losses.get_divergence("wasserstein")


# --- Truncated ULD (issue 21): `truncation=m` ---


def reference_truncated_uld(teacher_logits, student_logits, temperature, m):
    """Float64, one position at a time: both laws sorted in decreasing
    order and zero-padded, their first `m` entries compared in order, then
    the two rest masses (the sums of the entries after the `m`-th)."""
    teacher = np.asarray(teacher_logits, np.float64)
    student = np.asarray(student_logits, np.float64)
    size = max(teacher.shape[-1], student.shape[-1], m)
    out = np.zeros(teacher.shape[:-1])
    for index in np.ndindex(*out.shape):
        t = _sorted_padded(teacher[index], temperature, size)
        s = _sorted_padded(student[index], temperature, size)
        out[index] = np.abs(s[:m] - t[:m]).sum() + abs(
            s[m:].sum() - t[m:].sum()
        )
    return out


@pytest.mark.parametrize("teacher_vocab,student_vocab", VOCABULARIES)
@pytest.mark.parametrize("truncation", [1, 3])
def test_truncated_matches_float64_numpy(
    teacher_vocab, student_vocab, truncation
):
    teacher = _logits(20, (2, 3, teacher_vocab))
    student = _logits(21, (2, 3, student_vocab))
    got = ops.convert_to_numpy(
        losses.universal_logit_distillation(teacher, student, 1.5, truncation)
    )
    want = reference_truncated_uld(teacher, student, 1.5, truncation)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # A lower bound of exact ULD (strictly below it somewhere here).
    exact = reference_uld(teacher, student, 1.5)
    assert np.all(got <= exact + 1e-6) and np.any(got < exact - 1e-4)


def test_truncated_with_ties_at_the_cut_matches_float64_numpy():
    # Six tokens tied with the 4th largest on the teacher's side: the ones
    # left out of its top 4 count once each in its rest mass.
    tied = np.array([3.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, -2.0, 0.5, 1.0])
    teacher = np.broadcast_to(tied, (2, 3, 11)).astype("float32")
    student = _logits(22, (2, 3, 9))
    got = ops.convert_to_numpy(
        losses.universal_logit_distillation(teacher, student, 1.5, 4)
    )
    want = reference_truncated_uld(teacher, student, 1.5, 4)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.once  # the bound of the docstring, float64 NumPy
def test_truncation_bounds_exact_uld_on_random_laws():
    # ULD_m <= ULD <= ULD_m + 2 min(rest_S, rest_T), and m at least the
    # smaller vocabulary is exact ULD.
    rng = np.random.default_rng(3)
    for teacher_vocab, student_vocab in VOCABULARIES:
        teacher = rng.normal(size=(4, teacher_vocab)) * rng.uniform(0.5, 4)
        student = rng.normal(size=(4, student_vocab)) * rng.uniform(0.5, 4)
        exact = reference_uld(teacher, student)
        size = max(teacher_vocab, student_vocab)
        for m in (1, 2, 4, min(teacher_vocab, student_vocab), size + 3):
            truncated = reference_truncated_uld(teacher, student, 1.0, m)
            rest = np.zeros((2, 4))
            for side, logits in enumerate((teacher, student)):
                for row in range(4):
                    rest[side, row] = _sorted_padded(logits[row], 1.0, size)[
                        m:
                    ].sum()
            assert np.all(truncated <= exact + 1e-12)
            assert np.all(exact <= truncated + 2 * rest.min(axis=0) + 1e-12)
            if m >= min(teacher_vocab, student_vocab):
                np.testing.assert_allclose(truncated, exact, atol=1e-12)


def test_truncation_at_the_smaller_vocabulary_is_the_exact_form():
    for teacher_vocab, student_vocab in VOCABULARIES:
        teacher = _logits(23, (2, 3, teacher_vocab))
        student = _logits(24, (2, 3, student_vocab))
        exact = ops.convert_to_numpy(
            losses.universal_logit_distillation(teacher, student, 2.0)
        )
        for m in (min(teacher_vocab, student_vocab), 1000):
            got = ops.convert_to_numpy(
                losses.universal_logit_distillation(teacher, student, 2.0, m)
            )
            np.testing.assert_array_equal(got, exact)


@pytest.mark.parametrize("teacher_vocab,student_vocab", VOCABULARIES[:2])
def test_truncated_gradient_matches_finite_differences(
    teacher_vocab, student_vocab
):
    assert_gradient_matches_finite_differences(
        27, ((2, teacher_vocab), (2, student_vocab)), 3
    )


@pytest.mark.parametrize("teacher_vocab,student_vocab", [(13, 7), (5, 9)])
def test_truncated_from_a_teacher_top_k_is_the_live_value(
    teacher_vocab, student_vocab
):
    # The cache's top k (sorted) and rest mass give the truncated form for
    # m <= k: the teacher's top m in order and the rest of its mass.
    teacher = _logits(29, (2, 3, teacher_vocab))
    student = _logits(30, (2, 3, student_vocab))
    weight = np.array([[0, 1, 1], [2, 1, 0]], "float32")
    k = min(teacher_vocab, 5)
    cached = losses.top_k_log_probs(teacher, k, 1.5)
    for m in (1, 3, k):
        loss = losses.UniversalLogitDistillation(1.5, truncation=m)
        want = float(ops.convert_to_numpy(loss(teacher, student, weight)))
        got = float(ops.convert_to_numpy(loss.top_k(*cached, student, weight)))
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6), m
        reference = reference_truncated_uld(teacher, student, 1.5, m)
        if m >= min(teacher_vocab, student_vocab):
            reference = reference_uld(teacher, student, 1.5)
        assert got == pytest.approx(
            (reference * weight).sum() / weight.sum(), rel=1e-5
        )
    assert loss.reads_top_k(k) and not loss.reads_top_k(k - 1)
    too_many = losses.UniversalLogitDistillation(1.5, truncation=k + 1)
    with pytest.raises(NotImplementedError, match=f"top_k \\({k}\\)"):
        too_many.top_k(*cached, student, weight)


def test_truncation_config_round_trip_and_get_divergence():
    loss = losses.UniversalLogitDistillation(temperature=2.0, truncation=3)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert restored.get_config() == loss.get_config()
    assert restored.truncation == 3
    assert (
        losses.UniversalLogitDistillation().get_config()["truncation"] is None
    )
    teacher, student = _logits(31, (2, 3, 10)), _logits(32, (2, 3, 6))
    assert float(ops.convert_to_numpy(restored(teacher, student))) == (
        pytest.approx(float(ops.convert_to_numpy(loss(teacher, student))))
    )
    uld = losses.get_divergence("uld", temperature=2.0, truncation=3)
    assert uld.get_config() == dict(loss.get_config(), name=uld.name)


@pytest.mark.once
@pytest.mark.parametrize("bad", [0, -2, 2.5, True, "8"])
def test_a_bad_truncation_is_refused(bad):
    with pytest.raises(ValueError, match="truncation"):
        losses.UniversalLogitDistillation(truncation=bad)
