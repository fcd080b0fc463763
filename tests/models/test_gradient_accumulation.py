"""Gradient accumulation (`gradient_accumulation_steps` of the Keras
optimizers) with the full objective (CE, KD, DSA and HRA), through
`DistillationModel.compile` as users call it: the non-finite guard's
`LossScaleOptimizer`, global clipping, the alignment weights' own rate.

The loss of a batch is a mean over that batch: CE and KD over its response
tokens, DSA and HRA over its unit pairs and (token, unit) entries with the
teacher's weights. An accumulated update averages the micro-batches'
gradients (the reference's definition: each micro-batch's loss, a mean over
its own tokens, divided by the number of micro-batches). So two batches of
8 give the update of one batch of 16 exactly when both halves carry the
same token and unit counts and weights, and in general the update of the
average of the two halves' gradients.
"""

import keras
import numpy as np
import pytest

from keras_mta import AlignmentPlan
from keras_mta import DistillationModel
from tests.models import fixtures as F

PLAN = AlignmentPlan(teacher_layers=[2, 3], student_layers=[1, 2])


def _model(optimizer, equal_teacher_rows=False):
    """A seeded tiny model (CE, KD, DSA, HRA) compiled with `optimizer`,
    the projectors at 5x the rate."""
    teacher, student = F.shared_teacher_student()
    if equal_teacher_rows:
        # Every token has the same teacher embedding: the teacher's states,
        # so its importance and every normaliser of DSA and HRA, depend on
        # the positions and masks only, not on the tokens.
        embeddings = teacher.backbone.token_embedding.embeddings
        row = keras.ops.convert_to_numpy(embeddings)[:1]
        embeddings.assign(np.repeat(row, embeddings.shape[0], axis=0))
    model = DistillationModel(
        teacher,
        student,
        plan=PLAN,
        kd_ratio=0.5,
        mta_weight=2.0,
        alignment_learning_rate_multiplier=5.0,
    )
    F.set_numpy_weights(model.alignment, 3)
    model.compile(optimizer=optimizer)
    return model


def _weights(model):
    return [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]


def _concat(a, b):
    x = {k: np.concatenate([a[0][k], b[0][k]]) for k in a[0]}
    return x, np.concatenate([a[1], b[1]]), np.concatenate([a[2], b[2]])


def _step(model, batch):
    x, y, sw = batch
    return model.train_on_batch(x, y, sample_weight=sw, return_dict=True)


def _adamw(**kwargs):
    return keras.optimizers.AdamW(
        1e-2, weight_decay=0.01, global_clipnorm=1.0, **kwargs
    )


# The full tier (about 20 s under torch, minutes under tensorflow on a
# loaded 2-core machine); the accumulation path stays checked everyday on
# every backend by
# `test_an_accumulated_step_averages_the_two_batches_gradients`.
@pytest.mark.large
def test_two_accumulated_batches_of_8_equal_one_batch_of_16():
    """Same masks, units and response tokens in both halves, other tokens
    and targets: AdamW with decay, clipping and the guard gives the same
    weights and moments after 8x2 accumulated as after 16x1."""
    first = F.make_batch(seed=10, batch=8)
    second = F.make_batch(seed=11, batch=8)
    assert not np.array_equal(first[0]["token_ids"], second[0]["token_ids"])
    for key in ("padding_mask", "word_units", "phrase_units"):
        np.testing.assert_array_equal(first[0][key], second[0][key])
    np.testing.assert_array_equal(first[2], second[2])

    accumulated = _model(
        _adamw(gradient_accumulation_steps=2), equal_teacher_rows=True
    )
    start = _weights(accumulated)
    logs = _step(accumulated, first)
    assert all(np.isfinite(v) for v in logs.values())
    inner = accumulated.optimizer.inner_optimizer
    # The first batch is only accumulated.
    for got, want in zip(_weights(accumulated), start):
        np.testing.assert_array_equal(got, want)
    assert int(keras.ops.convert_to_numpy(inner.iterations)) == 0
    _step(accumulated, second)
    assert int(keras.ops.convert_to_numpy(inner.iterations)) == 1
    moved = _weights(accumulated)
    moments = [
        keras.ops.convert_to_numpy(v)
        for v in inner._momentums + inner._velocities
    ]

    whole = _model(_adamw(), equal_teacher_rows=True)
    for got, want in zip(_weights(whole), start):
        np.testing.assert_array_equal(got, want)
    _step(whole, _concat(first, second))
    inner = whole.optimizer.inner_optimizer
    # Adam's first step is lr * g / (|g| + epsilon) per weight: for a
    # gradient near epsilon (an embedding row a token barely reaches) it
    # turns float32 round-off in the averaged gradient into a few percent
    # of that weight's step. So weights agree to a thousandth of the
    # learning rate, lr = 1e-2 (halves weighted wrongly change the
    # gradient's direction, and steps by up to lr); a wrong overall scale,
    # which Adam's first step does not see, shows in the moments below.
    for got, want, variable in zip(
        moved, _weights(whole), whole.trainable_variables
    ):
        np.testing.assert_allclose(
            got, want, rtol=1e-5, atol=1e-5, err_msg=variable.path
        )
    for got, want in zip(moments, inner._momentums + inner._velocities):
        want = keras.ops.convert_to_numpy(want)
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-9)


def test_an_accumulated_step_averages_the_two_batches_gradients():
    """Halves with different padding, units and response tokens (so
    different normalisers): the accumulated SGD step (clipping inactive,
    so the step is linear in the gradient) is the mean of the steps of
    the two halves taken alone: the gradients are averaged, not summed
    and not re-weighted by token counts. One compiled step: a half taken
    alone is the accumulated step of that half twice (`(g + g) / 2 = g`
    exactly)."""
    first = F.make_batch(seed=20, batch=8)
    x, y, sw = F.make_batch(seed=21, batch=8)
    sw = sw.copy()
    sw[:, :6] = 0.0  # fewer response tokens
    x = dict(x, phrase_units=x["phrase_units"].copy())
    x["phrase_units"][4:] = 0  # fewer units
    x["padding_mask"] = x["padding_mask"].copy()
    x["padding_mask"][:2, 10:] = 0  # more padding
    second = (x, y * x["padding_mask"], sw * x["padding_mask"])
    assert first[2].sum() != second[2].sum()

    model = _model(
        keras.optimizers.SGD(
            0.5, global_clipnorm=1e6, gradient_accumulation_steps=2
        )
    )
    start = _weights(model)

    def update(a, b):
        for variable, value in zip(model.trainable_variables, start):
            variable.assign(value)
        _step(model, a)
        _step(model, b)
        return _weights(model)

    moved = update(first, second)
    alone = [update(first, first), update(second, second)]
    for got, a, b, variable in zip(moved, *alone, model.trainable_variables):
        np.testing.assert_allclose(
            got, (a + b) / 2, rtol=1e-5, atol=1e-6, err_msg=variable.path
        )
    # The halves' steps differ: the average is not one of them.
    assert max(np.abs(a - b).max() for a, b in zip(*alone)) > 1e-3
