"""The student's side of `DistillationModel`: checks and forward view."""

import keras

from keras_mta.models.hidden_states import get_backbone
from keras_mta.models.hidden_states import hidden_states_model


def check_student(student):
    """Raise unless `student` is a trainable keras-hub `CausalLM`."""
    if not isinstance(student, keras.Model):
        raise ValueError(
            "`student` must be a keras-hub CausalLM (a keras.Model), got "
            f"{type(student).__name__}."
        )
    get_backbone(student)
    if not student.trainable or not student.trainable_weights:
        raise ValueError(
            f"The student {student.name!r} is not trainable "
            f"(student.trainable={student.trainable}, "
            f"{len(student.trainable_weights)} trainable weights), so "
            "distillation would change nothing. Set "
            "`student.trainable = True` (and unfreeze its layers) before "
            "building the DistillationModel."
        )


class StudentView:
    """The student's logits and its hidden states at `layers`, in one
    forward pass (`keras_mta.models.hidden_states_model`).

    Deliberately not a Keras object: the view shares every layer and
    variable with the student, so tracking it would list (and save) the
    same state under a second name.

    Args:
        student: a keras-hub `CausalLM`.
        layers: the student layer indices whose states are returned.

    Call arguments:
        inputs: dict with at least the view's inputs (`token_ids`,
            `padding_mask`).
        training: bool, the student's dropout mode.

    Returns from a call: `{"logits", "hidden_states": [states at
    layers]}`.

    Examples:

    ```python
    view = StudentView(student, [1, 2])
    out = view({"token_ids": ids, "padding_mask": mask})
    ```
    """

    def __init__(self, student, layers):
        self.view = hidden_states_model(
            student, list(layers), name="student_view"
        )

    def __call__(self, inputs, training=None):
        view = self.view
        out = view({k: inputs[k] for k in view.input}, training=training)
        return {
            "logits": out["logits"],
            "hidden_states": list(out["hidden_states"]),
        }
