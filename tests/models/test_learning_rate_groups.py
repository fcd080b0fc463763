"""Learning-rate groups: each group moves at its rate, weight decay at the
group's rate, one global clip over all groups; inside `DistillationModel`
(behind the non-finite guard) and after loading a saved model."""

import keras
import numpy as np
import pytest

from keras_mta import AlignmentPlan
from keras_mta import DistillationModel
from keras_mta.models import learning_rate_multiplier
from keras_mta.models import set_learning_rate_multipliers
from tests.backend_utils import variable_gradients
from tests.models import fixtures as F

PLAN = AlignmentPlan(teacher_layers=[2, 3], student_layers=[1, 2])


def _variables():
    """Two groups of variables and their gradients, seeded."""
    rng = np.random.default_rng(0)
    shapes = [(3, 2), (2,), (2, 4), (4,)]
    values = [rng.normal(size=s).astype("float32") for s in shapes]
    grads = [
        [rng.normal(size=s).astype("float32") for s in shapes] for _ in range(2)
    ]
    variables = [keras.Variable(v, name=f"v{i}") for i, v in enumerate(values)]
    return variables, values, grads


def _adamw_reference(values, grads, rates, lr, wd, clip, b1, b2, eps):
    """AdamW steps in float64 NumPy: per-group rate `lr * rate`, decoupled
    decay at that rate, one clip by the global norm of all gradients."""
    w = [v.astype(np.float64) for v in values]
    m = [np.zeros_like(x) for x in w]
    v = [np.zeros_like(x) for x in w]
    for t, step in enumerate(grads, start=1):
        g = [x.astype(np.float64) for x in step]
        norm = np.sqrt(sum((x**2).sum() for x in g))
        g = [x * min(1.0, clip / norm) for x in g]
        for i in range(len(w)):
            rate = lr * rates[i]
            w[i] = w[i] - wd * rate * w[i]
            m[i] = b1 * m[i] + (1 - b1) * g[i]
            v[i] = b2 * v[i] + (1 - b2) * g[i] ** 2
            alpha = rate * np.sqrt(1 - b2**t) / (1 - b1**t)
            w[i] = w[i] - alpha * m[i] / (np.sqrt(v[i]) + eps)
    return w


def test_each_group_moves_at_its_rate_with_decay_and_one_global_clip():
    """Two AdamW steps (bias correction, decay, an active global clip)
    against float64 NumPy: the second group at 5x the first's rate."""
    variables, values, grads = _variables()
    lr, wd, clip = 0.1, 0.3, 0.5
    optimizer = keras.optimizers.AdamW(
        lr, weight_decay=wd, global_clipnorm=clip, epsilon=1e-7
    )
    set_learning_rate_multipliers(optimizer, [(5.0, variables[2:])])
    assert learning_rate_multiplier(optimizer, variables[0]) == 1.0
    assert learning_rate_multiplier(optimizer, variables[3]) == 5.0
    for step in grads:
        optimizer.apply(
            [keras.ops.convert_to_tensor(g) for g in step], variables
        )
    expected = _adamw_reference(
        values, grads, [1, 1, 5, 5], lr, wd, clip, 0.9, 0.999, 1e-7
    )
    for variable, want in zip(variables, expected):
        got = keras.ops.convert_to_numpy(variable)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # Without the groups the second group would have moved 5x less.
    plain = _adamw_reference(
        values, grads, [1, 1, 1, 1], lr, wd, clip, 0.9, 0.999, 1e-7
    )
    assert not np.allclose(plain[2], expected[2], rtol=1e-3)


@pytest.mark.once
def test_groups_of_rate_one_leave_the_optimizer_untouched():
    variables, _, _ = _variables()
    optimizer = keras.optimizers.SGD(0.1)
    inner = set_learning_rate_multipliers(
        keras.optimizers.LossScaleOptimizer(optimizer), [(2.0, variables)]
    )
    assert inner is optimizer
    assert "_backend_update_step" in vars(optimizer)
    set_learning_rate_multipliers(optimizer, [(1.0, variables)])
    assert "_backend_update_step" not in vars(optimizer)
    assert "_apply_weight_decay" not in vars(optimizer)
    with pytest.raises(ValueError, match="`multiplier` must be >= 0"):
        set_learning_rate_multipliers(optimizer, [(-1.0, variables)])
    with pytest.raises(ValueError, match="and finite.*5e-4 / 1e-4"):
        set_learning_rate_multipliers(optimizer, [(float("inf"), variables)])


def _model(multiplier=3.0):
    teacher, student = F.shared_teacher_student()
    model = DistillationModel(
        teacher,
        student,
        plan=PLAN,
        alignment_learning_rate_multiplier=multiplier,
    )
    F.set_numpy_weights(model.alignment, 3)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    return model


def _multipliers(model):
    """`{variable path: multiplier}` on the optimizer behind the guard."""
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    inner = model.optimizer.inner_optimizer
    return {
        v.path: learning_rate_multiplier(inner, v)
        for v in model.trainable_variables
    }


def test_compile_sets_the_groups_behind_the_guard_and_loading_again(tmp_path):
    """Every trainable weight that is not the student's (the projectors)
    at 3x, the student at 1x, on the guard's inner optimizer; the same
    after `keras.models.load_model`."""
    teacher, student = F.shared_teacher_student()
    with pytest.raises(ValueError, match="alignment_learning_rate_multiplier"):
        DistillationModel(
            teacher, student, alignment_learning_rate_multiplier=float("inf")
        )
    model = _model()
    projectors = {v.path for v in model.alignment_variables}
    assert projectors and all(p.startswith("alignment/") for p in projectors)
    student_paths = {v.path for v in model.student.trainable_variables}
    multipliers = _multipliers(model)
    assert multipliers == {
        path: 1.0 if path in student_paths else 3.0 for path in multipliers
    }
    assert {p for p, m in multipliers.items() if m == 3.0} == projectors

    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    assert restored.alignment_learning_rate_multiplier == 3.0
    assert restored.get_config()["alignment_learning_rate_multiplier"] == 3.0
    assert _multipliers(restored) == multipliers


def _grads(model, x, y, sw):
    def loss():
        return model.compute_losses(x, y, sample_weight=sw, training=True)[
            "loss"
        ]

    return variable_gradients(loss, model.trainable_variables)


# A compiled step and a compiled gradient (about 30 s under jax on a quiet
# machine). The everyday tier checks the same path in parts: the rates
# against NumPy in `test_each_group_moves_at_its_rate_with_decay_and_one_
# global_clip`, the groups behind the guard in `test_compile_sets_the_
# groups_behind_the_guard_and_loading_again`, and compiled steps of a model
# with groups in tests/models/test_gradient_accumulation.py.
@pytest.mark.large
def test_distillation_model_trains_alignment_weights_at_their_rate():
    """One compiled step of SGD behind the non-finite guard: the student at
    the optimizer's rate, the projectors at 3x."""
    model = _model()
    x, y, sw = F.make_batch()
    grads = _grads(model, x, y, sw)
    before = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    model.train_on_batch(x, y, sample_weight=sw)
    multipliers = _multipliers(model)
    for variable, start, grad in zip(model.trainable_variables, before, grads):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(variable),
            start - 0.1 * multipliers[variable.path] * grad,
            rtol=1e-4,
            atol=1e-6,
            err_msg=variable.path,
        )
