"""DistillationModel(alignment_losses=...): user-defined alignment losses."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_mta import AlignmentPlan
from keras_mta import DistillationModel
from keras_mta.layers import AlignmentLoss
from tests.backend_utils import variable_gradients
from tests.models import fixtures as F

PLAN = AlignmentPlan(teacher_layers=[2, 3], student_layers=[1, 2])


@keras.saving.register_keras_serializable(package="keras_mta_tests")
class ProjectedCosine(AlignmentLoss):
    """1 - cos(P s, t) over real tokens, at every pair, own projectors."""

    def __init__(self, teacher_dims, **kwargs):
        super().__init__(**kwargs)
        self.teacher_dims = list(teacher_dims)
        self.projectors = [
            keras.layers.Dense(d, dtype=self.dtype_policy, name=f"proj_{k}")
            for k, d in enumerate(self.teacher_dims)
        ]

    def build(self, student_hidden_shape, teacher_hidden_shape):
        for projector, shape in zip(self.projectors, student_hidden_shape):
            projector.build(shape)

    def call(
        self,
        student_hidden,
        teacher_hidden,
        word_units,
        phrase_units,
        padding_mask,
    ):
        total = 0.0
        for projector, s, t in zip(
            self.projectors, student_hidden, teacher_hidden
        ):
            s = ops.normalize(projector(s), axis=-1)
            t = ops.normalize(t, axis=-1)
            distance = 1.0 - ops.sum(s * t, axis=-1)
            total = total + ops.sum(distance * padding_mask) / ops.maximum(
                ops.sum(padding_mask), 1.0
            )
        return total / len(self.projectors)

    def get_config(self):
        config = super().get_config()
        config["teacher_dims"] = self.teacher_dims
        return config


class NotScalar(AlignmentLoss):
    def call(self, student_hidden, teacher_hidden, *args):
        return ops.mean(student_hidden[0], axis=-1)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _model(loss_weight=0.5, name="cos", **kwargs):
    teacher, student = F.teacher_student()
    F.set_numpy_weights(teacher, 1)
    F.set_numpy_weights(student, 2)
    custom = ProjectedCosine(
        [F.TEACHER_DIM] * 2, loss_weight=loss_weight, name=name
    )
    model = DistillationModel(
        teacher, student, plan=PLAN, alignment_losses=[custom], **kwargs
    )
    if model.alignment is not None:
        F.set_numpy_weights(model.alignment, 3)
    F.set_numpy_weights(custom, 4)
    return model, custom


def _terms(model, x, y, sw):
    return {
        k: _np(v)
        for k, v in model.compute_losses(x, y, sample_weight=sw).items()
    }


def test_built_at_construction_trained_and_scoped():
    model, custom = _model()
    assert custom.built
    assert len(custom.weights) == 4  # kernel and bias per pair
    assert all(w.path.startswith("alignment/cos/") for w in custom.weights)
    paths = [w.path for w in model.trainable_weights]
    for w in custom.weights:
        assert w.path in paths
    assert len(paths) == len(set(paths))


def test_added_to_the_distillation_term_and_reported():
    x, y, sw = F.make_batch()
    model, _ = _model(loss_weight=0.5, kd_ratio=0.4)
    terms = _terms(model, x, y, sw)
    assert np.isfinite(terms["cos"]) and terms["cos"] > 0
    expected = 0.6 * terms["ce"] + 0.4 * (
        terms["kd"] + model.mta_weight * terms["mta"] + 0.5 * terms["cos"]
    )
    assert terms["loss"] == pytest.approx(float(expected), rel=1e-5)
    # With loss_weight 0 the total is the model's own loss.
    zero, _ = _model(loss_weight=0.0, kd_ratio=0.4)
    zero_terms = _terms(zero, x, y, sw)
    own = 0.6 * zero_terms["ce"] + 0.4 * (
        zero_terms["kd"] + zero.mta_weight * zero_terms["mta"]
    )
    assert zero_terms["loss"] == pytest.approx(float(own), rel=1e-5)


@pytest.mark.large
def test_fit_reports_metric_and_lowers_it():
    keras.utils.set_random_seed(0)
    model, custom = _model(loss_weight=1.0)
    x, y, sw = F.make_batch()
    before = [_np(w).copy() for w in custom.weights]
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(
        x, y, sample_weight=sw, batch_size=F.BATCH, epochs=5, verbose=0
    )
    values = history.history["cos"]
    assert np.all(np.isfinite(values))
    assert values[-1] < values[0]
    for b, a in zip(before, custom.weights):
        assert not np.array_equal(b, _np(a))
    logs = model.evaluate(x, y, sample_weight=sw, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "ce", "kd", "dsa", "hra", "cos"}
    terms = _terms(model, x, y, sw)
    assert logs["cos"] == pytest.approx(float(terms["cos"]), rel=1e-4)


def test_gradient_reaches_student_and_own_weights_not_teacher():
    model, custom = _model(mta_weight=0.0)
    x, y, sw = F.make_batch()
    # The lowest aligned student state is the output of block 1: the
    # gradient of the custom term alone must reach block 0.
    block = model.student.backbone.transformer_layers[0]
    variables = [
        block._feedforward_intermediate_dense.kernel,
        custom.projectors[0].kernel,
    ]
    if keras.backend.backend() == "jax":
        # Only JAX differentiates the frozen teacher's variables: exactly 0.
        variables.append(model.teacher.backbone.token_embedding.embeddings)

    def custom_term():
        return model.compute_losses(x, y, sample_weight=sw)["cos"]

    grads = variable_gradients(custom_term, variables)
    for grad in grads:
        assert np.all(np.isfinite(grad))
    assert np.abs(grads[0]).max() > 0
    assert np.abs(grads[1]).max() > 0
    if len(grads) == 3:
        assert np.abs(grads[2]).max() == 0.0


def test_kd_only_keeps_custom_losses_sft_only_drops_them():
    x, y, sw = F.make_batch()
    model, _ = _model(ablation="kd_only")
    assert model.alignment is None
    terms = _terms(model, x, y, sw)
    assert terms["mta"] == 0.0 and terms["cos"] > 0
    assert len(model.call(x)["hidden_states"]) == PLAN.num_pairs
    sft, _ = _model(ablation="sft_only")
    assert sft.alignment_losses == []
    assert "cos" not in _terms(sft, x, y, sw)


def test_config_round_trip_and_save(tmp_path):
    model, _ = _model(loss_weight=0.25)
    config = model.get_config()
    assert len(config["alignment_losses"]) == 1
    clone = DistillationModel.from_config(config)
    (layer,) = clone.alignment_losses
    assert isinstance(layer, ProjectedCosine)
    assert layer.loss_weight == 0.25 and layer.name == "cos"
    assert layer.built
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    x, y, sw = F.make_batch()
    a = _terms(model, x, y, sw)
    b = _terms(restored, x, y, sw)
    assert b["cos"] == pytest.approx(float(a["cos"]), rel=1e-6)
    assert b["loss"] == pytest.approx(float(a["loss"]), rel=1e-6)


def test_a_single_layer_is_accepted():
    teacher, student = F.teacher_student()
    layer = ProjectedCosine([F.TEACHER_DIM] * 2, name="one")
    model = DistillationModel(
        teacher, student, plan=PLAN, alignment_losses=layer
    )
    assert model.alignment_losses == [layer]


@pytest.mark.parametrize(
    "make,error,match",
    [
        (lambda: {"a": 1}, TypeError, "must be a list"),
        (lambda: [object()], TypeError, "AlignmentLoss"),
        (lambda: [ProjectedCosine([16, 16], name="dsa")], ValueError, "dsa"),
        (lambda: [ProjectedCosine([16, 16], name="hra_1")], ValueError, "hra"),
        (
            lambda: [
                ProjectedCosine([16, 16], name="same"),
                ProjectedCosine([16, 16], name="same"),
            ],
            ValueError,
            "unique",
        ),
        (lambda: [NotScalar(name="vec")], ValueError, "must return a scalar"),
    ],
)
def test_errors(make, error, match):
    teacher, student = F.teacher_student()
    with pytest.raises(error, match=match):
        DistillationModel(teacher, student, plan=PLAN, alignment_losses=make())


def test_error_without_teacher():
    _, student = F.teacher_student()
    with pytest.raises(ValueError, match="there is no teacher"):
        DistillationModel(
            None,
            student,
            alignment_losses=[ProjectedCosine([16, 16], name="cos")],
        )
