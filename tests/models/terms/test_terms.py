"""Loss terms: weights, metric names, and the short constructor's list."""

import keras
import numpy as np
import pytest

from keras_mta import AlignmentPlan
from keras_mta import DistillationModel
from keras_mta.models import terms as T
from tests.models import fixtures as F
from tests.models.parity_cases import MeanCosine

PLAN = AlignmentPlan([1, 3], [1, 2], word_pairs=1)


def _np_terms(model, batch):
    x, y, sw = batch
    values = model.compute_losses(x, y, sample_weight=sw)
    return {k: keras.ops.convert_to_numpy(v) for k, v in values.items()}


def _models():
    teacher, student = F.teacher_student()
    F.set_numpy_weights(teacher, 1)
    F.set_numpy_weights(student, 2)
    return teacher, student


def test_short_constructor_builds_weighted_terms():
    teacher, student = _models()
    model = DistillationModel(
        teacher,
        student,
        plan=PLAN,
        kd_ratio=0.3,
        mta_weight=1.5,
        pair_metrics=True,
        alignment_losses=[MeanCosine(loss_weight=0.7, name="cos")],
    )
    got = [(type(t).__name__, t.name, t.weight) for t in model.terms]
    assert got == [
        ("CrossEntropyTerm", "ce", pytest.approx(0.7)),
        ("KDTerm", "kd", pytest.approx(0.3)),
        ("TrajectoryAlignmentTerm", "mta", pytest.approx(0.45)),
        ("AlignmentTerm", "cos", pytest.approx(0.21)),
    ]
    names = [n for t in model.terms for n in t.metric_names]
    assert names == [
        "ce",
        "kd",
        "dsa",
        "hra",
        "dsa_0",
        "hra_0",
        "dsa_1",
        "hra_1",
        "cos",
    ]
    assert [m.name for m in model.metrics] == names
    values = _np_terms(model, F.make_batch())
    total = sum(t.weight * values[t.name] for t in model.terms)
    np.testing.assert_allclose(values["loss"], total, rtol=1e-6)


@pytest.mark.parametrize(
    "ablation,names",
    [
        ("sft_only", ["ce"]),
        ("kd_only", ["ce", "kd"]),
        ("dsa_only", ["ce", "kd", "mta"]),
    ],
)
def test_an_ablation_is_which_terms(ablation, names):
    teacher, student = _models()
    model = DistillationModel(teacher, student, plan=PLAN, ablation=ablation)
    assert [t.name for t in model.terms] == names


def test_explicit_terms_equal_the_short_constructor(tmp_path):
    batch = F.make_batch()
    teacher, student = _models()
    short = DistillationModel(
        teacher,
        student,
        plan=PLAN,
        kd_ratio=0.4,
        mta_weight=2.0,
        alignment_losses=[MeanCosine(loss_weight=0.5, name="cos")],
    )
    expected = _np_terms(short, batch)
    loss = short.alignment
    explicit = DistillationModel(
        teacher,
        student,
        plan=PLAN,
        terms=[
            T.CrossEntropyTerm(weight=0.6),
            T.KDTerm("forward_kl", weight=0.4),
            T.TrajectoryAlignmentTerm(loss, weight=0.8),
            T.AlignmentTerm(short.alignment_losses[0], weight=0.2),
        ],
    )
    assert explicit.alignment is loss
    assert explicit.alignment_losses == short.alignment_losses
    got = _np_terms(explicit, batch)
    for name in ("loss", "ce", "kd", "mta", "dsa", "hra", "cos"):
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-6)


def test_explicit_terms_round_trip(tmp_path):
    batch = F.make_batch()
    teacher, student = _models()
    model = DistillationModel(
        teacher,
        student,
        plan=PLAN,
        terms=[T.CrossEntropyTerm(weight=0.9), T.KDTerm(weight=0.1)],
    )
    path = str(tmp_path / "explicit.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert [(t.name, t.weight) for t in restored.terms] == [
        ("ce", 0.9),
        ("kd", 0.1),
    ]
    np.testing.assert_allclose(
        _np_terms(restored, batch)["loss"],
        _np_terms(model, batch)["loss"],
        rtol=1e-6,
    )


def test_errors():
    teacher, student = _models()
    with pytest.raises(TypeError, match="LossTerm"):
        DistillationModel(teacher, student, plan=PLAN, terms=[object()])
    with pytest.raises(ValueError, match="unique"):
        DistillationModel(
            teacher,
            student,
            plan=PLAN,
            terms=[T.CrossEntropyTerm(), T.CrossEntropyTerm()],
        )
    with pytest.raises(ValueError, match="no teacher"):
        DistillationModel(None, student, terms=[T.KDTerm()])
    with pytest.raises(ValueError, match="`weight` must be >= 0"):
        T.CrossEntropyTerm(weight=-1.0)
    with pytest.raises(TypeError, match="AlignmentLoss"):
        T.AlignmentTerm(object())
