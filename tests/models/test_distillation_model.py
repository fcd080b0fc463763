import keras
import keras_hub
import numpy as np
import pytest

from keras_mta import AlignmentPlan
from keras_mta import DistillationModel
from keras_mta.losses import ReverseKL
from tests.backend_utils import variable_gradients
from tests.models import fixtures as F

# Teacher 3 blocks, student 2 blocks: pair 0 aligns word units, pair 1
# phrase units.
PLAN = AlignmentPlan(teacher_layers=[2, 3], student_layers=[1, 2])

# The float64 NumPy loss of `_seeded_model(plan)` on `F.make_batch(0)`.
# NumPy's seeded generator is stable, so these pin the reference itself.
EXPECTED_LOSS = {
    "default": 3.223463446323607,
    "entropy_weighting": 3.1914138586586347,
}


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _seeded_model(plan=PLAN, teacher=None, student=None, **kwargs):
    """A DistillationModel whose weights all come from seeded NumPy."""
    if teacher is None or student is None:
        teacher, student = F.teacher_student()
        F.set_numpy_weights(teacher, 1)
        F.set_numpy_weights(student, 2)
    model = DistillationModel(teacher, student, plan=plan, **kwargs)
    if model.alignment is not None and model.alignment.weights:
        F.set_numpy_weights(model.alignment, 3)
    return model


def _terms(model, x, y, sw):
    return {
        k: _np(v)
        for k, v in model.compute_losses(x, y, sample_weight=sw).items()
    }


# === Training ===


def test_fit_lowers_loss_and_leaves_teacher_untouched():
    keras.utils.set_random_seed(0)
    teacher, student = F.teacher_student()
    model = DistillationModel(teacher, student, plan=PLAN)
    teacher_before = F.weights_numpy(teacher)
    student_before = F.weights_numpy(student)
    x, y, sw = F.make_batch()
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = model.fit(
        x, y, sample_weight=sw, batch_size=F.BATCH, epochs=6, verbose=0
    )
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    for key in ("loss", "ce", "kd", "dsa", "hra"):
        assert key in history.history
    for before, after in zip(teacher_before, F.weights_numpy(teacher)):
        np.testing.assert_array_equal(before, after)
    changed = [
        not np.array_equal(b, a)
        for b, a in zip(student_before, F.weights_numpy(student))
    ]
    assert all(changed)
    logs = model.evaluate(x, y, sample_weight=sw, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "ce", "kd", "dsa", "hra"}
    # The returned metrics agree with a direct computation.
    terms = _terms(model, x, y, sw)
    for key in ("loss", "ce", "kd", "dsa", "hra"):
        assert logs[key] == pytest.approx(float(terms[key]), rel=1e-4)


def test_trainable_weights_and_paths():
    teacher, student = F.teacher_student()
    model = DistillationModel(teacher, student, plan=PLAN)
    num_projector_weights = 2 * PLAN.num_pairs  # kernel and bias per pair
    assert len(model.trainable_weights) == (
        len(student.trainable_weights) + num_projector_weights
    )
    assert not teacher.trainable
    assert teacher.trainable_weights == []
    assert all(w.path.startswith("teacher/") for w in teacher.weights)
    assert all(w.path.startswith("student/") for w in student.weights)
    projectors = model.alignment.weights
    assert len(projectors) == num_projector_weights
    assert all(w.path.startswith("alignment/") for w in projectors)
    paths = [w.path for w in model.weights]
    assert len(paths) == len(set(paths))
    # Projectors are built at construction, before any call.
    assert model.alignment.hidden[0].projector.kernel.shape == (
        F.STUDENT_DIM,
        F.TEACHER_DIM,
    )


def test_paths_already_scoped_are_kept():
    with keras.name_scope("teacher"):
        teacher = F.gpt2(2, 8)
    with keras.name_scope("student"):
        student = F.gpt2(1, 8)
    before = [w.path for w in teacher.weights]
    assert all(p.startswith("teacher/") for p in before)
    DistillationModel(teacher, student, plan=AlignmentPlan([1, 2], [0, 1]))
    assert [w.path for w in teacher.weights] == before


# === Numbers ===


@pytest.mark.parametrize(
    "name,plan",
    [
        ("default", PLAN),
        ("entropy_weighting", PLAN.replace(entropy_weighting=True)),
        ("word_pairs_0", PLAN.replace(word_pairs=0)),
        ("word_pairs_2", PLAN.replace(word_pairs=2, hra_scale=0.5)),
    ],
)
def test_loss_matches_float64_numpy(name, plan):
    """Same NumPy-seeded weights give the same loss under every backend.

    The reference runs GPT-2 and every loss in float64 NumPy, independent of
    Keras; matching it to 1e-5 under each backend means the three backends
    agree to 1e-4.
    """
    model = _seeded_model(plan)
    x, y, sw = F.make_batch(seed=0)
    got = _terms(model, x, y, sw)
    want = F.reference_terms(model, x, y, sw)
    for key, value in want.items():
        np.testing.assert_allclose(
            got[key], value, rtol=1e-5, atol=1e-6, err_msg=key
        )
    if name in EXPECTED_LOSS:
        assert want["loss"] == pytest.approx(EXPECTED_LOSS[name], abs=1e-9)
    assert got["kd"] > 0 and got["dsa"] > 0 and got["hra"] > 0


def test_loss_formula_and_weights():
    x, y, sw = F.make_batch()
    model = _seeded_model(kd_ratio=0.3, mta_weight=1.5)
    t = _terms(model, x, y, sw)
    assert t["mta"] == pytest.approx(
        np.mean(t["pair_dsa"] + PLAN.hra_scale * t["pair_hra"]), rel=1e-6
    )
    assert t["loss"] == pytest.approx(
        0.7 * t["ce"] + 0.3 * (t["kd"] + 1.5 * t["mta"]), rel=1e-6
    )
    # Prompt and padding tokens do not count: changing their targets
    # changes nothing.
    y2 = y.copy()
    y2[sw == 0] = (y2[sw == 0] + 7) % F.VOCAB
    t2 = _terms(model, x, y2, sw)
    assert t2["loss"] == pytest.approx(t["loss"], rel=1e-6)


def test_divergence_and_temperature():
    x, y, sw = F.make_batch()
    teacher, student = F.shared_teacher_student()
    by_name = DistillationModel(
        teacher, student, plan=PLAN, divergence="reverse_kl", temperature=2.0
    )
    by_object = DistillationModel(
        teacher, student, plan=PLAN, divergence=ReverseKL(temperature=2.0)
    )
    assert by_name.divergence.temperature == 2.0
    a = _terms(by_name, x, y, sw)["kd"]
    b = _terms(by_object, x, y, sw)["kd"]
    assert a == pytest.approx(b, rel=1e-6)
    with pytest.raises(ValueError, match="conflicts"):
        DistillationModel(
            teacher,
            student,
            plan=PLAN,
            divergence=ReverseKL(temperature=2.0),
            temperature=3.0,
        )


# === Ablations ===


def _with_units(x, word=None, phrase=None):
    x = dict(x)
    if word is not None:
        x["word_units"] = word
    if phrase is not None:
        x["phrase_units"] = phrase
    return x


@pytest.mark.parametrize(
    "ablation",
    [
        "kd_only",
        "sft_only",
        "dsa_only",
        "hra_only",
        "word_units_only",
        "phrase_units_only",
        "no_kd",
    ],
)
def test_each_ablation_turns_off_exactly_its_term(ablation):
    x, y, sw = F.make_batch()
    teacher, student = F.teacher_student()
    F.set_numpy_weights(teacher, 1)
    F.set_numpy_weights(student, 2)
    full_model = _seeded_model(teacher=teacher, student=student)
    full = _terms(full_model, x, y, sw)
    kwargs = (
        {"use_kd": False} if ablation == "no_kd" else {"ablation": ablation}
    )
    model = _seeded_model(teacher=teacher, student=student, **kwargs)
    got = _terms(model, x, y, sw)
    r, w, s = model.kd_ratio, model.mta_weight, PLAN.hra_scale

    def close(a, b):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)

    close(got["ce"], full["ce"])
    if ablation == "kd_only":
        assert model.alignment is None
        for key in ("mta", "dsa", "hra"):
            assert got[key] == 0.0
        close(got["kd"], full["kd"])
        close(got["loss"], (1 - r) * full["ce"] + r * full["kd"])
    elif ablation == "sft_only":
        assert model.teacher is None
        for key in ("kd", "mta", "dsa", "hra"):
            assert got[key] == 0.0
        close(got["loss"], full["ce"])
        assert len(model.trainable_weights) == len(student.trainable_weights)
    elif ablation == "dsa_only":
        assert got["hra"] == 0.0
        close(got["dsa"], full["dsa"])
        close(got["kd"], full["kd"])
        close(
            got["loss"],
            (1 - r) * full["ce"] + r * (full["kd"] + w * full["dsa"]),
        )
        # No projector without HRA.
        assert len(model.trainable_weights) == len(student.trainable_weights)
    elif ablation == "hra_only":
        assert got["dsa"] == 0.0
        close(got["hra"], full["hra"])
        close(
            got["loss"],
            (1 - r) * full["ce"] + r * (full["kd"] + w * s * full["hra"]),
        )
    elif ablation == "word_units_only":
        assert model.unit_keys == ("word_units",)
        want = _terms(full_model, _with_units(x, phrase=x["word_units"]), y, sw)
        for key in want:
            close(got[key], want[key])
        # Phrase units are not needed at all.
        del x["phrase_units"]
        close(_terms(model, x, y, sw)["loss"], want["loss"])
    elif ablation == "phrase_units_only":
        assert model.unit_keys == ("phrase_units",)
        want = _terms(full_model, _with_units(x, word=x["phrase_units"]), y, sw)
        for key in want:
            close(got[key], want[key])
    elif ablation == "no_kd":
        assert got["kd"] == 0.0
        close(got["mta"], full["mta"])
        close(got["loss"], (1 - r) * full["ce"] + r * w * full["mta"])


def test_teacher_none_is_sft():
    _, student = F.teacher_student()
    model = DistillationModel(None, student)
    assert model.plan is None and model.alignment is None
    x, y, sw = F.make_batch()
    t = _terms(model, x, y, sw)
    assert t["loss"] == pytest.approx(float(t["ce"]))
    # SFT needs no units.
    x = {k: v for k, v in x.items() if not k.endswith("_units")}
    assert float(_terms(model, x, y, sw)["loss"]) == pytest.approx(
        float(t["ce"])
    )


def test_pair_metrics():
    model = _seeded_model(pair_metrics=True)
    names = [m.name for m in model.metrics]
    assert names == [
        "ce",
        "kd",
        "dsa",
        "hra",
        "dsa_0",
        "hra_0",
        "dsa_1",
        "hra_1",
    ]
    x, y, sw = F.make_batch()
    model.compile(optimizer="sgd")
    logs = model.test_on_batch(x, y, sample_weight=sw, return_dict=True)
    t = _terms(model, x, y, sw)
    for k in range(2):
        assert logs[f"dsa_{k}"] == pytest.approx(
            float(t["pair_dsa"][k]), rel=1e-5
        )
        assert logs[f"hra_{k}"] == pytest.approx(
            float(t["pair_hra"][k]), rel=1e-5
        )


# === Errors ===


def test_error_layer_index_out_of_range():
    teacher, student = F.shared_teacher_student()
    with pytest.raises(ValueError, match="out of range for the teacher"):
        DistillationModel(teacher, student, plan=AlignmentPlan([2, 4], [1, 2]))
    with pytest.raises(ValueError, match="out of range for the student"):
        DistillationModel(
            teacher,
            student,
            plan=AlignmentPlan.gpt2_xl_to_gpt2().replace(
                teacher_layers=[1, 2, 3]
            ),
        )


def test_error_plan_lists_of_different_lengths():
    with pytest.raises(ValueError, match="one teacher index and one student"):
        AlignmentPlan([1, 2, 3], [1, 2])
    teacher, student = F.shared_teacher_student()
    with pytest.raises(ValueError, match="one teacher index and one student"):
        DistillationModel(
            teacher,
            student,
            plan={"teacher_layers": [1, 2], "student_layers": [1]},
        )


def test_error_vocabularies_differ():
    teacher = F.gpt2(2, 8, vocab=80)
    student = F.gpt2(1, 8, vocab=64)
    with pytest.raises(ValueError, match="vocabulary has 80 tokens.*64"):
        DistillationModel(teacher, student)


def test_error_missing_input_keys():
    # That a dataset has units at all is checked over the whole dataset by
    # the preprocessing statistics; the model names a missing input key.
    teacher, student = F.shared_teacher_student()
    model = DistillationModel(teacher, student, plan=PLAN)
    assert model.input_keys == (
        "token_ids",
        "padding_mask",
        "word_units",
        "phrase_units",
    )
    x, y, sw = F.make_batch()
    for key in ("phrase_units", "word_units"):
        without = {k: v for k, v in x.items() if k != key}
        with pytest.raises(ValueError, match=f"lack \\['{key}'\\].*span"):
            model.compute_losses(without, y, sample_weight=sw)
        model.compile(optimizer="sgd")
        with pytest.raises(ValueError, match=key):
            model.test_on_batch(without, y, sample_weight=sw)
    without = {k: v for k, v in x.items() if k != "padding_mask"}
    with pytest.raises(ValueError, match="padding_mask"):
        model(without)
    with pytest.raises(ValueError, match="dict of inputs"):
        model(x["token_ids"])
    # Without MTA, no units are needed.
    kd_only = DistillationModel(teacher, student, mta_weight=0.0)
    assert kd_only.input_keys == ("token_ids", "padding_mask")
    units_free = {k: v for k, v in x.items() if not k.endswith("_units")}
    kd_only.compute_losses(units_free, y, sample_weight=sw)


def test_error_backbone_without_transformer_layers():
    inputs = keras.Input((None,), dtype="int32")
    plain = keras.Model(inputs, keras.layers.Embedding(64, 8)(inputs))
    _, student = F.teacher_student()
    with pytest.raises(ValueError, match="exposes no `transformer_layers`"):
        DistillationModel(plain, student)
    teacher, _ = F.teacher_student()
    with pytest.raises(ValueError, match="exposes no `transformer_layers`"):
        DistillationModel(teacher, plain)


def test_error_student_not_trainable():
    teacher, student = F.teacher_student()
    student.trainable = False
    with pytest.raises(ValueError, match="student.trainable = True"):
        DistillationModel(teacher, student)


def test_error_teacher_tokenizer_inputs():
    model = _seeded_model()
    x, y, sw = F.make_batch()
    x["teacher_token_ids"] = x["token_ids"]
    with pytest.raises(NotImplementedError, match="teacher_token_ids"):
        model(x)
    with pytest.raises(NotImplementedError, match="same tokenizer"):
        model.compute_losses(x, y, sample_weight=sw)


def test_error_misc():
    teacher, student = F.shared_teacher_student()
    with pytest.raises(ValueError, match="same model"):
        DistillationModel(student, student)
    with pytest.raises(ValueError, match="kd_ratio"):
        DistillationModel(teacher, student, kd_ratio=1.5)
    with pytest.raises(ValueError, match="Unknown ablation"):
        DistillationModel(teacher, student, ablation="no_teacher")
    for no_ablation in (None, "", "full"):
        DistillationModel(teacher, student, plan=PLAN, ablation=no_ablation)
    model = DistillationModel(teacher, student, plan=PLAN)
    with pytest.raises(ValueError, match="computes its own loss"):
        model.compile(optimizer="sgd", loss="mse")
    x, _, sw = F.make_batch()
    with pytest.raises(ValueError, match="needs targets"):
        model.compute_losses(x, None, sample_weight=sw)


# === Precision, other architectures, serialization ===


@pytest.mark.large
def test_mixed_bfloat16_losses_in_float32():
    keras.config.set_dtype_policy("mixed_bfloat16")
    teacher, student = F.teacher_student()
    model = DistillationModel(teacher, student, plan=PLAN)
    x, y, sw = F.make_batch()
    # The models run in bfloat16 ...
    hidden = model(x)["hidden_states"][0]
    assert keras.backend.standardize_dtype(hidden.dtype) == "bfloat16"
    # ... the losses in float32.
    terms = model.compute_losses(x, y, sample_weight=sw)
    for key, value in terms.items():
        assert keras.backend.standardize_dtype(value.dtype) == "float32", key
        assert np.all(np.isfinite(_np(value)))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(x, y, sample_weight=sw, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert np.all(np.isfinite(history.history["dsa"]))


@pytest.mark.large
def test_qwen_teacher_and_student():
    teacher, student = F.qwen(3, 16), F.qwen(2, 8)
    model = DistillationModel(teacher, student)  # default plan
    assert model.plan == AlignmentPlan.default(3, 2)
    assert len(model.trainable_weights) == (
        len(student.trainable_weights) + 2 * model.plan.num_pairs
    )
    x, y, sw = F.make_batch()
    t = _terms(model, x, y, sw)
    assert all(np.all(np.isfinite(v)) for v in t.values())
    assert t["dsa"] > 0 and t["hra"] > 0 and t["kd"] > 0
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    logs = model.train_on_batch(x, y, sample_weight=sw, return_dict=True)
    assert np.isfinite(logs["loss"])


def test_config_round_trip():
    model = _seeded_model(
        PLAN.replace(entropy_weighting=True),
        kd_ratio=0.4,
        mta_weight=1.0,
        divergence="skew_forward_kl",
        temperature=2.0,
        ablation="dsa_only",
        nonfinite="ignore",
    )
    config = model.get_config()
    clone = DistillationModel.from_config(config)
    assert clone.nonfinite == "ignore"
    assert clone.plan == model.plan
    assert clone.kd_ratio == 0.4 and clone.mta_weight == 1.0
    assert clone.use_hra is False and clone.use_dsa is True
    assert type(clone.divergence).__name__ == "SkewForwardKL"
    assert clone.divergence.temperature == 2.0
    assert clone.student.backbone.num_layers == F.STUDENT_LAYERS


def test_whole_model_save_and_load(tmp_path):
    model = _seeded_model()
    path = str(tmp_path / "distillation.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    assert restored.plan == model.plan
    x, y, sw = F.make_batch()
    a = _terms(model, x, y, sw)["loss"]
    b = _terms(restored, x, y, sw)["loss"]
    assert b == pytest.approx(float(a), rel=1e-6)


@pytest.mark.large
def test_gradients_reach_student_and_projectors_not_teacher():
    model = _seeded_model()
    x, y, sw = F.make_batch()
    student_var = model.student.backbone.transformer_layers[0]
    student_var = student_var._feedforward_intermediate_dense.kernel
    projector = model.alignment.hidden[1].projector.kernel
    variables = [student_var, projector]
    if keras.backend.backend() == "jax":
        # Under JAX any variable can be differentiated: the teacher's
        # gradient is exactly zero (stop_gradient). Torch and TensorFlow do
        # not even record the frozen teacher.
        variables.append(model.teacher.backbone.token_embedding.embeddings)

    def loss():
        return model.compute_losses(x, y, sample_weight=sw)["loss"]

    grads = variable_gradients(loss, variables)
    for grad in grads:
        assert np.all(np.isfinite(grad))
    assert np.abs(grads[0]).max() > 0
    assert np.abs(grads[1]).max() > 0
    if len(grads) == 3:
        assert np.abs(grads[2]).max() == 0.0


@pytest.mark.large
def test_student_save_to_preset_and_generate(tmp_path):
    preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(
        tokenizer=F.tiny_gpt2_tokenizer(), sequence_length=F.SEQ_LEN
    )
    teacher = F.gpt2(F.TEACHER_LAYERS, F.TEACHER_DIM)
    student = F.gpt2(F.STUDENT_LAYERS, F.STUDENT_DIM, preprocessor=preprocessor)
    DistillationModel(teacher, student, plan=PLAN)  # renames the paths
    F.set_numpy_weights(student, 5, scale=0.05)  # not the initial weights
    preset = str(tmp_path / "student")
    student.save_to_preset(preset)
    loaded = keras_hub.models.CausalLM.from_preset(preset)
    assert loaded.backbone.num_layers == F.STUDENT_LAYERS
    assert loaded.backbone.hidden_dim == F.STUDENT_DIM
    for a, b in zip(F.weights_numpy(student), F.weights_numpy(loaded)):
        np.testing.assert_array_equal(a, b)
    text = loaded.generate("a b", max_length=8)
    assert isinstance(text, str) and text.startswith("a b")


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2:
            raise RuntimeError("interrupted")


def _assign(variables, values):
    for variable, value in zip(variables, values):
        variable.assign(value)


def test_backup_and_restore_resumes_to_the_same_weights(tmp_path):
    """Stopped after 2 epochs and resumed == 4 uninterrupted epochs.

    One model (one compiled train step) plays the three runs: between runs
    its weights and Adam state are reset to the start, or scrambled before
    resuming, so everything the resumed run ends with comes from the
    backup.
    """
    batches = [F.make_batch(seed=i) for i in range(2)]
    x = {k: np.concatenate([b[0][k] for b in batches]) for k in batches[0][0]}
    y = np.concatenate([b[1] for b in batches])
    sw = np.concatenate([b[2] for b in batches])
    fit_kwargs = dict(
        sample_weight=sw,
        batch_size=F.BATCH,
        epochs=4,
        shuffle=False,
        verbose=0,
    )
    model = _seeded_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.optimizer.build(model.trainable_variables)
    trained = model.trainable_variables
    optimizer_state = [
        v for v in model.optimizer.variables if "learning_rate" not in v.path
    ]
    start = F.weights_numpy(model)
    # Fresh: as built (zero moments; the non-finite guard's scale 1).
    fresh_optimizer = [_np(v).copy() for v in optimizer_state]

    model.fit(x, y, **fit_kwargs)
    reference = [_np(v).copy() for v in trained]

    _assign(model.weights, start)
    _assign(optimizer_state, fresh_optimizer)
    backup_dir = str(tmp_path / "backup")
    with pytest.raises(RuntimeError, match="interrupted"):
        model.fit(
            x,
            y,
            callbacks=[
                keras.callbacks.BackupAndRestore(backup_dir),
                _Interrupt(),
            ],
            **fit_kwargs,
        )

    rng = np.random.default_rng(99)
    _assign(trained, [rng.normal(size=v.shape) for v in trained])
    _assign(
        optimizer_state,
        [np.full(v.shape, 3, v.dtype) for v in optimizer_state],
    )
    history = model.fit(
        x,
        y,
        callbacks=[keras.callbacks.BackupAndRestore(backup_dir)],
        **fit_kwargs,
    )
    assert len(history.history["loss"]) == 2  # only epochs 2 and 3 ran
    for want, got in zip(reference, trained):
        np.testing.assert_allclose(_np(got), want, rtol=1e-5, atol=1e-6)
    # The teacher never moved, and training did move the student.
    for a, b in zip(start, F.weights_numpy(model)):
        if a.shape and not np.array_equal(a, b):
            break
    else:
        raise AssertionError("training changed nothing")
    teacher_now = F.weights_numpy(model.teacher)
    for a, b in zip(start[: len(teacher_now)], teacher_now):
        np.testing.assert_array_equal(a, b)


@pytest.mark.once
def test_fit_on_a_tf_dataset_is_quiet_about_shuffle():
    # Keras warns on every `fit(tf.data.Dataset)` with its default
    # `shuffle=True`, which it ignores there; `DistillationModel.fit` leaves
    # the order to the dataset and says nothing. One passed explicitly is
    # passed on (Keras's own warning then stays).
    import warnings

    import tensorflow as tf

    _, student = F.shared_teacher_student()
    model = DistillationModel(None, student)
    model.compile(optimizer="sgd")
    dataset = tf.data.Dataset.from_tensor_slices(F.make_batch()).batch(2)
    for shuffle, warned in ((None, False), (True, True)):
        kwargs = {} if shuffle is None else {"shuffle": shuffle}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(dataset, epochs=1, verbose=0, **kwargs)
        messages = [str(w.message) for w in caught]
        assert any("shuffle" in m for m in messages) == warned, messages
