import keras

from keras_mta.losses.alignment import hidden_alignment
from keras_mta.losses.alignment import unit_hidden_alignment
from keras_mta.losses.shapes import check_alignment_inputs


@keras.saving.register_keras_serializable(package="keras_mta")
class HiddenAlignmentLoss(keras.layers.Layer):
    """Hidden Representation Alignment (HRA) loss of one teacher/student pair.

    A learned projector `P` (a `Dense` layer to the teacher's width, with
    bias) maps student token states onto teacher token states, and the
    importance-weighted cosine distance is taken over every (token, unit)
    membership entry of the batch:

    ```
    L_HRA = sum w^T_j (1 - cos(P h^S_j, h^T_j)) / max(sum w^T_j, 1e-5)
    ```

    `w^T` is the teacher's normalized token importance (see
    `StructuralAlignmentLoss`), or the given `teacher_token_weights`; the
    cosine guards zero norms with eps 1e-5. Gradients reach the student
    states and the projector, never the teacher states or the weights.

    Args:
        teacher_dim: int, the teacher's hidden size (the projector's output
            width).
        student_dim: optional int, the student's hidden size. When given, the
            projector is built at construction, which lets an optimizer see
            its variables before the first call (required under JAX when the
            layer lives inside a model that is trained with `fit`).
        kernel_initializer: initializer of the projector's kernel.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        student_hidden: `(batch, seq_len, student_dim)` student token states.
        teacher_hidden: `(batch, seq_len, teacher_dim)` teacher token states.
        units: int32 `(batch, max_units, 2)` token ranges, padded with
            `[0, 0]`.
        padding_mask: `(batch, seq_len)`, 1 on real tokens.
        teacher_importance: optional precomputed teacher token importance.
        teacher_token_weights: optional `(batch, seq_len)` weights replacing
            the teacher's normalized importance (entropy weighting).
        unit_level: bool, align pooled unit vectors instead of token states
            (`keras_mta.losses.unit_hidden_alignment`:
            `sum_u W_u (1 - cos(P z^S_u, z^T_u)) / sum_u W_u`), the HRA of a
            teacher with its own tokenizer. Defaults to False (token-level
            HRA, the paper's).
        teacher_units: optional int32 `(batch, max_units, 2)`, the units on
            the teacher's tokens (a teacher with its own tokenizer; needs
            `unit_level=True`).
        teacher_padding_mask: `(batch, teacher_seq_len)`, with
            `teacher_units`.
        student_importance: optional precomputed student token importance
            (unit-level HRA pools the student's tokens with it).

    Returns:
        The scalar `L_HRA`.

    Examples:

    >>> import numpy as np
    >>> student = np.random.normal(size=(2, 6, 16)).astype("float32")
    >>> teacher = np.random.normal(size=(2, 6, 32)).astype("float32")
    >>> units = np.array([[[0, 2], [2, 5], [0, 0]],
    ...                   [[1, 3], [3, 4], [4, 6]]], dtype="int32")
    >>> mask = np.ones((2, 6), dtype="int32")
    >>> hra = HiddenAlignmentLoss(teacher_dim=32)
    >>> loss = hra(student, teacher, units, mask)

    References:
        - Multi-Granular Trajectory Alignment for LLM distillation
          (ACL 2026, arXiv 2605.01374).
    """

    def __init__(
        self,
        teacher_dim,
        student_dim=None,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        # Loss layers compute in float32: keep the inputs' precision instead
        # of casting them to a mixed policy's compute dtype.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        if not isinstance(teacher_dim, int) or teacher_dim <= 0:
            raise ValueError(
                f"`teacher_dim` must be a positive int, got {teacher_dim!r}."
            )
        if student_dim is not None and (
            not isinstance(student_dim, int) or student_dim <= 0
        ):
            raise ValueError(
                f"`student_dim` must be a positive int or None, got "
                f"{student_dim!r}."
            )
        self.teacher_dim = teacher_dim
        self.student_dim = student_dim
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.projector = keras.layers.Dense(
            teacher_dim,
            use_bias=True,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name="projector",
        )
        if student_dim is not None:
            self.build((None, None, student_dim))

    def build(self, student_hidden_shape, *args, **kwargs):
        student_dim = student_hidden_shape[-1]
        if self.student_dim is not None and student_dim != self.student_dim:
            raise ValueError(
                f"HiddenAlignmentLoss was built for student_dim="
                f"{self.student_dim}, but got student states of width "
                f"{student_dim}."
            )
        self.projector.build((None, None, student_dim))
        self.built = True

    def call(
        self,
        student_hidden,
        teacher_hidden,
        units,
        padding_mask,
        teacher_importance=None,
        teacher_token_weights=None,
        unit_level=False,
        teacher_units=None,
        teacher_padding_mask=None,
        student_importance=None,
    ):
        if unit_level:
            self._check_widths(student_hidden, teacher_hidden)
            return unit_hidden_alignment(
                student_hidden,
                teacher_hidden,
                units,
                padding_mask,
                teacher_units=teacher_units,
                teacher_padding_mask=teacher_padding_mask,
                projector=self.projector,
                student_importance=student_importance,
                teacher_importance=teacher_importance,
                teacher_token_weights=teacher_token_weights,
            )
        if teacher_units is not None:
            raise ValueError(
                "HiddenAlignmentLoss: token-level HRA compares student and "
                "teacher states token by token, but the teacher has its own "
                "tokens (`teacher_units` given): there is no token pairing. "
                "Pass `unit_level=True` (HRA on pooled units; "
                "`TrajectoryAlignmentLoss(hra_level='unit')` or 'auto'), or "
                "turn HRA off (`use_hra=False`)."
            )
        check_alignment_inputs(
            "HiddenAlignmentLoss",
            student_hidden,
            teacher_hidden,
            units,
            padding_mask,
            teacher_importance=teacher_importance,
            teacher_token_weights=teacher_token_weights,
        )
        self._check_widths(student_hidden, teacher_hidden)
        return hidden_alignment(
            self.projector(student_hidden),
            teacher_hidden,
            units,
            padding_mask,
            teacher_importance=teacher_importance,
            teacher_token_weights=teacher_token_weights,
        )

    def _check_widths(self, student_hidden, teacher_hidden):
        if teacher_hidden.shape[-1] != self.teacher_dim:
            raise ValueError(
                f"HiddenAlignmentLoss has teacher_dim={self.teacher_dim}, but "
                f"the teacher states have width {teacher_hidden.shape[-1]}. "
                "Pass the teacher's hidden size as `teacher_dim`."
            )
        student_dim = self.projector.kernel.shape[0]
        if student_hidden.shape[-1] != student_dim:
            raise ValueError(
                f"HiddenAlignmentLoss was built for student_dim={student_dim}"
                f", but the student states have width "
                f"{student_hidden.shape[-1]}. Use one HiddenAlignmentLoss "
                "per layer pair."
            )

    def compute_output_shape(self, *args, **kwargs):
        return ()

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "teacher_dim": self.teacher_dim,
                "student_dim": self.student_dim,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
            }
        )
        return config
