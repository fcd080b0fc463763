"""`TeacherSource`: what a `DistillationModel` asks of its teacher.

The model never asks which kind of teacher it has. It asks a teacher
source for its size (layers, hidden widths, vocabulary), for the input
keys it reads, for its outputs on a batch (logits, hidden states, token
importance, entropy weights) and for the KD value of a divergence. Two
sources exist:

- `keras_mta.models.LiveTeacher`: a keras-hub `CausalLM` run at every step
  (the model wraps a plain `CausalLM` into one itself).
- `keras_mta.CachedTeacher`: signals computed ahead by
  `keras_mta.build_teacher_cache` and streamed in the inputs.
- `keras_mta.models.CrossTokenizerTeacher`: a live keras-hub teacher with
  its own tokenizer (another model family), reading `teacher_token_ids`.

Both read the student's own `token_ids`: the teacher shares the student's
tokenizer and vocabulary. That assumption lives here and in the sources,
not in the model (`shares_tokenizer`, `check`, `check_inputs`), so that a
teacher with its own tokenizer (reading `teacher_token_ids` and mapping
its outputs onto the student's tokens) or a teacher scoring
student-generated text can be added as further sources.
"""

from keras_mta.models.alignment_plan import AlignmentPlan
from keras_mta.models.hidden_states import get_backbone

# Inputs of a teacher that tokenizes differently from the student.
TEACHER_TOKENIZER_KEYS = (
    "teacher_token_ids",
    "teacher_padding_mask",
    "teacher_word_units",
    "teacher_phrase_units",
)
# What a loss term may need of the teacher (`TeacherSource.outputs`).
OUTPUTS = ("logits", "hidden_states", "importance", "entropy_weights")


def vocabulary_size(model):
    """The vocabulary size of a keras-hub `CausalLM` (or of its backbone)."""
    backbone = get_backbone(model)
    size = getattr(backbone, "vocabulary_size", None)
    if size is None:
        size = getattr(backbone.token_embedding, "input_dim", None)
    return size


class TeacherSource:
    """Base class of the teachers a `DistillationModel` distills from.

    A subclass sets `name`, `num_layers` and `vocabulary_size` and
    implements `layer_widths`, `outputs`, `kd` and `serialize`; the other
    methods have defaults for a teacher that reads the student's
    `token_ids` (`shares_tokenizer = True`).

    Layer indices follow the HF convention of `AlignmentPlan`: 0 is the
    embedding output, `i` the output of transformer block `i`.

    Examples:

    ```python
    source = keras_mta.models.LiveTeacher(teacher)
    source.prepare([4, 12])
    out = source.outputs(x, [4, 12], needs=("logits", "hidden_states"))
    out["hidden_states"][0].shape  # (batch, seq_len, source.layer_widths(
                                   #  [4])[0])
    ```
    """

    # Reads the student's `token_ids` (same tokenizer and vocabulary).
    shares_tokenizer = True
    name = "teacher"
    num_layers = None
    vocabulary_size = None

    @property
    def model(self):
        """The Keras model run at each step, or None (nothing to run)."""
        return None

    def layer_widths(self, layers):
        """The hidden sizes at layer indices `layers` (a list of ints)."""
        raise NotImplementedError

    def default_plan(self, student_num_layers):
        """The `AlignmentPlan` used when the model is given none."""
        return AlignmentPlan.default(self.num_layers, student_num_layers)

    def check(self, student):
        """Raise early when this teacher cannot teach `student` (the
        student `CausalLM`): by default, unless the two share a
        vocabulary."""
        if not self.shares_tokenizer:
            return
        own, theirs = self.vocabulary_size, vocabulary_size(student)
        if own != theirs:
            raise ValueError(
                f"The teacher's vocabulary has {own} tokens and the "
                f"student's {theirs}, but both models read the same "
                "`token_ids`, and KD compares their next-token "
                "distributions over one vocabulary. Use a teacher and a "
                "student that share a tokenizer and vocabulary (e.g. the "
                "same model family), or `ablation='sft_only'` to train "
                "the student without a teacher. For a teacher from another "
                "family (its own tokenizer), wrap it as "
                "`keras_mta.models.CrossTokenizerTeacher(teacher)`, feed the "
                "inputs of `DistillationPreprocessor(student_preprocessor, "
                "teacher_preprocessor)` and use a cross-vocabulary "
                "divergence (e.g. 'uld')."
            )

    def check_divergence(self, divergence):
        """Raise when `kd` cannot compute `divergence` (a
        `keras.losses.Loss`); called by `KDTerm`. Any divergence by
        default."""

    def prepare(self, layers):
        """Get ready to return the hidden states of `layers`, or raise when
        this teacher cannot (called once, at the model's construction).
        Nothing to do by default."""

    def input_keys(self, layers, needs):
        """The input keys this teacher reads, beside the student's
        `token_ids` and `padding_mask`, to give `needs` (names from
        `OUTPUTS`) at `layers`. None by default."""
        return ()

    # Appended to the message that names missing input keys.
    missing_inputs_hint = ""

    def check_inputs(self, inputs):
        """Raise for inputs this teacher cannot read.

        A teacher that shares the student's tokenizer rejects the inputs of
        a teacher with its own tokenizer (`teacher_token_ids`, ...).
        """
        given = [k for k in TEACHER_TOKENIZER_KEYS if k in inputs]
        if given and self.shares_tokenizer:
            raise NotImplementedError(
                f"Inputs {given} (a teacher that tokenizes differently from "
                f"the student) are given, but the teacher {self.name!r} "
                "reads the student's `token_ids`: KD and HRA would compare "
                "the two models token by token over one vocabulary. Wrap a "
                "teacher with its own tokenizer as "
                "`keras_mta.models.CrossTokenizerTeacher(teacher)`, or use "
                "a teacher and student with the same tokenizer and feed "
                "only `token_ids`, `padding_mask`, `word_units`, "
                "`phrase_units`."
            )

    def teacher_units(self, inputs):
        """The teacher's own units and padding mask (a dict with
        `"word_units"`, `"phrase_units"` and `"padding_mask"`), or None when
        the teacher reads the student's tokens (the default): the
        alignment terms then use the student's units on both sides."""
        return None

    def outputs(self, inputs, layers, needs):
        """The teacher's signals on a batch, with no gradient.

        Args:
            inputs: the model's input dict.
            layers: the teacher layer indices whose states are returned.
            needs: names from `OUTPUTS` that the loss terms use.

        Returns:
            A dict with `"logits"` `(batch, seq_len, vocab)` or None (a
            teacher that keeps only a top-k form; see `kd`),
            `"hidden_states"` (list of float tensors `(batch, seq_len,
            dim)` at `layers`), `"importance"` (list of `(batch, seq_len)`
            token importances at `layers`, or None: computed from the
            states) and `"entropy_weights"` (`(batch, seq_len)`, or None
            when not in `needs`).
        """
        raise NotImplementedError

    def kd(self, divergence, outputs, inputs, student_logits, sample_weight):
        """The KD value of `divergence` between this teacher and the
        student logits, weighted per token by `sample_weight`."""
        raise NotImplementedError

    def serialize(self):
        """What `DistillationModel.get_config` stores as its `teacher`:
        `keras.saving.deserialize_keras_object` of it gives back a teacher
        the model accepts."""
        raise NotImplementedError


def resolve_plan(plan, source, student_num_layers):
    """The model's `AlignmentPlan`: `plan` (or its config dict) checked
    against the teacher source and the student, or the source's default
    plan when None (None without a teacher and a plan)."""
    if isinstance(plan, dict):
        plan = AlignmentPlan.from_config(plan)
    if plan is not None and not isinstance(plan, AlignmentPlan):
        raise TypeError(
            "`plan` must be an AlignmentPlan, its config dict or None, "
            f"got {type(plan).__name__}."
        )
    if source is None:
        return plan
    if plan is None:
        plan = source.default_plan(student_num_layers)
    plan.validate(source.num_layers, student_num_layers)
    return plan
