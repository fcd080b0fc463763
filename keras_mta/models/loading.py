"""Teachers and students from recipe specs: presets or architectures."""

import os

import keras
import keras_hub

from keras_mta.models.gguf import from_gguf
from keras_mta.models.gguf import is_gguf_handle
from keras_mta.models.student_init import init_student_from_teacher

# Constructor arguments that set a backbone's width; `tiny_architecture`
# shrinks them and keeps the layer count.
_WIDTH_ARGS = {
    "hidden_dim": 16,
    "intermediate_dim": 32,
    "num_heads": 2,
    "num_query_heads": 2,
    "num_key_value_heads": 1,
    "vocabulary_size": 64,
    "head_dim": 8,
}


def backbone_class(name):
    """The keras-hub backbone class of a name such as `"GPT2Backbone"`."""
    cls = getattr(keras_hub.models, str(name), None)
    if not (
        isinstance(cls, type) and issubclass(cls, keras_hub.models.Backbone)
    ):
        raise ValueError(
            f"Unknown keras-hub backbone {name!r} in a model architecture. "
            "Give the class name of a keras_hub.models backbone, e.g. "
            "'GPT2Backbone', 'OPTBackbone', 'QwenBackbone', 'Llama3Backbone'."
        )
    return cls


def causal_lm_class(backbone_cls):
    """The keras-hub `CausalLM` class that wraps a backbone class."""
    for name in dir(keras_hub.models):
        cls = getattr(keras_hub.models, name)
        if (
            isinstance(cls, type)
            and issubclass(cls, keras_hub.models.CausalLM)
            and getattr(cls, "backbone_cls", None) is backbone_cls
        ):
            return cls
    raise ValueError(
        f"keras-hub has no CausalLM for {backbone_cls.__name__}; MTA needs a "
        "decoder-only causal LM."
    )


def tiny_architecture(architecture):
    """The same architecture with tiny widths and the real layer count."""
    tiny = dict(architecture)
    for key, value in _WIDTH_ARGS.items():
        if key in tiny:
            tiny[key] = value
    if "max_sequence_length" in tiny:
        tiny["max_sequence_length"] = min(int(tiny["max_sequence_length"]), 128)
    return tiny


def build_causal_lm(architecture, preprocessor=None, tiny=False):
    """A randomly initialised `CausalLM` built from an architecture dict.

    Args:
        architecture: dict with `"class"` (a keras-hub backbone class name)
            and that backbone's constructor arguments.
        preprocessor: optional `CausalLMPreprocessor` to attach.
        tiny: bool, shrink every width (hidden size, heads, vocabulary) and
            keep the layer count (see `tiny_architecture`): for checks of a
            recipe's plan without downloading or allocating a large model.

    Returns:
        A keras-hub `CausalLM`.
    """
    if "class" not in architecture:
        raise ValueError(
            "A model architecture needs a 'class' entry naming the keras-hub "
            f'backbone, e.g. class = "GPT2Backbone"; got {architecture!r}.'
        )
    kwargs = tiny_architecture(architecture) if tiny else dict(architecture)
    cls = backbone_class(kwargs.pop("class"))
    backbone = cls(**kwargs)
    return causal_lm_class(cls)(backbone=backbone, preprocessor=preprocessor)


def load_causal_lm(spec, role="model", tiny=False, teacher=None):
    """The teacher or student of a recipe's `ModelSpec`.

    With a `preset` (a keras-hub preset name, an `hf://` handle or a local
    preset directory) the weights, tokenizer and preprocessor are loaded
    with `keras_hub.models.CausalLM.from_preset`; `hf://OWNER/NAME` and
    local directories in the Transformers layout (`config.json` with a
    `model_type`, `model.safetensors`, tokenizer files) are converted by
    keras-hub where it has a converter for that model type (GPT-2, Llama,
    Mistral, Qwen1.5/Qwen2, Gemma, ...; not OPT), which is explained when
    it has none. A preset `gguf:PATH`,
    `gguf:NAME` (a packaged file, e.g. `gguf:smollm2-135m-instruct`) or a
    path ending in `.gguf` is converted (once, then cached) with
    `keras_mta.models.from_gguf`. With only an `architecture`, a randomly
    initialised model is built from it; a student with
    `student_init = "teacher_subset"` then receives the teacher's
    embeddings and the blocks `student_init_layers`
    (`keras_mta.models.init_student_from_teacher`).

    Args:
        spec: a `keras_mta.recipe.ModelSpec`.
        role: `"teacher"` or `"student"`; names the model in errors and
            scopes its variables (`teacher/...`, `student/...`).
        tiny: build from `architecture` with tiny widths (see
            `build_causal_lm`), ignoring the preset.
        teacher: the loaded teacher, needed when `spec.student_init` is
            `"teacher_subset"`.
    """
    model = _load_causal_lm(spec, role, tiny)
    init = getattr(spec, "student_init", "random")
    if init == "teacher_subset":
        if spec.preset and not tiny:
            raise ValueError(
                f'The {role} has a preset and student_init = "teacher_subset"'
                "; the preset's weights would be overwritten. Give the "
                f"{role} an architecture only, or use student_init = 'random'."
            )
        if teacher is None:
            raise ValueError(
                f'The {role} has student_init = "teacher_subset": pass the '
                "loaded teacher, `load_causal_lm(spec, role, teacher=...)`."
            )
        init_student_from_teacher(
            teacher, model, spec.student_init_layers or None
        )
    elif init != "random":
        raise ValueError(
            f"Unknown student_init {init!r}; use 'random' or 'teacher_subset'."
        )
    return model


# Where the loader sends a user whose Transformers checkpoint keras-hub
# cannot convert (no converter for its model type).
_NO_CONVERTER_HINT = (
    "keras-hub converts Transformers checkpoints of the model types its "
    "keras_hub/src/utils/transformers/convert_*.py handle (gpt2, llama, "
    "mistral, qwen2, qwen3, gemma, ...), not OPT. Use a keras-hub preset "
    "of the architecture instead (e.g. opt_6.7b_en), fine-tuned with "
    "`keras-mta train-teacher` where the reference used a fine-tuned "
    "teacher (recipes/README.md, 'Teachers and students from the Hub')."
)


def _from_preset(preset, role):
    """`CausalLM.from_preset`, with the failures of Transformers
    checkpoints (`hf://` handles, local directories) explained."""
    try:
        return keras_hub.models.CausalLM.from_preset(preset)
    except ValueError as e:
        if "has no converter" in str(e):  # keras-hub's Transformers loader
            raise ValueError(
                f"The {role} preset {preset!r} cannot be converted: {e} "
                + _NO_CONVERTER_HINT
            ) from None
        raise


def _load_causal_lm(spec, role, tiny):
    with keras.name_scope(role):
        if tiny:
            if not spec.architecture:
                raise ValueError(
                    f"The {role} has no architecture to build a tiny model "
                    "from: add an `architecture` table to its recipe entry."
                )
            return build_causal_lm(spec.architecture, tiny=True)
        if spec.preset and is_gguf_handle(spec.preset):
            return from_gguf(spec.preset)
        if spec.preset:
            preset = spec.preset
            if not preset.startswith(("hf://", "kaggle://")) and (
                os.sep in preset or preset.startswith(".")
            ):
                if not os.path.isdir(preset):
                    raise FileNotFoundError(
                        f"The {role} preset directory {preset!r} does not "
                        "exist. Save a model there with `save_to_preset`, or "
                        "name a keras-hub preset."
                    )
            return _from_preset(preset, role)
        if spec.architecture:
            return build_causal_lm(spec.architecture)
        raise ValueError(
            f"The recipe names no {role}: give `{role}.preset` (a keras-hub "
            f"preset, hf:// handle or directory) or `{role}.architecture`."
        )
