"""LoRA students: what trains, the alpha scale, the merged preset."""

import json
import os

import keras
import keras_hub
import numpy as np
import pytest

from keras_mta import AlignmentPlan
from keras_mta import DistillationModel
from keras_mta.models import enable_student_lora
from keras_mta.models import lora_layers
from keras_mta.models import lora_summary
from keras_mta.models import lora_variables
from keras_mta.models.gguf import save_tied_preset
from tests.models import fixtures as F

PLAN = AlignmentPlan(teacher_layers=[2, 3], student_layers=[1, 2])


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _lora_paths(num_layers):
    return {
        f"transformer_layer_{i}/self_attention/{name}/lora_kernel_{ab}"
        for i in range(num_layers)
        for name in ("query", "value")
        for ab in ("a", "b")
    }


def _set_factors(model, seed):
    """Nonzero LoRA factors, seeded with NumPy (the same on every
    backend)."""
    rng = np.random.default_rng(seed)
    for variable in lora_variables(model):
        variable.assign(rng.normal(scale=0.5, size=variable.shape))


@pytest.mark.once
def test_only_the_lora_factors_of_query_and_value_train():
    student = F.gpt2(2, 16)
    weights = student.count_params()
    layers = enable_student_lora(student, 4, alpha=12.0)
    assert (
        sorted(layer.name for layer in layers) == ["query"] * 2 + ["value"] * 2
    )
    assert {w.path for w in student.trainable_weights} == _lora_paths(2)
    # keras-hub leaves the adapted layers' biases trainable; PEFT's
    # default (bias="none") does not train them, nor do we.
    frozen = {w.path for w in student.non_trainable_weights}
    assert "transformer_layer_0/self_attention/query/bias" in frozen
    assert "transformer_layer_0/self_attention/query/kernel" in frozen
    # Per layer: A (16, 2 heads, 4), B (4, 8 = head width).
    factors = 4 * (16 * 2 * 4 + 4 * 8)
    assert lora_summary(student) == {
        "rank": 4,
        "alpha": 12.0,
        "scale": 3.0,
        "layers": 4,
        "target_names": ["query", "value"],
        "trainable_weights": factors,
        "model_weights": weights,
    }
    assert lora_summary(F.gpt2(2, 16)) is None


@pytest.mark.once
def test_bad_rank_alpha_and_second_call_are_refused():
    student = F.gpt2(1, 16)
    with pytest.raises(ValueError, match="rank must be an integer >= 1"):
        enable_student_lora(student, 0)
    with pytest.raises(ValueError, match="alpha must be a finite number > 0"):
        enable_student_lora(student, 2, alpha=float("nan"))
    with pytest.raises(ValueError, match="alpha must be a finite number > 0"):
        enable_student_lora(student, 2, alpha=0.0)
    assert lora_layers(student) == []  # nothing changed
    enable_student_lora(student, 2)
    assert lora_layers(student)[0].lora_alpha == 2  # alpha None: rank
    with pytest.raises(ValueError, match="LoRA is already on"):
        enable_student_lora(student, 2)


@pytest.mark.parametrize("alpha", [None, 16.0])
def test_alpha_scales_the_update_as_numpy_says(alpha):
    rank = 4
    student = F.gpt2(2, 16)
    enable_student_lora(student, rank, alpha=alpha)
    _set_factors(student, 0)
    layer = student.backbone.transformer_layers[1]._self_attention_layer
    layer = layer._query_dense
    kernel = _np(layer._kernel).astype(np.float64)
    a = _np(layer.lora_kernel_a).astype(np.float64)
    b = _np(layer.lora_kernel_b).astype(np.float64)
    bias = _np(layer.bias).astype(np.float64)
    # W + (alpha / r) A B, A B contracting the rank axis.
    scale = (rank if alpha is None else alpha) / rank
    merged = kernel + scale * np.matmul(a, b)
    x = np.random.default_rng(1).normal(size=(2, 3, 16)).astype("float32")
    expected = np.einsum("btc,cde->btde", x.astype(np.float64), merged) + bias
    np.testing.assert_allclose(_np(layer(x)), expected, rtol=1e-5, atol=1e-5)
    # The scale matters: the update alone is not what the kernel holds.
    assert np.abs(scale * np.matmul(a, b)).max() > 0.1


def test_merged_preset_loads_as_a_plain_model_with_the_same_logits(tmp_path):
    student = F.gpt2(2, 16)
    x, _, _ = F.make_batch()
    inputs = {k: x[k] for k in ("token_ids", "padding_mask")}
    base = _np(student(inputs))
    enable_student_lora(student, 4, alpha=12.0)
    _set_factors(student, 0)
    adapted = _np(student(inputs))
    assert np.abs(adapted - base).max() > 1e-2  # the adapters act
    preset = str(tmp_path / "student")
    kernels = [_np(w).copy() for w in student.weights]
    save_tied_preset(student, preset)
    # The student is left as it was: LoRA on, its kernels unmerged.
    assert len(lora_layers(student)) == 4
    for before, after in zip(kernels, student.weights):
        np.testing.assert_array_equal(before, _np(after))

    loaded = keras_hub.models.CausalLM.from_preset(preset)
    np.testing.assert_allclose(
        _np(loaded(inputs)), adapted, rtol=1e-5, atol=1e-5
    )
    assert lora_layers(loaded) == []
    assert not [w.path for w in loaded.weights if "lora" in w.path]
    assert len(loaded.trainable_weights) == len(loaded.weights)
    assert len(loaded.weights) == len(student.weights) - 8  # 4 layers x A, B
    for name in ("config.json", "task.json"):
        with open(os.path.join(preset, name)) as f:
            assert "lora" not in f.read()
    with open(os.path.join(preset, "metadata.json")) as f:
        metadata = json.load(f)
    # keras-hub counts the factors; the merged preset does not hold them.
    assert metadata["parameter_count"] == loaded.backbone.count_params()


def test_distillation_fit_moves_only_lora_factors_and_projectors():
    keras.utils.set_random_seed(0)
    teacher, student = F.teacher_student()
    enable_student_lora(student, 2, alpha=8.0)
    model = DistillationModel(teacher, student, plan=PLAN)
    projectors = model.alignment.weights
    assert len(projectors) == 2 * PLAN.num_pairs  # kernel and bias per pair
    trained = {w.path for w in model.trainable_variables}
    factors = {w.path for w in lora_variables(student)}
    assert len(factors) == 4 * F.STUDENT_LAYERS
    assert trained == factors | {w.path for w in projectors}
    assert teacher.trainable_weights == []

    before = {w.path: _np(w).copy() for w in model.weights}
    x, y, sw = F.make_batch()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(
        x, y, sample_weight=sw, batch_size=F.BATCH // 2, epochs=1, verbose=0
    )
    assert np.all(np.isfinite(history.history["loss"]))
    changed = {
        w.path
        for w in model.weights
        if not np.array_equal(before[w.path], _np(w))
    }
    # B starts at zero, so A moves from the second step on.
    assert changed == trained


@pytest.mark.once
def test_a_mixed_precision_lora_student_preset_loads(tmp_path):
    # The paper recipes train under mixed_bfloat16; keras-hub's
    # `from_preset` fails on a preset whose policy is named so, and Keras'
    # own merge would store the adapted kernels in bfloat16.
    keras.config.set_dtype_policy("mixed_bfloat16")
    student = F.gpt2(1, 16)
    enable_student_lora(student, 2, alpha=8.0)
    _set_factors(student, 0)
    layer = student.backbone.transformer_layers[0]._self_attention_layer
    layer = layer._value_dense
    merged = _np(layer._kernel) + 4.0 * np.matmul(
        _np(layer.lora_kernel_a), _np(layer.lora_kernel_b)
    )
    preset = str(tmp_path / "student")
    save_tied_preset(student, preset)
    keras.config.set_dtype_policy("float32")

    loaded = keras_hub.models.CausalLM.from_preset(preset)
    attention = loaded.backbone.transformer_layers[0]._self_attention_layer
    np.testing.assert_allclose(
        _np(attention._value_dense.kernel), merged, rtol=1e-6, atol=1e-6
    )
    assert lora_layers(loaded) == []
