"""`LiveTeacher`: a keras-hub teacher run at every training step."""

import keras
from keras import ops

from keras_mta.losses.token_importance import entropy_weights
from keras_mta.models.hidden_states import get_backbone
from keras_mta.models.hidden_states import hidden_state_tensor
from keras_mta.models.hidden_states import hidden_states_model
from keras_mta.models.teacher_source import TeacherSource
from keras_mta.models.teacher_source import vocabulary_size
from keras_mta.models.variable_paths import prefix_variable_paths

TEACHER_SCOPE = "teacher"


class LiveTeacher(TeacherSource):
    """A keras-hub `CausalLM` teacher, run in inference mode at each step.

    `DistillationModel` wraps a `CausalLM` passed as its `teacher` into a
    `LiveTeacher` itself. The teacher reads the student's `token_ids` (same
    tokenizer and vocabulary). At `prepare` it is frozen for good
    (`trainable = False`), its variable paths are put under `teacher/` and
    one forward view is built that keeps only the aligned layers
    (`keras_mta.models.hidden_states_model`); its outputs pass through
    `stop_gradient`, so no gradient and no activation memory is kept for it.

    Args:
        model: a keras-hub `CausalLM` (any model with a backbone exposing
            `transformer_layers`).

    Examples:

    ```python
    source = keras_mta.models.LiveTeacher(teacher)
    model = keras_mta.DistillationModel(source, student)  # same as teacher
    ```
    """

    def __init__(self, model):
        if not isinstance(model, keras.Model):
            raise ValueError(
                "`teacher` must be a keras-hub CausalLM (a keras.Model), a "
                "keras_mta.CachedTeacher (training from a teacher cache), a "
                "keras_mta.models.TeacherSource or None, got "
                f"{type(model).__name__}."
            )
        self.backbone = get_backbone(model)
        self._model = model
        self.name = model.name
        self.num_layers = len(self.backbone.transformer_layers)
        self.vocabulary_size = vocabulary_size(model)
        # Forward views by tuple of layers. `LiveTeacher` is not a Keras
        # object, so the views (which share every variable with the
        # teacher) are not tracked or saved a second time.
        self._views = {}

    @property
    def model(self):
        return self._model

    def layer_widths(self, layers):
        return [
            int(hidden_state_tensor(self.backbone, i).shape[-1]) for i in layers
        ]

    def check(self, student):
        if self._model is student:
            raise ValueError(
                "`teacher` and `student` are the same model; pass two "
                "models (the teacher is frozen, the student trained)."
            )
        if self.backbone is get_backbone(student):
            raise ValueError(
                "`teacher` and `student` share one backbone; freezing "
                "the teacher would freeze the student. Build two models."
            )
        super().check(student)

    def prepare(self, layers):
        self._model.trainable = False
        prefix_variable_paths(self._model, TEACHER_SCOPE)
        self._view(layers)

    def _view(self, layers):
        key = tuple(layers)
        if key not in self._views:
            self._views[key] = hidden_states_model(
                self._model, list(layers), name=f"{TEACHER_SCOPE}_view"
            )
        return self._views[key]

    def model_inputs(self, inputs):
        """The inputs the teacher's view reads, by its input names
        (`token_ids`, `padding_mask`, ...): the model's own inputs, the
        student's tokens (one tokenizer)."""
        return inputs

    def outputs(self, inputs, layers, needs):
        view = self._view(layers)
        own = self.model_inputs(inputs)
        out = view({k: own[k] for k in view.input}, training=False)
        logits = ops.stop_gradient(out["logits"])
        weights = None
        if "entropy_weights" in needs:
            weights = entropy_weights(logits, own["padding_mask"])
        return {
            "logits": logits,
            "hidden_states": [
                ops.stop_gradient(h) for h in out["hidden_states"]
            ],
            # Computed from the states by the losses that use it.
            "importance": None,
            "entropy_weights": weights,
        }

    def kd(self, divergence, outputs, inputs, student_logits, sample_weight):
        return divergence(
            outputs["logits"], student_logits, sample_weight=sample_weight
        )

    def serialize(self):
        config = keras.saving.serialize_keras_object(self._model)
        # keras-hub tasks compile themselves at construction; their compile
        # state plays no part in distillation.
        config.pop("compile_config", None)
        return config

    def __repr__(self):
        return f"LiveTeacher({self.name!r}, num_layers={self.num_layers})"


def as_teacher_source(teacher):
    """`teacher` as a `TeacherSource`: a keras-hub `CausalLM` is wrapped
    into a `LiveTeacher`; a source (e.g. a `CachedTeacher`) and None pass
    through."""
    if teacher is None or isinstance(teacher, TeacherSource):
        return teacher
    return LiveTeacher(teacher)
