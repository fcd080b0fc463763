"""The alignment layers across tokenizers: unit-level HRA with the pair's
projector, and the MTA loss on a teacher's own tokens and units."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_mta import losses
from keras_mta.layers import HiddenAlignmentLoss
from keras_mta.layers import TrajectoryAlignmentLoss
from tests.backend_utils import variable_gradients
from tests.losses.test_cross_tokenizer_alignment import cross_case
from tests.losses.test_cross_tokenizer_alignment import reference


def _value(x):
    return float(ops.convert_to_numpy(x))


def test_unit_level_hra_matches_float64_numpy():
    case = cross_case(seed=11)
    student, teacher, units, mask, teacher_units, teacher_mask = case
    layer = HiddenAlignmentLoss(teacher_dim=10, student_dim=6)
    layer.projector.bias.assign(np.linspace(-1, 1, 10).astype("float32"))
    got = _value(
        layer(
            student,
            teacher,
            units,
            mask,
            unit_level=True,
            teacher_units=teacher_units,
            teacher_padding_mask=teacher_mask,
        )
    )
    want = reference(
        *case,
        kind="hra",
        kernel=ops.convert_to_numpy(layer.projector.kernel),
        bias=ops.convert_to_numpy(layer.projector.bias),
    )
    assert abs(got - want) / want < 1e-5


def test_unit_level_hra_gradients_reach_projector_not_teacher():
    student, teacher, units, mask, teacher_units, teacher_mask = cross_case(12)
    layer = HiddenAlignmentLoss(teacher_dim=10, student_dim=6)
    s = keras.Variable(student)
    t = keras.Variable(teacher)
    grads = variable_gradients(
        lambda: layer(
            s.value,
            t.value,
            units,
            mask,
            unit_level=True,
            teacher_units=teacher_units,
            teacher_padding_mask=teacher_mask,
        ),
        [layer.projector.kernel, layer.projector.bias, s, t],
    )
    g_kernel, g_bias, g_student, g_teacher = grads
    for g in (g_kernel, g_bias, g_student):
        assert np.all(np.isfinite(g)) and np.abs(g).sum() > 0
    np.testing.assert_array_equal(g_teacher, 0.0)


def test_mta_on_the_teachers_own_tokens():
    student, teacher, units, mask, teacher_units, teacher_mask = cross_case(13)
    layer = TrajectoryAlignmentLoss(
        teacher_dims=[10, 10], student_dims=[6, 6], word_pairs=1
    )
    phrases = units[:, ::-1]  # other rows for the phrase pair
    teacher_phrases = teacher_units[:, ::-1]
    out = layer(
        [student, student],
        [teacher, teacher],
        units,
        phrases,
        mask,
        teacher_signals={
            "importance": None,
            "token_weights": None,
            "word_units": teacher_units,
            "phrase_units": teacher_phrases,
            "padding_mask": teacher_mask,
        },
    )
    for k, (s_units, t_units) in enumerate(
        [(units, teacher_units), (phrases, teacher_phrases)]
    ):
        dsa = losses.structural_alignment(
            student,
            teacher,
            s_units,
            mask,
            teacher_units=t_units,
            teacher_padding_mask=teacher_mask,
        )
        hra = layer.hidden[k](
            student,
            teacher,
            s_units,
            mask,
            unit_level=True,
            teacher_units=t_units,
            teacher_padding_mask=teacher_mask,
        )
        assert _value(out["pair_dsa"][k]) == pytest.approx(_value(dsa), 1e-5)
        assert _value(out["pair_hra"][k]) == pytest.approx(_value(hra), 1e-5)
    assert _value(out["hra"]) > 0


@pytest.mark.once
def test_token_level_hra_across_tokenizers_is_refused():
    student, teacher, units, mask, teacher_units, teacher_mask = cross_case()
    layer = TrajectoryAlignmentLoss(
        teacher_dims=[10], student_dims=[6], hra_level="token"
    )
    with pytest.raises(ValueError, match="hra_level='unit'"):
        layer(
            [student],
            [teacher],
            units,
            units,
            mask,
            teacher_word_units=teacher_units,
            teacher_padding_mask=teacher_mask,
        )
    with pytest.raises(ValueError, match="unit_level=True"):
        layer.hidden[0](
            student,
            teacher,
            units,
            mask,
            teacher_units=teacher_units,
            teacher_padding_mask=teacher_mask,
        )
    with pytest.raises(ValueError, match="hra_level"):
        TrajectoryAlignmentLoss(teacher_dims=[10], hra_level="tokens")
    assert layer.get_config()["hra_level"] == "token"
