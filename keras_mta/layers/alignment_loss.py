import keras

from keras_mta.utils.checks import check_non_negative


@keras.saving.register_keras_serializable(package="keras_mta")
class AlignmentLoss(keras.layers.Layer):
    """Base class of a user-defined alignment loss over the mapped layers.

    Subclass it, implement `call`, and pass instances to
    `keras_mta.DistillationModel(..., alignment_losses=[...])`, or add them
    to an explicit list of loss terms as
    `keras_mta.models.terms.AlignmentTerm(loss, weight=...)`. The model
    calls each one on every batch with the hidden states of the layer pairs
    of its `AlignmentPlan` (the same states DSA and HRA see) and adds the
    weighted result to the distillation term:

    ```
    loss = (1 - kd_ratio) * CE
           + kd_ratio * (KD + mta_weight * L_MTA + sum_i loss_weight_i * L_i)
    ```

    Each loss is reported as a metric under its layer `name` (the value
    before `loss_weight`), in the progress bar, the `History` and
    `evaluate`.

    The model passes float32 tensors, whatever the dtype policy, and the
    teacher states through `stop_gradient`: gradients reach the student (and
    this layer's own weights), never the teacher. The layer computes in
    float32 (`dtype="float32"`, `autocast=False` unless given). Create
    sub-layers in `__init__` with `dtype=self.dtype_policy` and build them
    in `build()` (or in `__init__` when the widths are known): the model
    builds every alignment loss at its own construction, by calling it on
    symbolic inputs, so that optimizers see all weights before the first
    step. Weights created here are trained with the student and saved with
    the model; their variable paths start with `alignment/`.

    To save and reload a `DistillationModel` that holds a custom loss,
    register the subclass with
    `@keras.saving.register_keras_serializable()` and give it a
    `get_config()` that returns its constructor arguments.

    Args:
        loss_weight: float >= 0, the weight of this loss inside the
            distillation term. Defaults to 1.0.
        **kwargs: base layer arguments (`name`, `dtype`, ...). The `name` is
            the metric name and must differ from the model's own metrics
            (`loss`, `ce`, `kd`, `mta`, `dsa`, `hra`, `dsa_k`, `hra_k`).

    Call arguments:
        student_hidden: list of `K` float32 tensors `(batch, seq_len,
            student_dim_k)`, the student's states at the plan's
            `student_layers`, low to high.
        teacher_hidden: list of `K` float32 tensors `(batch, seq_len,
            teacher_dim_k)`, the teacher's states at the plan's
            `teacher_layers` (no gradient).
        word_units: int32 `(batch, max_word_units, 2)` token ranges
            `[start, end)` padded with `[0, 0]`, or None when the inputs
            carry no units (if only one kind is given, it is passed as
            both).
        phrase_units: int32 `(batch, max_phrase_units, 2)`, the same for
            phrases.
        padding_mask: float32 `(batch, seq_len)`, 1 on real tokens.
        teacher_signals: only passed when `call` declares this argument: a
            dict with `"importance"` (list of `K` float32 `(batch,
            seq_len)` teacher token importances, or None when the teacher
            source does not provide them: compute them from
            `teacher_hidden`) and `"token_weights"` (float32 `(batch,
            seq_len)` entropy weights of the teacher, or None unless the
            plan's `entropy_weighting` is on). `TrajectoryAlignmentLoss`
            reads them. For a teacher with its own tokenizer
            (`keras_mta.models.CrossTokenizerTeacher`) the dict also holds
            the teacher's own `"word_units"`, `"phrase_units"` (int32
            `(batch, max_units, 2)`, row `u` the same span as the
            student's row `u`) and `"padding_mask"` (float32 `(batch,
            teacher_seq_len)`): `teacher_hidden`, the importances and the
            token weights then lie on the teacher's tokens. A loss without
            this argument is refused with such a teacher.

    Returns:
        A float32 scalar (or a dict with the scalar under `"loss"`, as
        `TrajectoryAlignmentLoss` returns).

    Examples:

    A mean-pooled cosine loss between the last student and teacher states
    (the widths differ, so a learned projection maps the student's):

    ```python
    import keras
    from keras import ops
    import keras_mta

    @keras.saving.register_keras_serializable()
    class PooledCosineLoss(keras_mta.layers.AlignmentLoss):
        def __init__(self, teacher_dim, **kwargs):
            super().__init__(**kwargs)
            self.teacher_dim = teacher_dim
            self.projector = keras.layers.Dense(
                teacher_dim, dtype=self.dtype_policy, name="projector"
            )

        def build(self, student_hidden_shape, teacher_hidden_shape):
            self.projector.build(student_hidden_shape[-1])

        def call(self, student_hidden, teacher_hidden, word_units,
                 phrase_units, padding_mask):
            mask = padding_mask[..., None]
            count = ops.maximum(ops.sum(mask, axis=1), 1.0)
            s = ops.sum(self.projector(student_hidden[-1]) * mask, 1) / count
            t = ops.sum(teacher_hidden[-1] * mask, axis=1) / count
            s = ops.normalize(s, axis=-1)
            t = ops.normalize(t, axis=-1)
            return ops.mean(1.0 - ops.sum(s * t, axis=-1))

        def get_config(self):
            config = super().get_config()
            config["teacher_dim"] = self.teacher_dim
            return config

    model = keras_mta.DistillationModel(
        teacher,
        student,
        alignment_losses=[
            PooledCosineLoss(teacher_dim=1600, loss_weight=0.5,
                             name="pooled_cos"),
        ],
    )
    ```

    References:
        - Multi-Granular Trajectory Alignment for LLM distillation
          (ACL 2026, arXiv 2605.01374).
    """

    def __init__(self, loss_weight=1.0, **kwargs):
        # Loss layers compute in float32: keep the inputs' precision instead
        # of casting them to a mixed policy's compute dtype.
        kwargs.setdefault("autocast", False)
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if isinstance(loss_weight, bool) or not isinstance(
            loss_weight, (int, float)
        ):
            raise TypeError(
                f"`loss_weight` must be a float, got {loss_weight!r}."
            )
        check_non_negative(
            "loss_weight",
            loss_weight,
            "To leave the loss out, do not pass it to the model.",
        )
        self.loss_weight = float(loss_weight)

    def call(
        self,
        student_hidden,
        teacher_hidden,
        word_units,
        phrase_units,
        padding_mask,
    ):
        raise NotImplementedError(
            f"{type(self).__name__} must implement `call(student_hidden, "
            "teacher_hidden, word_units, phrase_units, padding_mask)` and "
            "return a scalar loss (see keras_mta.layers.AlignmentLoss)."
        )

    def get_config(self):
        config = super().get_config()
        config["loss_weight"] = self.loss_weight
        return config
