"""`CrossEntropyTerm`: the student's next-token cross-entropy."""

import keras
from keras import ops

from keras_mta.models.terms.loss_term import LossTerm


@keras.saving.register_keras_serializable(package="keras_mta")
class CrossEntropyTerm(LossTerm):
    """The student's next-token cross-entropy (metric `ce`), in float32,
    averaged over the tokens weighted by `sample_weight`.

    Args:
        weight: float >= 0. Defaults to 1.0.
        name: defaults to `"ce"`.

    Examples:

    ```python
    CrossEntropyTerm(weight=1.0 - kd_ratio)
    ```
    """

    def __init__(self, weight=1.0, name="ce"):
        super().__init__(weight=weight, name=name)

    def call(self, batch):
        logits = ops.cast(batch.student["logits"], "float32")
        weights = batch.token_weights
        per_token = ops.sparse_categorical_crossentropy(
            ops.cast(batch.targets, "int32"), logits, from_logits=True
        )
        value = ops.divide_no_nan(
            ops.sum(per_token * weights), ops.sum(weights)
        )
        return {self.name: value}
