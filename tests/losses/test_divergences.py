import keras
import numpy as np
import pytest
from keras import ops

from keras_mta import losses
from tests import numpy_reference as ref
from tests.backend_utils import gradients

# name, function, Loss class, mixing argument name (None: no mixture)
CASES = [
    ("forward_kl", losses.forward_kl, losses.ForwardKL, None),
    ("reverse_kl", losses.reverse_kl, losses.ReverseKL, None),
    ("jensen_shannon", losses.jensen_shannon, losses.JensenShannon, "beta"),
    ("total_variation", losses.total_variation, losses.TotalVariation, None),
    ("skew_forward_kl", losses.skew_forward_kl, losses.SkewForwardKL, "skew"),
    ("skew_reverse_kl", losses.skew_reverse_kl, losses.SkewReverseKL, "skew"),
]
IDS = [case[0] for case in CASES]


def _logits(seed, shape=(3, 5, 13), scale=2.0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=shape) * scale).astype("float32")


def _kwargs(mix_name, mix, temperature):
    kwargs = {"temperature": temperature}
    if mix_name:
        kwargs[mix_name] = mix
    return kwargs


@pytest.mark.parametrize("name,fn,cls,mix_name", CASES, ids=IDS)
@pytest.mark.parametrize("temperature,mix", [(1.0, 0.1), (2.0, 0.3)])
def test_function_matches_float64_numpy(
    name, fn, cls, mix_name, temperature, mix
):
    teacher, student = _logits(0), _logits(1)
    got = ops.convert_to_numpy(
        fn(teacher, student, **_kwargs(mix_name, mix, temperature))
    )
    want = ref.divergence(name, teacher, student, temperature, mix)
    assert got.shape == (3, 5)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,fn,cls,mix_name", CASES, ids=IDS)
def test_loss_is_weighted_mean_over_tokens(name, fn, cls, mix_name):
    teacher, student = _logits(2), _logits(3)
    weight = np.array(
        [[0, 1, 1, 1, 1], [0, 0, 2, 1, 0], [0, 0, 0, 0, 0]], "float32"
    )
    loss = cls(temperature=1.5)
    got = float(ops.convert_to_numpy(loss(teacher, student, weight)))
    mix = getattr(loss, mix_name) if mix_name else None
    per_token = ref.divergence(name, teacher, student, 1.5, mix)
    want = (per_token * weight).sum() / weight.sum()
    assert got == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("name,fn,cls,mix_name", CASES, ids=IDS)
def test_zero_weight_token_changes_nothing(name, fn, cls, mix_name):
    teacher, student = _logits(4), _logits(5)
    weight = np.ones((3, 5), "float32")
    weight[:, 0] = 0.0
    changed = student.copy()
    changed[:, 0] = 1e3 * np.random.default_rng(0).normal(size=(3, 13))
    loss = cls()
    a = float(ops.convert_to_numpy(loss(teacher, student, weight)))
    b = float(ops.convert_to_numpy(loss(teacher, changed, weight)))
    assert a == b


@pytest.mark.parametrize("name,fn,cls,mix_name", CASES, ids=IDS)
def test_zero_for_equal_logits(name, fn, cls, mix_name):
    logits = _logits(6)
    got = ops.convert_to_numpy(fn(logits, logits))
    np.testing.assert_allclose(got, 0.0, atol=1e-6)


@pytest.mark.parametrize("name,fn,cls,mix_name", CASES, ids=IDS)
def test_finite_for_huge_logits_with_finite_gradients(name, fn, cls, mix_name):
    teacher = _logits(7, scale=1.0) * 1e4
    student = _logits(8, scale=1.0) * 1e4
    teacher[0, 0] = 1e4
    student[0, 0] = -1e4

    def total(t, s):
        return ops.sum(fn(t, s))

    value, grads = gradients(total, teacher, student)
    assert np.isfinite(value)
    for grad in grads:
        assert np.all(np.isfinite(grad))
    want = ref.divergence(
        name, teacher, student, 1.0, 0.1 if mix_name == "skew" else 0.5
    ).sum()
    assert float(value) == pytest.approx(want, rel=1e-4)


@pytest.mark.parametrize("name,fn,cls,mix_name", CASES, ids=IDS)
def test_gradient_matches_finite_differences(name, fn, cls, mix_name):
    teacher, student = _logits(9, (2, 7)), _logits(10, (2, 7))

    def total(t, s):
        return ops.sum(fn(t, s))

    _, (_, g_s) = gradients(total, teacher, student)
    mix = 0.1 if mix_name == "skew" else 0.5
    step = 1e-4
    for index in [(0, 0), (0, 3), (1, 6)]:
        up, down = student.astype(np.float64), student.astype(np.float64)
        up[index] += step
        down[index] -= step
        want = (
            ref.divergence(name, teacher, up, 1.0, mix).sum()
            - ref.divergence(name, teacher, down, 1.0, mix).sum()
        ) / (2 * step)
        assert g_s[index] == pytest.approx(want, rel=2e-3, abs=1e-5)


@pytest.mark.parametrize("name,fn,cls,mix_name", CASES, ids=IDS)
def test_float32_under_bfloat16_inputs(name, fn, cls, mix_name):
    teacher = ops.cast(_logits(11), "bfloat16")
    student = ops.cast(_logits(12), "bfloat16")
    got = fn(teacher, student)
    assert keras.backend.standardize_dtype(got.dtype) == "float32"
    want = ref.divergence(
        name,
        ops.convert_to_numpy(ops.cast(teacher, "float32")),
        ops.convert_to_numpy(ops.cast(student, "float32")),
        1.0,
        0.1 if mix_name == "skew" else 0.5,
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(got), want, rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("name,fn,cls,mix_name", CASES, ids=IDS)
def test_config_round_trip(name, fn, cls, mix_name):
    kwargs = {"temperature": 2.0, "name": f"my_{name}"}
    if mix_name:
        kwargs[mix_name] = 0.25
    loss = cls(**kwargs)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is cls
    assert restored.get_config() == loss.get_config()
    teacher, student = _logits(13), _logits(14)
    assert float(ops.convert_to_numpy(restored(teacher, student))) == (
        pytest.approx(float(ops.convert_to_numpy(loss(teacher, student))))
    )
    assert isinstance(losses.get_divergence(name), cls)


def test_bad_arguments_are_rejected_early():
    with pytest.raises(ValueError, match="temperature"):
        losses.ForwardKL(temperature=0.0)
    with pytest.raises(ValueError, match="skew"):
        losses.SkewReverseKL(skew=1.0)
    with pytest.raises(ValueError, match="beta"):
        losses.JensenShannon(beta=0.0)
    with pytest.raises(ValueError, match="Unknown divergence 'kl'"):
        losses.get_divergence("kl")
    with pytest.raises(TypeError, match="divergence must be"):
        losses.get_divergence(3)
