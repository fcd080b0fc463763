"""`KDTerm`: a divergence between the teacher's and the student's
next-token distributions."""

import keras
from keras import ops

from keras_mta.losses.divergences import get_divergence
from keras_mta.models.terms.loss_term import LossTerm


@keras.saving.register_keras_serializable(package="keras_mta")
class KDTerm(LossTerm):
    """Logit distillation (metric `kd`): `divergence(teacher, student)`
    averaged over the tokens weighted by `sample_weight`.

    The teacher source computes the value (`TeacherSource.kd`): a live
    teacher from its full logits, a cached teacher from the divergence's
    top-k form.

    Args:
        divergence: a name (`keras_mta.models.variants.DIVERGENCES`) or a
            `keras.losses.Loss` taking teacher logits as `y_true` and
            student logits as `y_pred`.
        weight: float >= 0. Defaults to 1.0.
        name: defaults to `"kd"`.

    Examples:

    ```python
    KDTerm("forward_kl", weight=kd_ratio)
    ```
    """

    needs = ("logits",)

    def __init__(self, divergence="forward_kl", weight=1.0, name="kd"):
        super().__init__(weight=weight, name=name)
        self.divergence = get_divergence(divergence)

    def build(self, student_dims, teacher_dims, teacher_source):
        teacher_source.check_divergence(self.divergence)

    def call(self, batch):
        value = batch.teacher_source.kd(
            self.divergence,
            batch.teacher,
            batch.inputs,
            batch.student["logits"],
            batch.token_weights,
        )
        return {self.name: ops.cast(value, "float32")}

    def get_config(self):
        config = super().get_config()
        config["divergence"] = keras.saving.serialize_keras_object(
            self.divergence
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["divergence"] = keras.saving.deserialize_keras_object(
            config["divergence"]
        )
        return cls(**config)
