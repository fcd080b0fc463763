import keras
from keras import ops

from keras_mta.layers.alignment_loss import AlignmentLoss
from keras_mta.layers.hidden_alignment_loss import HiddenAlignmentLoss
from keras_mta.layers.structural_alignment_loss import StructuralAlignmentLoss
from keras_mta.losses.token_importance import token_importance
from keras_mta.utils.checks import check_non_negative

# Token-level HRA (the paper's), unit-level HRA, or token-level unless the
# teacher has its own tokens.
HRA_LEVELS = ("auto", "token", "unit")


@keras.saving.register_keras_serializable(package="keras_mta")
class TrajectoryAlignmentLoss(AlignmentLoss):
    """The MTA loss over all mapped layer pairs (the trajectory).

    An `AlignmentLoss` like any user loss: `DistillationModel` trains it as
    the term named `mta` (`keras_mta.models.terms.TrajectoryAlignmentTerm`),
    weighted by `kd_ratio * mta_weight`, and passes it the teacher's
    `teacher_signals`.

    For `K` mapped (student layer, teacher layer) pairs, ordered from low to
    high, pairs `0 .. word_pairs - 1` align word units and the remaining
    pairs phrase units:

    ```
    l_k   = L_DSA_k + hra_scale * L_HRA_k
    L_MTA = (1 / K) sum_k l_k
    ```

    The teacher's token importance at each pair is computed once and shared
    by the DSA and HRA terms of that pair. The layer owns one HRA projector
    per pair (`HiddenAlignmentLoss`).

    Args:
        teacher_dims: list of ints, the teacher's hidden size at each pair.
        student_dims: optional list of ints, the student's hidden size at
            each pair; when given, every projector is built at construction.
        word_pairs: int in `[0, K]`, how many of the lowest pairs align word
            units (the word/phrase switch point). Defaults to 1.
        hra_scale: float >= 0, the weight of HRA in each pair. Defaults to
            0.1.
        use_dsa: bool, include the DSA terms (ablation switch).
        use_hra: bool, include the HRA terms (ablation switch).
        loss_weight: float >= 0, the weight of `L_MTA` in the distillation
            term (`mta_weight` of `DistillationModel`). Defaults to 1.0.
        hra_level: `"auto"` (default): token-level HRA (the paper's) when
            the teacher reads the student's tokens, unit-level HRA
            (`keras_mta.losses.unit_hidden_alignment`) when it has its own
            tokenizer (teacher units given); `"token"`: always token-level
            (refused for a teacher with its own tokenizer); `"unit"`: always
            unit-level.
        **kwargs: base layer arguments (computes in float32 unless a
            `dtype` is given).

    Call arguments:
        student_hidden: list of `K` tensors `(batch, seq_len, student_dim_k)`.
        teacher_hidden: list of `K` tensors `(batch, seq_len, teacher_dim_k)`.
        word_units: int32 `(batch, max_word_units, 2)`.
        phrase_units: int32 `(batch, max_phrase_units, 2)`.
        padding_mask: `(batch, seq_len)`.
        teacher_token_weights: optional `(batch, seq_len)` weights replacing
            the teacher importance in unit and HRA weights (entropy
            weighting, see `keras_mta.losses.entropy_weights`).
        teacher_importance: optional list of `K` tensors `(batch, seq_len)`,
            the teacher's token importance at each pair computed ahead (a
            teacher cache); computed from `teacher_hidden` when None.
        teacher_word_units: optional int32 `(batch, max_word_units, 2)`,
            the word units on the teacher's own tokens (a teacher with its
            own tokenizer: DSA pools each side from its own tokens, HRA is
            unit-level); None when the teacher reads the student's tokens.
        teacher_phrase_units: the same for phrases.
        teacher_padding_mask: `(batch, teacher_seq_len)`, the teacher's
            padding mask, with the teacher units.
        teacher_signals: optional dict, as `DistillationModel` passes it
            (see `AlignmentLoss`): its `"token_weights"`, `"importance"`,
            `"word_units"`, `"phrase_units"` and `"padding_mask"` entries
            stand for the arguments above.

    Returns:
        A dict with the scalar `"loss"` (`L_MTA`), the scalars `"dsa"` and
        `"hra"` (means over pairs) and the `(K,)` vectors `"pair_dsa"` and
        `"pair_hra"`. Disabled terms are zeros.

    Examples:

    >>> import numpy as np
    >>> layer = TrajectoryAlignmentLoss(teacher_dims=[32, 32],
    ...                                 student_dims=[16, 16])
    >>> s = [np.random.normal(size=(2, 6, 16)).astype("float32")] * 2
    >>> t = [np.random.normal(size=(2, 6, 32)).astype("float32")] * 2
    >>> words = np.array([[[0, 1], [1, 2], [2, 3]]] * 2, dtype="int32")
    >>> phrases = np.array([[[0, 3], [3, 6]]] * 2, dtype="int32")
    >>> out = layer(s, t, words, phrases, np.ones((2, 6)))
    >>> out["loss"]

    References:
        - Multi-Granular Trajectory Alignment for LLM distillation
          (ACL 2026, arXiv 2605.01374).
    """

    def __init__(
        self,
        teacher_dims,
        student_dims=None,
        word_pairs=1,
        hra_scale=0.1,
        use_dsa=True,
        use_hra=True,
        loss_weight=1.0,
        hra_level="auto",
        **kwargs,
    ):
        super().__init__(loss_weight=loss_weight, **kwargs)
        if hra_level not in HRA_LEVELS:
            raise ValueError(
                f"`hra_level` must be one of {HRA_LEVELS}, got {hra_level!r}."
            )
        self.hra_level = hra_level
        teacher_dims = [int(d) for d in teacher_dims]
        num_pairs = len(teacher_dims)
        if num_pairs == 0:
            raise ValueError("`teacher_dims` must name at least one pair.")
        if student_dims is not None:
            student_dims = [int(d) for d in student_dims]
            if len(student_dims) != num_pairs:
                raise ValueError(
                    f"`student_dims` has {len(student_dims)} entries but "
                    f"`teacher_dims` has {num_pairs}; give one hidden size "
                    "per layer pair in both."
                )
        if not 0 <= int(word_pairs) <= num_pairs:
            raise ValueError(
                f"`word_pairs` must lie in [0, {num_pairs}] (the number of "
                f"layer pairs), got {word_pairs}."
            )
        check_non_negative("hra_scale", hra_scale)
        self.teacher_dims = teacher_dims
        self.student_dims = student_dims
        self.word_pairs = int(word_pairs)
        self.hra_scale = float(hra_scale)
        self.use_dsa = bool(use_dsa)
        self.use_hra = bool(use_hra)
        self.num_pairs = num_pairs
        self.structural = StructuralAlignmentLoss(
            dtype=self.dtype_policy, name="structural"
        )
        self.hidden = [
            HiddenAlignmentLoss(
                teacher_dim=teacher_dims[k],
                student_dim=None if student_dims is None else student_dims[k],
                dtype=self.dtype_policy,
                name=f"hidden_{k}",
            )
            for k in range(num_pairs)
            # Without HRA there is nothing to learn: no projector weights
            # (they would be saved and counted as student parameters).
            if self.use_hra
        ]
        if student_dims is not None:
            self.built = True

    def check_teacher_tokens(self, teacher_name=None):
        """Raise when this loss cannot align a teacher with its own
        tokenizer (called at the model's construction, and at `call` when
        teacher units are given)."""
        teacher = (
            "teacher" if teacher_name is None else (f"teacher {teacher_name!r}")
        )
        if self.use_hra and self.hra_level == "token":
            raise ValueError(
                f"The MTA loss {self.name!r} uses token-level HRA "
                f"(hra_level='token'), but the {teacher} has its own "
                "tokenizer (its own units and tokens): token-level HRA "
                "compares the two models token by token, and their tokens "
                "differ. Use hra_level='unit' (or 'auto': HRA on the "
                "pooled units, sum_u W_u (1 - cos(P z^S_u, z^T_u)) / "
                "sum_u W_u), or use_hra=False (DSA only)."
            )

    def build(self, student_hidden_shape, *args, **kwargs):
        for k, layer in enumerate(self.hidden):
            if not layer.built:
                layer.build(student_hidden_shape[k])
        self.built = True

    def call(
        self,
        student_hidden,
        teacher_hidden,
        word_units,
        phrase_units,
        padding_mask,
        teacher_token_weights=None,
        teacher_importance=None,
        teacher_word_units=None,
        teacher_phrase_units=None,
        teacher_padding_mask=None,
        teacher_signals=None,
    ):
        if teacher_signals is not None:
            teacher_token_weights = teacher_signals.get("token_weights")
            teacher_importance = teacher_signals.get("importance")
            teacher_word_units = teacher_signals.get("word_units")
            teacher_phrase_units = teacher_signals.get("phrase_units")
            teacher_padding_mask = teacher_signals.get("padding_mask")
        own_tokens = teacher_word_units is not None or (
            teacher_phrase_units is not None
        )
        if own_tokens:
            self.check_teacher_tokens()
        unit_level = own_tokens or self.hra_level == "unit"
        if teacher_word_units is None:
            teacher_word_units = teacher_phrase_units
        if teacher_phrase_units is None:
            teacher_phrase_units = teacher_word_units
        teacher_mask = padding_mask if not own_tokens else teacher_padding_mask
        if teacher_importance is not None and (
            len(teacher_importance) != self.num_pairs
        ):
            raise ValueError(
                f"TrajectoryAlignmentLoss has {self.num_pairs} layer pairs but "
                f"got {len(teacher_importance)} teacher importance tensors."
            )
        if len(student_hidden) != self.num_pairs or (
            len(teacher_hidden) != self.num_pairs
        ):
            raise ValueError(
                f"TrajectoryAlignmentLoss has {self.num_pairs} layer pairs but "
                f"got {len(student_hidden)} student and "
                f"{len(teacher_hidden)} teacher states."
            )
        zero = ops.zeros((), dtype="float32")
        pair_dsa, pair_hra = [], []
        for k in range(self.num_pairs):
            words = k < self.word_pairs
            units = word_units if words else phrase_units
            # The same units on the teacher's own tokens (None: the
            # student's tokens).
            own = {}
            if own_tokens:
                own = {
                    "teacher_units": (
                        teacher_word_units if words else teacher_phrase_units
                    ),
                    "teacher_padding_mask": teacher_mask,
                }
            if teacher_importance is None:
                t_importance = token_importance(teacher_hidden[k], teacher_mask)
            else:
                t_importance = ops.stop_gradient(
                    ops.cast(teacher_importance[k], "float32")
                )
            s_importance = None
            if unit_level:
                # Shared by DSA and unit-level HRA.
                s_importance = token_importance(
                    ops.cast(student_hidden[k], "float32"), padding_mask
                )
            dsa = zero
            hra = zero
            if self.use_dsa:
                dsa = self.structural(
                    student_hidden[k],
                    teacher_hidden[k],
                    units,
                    padding_mask,
                    student_importance=s_importance,
                    teacher_importance=t_importance,
                    teacher_token_weights=teacher_token_weights,
                    **own,
                )
            if self.use_hra and unit_level:
                hra = self.hidden[k](
                    student_hidden[k],
                    teacher_hidden[k],
                    units,
                    padding_mask,
                    teacher_importance=t_importance,
                    teacher_token_weights=teacher_token_weights,
                    unit_level=True,
                    student_importance=s_importance,
                    **own,
                )
            elif self.use_hra:
                hra = self.hidden[k](
                    student_hidden[k],
                    teacher_hidden[k],
                    units,
                    padding_mask,
                    teacher_importance=t_importance,
                    teacher_token_weights=teacher_token_weights,
                )
            pair_dsa.append(dsa)
            pair_hra.append(hra)
        pair_dsa = ops.stack(pair_dsa)
        pair_hra = ops.stack(pair_hra)
        dsa = ops.mean(pair_dsa)
        hra = ops.mean(pair_hra)
        return {
            "loss": dsa + self.hra_scale * hra,
            "dsa": dsa,
            "hra": hra,
            "pair_dsa": pair_dsa,
            "pair_hra": pair_hra,
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "teacher_dims": self.teacher_dims,
                "student_dims": self.student_dims,
                "word_pairs": self.word_pairs,
                "hra_scale": self.hra_scale,
                "use_dsa": self.use_dsa,
                "use_hra": self.use_hra,
                "hra_level": self.hra_level,
            }
        )
        return config
