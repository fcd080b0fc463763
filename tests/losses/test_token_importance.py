import numpy as np
from keras import ops

from keras_mta import losses
from tests import numpy_reference as ref
from tests.backend_utils import compiled
from tests.backend_utils import gradients
from tests.losses.fixtures import random_case

# Compiled under jax (see tests/backend_utils.compiled); eager elsewhere.
entropy_weights = compiled(losses.entropy_weights)
token_importance = compiled(losses.token_importance)


def test_matches_float64_numpy():
    _, hidden, _, mask = random_case(seed=1)
    got = ops.convert_to_numpy(token_importance(hidden, mask))
    want = ref.token_importance(hidden, mask)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_rows_average_to_one_over_rows_with_keys():
    _, hidden, _, mask = random_case(seed=2)
    got = ops.convert_to_numpy(token_importance(hidden, mask))
    # Sample 2 has a single real token: its one row has no key.
    np.testing.assert_allclose(got.sum(-1), [1.0, 1.0, 0.0, 1.0], atol=1e-5)
    assert np.all(got[mask == 0] == 0.0)


def test_independent_of_padding():
    _, hidden, _, mask = random_case(seed=3)
    padded = np.concatenate(
        [hidden, np.random.normal(size=(4, 7, hidden.shape[-1]))], axis=1
    ).astype("float32")
    padded_mask = np.concatenate([mask, np.zeros((4, 7), "int32")], axis=1)
    short = ops.convert_to_numpy(token_importance(hidden, mask))
    long = ops.convert_to_numpy(token_importance(padded, padded_mask))
    np.testing.assert_allclose(long[:, :9], short, rtol=1e-6, atol=1e-7)
    assert np.all(long[:, 9:] == 0.0)


def test_one_token_all_padding_and_zero_states_are_finite():
    hidden = np.zeros((3, 4, 5), "float32")
    hidden[0] = np.random.normal(size=(4, 5))
    mask = np.array([[1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 0]])
    got = ops.convert_to_numpy(token_importance(hidden, mask))
    assert np.all(np.isfinite(got))
    np.testing.assert_array_equal(got[0], 0.0)
    np.testing.assert_array_equal(got[1], 0.0)
    # Zero states: all scores equal, so attention is uniform over the keys.
    np.testing.assert_allclose(got[2], [1 / 3, 1 / 3, 1 / 3, 0.0], atol=1e-6)


def test_no_gradient_reaches_the_states():
    _, hidden, _, mask = random_case(seed=4)
    weights = np.random.normal(size=mask.shape).astype("float32")

    def fn(h):
        return ops.sum(token_importance(h, mask) * weights)

    value, (grad,) = gradients(fn, hidden)
    assert np.isfinite(value)
    np.testing.assert_array_equal(grad, 0.0)


def test_entropy_weights_match_float64_numpy():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(2, 4, 7)).astype("float32") * 3
    logits[0, 0] = [30, -30, -30, -30, -30, -30, -30]  # near one-hot
    logits[0, 1] = 0.0  # uniform
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]])
    got = ops.convert_to_numpy(entropy_weights(logits, mask))
    np.testing.assert_allclose(
        got, ref.entropy_weights(logits, mask), rtol=1e-5, atol=2e-6
    )
    assert got[0, 0] > 0.999
    assert abs(got[0, 1]) < 1e-6
    np.testing.assert_array_equal(got[1, 2:], 0.0)


def test_entropy_weights_finite_for_huge_logits():
    logits = np.array([[[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]]], "float32")
    got = ops.convert_to_numpy(entropy_weights(logits, np.ones((1, 2))))
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, [[1.0, 0.0]], atol=1e-6)
