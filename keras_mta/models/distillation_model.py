"""`DistillationModel`: distill a keras-hub teacher into a student with MTA."""

import itertools

import keras
import numpy as np
from keras import ops

from keras_mta.layers.alignment_loss import AlignmentLoss
from keras_mta.layers.trajectory_alignment_loss import TrajectoryAlignmentLoss
from keras_mta.losses.divergences import get_divergence
from keras_mta.losses.token_importance import entropy_weights
from keras_mta.models.alignment_plan import AlignmentPlan
from keras_mta.models.hidden_states import get_backbone
from keras_mta.models.hidden_states import hidden_state_tensor
from keras_mta.models.hidden_states import hidden_states_model
from keras_mta.models.variants import ABLATIONS
from keras_mta.models.variants import UNIT_MODES
from keras_mta.teacher_cache import keys as signals
from keras_mta.teacher_cache.cached_teacher import CachedTeacher

# Inputs for a teacher that tokenizes differently from the student.
TEACHER_INPUT_KEYS = (
    "teacher_token_ids",
    "teacher_padding_mask",
    "teacher_word_units",
    "teacher_phrase_units",
)
TEACHER_SCOPE = "teacher"
STUDENT_SCOPE = "student"
ALIGNMENT_SCOPE = "alignment"
# Metric and term names of the model itself (custom alignment losses are
# reported under their layer names, which must differ from these).
RESERVED_NAMES = (
    "loss",
    "ce",
    "kd",
    "mta",
    "dsa",
    "hra",
    "pair_dsa",
    "pair_hra",
)


class _Views:
    """Plain holder of the functional views.

    Deliberately not a Keras object: the views share every layer and
    variable with the teacher and the student, so tracking them would list
    (and save) the same state under a second name.
    """

    def __init__(self, teacher, student):
        self.teacher = teacher
        self.student = student


def _prefix_variable_paths(model, prefix):
    """Put every variable of `model` under `prefix/` in `variable.path`.

    Keras fixes `variable.path` when a variable is created (from the name
    scopes active then), and keras-hub backbones built outside any scope
    all give the same paths (`token_embedding/embeddings`, ...) to teacher
    and student. The torch backend keys a model's parameters by path and
    optimizer slot variables are named from it, so after construction the
    paths are made distinct by rewriting the private `_path`. A
    `keras.distribution.LayoutMap` is matched against the path at creation
    time, so to place teacher and student differently, create them under
    `keras.name_scope("teacher")` / `keras.name_scope("student")` (see
    `DistillationModel`); their paths then already carry the prefix and are
    left as they are.
    """
    for variable in model.variables:
        path = variable.path
        if not path.startswith(prefix + "/"):
            variable._path = f"{prefix}/{path}"


def _vocabulary_size(backbone):
    size = getattr(backbone, "vocabulary_size", None)
    if size is None:
        size = getattr(backbone.token_embedding, "input_dim", None)
    return size


def _as_numpy(value):
    """Host copy of an input array (NumPy, tf.data, torch or jax tensor)."""
    try:
        return np.asarray(value)
    except (TypeError, RuntimeError, ValueError):
        # e.g. a tensor on an accelerator.
        return np.asarray(keras.ops.convert_to_numpy(value))


def _check_alignment_losses(alignment_losses, teacher, plan):
    """The `alignment_losses` argument as a checked list of layers."""
    if alignment_losses is None:
        return []
    if isinstance(alignment_losses, AlignmentLoss):
        alignment_losses = [alignment_losses]
    if not isinstance(alignment_losses, (list, tuple)):
        raise TypeError(
            "`alignment_losses` must be a list of keras_mta.layers."
            "AlignmentLoss layers (each layer's `name` is its metric name "
            "and its `loss_weight` its weight), got "
            f"{type(alignment_losses).__name__}."
        )
    layers = list(alignment_losses)
    for layer in layers:
        if not isinstance(layer, AlignmentLoss):
            raise TypeError(
                "Every entry of `alignment_losses` must be a subclass "
                "instance of keras_mta.layers.AlignmentLoss, got "
                f"{type(layer).__name__}."
            )
    if layers and (teacher is None or plan is None):
        raise ValueError(
            "`alignment_losses` compare teacher and student hidden states, "
            "but there is no teacher (teacher=None). Pass a teacher, or "
            "leave out `alignment_losses` for supervised fine-tuning."
        )
    names = [layer.name for layer in layers]
    for name in names:
        pair_metric = name.split("_")[0] in ("dsa", "hra") and (
            name.split("_")[-1].isdigit()
        )
        if name in RESERVED_NAMES or pair_metric:
            raise ValueError(
                f"An alignment loss is named {name!r}, a name the model "
                f"uses for its own metrics ({', '.join(RESERVED_NAMES)}, "
                "dsa_k, hra_k). Give the layer another `name=`."
            )
        if names.count(name) > 1:
            raise ValueError(
                f"Two alignment losses are named {name!r}; metric names "
                "must be unique. Give each layer its own `name=`."
            )
    return layers


def _build_alignment_losses(layers, student_dims, teacher_dims):
    """Build each `AlignmentLoss` now, on symbolic inputs, and check it.

    Building at construction lets the optimizer see the layers' weights
    (required under JAX and torch), and a loss that does not return a
    scalar fails here rather than in the first step.
    """
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
    for layer in layers:
        try:
            with keras.name_scope(ALIGNMENT_SCOPE):
                out = layer(
                    student_hidden, teacher_hidden, units, units, padding_mask
                )
        except Exception as error:
            error.add_note(
                f"(while building the alignment loss {layer.name!r} on "
                f"student states of widths {student_dims} and teacher states "
                f"of widths {teacher_dims}; see "
                "keras_mta.layers.AlignmentLoss for the call arguments)"
            )
            raise
        if tuple(out.shape) != ():
            raise ValueError(
                f"The alignment loss {layer.name!r} must return a scalar, but "
                f"returns shape {tuple(out.shape)}. Reduce it (e.g. "
                "`ops.mean`) in `call`."
            )
        _prefix_variable_paths(layer, ALIGNMENT_SCOPE)


def _teacher_dims(backbone, cached, indices):
    """The teacher's hidden sizes at `indices` (model or cached teacher)."""
    if cached is not None:
        return [cached.hidden_dim(i) for i in indices]
    return [int(hidden_state_tensor(backbone, i).shape[-1]) for i in indices]


def _check_cached_teacher(cached, teacher_indices, divergence, use_kd):
    """Raise when a cached teacher cannot serve this model's losses."""
    absent = [i for i in teacher_indices if i not in cached.layers]
    if absent:
        raise ValueError(
            f"The plan aligns teacher layers {list(teacher_indices)}, but the "
            f"teacher cache holds layers {cached.layers}, not {absent}. Train "
            "with a plan whose teacher layers the cache holds (all of them, "
            "or some: ablations of the number of pairs reuse one cache), or "
            "build a cache for this plan."
        )
    if not use_kd:
        return
    if not callable(getattr(divergence, "top_k", None)):
        raise ValueError(
            f"Training from a teacher cache needs the top-k form of the "
            f"divergence, which {type(divergence).__name__} does not have. "
            "Use one of keras_mta's divergences (forward_kl, reverse_kl, "
            "jensen_shannon, total_variation, skew_forward_kl, "
            "skew_reverse_kl), or `use_kd=False`."
        )
    own = float(getattr(divergence, "temperature", 1.0))
    if own != cached.temperature:
        raise ValueError(
            f"The divergence's temperature is {own}, but the teacher cache "
            f"holds log-probabilities at temperature {cached.temperature}. "
            "Train at the cache's temperature, or build a cache at this one."
        )


@keras.saving.register_keras_serializable(package="keras_mta")
class DistillationModel(keras.Model):
    """Distill a keras-hub causal LM into a smaller one with MTA.

    The teacher and the student see the same `token_ids`. Per batch:

    ```
    loss = (1 - kd_ratio) * CE + kd_ratio * (KD + mta_weight * L_MTA)
    ```

    `CE` is the student's next-token cross-entropy and `KD` the logit
    divergence (default forward KL `KL(p_T || p_S)` at `temperature`), both
    averaged over the response tokens selected by `sample_weight`. `L_MTA`
    is the Multi-Granular Trajectory Alignment loss over the layer pairs of
    `plan`: for pair `k`, `L_DSA_k + hra_scale * L_HRA_k` on word units (the
    lowest `plan.word_pairs` pairs) or phrase units (the others), averaged
    over pairs (see `keras_mta.layers.TrajectoryAlignmentLoss`). Divergences
    and alignment losses are computed in float32, also under a
    `mixed_bfloat16` policy.

    The teacher is frozen (`trainable = False`), always called in inference
    mode, and its outputs pass through `stop_gradient`, so no gradient and no
    activation memory is kept for it. Hidden states come from one forward
    pass per model through a functional view of the keras-hub backbone that
    keeps only the mapped layers (`keras_mta.models.hidden_states_model`).
    The HRA projectors (one `Dense` per pair, student width to teacher
    width) are created and built here, at construction; they and the
    student are the trainable weights.

    The step lives in `call` (student forward) and `compute_loss` (teacher
    forward, losses, metrics), so Keras's own `train_step` computes
    gradients, loss scaling and distribution on jax, torch and tensorflow.
    After construction every teacher variable path starts with `teacher/`,
    every student path with `student/` and every projector path with
    `alignment/`. Paths are fixed when a variable is created, so to place
    teacher and student with a `keras.distribution.LayoutMap`, create them
    inside `keras.name_scope("teacher")` and `keras.name_scope("student")`
    (and the distribution's scope); see the example.

    Metrics (progress bar, `History`, `evaluate`): `loss`, `ce`, `kd`,
    `dsa`, `hra` (mean over pairs, `hra` before `hra_scale`), and with
    `pair_metrics=True` also `dsa_k` and `hra_k` for every pair `k`. A
    switched-off term is reported as 0.

    Your own alignment losses (subclasses of
    `keras_mta.layers.AlignmentLoss`, passed as `alignment_losses`) are
    called on the hidden states of the plan's pairs and added to the
    distillation term, `kd_ratio * (KD + mta_weight * L_MTA + sum_i w_i
    L_i)` with `w_i` each layer's `loss_weight`; each is reported as a
    metric under its layer name. They are built at construction, train
    with the student, and stay on with `ablation="kd_only"` (which only
    turns `L_MTA` off); `"sft_only"` drops them.

    Ablations (`ablation=` or the individual switches):

    - `"kd_only"`: no MTA (`mta_weight=0`): `(1 - kd_ratio) CE + kd_ratio KD`.
    - `"sft_only"`: no teacher at all (also `teacher=None`): `loss = CE`.
    - `"dsa_only"` / `"hra_only"`: MTA with only DSA / only HRA
      (`use_hra=False` / `use_dsa=False`); CE and KD stay.
    - `"word_units_only"` / `"phrase_units_only"`: every pair aligns word /
      phrase units (`units="word"` / `"phrase"`).
    - `use_kd=False`: no KD term (CE and MTA stay).
    - the word/phrase switch point: `plan.word_pairs`; entropy weighting:
      `plan.entropy_weighting`.

    Args:
        teacher: a keras-hub `CausalLM`, or None for supervised fine-tuning
            of the student alone.
        student: a trainable keras-hub `CausalLM` with the same vocabulary
            (the two models share `token_ids`).
        plan: an `AlignmentPlan`, or None for
            `AlignmentPlan.default(teacher_layers, student_layers)`.
        divergence: name (`"forward_kl"`, `"reverse_kl"`, `"jensen_shannon"`,
            `"total_variation"`, `"skew_forward_kl"`, `"skew_reverse_kl"`)
            or a `keras.losses.Loss` taking teacher logits as `y_true` and
            student logits as `y_pred`. Defaults to `"forward_kl"`.
        kd_ratio: float in `[0, 1]`, weight of the distillation terms.
            Defaults to 0.5.
        mta_weight: float >= 0, weight of `L_MTA` inside the distillation
            terms; 0 turns MTA off. Defaults to 2.0.
        temperature: float > 0, the KD temperature (used when `divergence`
            is a name). Defaults to 1.0.
        use_kd: bool, include the KD term. Defaults to True.
        use_dsa: bool, include the DSA terms of MTA. Defaults to True.
        use_hra: bool, include the HRA terms of MTA (and create the
            projectors). Defaults to True.
        units: `"mixed"` (word units for the lowest `plan.word_pairs` pairs,
            phrase units above), `"word"` or `"phrase"` (all pairs).
        ablation: optional name from `ABLATIONS` (`None`, `""` and
            `"full"` change nothing), applied on top of the switches above.
        pair_metrics: bool, also report `dsa_k` and `hra_k` per pair.
        alignment_losses: optional list of `keras_mta.layers.AlignmentLoss`
            layers (or one layer), each weighted by its `loss_weight` and
            reported under its `name`. Needs a teacher.
        name: model name.
        **kwargs: base `keras.Model` arguments.

    Call arguments:
        inputs: dict with `"token_ids"` and `"padding_mask"` `(batch,
            seq_len)`, and for MTA `"word_units"` and `"phrase_units"`, int32
            `(batch, max_units, 2)` token ranges `[start, end)` padded with
            `[0, 0]` (as made by `keras_mta.preprocessing`).
        training: bool, the student's dropout mode.

    Returns from `call`: `{"logits": student logits, "hidden_states": [the
    student's mapped hidden states]}`.

    Data for `fit` / `evaluate`: `(x, y, sample_weight)` with `x` as above,
    `y` the next-token ids `(batch, seq_len)` and `sample_weight`
    `(batch, seq_len)`, 1 on response tokens (defaults to `padding_mask`).

    Examples:

    ```python
    import keras
    import keras_hub
    import keras_mta

    with keras.name_scope("teacher"):
        teacher = keras_hub.models.CausalLM.from_preset("gpt2_large_en")
    with keras.name_scope("student"):
        student = keras_hub.models.CausalLM.from_preset("gpt2_base_en")
    model = keras_mta.DistillationModel(
        teacher,
        student,
        plan=keras_mta.AlignmentPlan.default(36, 12),
        divergence="forward_kl",
        kd_ratio=0.5,
        mta_weight=2.0,
    )
    model.compile(optimizer=keras.optimizers.AdamW(1e-5))
    model.fit(train_ds, validation_data=val_ds, epochs=3)
    model.student.save_to_preset("./student")
    ```

    Teacher kernels sharded across devices, student replicated:

    ```python
    devices = keras.distribution.list_devices()
    mesh = keras.distribution.DeviceMesh((1, len(devices)),
                                         ["batch", "model"], devices)
    layout_map = keras.distribution.LayoutMap(mesh)
    layout_map["teacher/.*(query|key|value)/kernel"] = (None, "model", None)
    layout_map["teacher/.*feedforward_intermediate_dense/kernel"] = (
        None, "model")
    distribution = keras.distribution.ModelParallel(
        layout_map=layout_map, batch_dim_name="batch")
    with distribution.scope():
        with keras.name_scope("teacher"):
            teacher = ...
        with keras.name_scope("student"):
            student = ...
        model = keras_mta.DistillationModel(teacher, student)
        model.compile(optimizer="adamw")
        model.fit(train_ds)
    ```

    References:
        - Multi-Granular Trajectory Alignment for LLM distillation
          (ACL 2026, arXiv 2605.01374).
        - `keras.distillation.Distiller`, whose `compute_loss` design this
          follows.
    """

    def __init__(
        self,
        teacher,
        student,
        plan=None,
        divergence="forward_kl",
        kd_ratio=0.5,
        mta_weight=2.0,
        temperature=1.0,
        use_kd=True,
        use_dsa=True,
        use_hra=True,
        units="mixed",
        ablation=None,
        pair_metrics=False,
        alignment_losses=None,
        name="distillation_model",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)

        # === Ablations ===
        if ablation in (None, ""):
            ablation = "full"
        if ablation not in ABLATIONS:
            raise ValueError(
                f"Unknown ablation {ablation!r}; choose one of {ABLATIONS}."
            )
        if ablation == "kd_only":
            mta_weight = 0.0
        elif ablation == "sft_only":
            teacher = None
        elif ablation == "dsa_only":
            use_hra = False
        elif ablation == "hra_only":
            use_dsa = False
        elif ablation == "word_units_only":
            units = "word"
        elif ablation == "phrase_units_only":
            units = "phrase"
        if units not in UNIT_MODES:
            raise ValueError(
                f"`units` must be one of {UNIT_MODES}, got {units!r}."
            )

        # === Scalars ===
        if not 0.0 <= float(kd_ratio) <= 1.0:
            raise ValueError(f"`kd_ratio` must lie in [0, 1], got {kd_ratio}.")
        if not float(mta_weight) >= 0.0:
            raise ValueError(f"`mta_weight` must be >= 0, got {mta_weight}.")
        if not float(temperature) > 0.0:
            raise ValueError(f"`temperature` must be > 0, got {temperature}.")

        # === Student ===
        if not isinstance(student, keras.Model):
            raise ValueError(
                "`student` must be a keras-hub CausalLM (a keras.Model), got "
                f"{type(student).__name__}."
            )
        student_backbone = get_backbone(student)
        if not student.trainable or not student.trainable_weights:
            raise ValueError(
                f"The student {student.name!r} is not trainable "
                f"(student.trainable={student.trainable}, "
                f"{len(student.trainable_weights)} trainable weights), so "
                "distillation would change nothing. Set "
                "`student.trainable = True` (and unfreeze its layers) before "
                "building the DistillationModel."
            )

        # === Teacher ===
        teacher_backbone = None
        cached = teacher if isinstance(teacher, CachedTeacher) else None
        if teacher is not None and cached is None:
            if not isinstance(teacher, keras.Model):
                raise ValueError(
                    "`teacher` must be a keras-hub CausalLM (a keras.Model), "
                    "a keras_mta.CachedTeacher (training from a teacher "
                    f"cache) or None, got {type(teacher).__name__}."
                )
            if teacher is student:
                raise ValueError(
                    "`teacher` and `student` are the same model; pass two "
                    "models (the teacher is frozen, the student trained)."
                )
            teacher_backbone = get_backbone(teacher)
            if teacher_backbone is student_backbone:
                raise ValueError(
                    "`teacher` and `student` share one backbone; freezing "
                    "the teacher would freeze the student. Build two models."
                )
        if teacher is not None:
            t_vocab = (
                cached.vocabulary_size
                if cached is not None
                else _vocabulary_size(teacher_backbone)
            )
            s_vocab = _vocabulary_size(student_backbone)
            if t_vocab != s_vocab:
                raise ValueError(
                    f"The teacher's vocabulary has {t_vocab} tokens and the "
                    f"student's {s_vocab}, but both models read the same "
                    "`token_ids`, and KD compares their next-token "
                    "distributions over one vocabulary. Use a teacher and a "
                    "student that share a tokenizer and vocabulary (e.g. the "
                    "same model family), or `ablation='sft_only'` to train "
                    "the student without a teacher."
                )

        self.kd_ratio = float(kd_ratio)
        self.mta_weight = float(mta_weight)
        self.temperature = float(temperature)
        self.use_kd = bool(use_kd)
        self.use_dsa = bool(use_dsa)
        self.use_hra = bool(use_hra)
        self.units = units
        self.pair_metrics = bool(pair_metrics)

        # === Plan ===
        student_num_layers = len(student_backbone.transformer_layers)
        teacher_num_layers = None
        if teacher is not None:
            teacher_num_layers = (
                cached.num_layers
                if cached is not None
                else len(teacher_backbone.transformer_layers)
            )
            if plan is None and cached is not None:
                raise ValueError(
                    "Training from a teacher cache needs the plan it was "
                    "built with: pass `plan=` (the cache's teacher layers "
                    f"are {cached.layers})."
                )
            if plan is None:
                plan = AlignmentPlan.default(
                    teacher_num_layers, student_num_layers
                )
        if isinstance(plan, dict):
            plan = AlignmentPlan.from_config(plan)
        if plan is not None and not isinstance(plan, AlignmentPlan):
            raise TypeError(
                "`plan` must be an AlignmentPlan, its config dict or None, "
                f"got {type(plan).__name__}."
            )
        if plan is not None and teacher is not None:
            plan.validate(teacher_num_layers, student_num_layers)
        self.plan = plan
        self.mta_enabled = (
            teacher is not None
            and self.mta_weight > 0.0
            and (self.use_dsa or self.use_hra)
        )
        # Custom alignment losses (`sft_only` trains with CE alone and so
        # drops them); checked now, built below with the projectors.
        if ablation == "sft_only":
            alignment_losses = None
        self.alignment_losses = _check_alignment_losses(
            alignment_losses, teacher, plan
        )

        # === Divergence ===
        if isinstance(divergence, str):
            divergence = get_divergence(divergence, temperature=temperature)
        else:
            divergence = get_divergence(divergence)
            own = getattr(divergence, "temperature", None)
            if (
                float(temperature) != 1.0
                and own is not None
                and (float(own) != float(temperature))
            ):
                raise ValueError(
                    f"`temperature={temperature}` conflicts with the "
                    f"divergence's own temperature={own}; set it on the "
                    "divergence object only."
                )
        self.divergence = divergence

        # Hidden states are read at the plan's layers only when a loss
        # aligns them (MTA or custom alignment losses).
        self.aligns_layers = bool(self.mta_enabled or self.alignment_losses)
        if self.aligns_layers:
            teacher_indices = plan.teacher_layers
            student_indices = plan.student_layers
        else:
            teacher_indices = student_indices = []

        # === Cached teacher ===
        self.cached_teacher = cached
        if cached is not None:
            _check_cached_teacher(
                cached, teacher_indices, self.divergence, self.use_kd
            )
            teacher = None
        # Where each aligned teacher layer sits in the cache (a plan may use
        # some of the cached layers).
        self._cache_slots = (
            []
            if cached is None
            else [cached.layers.index(i) for i in teacher_indices]
        )

        # === Models ===
        # The teacher is frozen for good: no trainable variables, inference
        # mode, and stop_gradient on its outputs.
        if teacher is not None:
            teacher.trainable = False
            _prefix_variable_paths(teacher, TEACHER_SCOPE)
        _prefix_variable_paths(student, STUDENT_SCOPE)
        self.teacher = teacher
        self.student = student
        self._views = _Views(
            teacher=None
            if teacher is None
            else hidden_states_model(
                teacher, teacher_indices, name=f"{TEACHER_SCOPE}_view"
            ),
            student=hidden_states_model(
                student, student_indices, name=f"{STUDENT_SCOPE}_view"
            ),
        )

        # === Alignment (projectors built now, not lazily) ===
        self.alignment = None
        if self.mta_enabled:
            word_pairs = {
                "mixed": plan.word_pairs,
                "word": plan.num_pairs,
                "phrase": 0,
            }[units]
            teacher_dims = _teacher_dims(
                teacher_backbone, cached, teacher_indices
            )
            student_dims = [
                int(hidden_state_tensor(student_backbone, i).shape[-1])
                for i in student_indices
            ]
            with keras.name_scope(ALIGNMENT_SCOPE):
                self.alignment = TrajectoryAlignmentLoss(
                    teacher_dims=teacher_dims,
                    # Without HRA the layer creates no projector.
                    student_dims=student_dims,
                    word_pairs=word_pairs,
                    hra_scale=plan.hra_scale,
                    use_dsa=self.use_dsa,
                    use_hra=self.use_hra,
                    # Losses in float32 whatever the global policy.
                    dtype="float32",
                    name=ALIGNMENT_SCOPE,
                )
            _prefix_variable_paths(self.alignment, ALIGNMENT_SCOPE)
        if self.alignment_losses:
            _build_alignment_losses(
                self.alignment_losses,
                [
                    int(hidden_state_tensor(student_backbone, i).shape[-1])
                    for i in student_indices
                ],
                _teacher_dims(teacher_backbone, cached, teacher_indices),
            )

        # === Metrics ===
        self.ce_tracker = keras.metrics.Mean(name="ce")
        self.kd_tracker = keras.metrics.Mean(name="kd")
        self.dsa_tracker = keras.metrics.Mean(name="dsa")
        self.hra_tracker = keras.metrics.Mean(name="hra")
        self.pair_trackers = []
        if self.pair_metrics and plan is not None:
            for k in range(plan.num_pairs):
                self.pair_trackers.append(keras.metrics.Mean(name=f"dsa_{k}"))
                self.pair_trackers.append(keras.metrics.Mean(name=f"hra_{k}"))
        self.alignment_loss_trackers = [
            keras.metrics.Mean(name=layer.name)
            for layer in self.alignment_losses
        ]
        self.built = True

    # === Properties ===

    @property
    def num_pairs(self):
        """Number of aligned layer pairs (0 without a plan)."""
        return 0 if self.plan is None else self.plan.num_pairs

    @property
    def cached_signal_keys(self):
        """Input keys of the teacher signals read from a teacher cache
        (none with a teacher model)."""
        if self.cached_teacher is None:
            return ()
        keys = []
        if self.use_kd:
            keys += [signals.TOP_K_LOG_PROBS, signals.TOP_K_INDICES]
            keys += [signals.LOG_REST]
        if self.aligns_layers:
            keys += [signals.hidden_key(k) for k in self._cache_slots]
            if self.mta_enabled:
                keys += [signals.importance_key(k) for k in self._cache_slots]
                if self.plan.entropy_weighting:
                    keys.append(signals.ENTROPY_WEIGHTS)
        return tuple(keys)

    @property
    def unit_keys(self):
        """The input keys of the unit tensors the MTA loss reads."""
        if not self.mta_enabled:
            return ()
        keys = []
        if self.alignment.word_pairs > 0:
            keys.append("word_units")
        if self.alignment.word_pairs < self.num_pairs:
            keys.append("phrase_units")
        return tuple(keys)

    # === Forward ===

    def _check_inputs(self, inputs, with_teacher_signals=True):
        if not isinstance(inputs, dict):
            raise ValueError(
                "DistillationModel takes a dict of inputs with "
                "`token_ids`, `padding_mask`, `word_units` and "
                f"`phrase_units`, got {type(inputs).__name__}."
            )
        given = [k for k in TEACHER_INPUT_KEYS if k in inputs]
        if given:
            raise NotImplementedError(
                f"Inputs {given} (a teacher that tokenizes differently from "
                "the student) are not supported: KD and HRA compare the two "
                "models token by token over one vocabulary. Use a teacher "
                "and student with the same tokenizer and feed only "
                "`token_ids`, `padding_mask`, `word_units`, `phrase_units`."
            )
        missing = [k for k in ("token_ids", "padding_mask") if k not in inputs]
        if with_teacher_signals:
            missing += [k for k in self.cached_signal_keys if k not in inputs]
        if missing:
            hint = ""
            if self.cached_teacher is not None:
                hint = (
                    " This model trains from a teacher cache: stream the "
                    "inputs with `TeacherCache.dataset((x, y, "
                    "sample_weight), batch_size)`, which adds the teacher's "
                    "signals."
                )
            raise ValueError(
                f"DistillationModel inputs lack {missing}; got keys "
                f"{sorted(inputs)}.{hint}"
            )

    @staticmethod
    def _model_inputs(view, inputs):
        return {key: inputs[key] for key in view.input}

    def call(self, inputs, training=None):
        self._check_inputs(inputs, with_teacher_signals=False)
        view = self._views.student
        out = view(self._model_inputs(view, inputs), training=training)
        return {
            "logits": out["logits"],
            "hidden_states": list(out["hidden_states"]),
        }

    # === Losses ===

    def _cross_entropy(self, y, logits, weights):
        logits = ops.cast(logits, "float32")
        per_token = ops.sparse_categorical_crossentropy(
            ops.cast(y, "int32"), logits, from_logits=True
        )
        return ops.divide_no_nan(ops.sum(per_token * weights), ops.sum(weights))

    def compute_losses(
        self, x, y, y_pred=None, sample_weight=None, training=False
    ):
        """All loss terms of one batch, as float32 scalars.

        Args:
            x: the input dict (see the class docstring).
            y: next-token ids `(batch, seq_len)`.
            y_pred: optional output of `call(x)`; computed when None.
            sample_weight: optional `(batch, seq_len)` token weights (1 on
                response tokens); defaults to `padding_mask`.
            training: bool, the student's dropout mode.

        Returns:
            A dict with the scalars `"loss"` (the total), `"ce"`, `"kd"`,
            `"mta"`, `"dsa"`, `"hra"` and the `(num_pairs,)` vectors
            `"pair_dsa"`, `"pair_hra"`, and one scalar per custom
            alignment loss under its layer name (before `loss_weight`).
            Switched-off terms are zeros.
        """
        self._check_inputs(x)
        if y is None:
            raise ValueError(
                "DistillationModel needs targets `y`: the next-token ids "
                "`(batch, seq_len)`, as produced with `(x, y, sample_weight)` "
                "by keras_mta's preprocessing."
            )
        if y_pred is None:
            y_pred = self(x, training=training)
        padding_mask = ops.cast(x["padding_mask"], "float32")
        if sample_weight is None:
            weights = padding_mask
        else:
            weights = ops.cast(sample_weight, "float32")
            if len(weights.shape) == 1:
                weights = weights[:, None] * padding_mask
        student_logits = y_pred["logits"]
        zero = ops.zeros((), dtype="float32")
        zeros = ops.zeros((self.num_pairs,), dtype="float32")
        terms = {
            "ce": self._cross_entropy(y, student_logits, weights),
            "kd": zero,
            "mta": zero,
            "dsa": zero,
            "hra": zero,
            "pair_dsa": zeros,
            "pair_hra": zeros,
        }
        if self.teacher is None and self.cached_teacher is None:
            terms["loss"] = terms["ce"]
        else:
            teacher_out = self._teacher_outputs(x)
            if self.use_kd:
                terms["kd"] = ops.cast(
                    self._kd(teacher_out, x, student_logits, weights),
                    "float32",
                )
            if self.mta_enabled:
                terms.update(
                    self._alignment_terms(
                        x, y_pred["hidden_states"], teacher_out
                    )
                )
            distill = terms["kd"] + self.mta_weight * terms["mta"]
            if self.alignment_losses:
                custom = self._custom_alignment_terms(
                    x, y_pred["hidden_states"], teacher_out["hidden_states"]
                )
                terms.update(custom)
                for layer in self.alignment_losses:
                    distill = distill + layer.loss_weight * custom[layer.name]
            terms["loss"] = (1.0 - self.kd_ratio) * terms[
                "ce"
            ] + self.kd_ratio * distill
        for extra in self.losses:
            # Regularization losses of the student (keras-hub has none by
            # default).
            terms["loss"] = terms["loss"] + ops.cast(ops.sum(extra), "float32")
        return terms

    def _teacher_outputs(self, x):
        """The teacher's signals: from the teacher model, or read from the
        inputs when training from a teacher cache.

        Returns a dict with `"logits"` (None when cached), `"hidden_states"`
        (list), `"importance"` (list, or None: computed from the states)
        and `"entropy_weights"` (None: computed from the logits).
        """
        if self.cached_teacher is None:
            view = self._views.teacher
            out = view(self._model_inputs(view, x), training=False)
            return {
                "logits": ops.stop_gradient(out["logits"]),
                "hidden_states": [
                    ops.stop_gradient(h) for h in out["hidden_states"]
                ],
                "importance": None,
                "entropy_weights": None,
            }
        slots = self._cache_slots
        mask = ops.cast(x["padding_mask"], "float32")
        entropy = x.get(signals.ENTROPY_WEIGHTS)
        return {
            "logits": None,
            "hidden_states": [
                ops.stop_gradient(ops.cast(x[signals.hidden_key(k)], "float32"))
                for k in slots
            ],
            "importance": [x[signals.importance_key(k)] for k in slots],
            "entropy_weights": None
            if entropy is None
            else ops.stop_gradient(ops.cast(entropy, "float32") * mask),
        }

    def _kd(self, teacher_out, x, student_logits, weights):
        if teacher_out["logits"] is not None:
            return self.divergence(
                teacher_out["logits"], student_logits, sample_weight=weights
            )
        return self.divergence.top_k(
            ops.stop_gradient(ops.cast(x[signals.TOP_K_LOG_PROBS], "float32")),
            ops.cast(x[signals.TOP_K_INDICES], "int32"),
            ops.stop_gradient(ops.cast(x[signals.LOG_REST], "float32")),
            student_logits,
            sample_weight=weights,
        )

    def _alignment_terms(self, x, student_hidden, teacher_out):
        self._require_unit_keys(x)
        word_units = x.get("word_units")
        phrase_units = x.get("phrase_units")
        if word_units is None:
            word_units = phrase_units
        if phrase_units is None:
            phrase_units = word_units
        token_weights = None
        if self.plan.entropy_weighting:
            token_weights = teacher_out["entropy_weights"]
            if token_weights is None:
                token_weights = entropy_weights(
                    teacher_out["logits"], x["padding_mask"]
                )
        out = self.alignment(
            student_hidden,
            teacher_out["hidden_states"],
            word_units,
            phrase_units,
            x["padding_mask"],
            teacher_token_weights=token_weights,
            teacher_importance=teacher_out["importance"],
        )
        return {
            "mta": out["loss"],
            "dsa": out["dsa"],
            "hra": out["hra"],
            "pair_dsa": out["pair_dsa"],
            "pair_hra": out["pair_hra"],
        }

    def _custom_alignment_terms(self, x, student_hidden, teacher_hidden):
        """The user's `AlignmentLoss` values, by layer name (float32)."""
        word_units = x.get("word_units")
        phrase_units = x.get("phrase_units")
        if word_units is None:
            word_units = phrase_units
        if phrase_units is None:
            phrase_units = word_units
        student_hidden = [ops.cast(h, "float32") for h in student_hidden]
        teacher_hidden = [
            ops.stop_gradient(ops.cast(h, "float32")) for h in teacher_hidden
        ]
        padding_mask = ops.cast(x["padding_mask"], "float32")
        return {
            layer.name: ops.cast(
                layer(
                    student_hidden,
                    teacher_hidden,
                    word_units,
                    phrase_units,
                    padding_mask,
                ),
                "float32",
            )
            for layer in self.alignment_losses
        }

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        terms = self.compute_losses(
            x, y, y_pred=y_pred, sample_weight=sample_weight, training=training
        )
        self.ce_tracker.update_state(terms["ce"])
        self.kd_tracker.update_state(terms["kd"])
        self.dsa_tracker.update_state(terms["dsa"])
        self.hra_tracker.update_state(terms["hra"])
        for k in range(len(self.pair_trackers) // 2):
            self.pair_trackers[2 * k].update_state(terms["pair_dsa"][k])
            self.pair_trackers[2 * k + 1].update_state(terms["pair_hra"][k])
        for layer, tracker in zip(
            self.alignment_losses, self.alignment_loss_trackers
        ):
            tracker.update_state(terms[layer.name])
        return terms["loss"]

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        # Compiled metrics see the student's logits.
        if isinstance(y_pred, dict):
            y_pred = y_pred["logits"]
        return super().compute_metrics(x, y, y_pred, sample_weight)

    def compile(self, optimizer="adam", loss=None, **kwargs):
        """Configure training; the loss is the model's own.

        Args:
            optimizer: the optimizer (of the student and projectors).
            loss: must be None: the loss is computed in `compute_loss`.
            **kwargs: other `keras.Model.compile` arguments (`metrics` see
                the student's logits).
        """
        if loss is not None:
            raise ValueError(
                "DistillationModel computes its own loss "
                "((1 - kd_ratio) CE + kd_ratio (KD + mta_weight L_MTA)); "
                "call compile() without `loss` and set the divergence with "
                "`DistillationModel(divergence=...)`."
            )
        super().compile(optimizer=optimizer, **kwargs)

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        config.pop("loss", None)
        self.compile(**config)
        if self.optimizer is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    # === First-batch checks ===

    def check_batch(self, x):
        """Check one input dict for what fails silently later.

        Raises `NotImplementedError` for teacher-specific inputs, and
        `ValueError` when MTA is on but a unit tensor the plan uses is
        missing or holds no unit in the whole batch (the MTA loss would be
        a silent 0).
        """
        if x is None:
            return
        if isinstance(x, (tuple, list)):
            x = x[0]
        self._check_inputs(x)
        self._require_unit_keys(x)
        for key in self.unit_keys:
            units = _as_numpy(x[key])
            if units.size == 0 or not np.any(units[..., 1] > units[..., 0]):
                raise ValueError(
                    f"mta_weight={self.mta_weight} but the first batch has "
                    f"no {key.split('_')[0]} units: every `{key}` entry is "
                    "empty ([0, 0]), so the MTA loss would silently be 0. "
                    "Check the span preprocessing (units must cover the "
                    "tokens), or set `mta_weight=0` (KD only) or "
                    "`units='word'`/`'phrase'` to use the other unit kind."
                )

    def _require_unit_keys(self, x):
        """Raise when MTA is on and an input lacks a unit tensor it uses."""
        for key in self.unit_keys:
            if key not in x:
                raise ValueError(
                    f"mta_weight={self.mta_weight} but the inputs have no "
                    f"`{key}`; got keys {sorted(x)}. Produce units with "
                    "keras_mta's span preprocessing, or set `mta_weight=0` "
                    "(KD only)."
                )

    def _first_batch(self, data, batch_size):
        """`(first input dict or None, data to pass on)` without losing data.

        Supports dicts of arrays, `tf.data.Dataset`s, `keras.utils.PyDataset`s,
        iterables such as torch `DataLoader`s, and one-shot iterators or
        generators (which are re-chained with their first element).
        """
        if data is None:
            return None, data
        if isinstance(data, dict):
            size = batch_size or 32
            return {k: v[:size] for k, v in data.items()}, data
        if isinstance(data, (tuple, list)):
            first, _ = self._first_batch(data[0], batch_size)
            return first, data
        if hasattr(data, "element_spec") and hasattr(data, "take"):
            for element in data.take(1):  # a tf.data.Dataset
                return keras.utils.unpack_x_y_sample_weight(element)[0], data
            return None, data
        if isinstance(data, keras.utils.PyDataset):
            return keras.utils.unpack_x_y_sample_weight(data[0])[0], data
        if hasattr(data, "__next__"):
            try:
                element = next(data)
            except StopIteration:
                return None, data
            chained = itertools.chain([element], data)
            return keras.utils.unpack_x_y_sample_weight(element)[0], chained
        if hasattr(data, "__iter__"):
            for element in data:
                return keras.utils.unpack_x_y_sample_weight(element)[0], data
        return None, data

    def fit(self, x=None, y=None, *args, **kwargs):
        batch_size = args[0] if args else kwargs.get("batch_size")
        first, x = self._first_batch(x, batch_size)
        self.check_batch(first)
        validation_data = kwargs.get("validation_data")
        if validation_data is not None:
            first, validation_data = self._first_batch(
                validation_data, kwargs.get("validation_batch_size")
            )
            self.check_batch(first)
            kwargs["validation_data"] = validation_data
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        batch_size = args[0] if args else kwargs.get("batch_size")
        first, x = self._first_batch(x, batch_size)
        self.check_batch(first)
        return super().evaluate(x, y, *args, **kwargs)

    def train_on_batch(self, x, y=None, *args, **kwargs):
        self.check_batch(x)
        return super().train_on_batch(x, y, *args, **kwargs)

    def test_on_batch(self, x, y=None, *args, **kwargs):
        self.check_batch(x)
        return super().test_on_batch(x, y, *args, **kwargs)

    # === Serialization ===

    @staticmethod
    def _serialize_model(model):
        config = keras.saving.serialize_keras_object(model)
        # keras-hub tasks compile themselves at construction; their compile
        # state plays no part in distillation.
        config.pop("compile_config", None)
        return config

    def _serialize_teacher(self):
        if self.cached_teacher is not None:
            return keras.saving.serialize_keras_object(self.cached_teacher)
        if self.teacher is None:
            return None
        return self._serialize_model(self.teacher)

    def get_config(self):
        config = {
            "name": self.name,
            "trainable": self.trainable,
            "teacher": self._serialize_teacher(),
            "student": self._serialize_model(self.student),
            "plan": None if self.plan is None else self.plan.get_config(),
            "divergence": keras.saving.serialize_keras_object(self.divergence),
            "kd_ratio": self.kd_ratio,
            "mta_weight": self.mta_weight,
            "temperature": self.temperature,
            "use_kd": self.use_kd,
            "use_dsa": self.use_dsa,
            "use_hra": self.use_hra,
            "units": self.units,
            "pair_metrics": self.pair_metrics,
            "alignment_losses": [
                keras.saving.serialize_keras_object(layer)
                for layer in self.alignment_losses
            ],
        }
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("teacher", "student"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        if config.get("plan") is not None:
            config["plan"] = AlignmentPlan.from_config(config["plan"])
        config["alignment_losses"] = [
            keras.saving.deserialize_keras_object(layer)
            for layer in config.get("alignment_losses") or []
        ]
        # The temperature lives in the deserialized divergence.
        config.pop("temperature", None)
        return cls(**config)
