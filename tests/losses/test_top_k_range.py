"""Top-k indices outside the vocabulary: one behaviour on every backend.

`k` above the vocabulary size is refused at the API boundary (static
shapes); an index value outside `[0, vocab_size)` (data) makes the student's
coarse law, and so the divergence, NaN at exactly that position on every
backend (it was NaN under jax, an IndexError under torch and an
InvalidArgumentError under tensorflow), and NumPy indices are checked
eagerly with a ValueError.
"""

import numpy as np
import pytest
from keras import ops

from keras_mta import losses
from tests.backend_utils import compiled

coarse_student_log_probs = compiled(losses.coarse_student_log_probs)
VOCAB = 7


def _case(k=3):
    rng = np.random.default_rng(0)
    teacher = rng.normal(size=(2, 4, VOCAB)).astype("float32")
    student = rng.normal(size=(2, 4, VOCAB)).astype("float32")
    values, indices, rest = losses.top_k_log_probs(teacher, k)
    return values, ops.convert_to_numpy(indices), rest, student


def test_k_above_the_vocabulary_is_refused():
    values, indices, rest, student = _case(k=VOCAB)
    with pytest.raises(ValueError, match="k = 7 .* vocabulary size 5"):
        losses.ForwardKL().top_k(values, indices, rest, student[..., :5])
    with pytest.raises(ValueError, match="k = 7 .* vocabulary size 5"):
        losses.coarse_student_log_probs(student[..., :5], indices)


@pytest.mark.parametrize("bad", [VOCAB, VOCAB + 100, -1])
def test_an_index_outside_the_vocabulary_gives_nan_at_its_position(bad):
    _, indices, _, student = _case()
    indices = indices.copy()
    indices[1, 2, 1] = bad
    got = ops.convert_to_numpy(
        coarse_student_log_probs(student, ops.convert_to_tensor(indices))
    )
    assert np.isnan(got[1, 2]).all()
    got[1, 2] = 0.0
    assert np.isfinite(got).all()


def test_numpy_indices_are_checked_eagerly():
    values, indices, rest, student = _case()
    indices = indices.copy()
    indices[0, 3, 2] = VOCAB
    with pytest.raises(ValueError, match=r"\[0, 3, 2\] = 7 .*\[0, 7\)"):
        losses.ForwardKL().top_k(values, indices, rest, student)
    with pytest.raises(ValueError, match="teacher cache"):
        losses.check_top_k_indices(indices, VOCAB)
    losses.check_top_k_indices(indices[:, :3], VOCAB)
