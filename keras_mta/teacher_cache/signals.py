"""What is computed from a teacher and stored in a teacher cache.

`TeacherSignals` runs a keras-hub teacher once on a batch and returns what
distillation reads of it: the hidden states of the plan's teacher layers,
the teacher's token importance at those layers, its top-`k` next-token
log-probabilities (with their token ids and the log of the remaining mass)
and its entropy weights, keyed by the input names of
`keras_mta.teacher_cache.keys` (re-exported here). Tensor code uses
`keras.ops` only.
"""

from keras import ops

from keras_mta.losses.divergences import top_k_log_probs
from keras_mta.losses.token_importance import entropy_weights
from keras_mta.losses.token_importance import token_importance
from keras_mta.models.hidden_states import hidden_states_model
from keras_mta.teacher_cache.cached_teacher import describe_teacher
from keras_mta.teacher_cache.keys import ENTROPY_WEIGHTS
from keras_mta.teacher_cache.keys import LOG_REST
from keras_mta.teacher_cache.keys import TOP_K_INDICES
from keras_mta.teacher_cache.keys import TOP_K_LOG_PROBS
from keras_mta.teacher_cache.keys import hidden_key
from keras_mta.teacher_cache.keys import importance_key
from keras_mta.teacher_cache.keys import signal_keys  # noqa: F401


class TeacherSignals:
    """Computes the cached signals of a teacher, batch by batch.

    Args:
        teacher: a keras-hub `CausalLM`.
        layers: the hidden-state indices to keep (the plan's teacher
            layers).
        top_k: int, the number of most likely tokens kept per position.
        temperature: float > 0, the temperature of the log-probabilities.

    Call arguments:
        x: dict with `token_ids` and `padding_mask` `(batch, seq_len)`.

    Returns from a call: a dict of tensors keyed by `signal_keys`:
    hidden states `(batch, seq_len, dim)` (float32), token importance
    `(batch, seq_len)`, top-k log-probabilities and ids `(batch, seq_len,
    k)`, log rest mass and entropy weights `(batch, seq_len)`.

    Examples:

    ```python
    signals = TeacherSignals(teacher, plan.teacher_layers, top_k=64)
    out = signals({"token_ids": ids, "padding_mask": mask})
    out["teacher_hidden_0"].shape  # (batch, seq_len, teacher width)
    ```
    """

    def __init__(self, teacher, layers, top_k=64, temperature=1.0):
        self.description = describe_teacher(teacher, layers, top_k, temperature)
        self.view = hidden_states_model(teacher, list(layers))
        self.top_k = int(top_k)
        self.temperature = float(temperature)

    def __call__(self, x):
        inputs = {key: x[key] for key in self.view.input}
        out = self.view(inputs, training=False)
        mask = x["padding_mask"]
        log_probs, indices, log_rest = top_k_log_probs(
            out["logits"], self.top_k, self.temperature
        )
        signals = {
            TOP_K_LOG_PROBS: log_probs,
            TOP_K_INDICES: indices,
            LOG_REST: log_rest,
            ENTROPY_WEIGHTS: entropy_weights(out["logits"], mask),
        }
        for k, hidden in enumerate(out["hidden_states"]):
            hidden = ops.cast(hidden, "float32")
            signals[hidden_key(k)] = hidden
            signals[importance_key(k)] = token_importance(hidden, mask)
        return signals
