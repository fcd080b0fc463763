"""`CrossTokenizerTeacher`: a live keras-hub teacher with its own tokenizer."""

import keras
from keras import ops

from keras_mta.models.live_teacher import LiveTeacher
from keras_mta.models.teacher_source import vocabulary_size

# The inputs a teacher with its own tokenizer reads (made by
# `keras_mta.DistillationPreprocessor(student_preprocessor,
# teacher_preprocessor)` when the two tokenize differently).
MODEL_KEYS = ("teacher_token_ids", "teacher_padding_mask")
UNIT_KEYS = ("teacher_word_units", "teacher_phrase_units")
# int32 `(batch, seq_len)`: for each student position, the teacher position
# whose next-token distribution KD compares with it, -1 for none.
POSITIONS_KEY = "teacher_positions"
# Named in the message that refuses a same-vocabulary divergence.
CROSS_VOCABULARY_HINT = (
    "a cross-vocabulary objective, e.g. divergence='uld' (Universal Logit "
    "Distillation, keras_mta.losses.UniversalLogitDistillation), or any "
    "keras.losses.Loss whose class sets `cross_vocabulary = True`"
)


@keras.saving.register_keras_serializable(package="keras_mta")
class CrossTokenizerTeacher(LiveTeacher):
    """A keras-hub `CausalLM` teacher from another model family, with its
    own tokenizer and vocabulary, run in inference mode at each step.

    A `keras_mta.models.TeacherSource` like `LiveTeacher` (frozen, through
    `stop_gradient`, one forward view of the aligned layers), but it reads
    its own tokens: `teacher_token_ids`, `teacher_padding_mask`,
    `teacher_word_units` and `teacher_phrase_units`, as
    `keras_mta.DistillationPreprocessor(student_preprocessor,
    teacher_preprocessor)` makes them when the two tokenizers differ (when
    they tokenize alike the preprocessor makes none, and the teacher is
    passed to the model as it is). The units are character spans of the
    text, so they exist on both sides, paired row by row:

    - DSA: each side pools its unit vectors from its own tokens with its own
      importance; the unit-pair weights come from the teacher.
    - HRA: at the unit level, `sum_u W_u (1 - cos(P z^S_u, z^T_u)) /
      sum_u W_u` (`keras_mta.losses.unit_hidden_alignment`), as the
      `TrajectoryAlignmentLoss` does with `hra_level="auto"`; a loss with
      `hra_level="token"` is refused.
    - KD: the teacher's logits are gathered at the student's positions
      through the int32 input `teacher_positions` `(batch, seq_len)` (-1
      where a student position has no teacher partner; those positions are
      masked out of the token weights), and the divergence compares them
      with the student's logits over two vocabularies. A divergence must
      declare `cross_vocabulary = True` (e.g. `"uld"`) unless
      `same_vocabulary=True`.

    Args:
        model: a keras-hub `CausalLM` (any model with a backbone exposing
            `transformer_layers`).
        same_vocabulary: bool, the two models share their vocabulary (the
            same token ids) though they tokenize differently (e.g. other
            start/end token settings): then any divergence is accepted.
            Defaults to False.

    Examples:

    ```python
    preprocessor = keras_mta.DistillationPreprocessor(
        student.preprocessor, teacher.preprocessor, chunker=chunker
    )
    model = keras_mta.DistillationModel(
        keras_mta.models.CrossTokenizerTeacher(teacher),
        student,
        divergence="uld",
    )
    ```
    """

    shares_tokenizer = False
    missing_inputs_hint = (
        " The teacher has its own tokenizer: build the inputs with "
        "`keras_mta.DistillationPreprocessor(student_preprocessor, "
        "teacher_preprocessor)`. It makes no `teacher_*` inputs when the "
        "two tokenize alike; then pass the teacher `CausalLM` itself, not "
        "a CrossTokenizerTeacher."
    )

    def __init__(self, model, same_vocabulary=False):
        super().__init__(model)
        self.same_vocabulary = bool(same_vocabulary)
        self.student_vocabulary_size = None

    def check(self, student):
        super().check(student)
        self.student_vocabulary_size = vocabulary_size(student)
        if self.same_vocabulary and (
            self.student_vocabulary_size != self.vocabulary_size
        ):
            raise ValueError(
                f"`same_vocabulary=True`, but the teacher {self.name!r} has "
                f"{self.vocabulary_size} tokens and the student "
                f"{self.student_vocabulary_size}. Leave `same_vocabulary` "
                f"off and use {CROSS_VOCABULARY_HINT}."
            )

    def check_divergence(self, divergence):
        if self.same_vocabulary:
            return
        if getattr(divergence, "cross_vocabulary", False):
            return
        name = getattr(divergence, "name", type(divergence).__name__)
        raise ValueError(
            f"The KD divergence {name!r} compares two next-token "
            "distributions over one vocabulary, but the teacher "
            f"{self.name!r} has its own tokenizer and vocabulary "
            f"({self.vocabulary_size} tokens; the student "
            f"{self.student_vocabulary_size}). Use "
            f"{CROSS_VOCABULARY_HINT}; or `use_kd=False` (MTA and CE only); "
            "or `CrossTokenizerTeacher(teacher, same_vocabulary=True)` if "
            "the two models share their token ids."
        )

    def input_keys(self, layers, needs):
        keys = MODEL_KEYS
        if "logits" in needs:
            keys += (POSITIONS_KEY,)
        if "hidden_states" in needs:
            keys += UNIT_KEYS
        return keys

    def check_inputs(self, inputs):
        """Teacher inputs are expected here; nothing is refused."""

    def model_inputs(self, inputs):
        return {
            "token_ids": inputs["teacher_token_ids"],
            "padding_mask": inputs["teacher_padding_mask"],
        }

    def teacher_units(self, inputs):
        word_units = inputs.get("teacher_word_units")
        phrase_units = inputs.get("teacher_phrase_units")
        return {
            "word_units": phrase_units if word_units is None else word_units,
            "phrase_units": (
                word_units if phrase_units is None else phrase_units
            ),
            "padding_mask": ops.cast(inputs["teacher_padding_mask"], "float32"),
        }

    def kd(self, divergence, outputs, inputs, student_logits, sample_weight):
        logits = outputs["logits"]
        positions = ops.cast(inputs[POSITIONS_KEY], "int32")
        paired = positions >= 0
        teacher_len = ops.shape(logits)[1]
        # One flat gather: row b, position p -> b * teacher_len + p.
        rows = ops.arange(ops.shape(positions)[0], dtype="int32")[:, None]
        flat = rows * teacher_len + ops.where(paired, positions, 0)
        flat_logits = ops.reshape(logits, (-1, ops.shape(logits)[-1]))
        gathered = ops.take(flat_logits, flat, axis=0)
        weights = ops.cast(sample_weight, "float32") * ops.cast(
            paired, "float32"
        )
        return divergence(gathered, student_logits, sample_weight=weights)

    def serialize(self):
        return keras.saving.serialize_keras_object(self)

    def get_config(self):
        model = keras.saving.serialize_keras_object(self._model)
        # keras-hub tasks compile themselves at construction; their compile
        # state plays no part in distillation.
        model.pop("compile_config", None)
        return {"model": model, "same_vocabulary": self.same_vocabulary}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["model"] = keras.saving.deserialize_keras_object(config["model"])
        return cls(**config)

    def __repr__(self):
        return (
            f"CrossTokenizerTeacher({self.name!r}, "
            f"num_layers={self.num_layers})"
        )
