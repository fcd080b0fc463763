"""Losses refuse shapes that would be broadcast silently (issue 18, item 5).

The checks read static shapes only, so they also run inside `jax.jit`
(`compiled`) and `tf.function`.
"""

import numpy as np
import pytest

from keras_mta import losses
from keras_mta.layers import HiddenAlignmentLoss
from keras_mta.layers import StructuralAlignmentLoss
from tests.backend_utils import compiled
from tests.losses.fixtures import random_case

hidden_alignment = compiled(losses.hidden_alignment)
structural_alignment = compiled(losses.structural_alignment)
forward_kl = compiled(losses.forward_kl)
top_k_log_probs = compiled(losses.top_k_log_probs)


def _case():
    student, teacher, units, mask = random_case(seed=3, seq_len=9)
    return student[:2], teacher[:2], units[:2], mask[:2]


def test_dsa_refuses_a_batch_of_one_units():
    student, teacher, units, mask = _case()
    with pytest.raises(ValueError, match=r"`units` has shape \(1, 5, 2\)"):
        StructuralAlignmentLoss()(student, teacher, units[:1], mask)
    with pytest.raises(ValueError, match="batch = 2 .from `student_hidden`"):
        structural_alignment(student, teacher, units[:1], mask)


@pytest.mark.parametrize("what", ["teacher", "mask", "importance"])
def test_dsa_refuses_a_mismatched_sequence(what):
    student, teacher, units, mask = _case()
    kwargs = {}
    if what == "teacher":
        teacher = teacher[:, :1]
    elif what == "mask":
        mask = mask[:, :1]
    else:
        kwargs["teacher_importance"] = np.ones((2, 1), "float32")
    with pytest.raises(ValueError, match="seq_len = 9"):
        structural_alignment(student, teacher, units, mask, **kwargs)


def test_hra_refuses_a_rank_2_student():
    student, teacher, units, mask = _case()
    layer = HiddenAlignmentLoss(teacher_dim=teacher.shape[-1])
    with pytest.raises(ValueError, match="`student_hidden` must have rank 3"):
        layer(student[:, 0], teacher, units, mask)
    with pytest.raises(ValueError, match="`projected_student` must have rank"):
        hidden_alignment(teacher[:, 0], teacher, units, mask)


def test_hra_refuses_units_without_the_pair_axis():
    student, teacher, units, mask = _case()
    with pytest.raises(ValueError, match=r"`units` must have rank 3"):
        hidden_alignment(teacher, teacher, units[..., 0], mask)


def test_divergence_refuses_a_teacher_batch_of_one():
    rng = np.random.default_rng(0)
    teacher = rng.normal(size=(1, 4, 7)).astype("float32")
    student = rng.normal(size=(2, 4, 7)).astype("float32")
    with pytest.raises(ValueError, match=r"shape \(1, 4, 7\).*\(2, 4, 7\)"):
        losses.ForwardKL()(teacher, student)
    with pytest.raises(ValueError, match="same shape"):
        forward_kl(teacher, student)
    with pytest.raises(ValueError, match="same shape"):
        losses.JensenShannon()(teacher[:, :, :3], student[:1])


def test_valid_shapes_still_give_numbers():
    student, teacher, units, mask = _case()
    assert np.isfinite(
        float(structural_alignment(student, teacher, units, mask))
    )
    assert np.isfinite(float(hidden_alignment(teacher, teacher, units, mask)))


def test_top_k_refuses_a_teacher_batch_of_one():
    rng = np.random.default_rng(1)
    student = rng.normal(size=(2, 4, 7)).astype("float32")
    values, indices, rest = top_k_log_probs(student[:1], 3)
    with pytest.raises(ValueError, match="`teacher_top_k_log_probs` has"):
        losses.ForwardKL().top_k(values, indices, rest, student)
    values, indices, rest = top_k_log_probs(student, 3)
    with pytest.raises(ValueError, match="`teacher_top_k_indices` has"):
        losses.ForwardKL().top_k(values, indices[:, :, :2], rest, student)
    with pytest.raises(ValueError, match="`sample_weight` has"):
        losses.ForwardKL().top_k(
            values, indices, rest, student, sample_weight=np.ones((1, 4))
        )
