"""`AlignmentTerm`: an `AlignmentLoss` layer as a term of the objective."""

import inspect

import keras
from keras import ops

from keras_mta.layers.alignment_loss import AlignmentLoss
from keras_mta.models.terms.loss_term import LossTerm
from keras_mta.models.variable_paths import prefix_variable_paths

ALIGNMENT_SCOPE = "alignment"


def unit_inputs(inputs):
    """`(word_units, phrase_units)` of the inputs; when only one kind is
    given it stands for both (None when neither is)."""
    word_units = inputs.get("word_units")
    phrase_units = inputs.get("phrase_units")
    if word_units is None:
        word_units = phrase_units
    if phrase_units is None:
        phrase_units = word_units
    return word_units, phrase_units


@keras.saving.register_keras_serializable(package="keras_mta")
class AlignmentTerm(LossTerm):
    """A `keras_mta.layers.AlignmentLoss` over the plan's layer pairs.

    The term calls the loss on every batch with the hidden states of the
    plan's pairs in float32 (the teacher's through `stop_gradient`), the
    word and phrase units and the padding mask; a loss whose `call` takes a
    `teacher_signals` argument also gets the teacher's token importance and
    entropy weights (see `AlignmentLoss`). The value is reported under the
    term's name. The loss is built at the model's construction (`build`),
    so optimizers see its weights before the first step; its variable
    paths start with `alignment/`.

    A teacher with its own tokenizer (a source with `shares_tokenizer =
    False`, e.g. `keras_mta.models.CrossTokenizerTeacher`) has states on its
    own tokens: the term adds the teacher's units and padding mask
    (`TeacherSource.teacher_units`) to `teacher_signals` as `"word_units"`,
    `"phrase_units"` and `"padding_mask"`, so such a loss must declare
    `teacher_signals` (`TrajectoryAlignmentLoss` does).

    Args:
        loss: an `AlignmentLoss` layer.
        weight: float >= 0, the term's weight in the loss; defaults to the
            layer's `loss_weight`. (The model's short constructor uses
            `kd_ratio * loss_weight`.)
        name: defaults to the layer's `name`.

    Examples:

    ```python
    AlignmentTerm(PooledCosineLoss(teacher_dim=1600, name="pooled_cos"),
                  weight=0.25)
    ```
    """

    needs = ("hidden_states",)

    def __init__(self, loss, weight=None, name=None):
        if not isinstance(loss, AlignmentLoss):
            raise TypeError(
                "An AlignmentTerm needs a keras_mta.layers.AlignmentLoss, "
                f"got {type(loss).__name__}."
            )
        super().__init__(
            weight=loss.loss_weight if weight is None else weight,
            name=loss.name if name is None else name,
        )
        self.loss = loss
        self._takes_signals = (
            "teacher_signals" in inspect.signature(loss.call).parameters
        )

    @property
    def layers(self):
        return [self.loss]

    def build(self, student_dims, teacher_dims, teacher_source):
        """Build the loss now, on symbolic inputs, and check it returns a
        scalar (or a dict with a scalar `"loss"`)."""
        own_tokens = not getattr(teacher_source, "shares_tokenizer", True)
        if own_tokens and not self._takes_signals:
            raise ValueError(
                f"The alignment loss {self.loss.name!r} reads the teacher's "
                "states on the student's tokens, but the teacher "
                f"{teacher_source.name!r} has its own tokenizer: its states "
                "lie on its own tokens. Declare a `teacher_signals` argument "
                "in `call` and read the teacher's units from it "
                "(`teacher_signals['word_units']`, `['phrase_units']`, "
                "`['padding_mask']`), or leave the loss out."
            )
        if own_tokens:
            check = getattr(self.loss, "check_teacher_tokens", None)
            if check is not None:
                check(teacher_source.name)
        student_hidden = [
            keras.KerasTensor((None, None, d), dtype="float32")
            for d in student_dims
        ]
        teacher_hidden = [
            keras.KerasTensor((None, None, d), dtype="float32")
            for d in teacher_dims
        ]
        units = keras.KerasTensor((None, None, 2), dtype="int32")
        padding_mask = keras.KerasTensor((None, None), dtype="float32")
        try:
            with keras.name_scope(ALIGNMENT_SCOPE):
                out = self.loss(
                    student_hidden, teacher_hidden, units, units, padding_mask
                )
        except Exception as error:
            error.add_note(
                f"(while building the alignment loss {self.loss.name!r} on "
                f"student states of widths {student_dims} and teacher states "
                f"of widths {teacher_dims}; see "
                "keras_mta.layers.AlignmentLoss for the call arguments)"
            )
            raise
        if isinstance(out, dict):
            out = out["loss"]
        if tuple(out.shape) != ():
            raise ValueError(
                f"The alignment loss {self.loss.name!r} must return a "
                f"scalar, but returns shape {tuple(out.shape)}. Reduce it "
                "(e.g. `ops.mean`) in `call`."
            )
        prefix_variable_paths(self.loss, ALIGNMENT_SCOPE)

    def call(self, batch):
        inputs = batch.inputs
        word_units, phrase_units = unit_inputs(inputs)
        kwargs = {}
        if self._takes_signals:
            kwargs["teacher_signals"] = {
                "importance": batch.teacher["importance"],
                "token_weights": batch.teacher["entropy_weights"],
            }
            own = batch.teacher_source.teacher_units(inputs)
            if own is not None:
                kwargs["teacher_signals"].update(own)
        out = self.loss(
            [ops.cast(h, "float32") for h in batch.student["hidden_states"]],
            [
                ops.stop_gradient(ops.cast(h, "float32"))
                for h in batch.teacher["hidden_states"]
            ],
            word_units,
            phrase_units,
            ops.cast(inputs["padding_mask"], "float32"),
            **kwargs,
        )
        return self.values(out)

    def values(self, out):
        """The term's values from the loss's output."""
        if isinstance(out, dict):
            out = out["loss"]
        return {self.name: ops.cast(out, "float32")}

    def get_config(self):
        config = super().get_config()
        config["loss"] = keras.saving.serialize_keras_object(self.loss)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["loss"] = keras.saving.deserialize_keras_object(config["loss"])
        return cls(**config)
