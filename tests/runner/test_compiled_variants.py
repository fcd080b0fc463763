"""A variant's model is compiled once and reused by every training seed,
its own state put back as built; early stopping reads the student's own
validation cross-entropy (issue 22)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mta.models import DistillationModel
from keras_mta.models.validation_loss import validation_model
from keras_mta.runner.compiled_variants import CompiledVariants
from keras_mta.runner.training import EARLY_STOPPING_MONITOR
from keras_mta.runner.training import StudentValidation
from keras_mta.runner.training import fit
from tests.models.fixtures import make_batch
from tests.models.fixtures import teacher_student


def _numpy(variables):
    return [keras.ops.convert_to_numpy(v.value).copy() for v in variables]


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_a_variant_is_compiled_once_and_starts_as_built():
    keras.utils.set_random_seed(0)
    teacher, student = teacher_student()
    built = []

    def build():
        model = DistillationModel(teacher, student)  # MTA: HRA projectors
        model.compile(optimizer=keras.optimizers.AdamW(1e-2))
        built.append(model)
        return model

    compiled = CompiledVariants(student)
    model = compiled.model("mta", build)
    assert model.alignment_variables  # the terms' own weights
    terms = _numpy(model.alignment_variables)
    optimizer = _numpy(model.optimizer.variables)
    model.make_train_function()
    step = model.train_function
    # What a seed's training leaves behind.
    for variable in model.alignment_variables + model.optimizer.variables:
        variable.assign(keras.ops.ones_like(variable.value))
    assert not _same(_numpy(model.alignment_variables), terms)

    again = compiled.model("mta", build)
    assert again is model and len(built) == 1
    assert again.train_function is step  # not traced again
    assert int(again.optimizer.iterations.numpy()) == 0
    assert _same(_numpy(again.alignment_variables), terms)
    assert _same(_numpy(again.optimizer.variables), optimizer)
    assert compiled.validation() is compiled.validation()


def test_student_validation_logs_the_variant_s_validation_ce():
    keras.utils.set_random_seed(0)
    teacher, student = teacher_student()
    model = DistillationModel(teacher, student, ablation="kd_only")
    model.compile(optimizer=keras.optimizers.AdamW(1e-2))
    x, y, sample_weight = make_batch()
    data = tf.data.Dataset.from_tensor_slices((x, y, sample_weight)).batch(4)
    logs = {"loss": 1.0}
    StudentValidation(validation_model(student), data).on_epoch_end(0, logs)
    # What the KD model's own validation would log as `val_ce`, from the
    # student's forward pass alone.
    expected = model.evaluate(x, y, sample_weight=sample_weight, verbose=0)
    names = model.metrics_names
    assert logs[EARLY_STOPPING_MONITOR] == pytest.approx(
        expected[names.index("ce")], rel=1e-5
    )


# Two fits of an MTA model (a compile of about 20 s here): full tier; the
# everyday tests above cover the restored state and the logged `val_ce`.
@pytest.mark.large
def test_a_reused_model_trains_as_it_did_the_first_time():
    keras.utils.set_random_seed(0)
    teacher, student = teacher_student()
    x, y, sample_weight = make_batch()
    data = tf.data.Dataset.from_tensor_slices((x, y, sample_weight)).batch(2)
    compiled = CompiledVariants(student)
    start = student.get_weights()

    def build():
        model = DistillationModel(teacher, student)
        model.compile(optimizer=keras.optimizers.AdamW(1e-2))
        return model

    histories = []
    for _ in range(2):  # two training seeds with the same start
        student.set_weights(start)
        model = compiled.model("mta", build)
        callbacks = [
            StudentValidation(compiled.validation(), data),
            keras.callbacks.EarlyStopping(
                monitor=EARLY_STOPPING_MONITOR,
                mode="min",
                patience=1,
                restore_best_weights=True,
            ),
        ]
        history = fit(model, data, None, 3, 2, callbacks=callbacks)
        histories.append(history.history)
    assert len(histories[0][EARLY_STOPPING_MONITOR]) >= 2
    assert "val_kd" not in histories[0]  # the student alone is validated
    np.testing.assert_allclose(
        histories[1][EARLY_STOPPING_MONITOR],
        histories[0][EARLY_STOPPING_MONITOR],
        rtol=1e-6,
    )
