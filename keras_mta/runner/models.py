"""The models of a run: one loader for every command, the teacher and
student of a recipe, and their alignment plan."""

import os

import keras

from keras_mta.data.tokenizers import train_sentencepiece_tokenizer
from keras_mta.models import AlignmentPlan
from keras_mta.models import CrossTokenizerTeacher
from keras_mta.models import TeacherSource
from keras_mta.models import get_backbone
from keras_mta.models import num_hidden_layers
from keras_mta.models.loading import backbone_class
from keras_mta.models.loading import build_causal_lm
from keras_mta.models.loading import causal_lm_class
from keras_mta.models.loading import load_causal_lm
from keras_mta.models.lora import enable_student_lora
from keras_mta.models.lora import lora_summary
from keras_mta.preprocessing.distillation_preprocessor import same_tokenization
from keras_mta.recipe import ModelSpec
from keras_mta.utils import say


def load_model(preset, role="model"):
    """A keras-hub CausalLM (with its preprocessor) from any handle a
    recipe accepts: a keras-hub preset name, an `hf://` handle, a local
    preset directory, or a GGUF file (`gguf:NAME`, `gguf:PATH`, a path
    ending in `.gguf`; converted once, then cached).

    `keras-mta evaluate`, `distill`, `teacher-cache` and `train-teacher`
    all load their models through this loader
    (`keras_mta.models.loading.load_causal_lm`).

    Args:
        preset: the handle.
        role: names the model in errors and scopes its variables.

    Examples:

    ```python
    model = load_model("gguf:smollm2-135m-instruct")
    model = load_model("runs/tiny-cpu/mta_student")
    ```
    """
    return load_causal_lm(ModelSpec(preset=preset), role)


def _architecture_with_vocabulary(architecture, vocabulary_size):
    architecture = dict(architecture)
    architecture["vocabulary_size"] = int(vocabulary_size)
    return architecture


def load_models(recipe, train_examples, output_dir, tiny=False):
    """`(teacher, student)` keras-hub CausalLMs with preprocessors.

    With `data.tokenizer = "sentencepiece:N"` an N-piece SentencePiece
    tokenizer is trained on the training text (keras-hub's tools) and both
    models are built from their `architecture` with that vocabulary;
    otherwise each model comes from its preset (or architecture). With
    `data.student_tokenizer = "sentencepiece:N"` the student gets its own
    N-piece tokenizer (trained on the training text, built from
    `student.architecture`) and the teacher keeps its own (the preset's,
    or `data.tokenizer`'s): the run distills across tokenizers. With
    `student.lora_rank > 0` the student then trains through LoRA
    adapters (`apply_student_lora`, after any `student_init`).
    """
    spec = recipe.data.tokenizer
    if spec.startswith("sentencepiece:"):
        tokenizer = _trained_tokenizer(
            spec, train_examples, output_dir, "tokenizer.spm"
        )
        roles = ("teacher", "student")
        if recipe.data.student_tokenizer:  # issue 21: the student's own
            roles = ("teacher",)
        models = [
            _model_with_tokenizer(
                recipe, role, tokenizer, "data.tokenizer", tiny
            )
            for role in roles
        ]
        if recipe.data.student_tokenizer:
            models.append(
                _student_with_own_tokenizer(
                    recipe, train_examples, output_dir, tiny
                )
            )
        apply_student_lora(recipe.student, models[1])
        return tuple(models)
    if spec:
        raise ValueError(
            f"Unknown data.tokenizer {spec!r}: leave it empty (the presets' "
            "tokenizer) or use 'sentencepiece:N'."
        )
    teacher = load_causal_lm(recipe.teacher, "teacher", tiny=tiny)
    if recipe.data.student_tokenizer:  # issue 21: the student's own
        student = _student_with_own_tokenizer(
            recipe, train_examples, output_dir, tiny
        )
    else:
        student = load_causal_lm(
            recipe.student, "student", tiny=tiny, teacher=teacher
        )
        _share_tokenizer(teacher, student)
    for model in (teacher, student):
        if model.preprocessor is None:
            raise ValueError(
                "A recipe model built from an architecture has no "
                "tokenizer: set data.tokenizer = 'sentencepiece:N' or "
                "load the model from a preset."
            )
        model.preprocessor.sequence_length = recipe.data.sequence_length
    apply_student_lora(recipe.student, student)
    return teacher, student


def _trained_tokenizer(spec, train_examples, output_dir, file_name):
    """The `sentencepiece:N` tokenizer `spec` trained on the training text
    (`keras_mta.data.tokenizers`), its proto kept in `output_dir`."""
    size = int(spec.split(":", 1)[1])
    say(f"training a {size}-piece SentencePiece tokenizer ({file_name})")
    return train_sentencepiece_tokenizer(
        [e.text for e in train_examples],
        size,
        proto_path=os.path.join(output_dir, file_name),
    )


def _model_with_tokenizer(recipe, role, tokenizer, field, tiny):
    """The recipe's `role` built from its architecture with `tokenizer`'s
    vocabulary and a preprocessor over it (`field` names the recipe field
    that asked for the tokenizer, in errors)."""
    model_spec = getattr(recipe, role)
    if not model_spec.architecture:
        raise ValueError(
            f"{field}={getattr(recipe.data, field.split('.')[1])!r} trains a "
            f"new tokenizer, so the {role} must be built from "
            f"`{role}.architecture`."
        )
    architecture = _architecture_with_vocabulary(
        model_spec.architecture, tokenizer.vocabulary_size()
    )
    cls = causal_lm_class(backbone_class(architecture["class"]))
    preprocessor = cls.preprocessor_cls(
        tokenizer=tokenizer,
        sequence_length=recipe.data.sequence_length,
    )
    with keras.name_scope(role):
        return build_causal_lm(architecture, preprocessor, tiny=tiny)


def _student_with_own_tokenizer(recipe, train_examples, output_dir, tiny):
    """The student of `data.student_tokenizer` (issue 21): its own
    SentencePiece tokenizer trained on the training text, the student
    built from its architecture with that vocabulary; the teacher keeps
    its own tokenizer, and the run distills across tokenizers."""
    tokenizer = _trained_tokenizer(
        recipe.data.student_tokenizer,
        train_examples,
        output_dir,
        "student_tokenizer.spm",
    )
    return _model_with_tokenizer(
        recipe, "student", tokenizer, "data.student_tokenizer", tiny
    )


def apply_student_lora(spec, student):
    """LoRA on a recipe's student when `spec.lora_rank > 0`
    (`keras_mta.models.enable_student_lora` with `spec.lora_alpha`, 0
    meaning the rank), saying how many weights train.

    Args:
        spec: the recipe's student `ModelSpec`.
        student: the loaded student `CausalLM`, its weights final.

    Returns:
        `keras_mta.models.lora.lora_summary(student)`, or None without
        LoRA.
    """
    if not spec.lora_rank:
        return None
    rank = int(spec.lora_rank)
    enable_student_lora(student, rank, float(spec.lora_alpha or rank))
    summary = lora_summary(student)
    share = summary["trainable_weights"] / max(summary["model_weights"], 1)
    say(
        f"student LoRA: rank {rank}, alpha {summary['alpha']:g} (updates "
        f"scaled by {summary['scale']:g}) on {summary['layers']} layers "
        f"{summary['target_names']}; {summary['trainable_weights']:,} "
        f"student weights train (the LoRA factors, {share:.2%} of the "
        f"student's {summary['model_weights']:,}), the rest is frozen; the "
        "alignment projectors train in full; no LoRA dropout (Keras' LoRA "
        "has none)"
    )
    return summary


def _share_tokenizer(teacher, student):
    """Give a student built from an architecture the teacher's tokenizer.

    A student without a preset has no tokenizer; when its vocabulary is the
    teacher's and its preprocessor class takes the teacher's tokenizer
    class (e.g. a Llama3 student of a Llama3 teacher), it gets a
    preprocessor over the teacher's tokenizer, so both read the same ids.
    """
    if student.preprocessor is not None or teacher.preprocessor is None:
        return
    tokenizer = teacher.preprocessor.tokenizer
    preprocessor_cls = getattr(type(student), "preprocessor_cls", None)
    tokenizer_cls = getattr(preprocessor_cls, "tokenizer_cls", None)
    vocabulary = get_backbone(student).token_embedding.input_dim
    if (
        preprocessor_cls is None
        or tokenizer_cls is None
        or not isinstance(tokenizer, tokenizer_cls)
        or tokenizer.vocabulary_size() != vocabulary
    ):
        return
    teacher_preprocessor = teacher.preprocessor
    student.preprocessor = preprocessor_cls(
        tokenizer=tokenizer,
        sequence_length=teacher_preprocessor.sequence_length,
        add_start_token=teacher_preprocessor.add_start_token,
        add_end_token=teacher_preprocessor.add_end_token,
    )


def teacher_source_of(teacher, student):
    """The teacher a `DistillationModel` gets: a keras-hub teacher that
    tokenizes differently from the student is wrapped into a
    `keras_mta.models.CrossTokenizerTeacher` (it reads the `teacher_*`
    inputs of the run's `Datasets`); anything else passes as it is."""
    if teacher is None or isinstance(teacher, TeacherSource):
        return teacher
    preprocessors = (teacher.preprocessor, student.preprocessor)
    if None in preprocessors or same_tokenization(*preprocessors):
        return teacher
    return CrossTokenizerTeacher(teacher)


def make_plan(recipe, teacher, student):
    """The recipe's `AlignmentPlan` (its layers, or the default plan)."""
    return recipe_plan(
        recipe, num_hidden_layers(teacher), num_hidden_layers(student)
    )


def recipe_plan(recipe, teacher_num_layers, student_num_layers):
    """The recipe's `AlignmentPlan` for models of these block counts: its
    layers when `plan.teacher_layers` is given, else the default plan (None
    when a block count needed for it is unknown, e.g. in `keras-mta plan`
    without an architecture)."""
    plan = recipe.plan
    kwargs = {
        "word_pairs": plan.word_pairs,
        "hra_scale": plan.hra_scale,
        "entropy_weighting": plan.entropy_weighting,
    }
    if plan.teacher_layers:
        return AlignmentPlan(plan.teacher_layers, plan.student_layers, **kwargs)
    if teacher_num_layers is None or student_num_layers is None:
        return None
    return AlignmentPlan.default(
        teacher_num_layers,
        student_num_layers,
        num_pairs=plan.num_pairs,
        **kwargs,
    )
