"""LoRA students: low-rank adapters on a keras-hub student, scaled by
`alpha / rank` as in PEFT."""

import contextlib
import math

import keras

from keras_mta.models.hidden_states import get_backbone


def lora_layers(model):
    """The layers of `model` whose LoRA is on (Keras `Dense` and
    `EinsumDense` layers after `enable_lora`), in `model`'s layer order."""
    return [
        layer
        for layer in model._flatten_layers(include_self=False)
        if getattr(layer, "lora_enabled", False)
    ]


def lora_variables(model):
    """The LoRA factors (`lora_kernel_a`, `lora_kernel_b`) of `model`."""
    return [
        variable
        for layer in lora_layers(model)
        for variable in (layer.lora_kernel_a, layer.lora_kernel_b)
    ]


def count_weights(variables):
    """The number of scalars in a list of variables."""
    return sum(math.prod(variable.shape) for variable in variables)


def enable_student_lora(causal_lm, rank, alpha=None):
    """Train a keras-hub student through low-rank adapters (LoRA).

    The targets and the freezing are keras-hub's own:
    `backbone.enable_lora(rank)` freezes every weight of the backbone and
    adds the factors `A` (`lora_kernel_a`, He-uniform) and `B`
    (`lora_kernel_b`, zeros) to the layers named by
    `backbone.default_lora_layer_names()` (the attention query and value
    projections: `query`/`value` in GPT-2, OPT, Llama, Qwen, Gemma, with
    the architecture's own additions), so that the update starts at zero.
    keras-hub takes no alpha, so the scale is set afterwards on each of
    those Keras layers (`layer.lora_alpha`, the attribute that
    `Dense/EinsumDense.enable_lora(rank, lora_alpha=...)` sets and that
    their forward pass, their `kernel` and their saving read): each
    adapted kernel acts as

    ```
    W + (alpha / rank) * A @ B
    ```

    (`A @ B` contracting the rank axis), as in PEFT's `LoraConfig(r=rank,
    lora_alpha=alpha)`. The biases of the adapted layers are frozen too
    (keras-hub leaves them trainable; PEFT's default `bias="none"` does
    not train them), so the student's only trainable weights are the
    LoRA factors. LoRA dropout (PEFT's `lora_dropout`) has no counterpart
    in Keras' LoRA and is not applied.

    Call it after the student's weights are final (loaded from a preset,
    `init_student_from_teacher`) and before building the
    `DistillationModel`, whose alignment projectors and other loss weights
    are not touched and train in full. Save it with
    `keras_mta.models.gguf.save_tied_preset` (what the runner does): every
    adapted kernel is written merged, `W + (alpha / rank) A B`, in its
    variable dtype (`merged_lora`), and the saved config holds no LoRA
    setting, so `keras_hub.models.CausalLM.from_preset` loads a plain model
    with the same logits. (A plain `save_to_preset` merges too, but stores
    the adapted kernels in the compute dtype: bfloat16 under
    `mixed_bfloat16`.) keras-hub's `save_lora_weights` stores the rank and
    the factors, not the alpha: after `load_lora_weights`, set
    `layer.lora_alpha` on `lora_layers(model)` again.

    Args:
        causal_lm: a keras-hub `CausalLM` (or its backbone) without LoRA.
        rank: int >= 1, the rank `r` of the factors.
        alpha: float > 0, the scale numerator; None for `rank` (scale 1,
            Keras' and keras-hub's default).

    Returns:
        The list of layers whose LoRA is now on.

    Examples:

    ```python
    student = keras_hub.models.CausalLM.from_preset("opt_1.3b_en")
    enable_student_lora(student, rank=16, alpha=64)  # scale 4
    model = keras_mta.DistillationModel(teacher, student, plan=plan)
    model.compile(optimizer="adamw")  # LoRA factors + projectors train
    model.fit(train_ds, epochs=1)
    save_tied_preset(student, "student")  # adapters merged
    ```
    """
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(
            f"LoRA rank must be an integer >= 1, got {rank!r}. Fix: pass "
            "rank=8 or 16 (student.lora_rank in a recipe; 0 there means no "
            "LoRA)."
        )
    if alpha is None:
        alpha = rank
    if (
        isinstance(alpha, bool)
        or not isinstance(alpha, (int, float))
        or not math.isfinite(alpha)
        or alpha <= 0
    ):
        raise ValueError(
            f"LoRA alpha must be a finite number > 0, got {alpha!r}. Fix: "
            "pass alpha=None for alpha = rank (scale 1), or e.g. alpha=64 "
            "for rank 16 (scale 4, as PEFT's lora_alpha)."
        )
    backbone = get_backbone(causal_lm)
    if lora_layers(backbone):
        raise ValueError(
            f"LoRA is already on in {backbone.name!r} (layers "
            f"{[layer.path for layer in lora_layers(backbone)]}); Keras "
            "enables it once per layer. Fix: call enable_student_lora once, "
            "on a student loaded without LoRA."
        )
    names = backbone.default_lora_layer_names()
    backbone.enable_lora(rank)
    layers = lora_layers(backbone)
    if not layers:
        raise ValueError(
            f"keras-hub enabled LoRA on no layer of {backbone.name!r} "
            f"({type(backbone).__name__}): none is named {names}, so every "
            "weight is now frozen. Fix: use a keras-hub backbone whose "
            "attention projections have those names, or train without "
            "LoRA (student.lora_rank = 0)."
        )
    for layer in layers:
        layer.lora_alpha = alpha
        if getattr(layer, "bias", None) is not None:
            layer.bias.trainable = False
    return layers


def lora_summary(model):
    """What trains in a LoRA student, or None when its LoRA is off.

    Returns:
        A dict: `rank`, `alpha`, `scale` (`alpha / rank`), `layers` (the
        number of adapted layers), `target_names` (their names),
        `trainable_weights` (scalars that train: the LoRA factors, unless
        something else was unfrozen) and `model_weights` (the model's own
        scalars, the factors not counted: what a merged preset holds).
    """
    layers = lora_layers(model)
    if not layers:
        return None
    rank, alpha = layers[0].lora_rank, layers[0].lora_alpha
    return {
        "rank": int(rank),
        "alpha": float(alpha),
        "scale": float(alpha) / float(rank),
        "layers": len(layers),
        "target_names": sorted({layer.name for layer in layers}),
        "trainable_weights": count_weights(model.trainable_weights),
        "model_weights": count_weights(model.weights)
        - count_weights(lora_variables(model)),
    }


@contextlib.contextmanager
def merged_lora(model):
    """Run a block with `model`'s adapters merged into its kernels.

    Inside, each LoRA layer's own kernel variable holds `W + (alpha /
    rank) A B`, computed in float32 and stored in the variable's dtype
    (float32 under a mixed policy), and the layer runs without LoRA; on
    exit the kernels are restored exactly and LoRA is on again. Keras'
    own saving of a LoRA layer also merges, but through the layer's
    `kernel`, which it casts to the compute dtype: under `mixed_bfloat16`
    the adapted kernels would be stored rounded to bfloat16, the others in
    float32. `keras_mta.models.gguf.save_tied_preset` saves inside this
    block. Quantized layers are left to Keras.

    Args:
        model: a Keras model (a `CausalLM`, its backbone); without LoRA
            the block runs on it unchanged.

    Examples:

    ```python
    with merged_lora(student):
        student.save_to_preset("student")
    ```
    """
    restore = []
    try:
        for layer in lora_layers(model):
            if layer.quantization_mode is not None:
                continue
            kernel = layer._kernel
            original = keras.ops.copy(kernel.value)
            update = (layer.lora_alpha / layer.lora_rank) * keras.ops.matmul(
                layer.lora_kernel_a, layer.lora_kernel_b
            )
            merged = keras.ops.add(keras.ops.cast(original, "float32"), update)
            restore.append((layer, original))
            kernel.assign(keras.ops.cast(merged, kernel.dtype))
            layer.lora_enabled = False
        yield model
    finally:
        for layer, original in restore:
            layer._kernel.assign(original)
            layer.lora_enabled = True
