import keras
import numpy as np
import pytest
from keras import ops

from keras_mta.layers import TrajectoryAlignmentLoss
from tests import numpy_reference as ref
from tests.losses.fixtures import random_case

STUDENT_DIMS = [4, 6, 6]
TEACHER_DIMS = [8, 10, 12]


def _case():
    rng = np.random.default_rng(41)
    _, _, word_units, mask = random_case(seed=41)
    phrase_units = np.zeros((4, 3, 2), "int32")
    phrase_units[0] = [[0, 5], [5, 9], [0, 0]]
    phrase_units[1] = [[0, 3], [3, 6], [1, 4]]
    phrase_units[3] = [[0, 2], [2, 5], [0, 0]]
    student = [
        rng.normal(size=(4, 9, d)).astype("float32") for d in STUDENT_DIMS
    ]
    teacher = [
        rng.normal(size=(4, 9, d)).astype("float32") for d in TEACHER_DIMS
    ]
    return student, teacher, word_units, phrase_units, mask


def _reference(layer, student, teacher, words, phrases, mask):
    dsa, hra = [], []
    for k in range(len(student)):
        units = words if k < layer.word_pairs else phrases
        dsa.append(
            ref.structural_alignment(student[k], teacher[k], units, mask)
        )
        proj = layer.hidden[k].projector
        projected = student[k].astype(np.float64) @ ops.convert_to_numpy(
            proj.kernel
        ) + ops.convert_to_numpy(proj.bias)
        hra.append(ref.hidden_alignment(projected, teacher[k], units, mask))
    return np.array(dsa), np.array(hra)


@pytest.mark.parametrize("word_pairs", [0, 1, 2, 3])
def test_matches_float64_numpy(word_pairs):
    student, teacher, words, phrases, mask = _case()
    layer = TrajectoryAlignmentLoss(
        TEACHER_DIMS, STUDENT_DIMS, word_pairs=word_pairs, hra_scale=0.3
    )
    out = layer(student, teacher, words, phrases, mask)
    dsa, hra = _reference(layer, student, teacher, words, phrases, mask)
    np.testing.assert_allclose(
        ops.convert_to_numpy(out["pair_dsa"]), dsa, rtol=1e-5
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(out["pair_hra"]), hra, rtol=1e-5
    )
    want = np.mean(dsa + 0.3 * hra)
    assert float(ops.convert_to_numpy(out["loss"])) == pytest.approx(
        want, rel=1e-5
    )


def test_ablation_switches_turn_off_exactly_their_term():
    student, teacher, words, phrases, mask = _case()
    full = TrajectoryAlignmentLoss(TEACHER_DIMS, STUDENT_DIMS)
    out = full(student, teacher, words, phrases, mask)
    dsa_only = TrajectoryAlignmentLoss(
        TEACHER_DIMS, STUDENT_DIMS, use_hra=False
    )
    hra_only = TrajectoryAlignmentLoss(
        TEACHER_DIMS, STUDENT_DIMS, use_dsa=False
    )
    assert dsa_only.weights == []  # no projector without HRA
    hra_only.set_weights(full.get_weights())
    d = dsa_only(student, teacher, words, phrases, mask)
    h = hra_only(student, teacher, words, phrases, mask)
    f = {k: ops.convert_to_numpy(v) for k, v in out.items()}
    assert float(d["hra"]) == 0.0
    assert float(h["dsa"]) == 0.0
    assert float(ops.convert_to_numpy(d["loss"])) == pytest.approx(
        float(f["dsa"]), rel=1e-6
    )
    assert float(ops.convert_to_numpy(h["loss"])) == pytest.approx(
        0.1 * float(f["hra"]), rel=1e-6
    )


def test_entropy_weights_are_used():
    student, teacher, words, phrases, mask = _case()
    layer = TrajectoryAlignmentLoss(TEACHER_DIMS, STUDENT_DIMS)
    weights = np.random.default_rng(0).uniform(size=mask.shape) * mask
    a = layer(student, teacher, words, phrases, mask)
    b = layer(
        student,
        teacher,
        words,
        phrases,
        mask,
        teacher_token_weights=weights.astype("float32"),
    )
    assert float(ops.convert_to_numpy(a["loss"])) != float(
        ops.convert_to_numpy(b["loss"])
    )
    want = ref.structural_alignment(
        student[0], teacher[0], words, mask, token_weights=weights
    )
    assert float(ops.convert_to_numpy(b["pair_dsa"][0])) == pytest.approx(
        want, rel=1e-5
    )


def test_builds_lazily_without_student_dims():
    student, teacher, words, phrases, mask = _case()
    layer = TrajectoryAlignmentLoss(TEACHER_DIMS)
    assert not layer.built
    layer(student, teacher, words, phrases, mask)
    assert layer.built
    assert len(layer.trainable_weights) == 6


def test_config_round_trip():
    layer = TrajectoryAlignmentLoss(
        TEACHER_DIMS,
        STUDENT_DIMS,
        word_pairs=2,
        hra_scale=0.5,
        use_dsa=False,
    )
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert restored.get_config() == layer.get_config()
    assert len(restored.trainable_weights) == 6


def test_bad_plans_are_rejected_at_construction():
    with pytest.raises(ValueError, match="word_pairs"):
        TrajectoryAlignmentLoss([8, 8], word_pairs=3)
    with pytest.raises(ValueError, match="one hidden size per layer pair"):
        TrajectoryAlignmentLoss([8, 8], [4])
    with pytest.raises(ValueError, match="at least one pair"):
        TrajectoryAlignmentLoss([])
    with pytest.raises(ValueError, match="hra_scale"):
        TrajectoryAlignmentLoss([8], hra_scale=-1.0)
    student, teacher, words, phrases, mask = _case()
    layer = TrajectoryAlignmentLoss(TEACHER_DIMS, STUDENT_DIMS)
    with pytest.raises(ValueError, match="3 layer pairs"):
        layer(student[:2], teacher[:2], words, phrases, mask)
