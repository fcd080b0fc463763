import keras

from keras_mta.losses.alignment import structural_alignment


@keras.saving.register_keras_serializable(package="keras_mta")
class StructuralAlignmentLoss(keras.layers.Layer):
    """Dynamic Structural Alignment (DSA) loss of one teacher/student pair.

    In each model, semantic units (token ranges) are pooled from token states,
    weighted by that model's parameter-free token importance
    (`keras_mta.losses.token_importance`), and the cosine-similarity matrix
    among the units of each sample is matched between student and teacher:

    ```
    w_j   = a_j / max(sum over (token, unit) entries of a, 1e-5)
    z_u   = sum_{j in u} w_j h_j / max(sum_{j in u} w_j, 1e-5)
    C_uv  = cos(z_u, z_v)                       # per model
    W_u   = sum_{j in u} w^T_j                  # teacher weights
    L_DSA = sum_{b, u != v} W_u W_v (C^S_uv - C^T_uv)^2
            / max(sum_{b, u != v} W_u W_v, 1e-5)
    ```

    The layer has no weights: the two matrices are `U x U` whatever the
    hidden sizes of the two models are. No gradient reaches the teacher
    states or the importance weights. The result is computed in float32.

    Call arguments:
        student_hidden: `(batch, seq_len, student_dim)` student token states.
        teacher_hidden: `(batch, seq_len, teacher_dim)` teacher token states.
        units: int32 `(batch, max_units, 2)` token ranges `[start, end)`,
            padded with `[0, 0]`.
        padding_mask: `(batch, seq_len)`, 1 on real tokens.
        student_importance: optional precomputed student token importance.
        teacher_importance: optional precomputed teacher token importance.
        teacher_token_weights: optional `(batch, seq_len)` weights replacing
            the teacher's normalized importance in `W_u` (entropy weighting).
        teacher_units: optional int32 `(batch, max_units, 2)`, the same
            units on the teacher's own tokens (a teacher with its own
            tokenizer); each side then pools its own tokens.
        teacher_padding_mask: `(batch, teacher_seq_len)`, with
            `teacher_units`.

    Returns:
        The scalar `L_DSA`.

    Examples:

    >>> import numpy as np
    >>> student = np.random.normal(size=(2, 6, 16)).astype("float32")
    >>> teacher = np.random.normal(size=(2, 6, 32)).astype("float32")
    >>> units = np.array([[[0, 2], [2, 5], [0, 0]],
    ...                   [[1, 3], [3, 4], [4, 6]]], dtype="int32")
    >>> mask = np.ones((2, 6), dtype="int32")
    >>> loss = StructuralAlignmentLoss()(student, teacher, units, mask)

    References:
        - Multi-Granular Trajectory Alignment for LLM distillation
          (ACL 2026, arXiv 2605.01374).
    """

    def __init__(self, **kwargs):
        # Loss layers compute in float32: keep the inputs' precision instead
        # of casting them to a mixed policy's compute dtype.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.built = True

    def call(
        self,
        student_hidden,
        teacher_hidden,
        units,
        padding_mask,
        student_importance=None,
        teacher_importance=None,
        teacher_token_weights=None,
        teacher_units=None,
        teacher_padding_mask=None,
    ):
        return structural_alignment(
            student_hidden,
            teacher_hidden,
            units,
            padding_mask,
            student_importance=student_importance,
            teacher_importance=teacher_importance,
            teacher_token_weights=teacher_token_weights,
            teacher_units=teacher_units,
            teacher_padding_mask=teacher_padding_mask,
        )

    def compute_output_shape(self, *args, **kwargs):
        return ()
