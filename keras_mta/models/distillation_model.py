"""`DistillationModel`: distill a teacher into a keras-hub student with MTA.

The model reads top to bottom without asking which kind of teacher it has:
the teacher is a `keras_mta.models.TeacherSource` (a live keras-hub model
or a teacher cache), and the objective is a list of loss terms
(`keras_mta.models.terms`), each with its weight and metric names.
"""

import inspect

import keras
import numpy as np
from keras import ops

from keras_mta.losses.divergences import check_temperature
from keras_mta.losses.units import check_units_in_sequence
from keras_mta.models.alignment_plan import AlignmentPlan
from keras_mta.models.hidden_states import get_backbone
from keras_mta.models.hidden_states import hidden_state_tensor
from keras_mta.models.learning_rate_groups import set_learning_rate_multipliers
from keras_mta.models.live_teacher import as_teacher_source
from keras_mta.models.nonfinite_guard import NonFiniteGuard
from keras_mta.models.nonfinite_guard import check_nonfinite_mode
from keras_mta.models.nonfinite_guard import gate_loss
from keras_mta.models.nonfinite_guard import guard_optimizer
from keras_mta.models.student_view import StudentView
from keras_mta.models.student_view import check_student
from keras_mta.models.teacher_source import resolve_plan
from keras_mta.models.terms.alignment_term import AlignmentTerm
from keras_mta.models.terms.default_terms import Switches
from keras_mta.models.terms.default_terms import default_terms
from keras_mta.models.terms.default_terms import resolve_divergence
from keras_mta.models.terms.loss_term import TermInputs
from keras_mta.models.terms.loss_term import check_terms
from keras_mta.models.terms.loss_term import teacher_needs
from keras_mta.models.terms.trajectory_alignment_term import (
    TrajectoryAlignmentTerm,
)
from keras_mta.models.variable_paths import prefix_variable_paths
from keras_mta.utils.checks import check_non_negative

# `fit`'s arguments, to find its `callbacks` however they are passed.
_FIT_SIGNATURE = inspect.signature(keras.Model.fit)


def _is_tf_dataset(x):
    """Whether `x` is a `tf.data.Dataset`, without importing TensorFlow
    (the model path runs without it)."""
    return any(
        cls.__module__.startswith("tensorflow.python.data")
        and cls.__name__ in ("DatasetV2", "DatasetV1")
        for cls in type(x).__mro__
    )


# `compute_losses` reports these for every model (0 for a term it lacks).
DEFAULT_VALUES = ("ce", "kd", "mta", "dsa", "hra")


@keras.saving.register_keras_serializable(package="keras_mta")
class DistillationModel(keras.Model):
    """Distill a teacher into a smaller keras-hub causal LM with MTA.

    The objective is a list of loss terms (`keras_mta.models.terms`), each
    with its weight and metric names, summed as
    `keras.distillation.Distiller` sums its `distillation_losses`:
    `loss = sum_i weight_i * term_i`. The short constructor builds the
    list from `kd_ratio`, `mta_weight` and the switches:

    ```
    loss = (1 - kd_ratio) * CE + kd_ratio * (KD + mta_weight * L_MTA
                                             + sum_i w_i L_i)
    ```

    `CE` is the student's next-token cross-entropy and `KD` the logit
    divergence (default forward KL `KL(p_T || p_S)` at `temperature`), both
    averaged over the response tokens selected by `sample_weight`. `L_MTA`
    is the Multi-Granular Trajectory Alignment loss over the layer pairs of
    `plan`: for pair `k`, `L_DSA_k + hra_scale * L_HRA_k` on word units (the
    lowest `plan.word_pairs` pairs) or phrase units (the others), averaged
    over pairs (see `keras_mta.layers.TrajectoryAlignmentLoss`). `L_i` are
    your own `keras_mta.layers.AlignmentLoss` layers (`alignment_losses`),
    `w_i` their `loss_weight`s; each is reported under its layer name. Or
    pass the list yourself (`terms=[...]`): an ablation is which terms you
    pass. Divergences and alignment losses are computed in float32, also
    under a `mixed_bfloat16` policy.

    The teacher is a `keras_mta.models.TeacherSource`: a keras-hub
    `CausalLM` (wrapped into a `keras_mta.models.LiveTeacher`: frozen,
    always in inference mode, its outputs through `stop_gradient`, one
    forward pass through a view that keeps only the mapped layers), or a
    `keras_mta.CachedTeacher` (signals computed ahead by
    `keras_mta.build_teacher_cache` and streamed in the inputs by
    `TeacherCache.dataset`; no teacher runs). Both read the student's
    `token_ids`: teacher and student share a tokenizer and vocabulary.
    A teacher with its own tokenizer and vocabulary (another model
    family) is a `keras_mta.models.CrossTokenizerTeacher`: it reads its
    own `teacher_token_ids`, with units paired to the student's and
    `teacher_positions`, as `DistillationPreprocessor(student_preprocessor,
    teacher_preprocessor)` makes them; KD then needs a cross-vocabulary
    divergence (`"uld"`) and HRA aligns units. The
    HRA projectors (one `Dense` per pair, student width to teacher width)
    and your alignment losses are built at construction; they and the
    student are the trainable weights.

    The step lives in `call` (student forward) and `compute_loss` (teacher
    outputs, terms, metrics), so Keras's own `train_step` computes
    gradients, loss scaling and distribution on jax, torch and tensorflow.
    After construction every teacher variable path starts with `teacher/`,
    every student path with `student/` and every alignment-loss path with
    `alignment/`.

    Metrics (progress bar, `History`, `evaluate`): `loss`, and those of the
    model's terms: `ce`, `kd`, `dsa`, `hra` (mean over pairs, `hra` before
    `hra_scale`), with `pair_metrics=True` also `dsa_k` and `hra_k` for
    every pair `k`, and each custom loss under its name. A term the model
    does not have reports no metric.

    Ablations (`ablation=`, names in `keras_mta.models.variants.ABLATIONS`,
    or the individual switches):

    - `"kd_only"`: no MTA (`mta_weight=0`): `(1 - kd_ratio) CE + kd_ratio KD`
      (custom alignment losses stay).
    - `"sft_only"`: no teacher at all (also `teacher=None`): `loss = CE`.
    - `"dsa_only"` / `"hra_only"`: MTA with only DSA / only HRA
      (`use_hra=False` / `use_dsa=False`); CE and KD stay.
    - `"word_units_only"` / `"phrase_units_only"`: every pair aligns word /
      phrase units (`units="word"` / `"phrase"`).
    - `use_kd=False`: no KD term (CE and MTA stay).
    - the word/phrase switch point: `plan.word_pairs`; entropy weighting:
      `plan.entropy_weighting`.

    Args:
        teacher: a keras-hub `CausalLM`, a `keras_mta.CachedTeacher` (or
            another `TeacherSource`), or None for supervised fine-tuning of
            the student alone.
        student: a trainable keras-hub `CausalLM` with the teacher's
            vocabulary (the two share `token_ids`), or its own with a
            `CrossTokenizerTeacher`.
        plan: an `AlignmentPlan`, or None for
            `AlignmentPlan.default(teacher_layers, student_layers)` (a
            cached teacher needs the plan it was built with).
        divergence: name (`keras_mta.models.variants.DIVERGENCES`) or a
            `keras.losses.Loss` taking teacher logits as `y_true` and
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
            layers (or one layer), each weighted by `kd_ratio` times its
            `loss_weight` and reported under its `name`. Needs a teacher.
        terms: optional explicit list of `keras_mta.models.terms.LossTerm`s
            (the objective); when given, `kd_ratio`, `mta_weight`, the
            switches, `ablation` and `alignment_losses` build nothing.
        nonfinite: `"stop"` (default): `fit` stops at the first step whose
            loss, term or gradient is NaN or infinite, raises a
            `keras_mta.models.NonFiniteError` naming the terms and the
            step, and keeps the weights of the last good step (the bad
            step is not applied; see
            `keras_mta.models.nonfinite_guard`). `"ignore"`: train on
            regardless, as a plain `keras.Model`.
        alignment_learning_rate_multiplier: float >= 0, the learning rate
            of the loss terms' own weights (the HRA projectors, your
            alignment losses' weights: every trainable weight of the model
            that is not the student's) as a multiple of the optimizer's,
            on the same schedule, as the reference's second AdamW
            parameter group (e.g. `5.0` for projectors at 5e-4 beside a
            student at 1e-4). AdamW's weight decay of those weights runs
            at their rate too; gradient clipping (`global_clipnorm`) stays
            one norm over all weights, and gradient accumulation, the
            schedule and Adam's bias correction are the optimizer's own
            (`keras_mta.models.learning_rate_groups`). `compile` sets the
            groups on the optimizer (also when a saved model is loaded);
            compile again after changing which weights train. Defaults to
            1.0: one rate for all, and the optimizer is left as it is
            (groups you set on it yourself with
            `keras_mta.models.set_learning_rate_multipliers` stay).
        name: model name.
        **kwargs: base `keras.Model` arguments.

    Call arguments:
        inputs: dict with `"token_ids"` and `"padding_mask"` `(batch,
            seq_len)`, and for MTA `"word_units"` and `"phrase_units"`, int32
            `(batch, max_units, 2)` token ranges `[start, end)` padded with
            `[0, 0]` (as made by `keras_mta.preprocessing`), plus the
            teacher's signals when training from a teacher cache.
        training: bool, the student's dropout mode.

    Returns from `call`: `{"logits": student logits, "hidden_states": [the
    student's mapped hidden states]}`.

    Data for `fit` / `evaluate`: `(x, y, sample_weight)` with `x` as above,
    `y` the next-token ids `(batch, seq_len)` and `sample_weight`
    `(batch, seq_len)`, 1 on response tokens (defaults to `padding_mask`).
    A missing input key raises here; that the units are not all empty is
    checked over the whole dataset by the preprocessing statistics.

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

    The reference's optimizer: the projectors at 5e-4 beside a student at
    1e-4 on one cosine schedule, one global clip, and two batches of 8
    accumulated into each update (the loss of each batch is its own mean
    over its tokens and units; the update averages the two batches'
    gradients):

    ```python
    model = keras_mta.DistillationModel(
        teacher, student, plan=plan,
        alignment_learning_rate_multiplier=5e-4 / 1e-4,
    )
    cosine = keras.optimizers.schedules.CosineDecay(1e-4, decay_steps=1000)
    model.compile(
        optimizer=keras.optimizers.AdamW(
            keras_mta.models.OptimizerStepSchedule(cosine, 2),
            weight_decay=0.01,
            global_clipnorm=1.0,
            gradient_accumulation_steps=2,
        )
    )
    model.fit(train_ds.batch(8), epochs=5)
    ```

    The same objective as an explicit list of terms, plus your own loss:

    ```python
    from keras_mta.models import terms

    model = keras_mta.DistillationModel(
        teacher, student, plan=plan,
        terms=[
            terms.CrossEntropyTerm(weight=0.5),
            terms.KDTerm("forward_kl", weight=0.5),
            terms.AlignmentTerm(PooledCosineLoss(1280, name="cos"),
                                weight=0.25),
        ],
    )
    ```

    Sharding the teacher across devices with a `LayoutMap` (create it
    under `keras.name_scope("teacher")`): see `guides/scaling_out.py`.

    References:
        - Multi-Granular Trajectory Alignment for LLM distillation
          (ACL 2026, arXiv 2605.01374).
        - `keras.distillation.Distiller`, whose `compute_loss` design and
          weighted list of losses this follows.
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
        terms=None,
        nonfinite="stop",
        alignment_learning_rate_multiplier=1.0,
        name="distillation_model",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.nonfinite = check_nonfinite_mode(nonfinite)
        check_non_negative(
            "alignment_learning_rate_multiplier",
            alignment_learning_rate_multiplier,
            "Pass the ratio of the alignment weights' peak learning rate to "
            "the student's (e.g. 5e-4 / 1e-4 = 5.0); 1.0 trains both at one "
            "rate.",
        )
        self.alignment_learning_rate_multiplier = float(
            alignment_learning_rate_multiplier
        )
        self._guards_gradients = False
        switches = Switches(
            ablation,
            teacher,
            mta_weight,
            use_kd,
            use_dsa,
            use_hra,
            units,
            alignment_losses,
        )
        if not 0.0 <= float(kd_ratio) <= 1.0:
            raise ValueError(f"`kd_ratio` must lie in [0, 1], got {kd_ratio}.")
        check_temperature(temperature)
        self.kd_ratio = float(kd_ratio)
        self.mta_weight = switches.mta_weight
        self.temperature = float(temperature)
        self.use_kd = switches.use_kd
        self.use_dsa = switches.use_dsa
        self.use_hra = switches.use_hra
        self.units = switches.units
        self.pair_metrics = bool(pair_metrics)
        self.divergence = resolve_divergence(divergence, temperature)

        # === Teacher source, student and plan ===
        check_student(student)
        source = as_teacher_source(switches.teacher)
        if source is not None:
            source.check(student)
        student_backbone = get_backbone(student)
        self.plan = resolve_plan(
            plan, source, len(student_backbone.transformer_layers)
        )

        # === Terms and what they read of the teacher ===
        explicit = terms is not None
        if explicit:
            needs = teacher_needs(check_terms(terms))
        else:
            needs = switches.needs
        if needs and source is None:
            raise ValueError(
                f"The loss terms read a teacher ({sorted(needs)}), but "
                "there is no teacher (teacher=None). Pass a teacher, or "
                "train with `CrossEntropyTerm` alone."
            )
        # Hidden states are read at the plan's layers only when a term
        # aligns them.
        aligns = "hidden_states" in needs
        self.teacher_layers = list(self.plan.teacher_layers) if aligns else []
        student_layers = list(self.plan.student_layers) if aligns else []
        teacher_dims = []
        if source is not None:
            source.prepare(self.teacher_layers)
            teacher_dims = source.layer_widths(self.teacher_layers)
        student_dims = [
            int(hidden_state_tensor(student_backbone, i).shape[-1])
            for i in student_layers
        ]
        if not explicit:
            terms = default_terms(
                switches,
                self.divergence,
                self.kd_ratio,
                self.plan,
                self.pair_metrics,
                teacher_dims,
                student_dims,
            )
        self.terms = check_terms(terms)
        self._explicit_terms = explicit
        self.needs = teacher_needs(self.terms)
        for term in self.terms:
            term.build(student_dims, teacher_dims, source)

        # === Models and tracked state ===
        prefix_variable_paths(student, "student")
        self.teacher_source = source
        # The teacher model run at each step (None: none, or cached).
        self.teacher = None if source is None else source.model
        self.student = student
        self._student_view = StudentView(student, student_layers)
        self.term_layers = [layer for t in self.terms for layer in t.layers]
        self.term_trackers = [
            keras.metrics.Mean(name=metric)
            for term in self.terms
            for metric in term.metric_names
        ]
        self._input_keys = ("token_ids", "padding_mask")
        if source is not None:
            self._input_keys += tuple(
                source.input_keys(self.teacher_layers, self.needs)
            )
        self.built = True

    # === Properties ===

    @property
    def num_pairs(self):
        """Number of aligned layer pairs (0 without a plan)."""
        return 0 if self.plan is None else self.plan.num_pairs

    @property
    def alignment(self):
        """The `TrajectoryAlignmentLoss` of the MTA term, or None."""
        for term in self.terms:
            if isinstance(term, TrajectoryAlignmentTerm):
                return term.loss
        return None

    @property
    def alignment_losses(self):
        """The other alignment losses (your `AlignmentLoss` layers)."""
        return [
            term.loss
            for term in self.terms
            if isinstance(term, AlignmentTerm)
            and not isinstance(term, TrajectoryAlignmentTerm)
        ]

    @property
    def alignment_variables(self):
        """The trainable weights that are not the student's (the loss
        terms' own: HRA projectors, your alignment losses' weights); they
        train at `alignment_learning_rate_multiplier` times the optimizer's
        learning rate."""
        student = {id(v) for v in self.student.variables}
        return [v for v in self.trainable_variables if id(v) not in student]

    @property
    def unit_keys(self):
        """The input keys of the unit tensors the terms read."""
        keys = [key for term in self.terms for key in term.unit_keys]
        return tuple(dict.fromkeys(keys))

    @property
    def input_keys(self):
        """Every input key the model reads (student, units, teacher)."""
        return tuple(dict.fromkeys(self._input_keys + self.unit_keys))

    # === Forward ===

    def _check_inputs(self, inputs, keys):
        if not isinstance(inputs, dict):
            raise ValueError(
                "DistillationModel takes a dict of inputs with "
                "`token_ids`, `padding_mask`, `word_units` and "
                f"`phrase_units`, got {type(inputs).__name__}."
            )
        if self.teacher_source is not None:
            self.teacher_source.check_inputs(inputs)
        missing = [k for k in keys if k not in inputs]
        if missing:
            hint = ""
            if set(missing) & set(self.unit_keys):
                hint += (
                    " The loss terms align word/phrase units: produce "
                    "them with keras_mta's span preprocessing, or set "
                    "`mta_weight=0` (KD only)."
                )
            if set(missing) - set(self.unit_keys) - {"token_ids"}:
                hint += getattr(self.teacher_source, "missing_inputs_hint", "")
            raise ValueError(
                f"DistillationModel inputs lack {missing}; got keys "
                f"{sorted(inputs)}.{hint}"
            )

    def _check_concrete_units(self, inputs):
        """Units past the sequence end, where the inputs are NumPy arrays
        (a `fit` on in-memory arrays); a dataset is not read here."""
        if not isinstance(inputs, dict):
            return
        ids = inputs.get("token_ids")
        if not isinstance(ids, np.ndarray) or ids.ndim != 2:
            return
        for key in self.unit_keys:
            units = inputs.get(key)
            if isinstance(units, np.ndarray) and units.ndim == 3:
                check_units_in_sequence(units, ids.shape[1], name=key)

    def call(self, inputs, training=None):
        self._check_inputs(inputs, ("token_ids", "padding_mask"))
        return self._student_view(inputs, training=training)

    # === Losses ===

    def compute_losses(
        self, x, y, y_pred=None, sample_weight=None, training=False
    ):
        """All loss terms of one batch, as float32 values.

        Args:
            x: the input dict (see the class docstring).
            y: next-token ids `(batch, seq_len)`.
            y_pred: optional output of `call(x)`; computed when None.
            sample_weight: optional `(batch, seq_len)` token weights (1 on
                response tokens); defaults to `padding_mask`.
            training: bool, the student's dropout mode.

        Returns:
            A dict with the scalar `"loss"` (the weighted sum of the
            terms) and every value the terms return: `"ce"`, `"kd"`,
            `"mta"`, `"dsa"`, `"hra"` and the `(num_pairs,)` vectors
            `"pair_dsa"`, `"pair_hra"`, and one scalar per custom
            alignment loss under its name (before its weight). Values of
            terms the model does not have are zeros.
        """
        self._check_inputs(x, self.input_keys)
        if y is None:
            raise ValueError(
                "DistillationModel needs targets `y`: the next-token ids "
                "`(batch, seq_len)`, as produced with `(x, y, sample_weight)` "
                "by keras_mta's preprocessing."
            )
        if y_pred is None:
            y_pred = self(x, training=training)
        weights = ops.cast(x["padding_mask"], "float32")
        if sample_weight is not None:
            own = ops.cast(sample_weight, "float32")
            weights = own[:, None] * weights if len(own.shape) == 1 else own
        teacher = None
        if self.needs:
            teacher = self.teacher_source.outputs(
                x, self.teacher_layers, self.needs
            )
        batch = TermInputs(x, y, weights, y_pred, teacher, self.teacher_source)
        zero = ops.zeros((), dtype="float32")
        values = {name: zero for name in DEFAULT_VALUES}
        values["pair_dsa"] = values["pair_hra"] = ops.zeros(
            (self.num_pairs,), dtype="float32"
        )
        loss = None
        for term in self.terms:
            out = term(batch)
            values.update(out)
            weighted = term.weight * out[term.name]
            loss = weighted if loss is None else loss + weighted
        for extra in self.losses:
            # Regularization losses of the student (keras-hub has none by
            # default).
            loss = loss + ops.cast(ops.sum(extra), "float32")
        values["loss"] = loss
        return values

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        values = self.compute_losses(
            x, y, y_pred=y_pred, sample_weight=sample_weight, training=training
        )
        metrics = {}
        for term in self.terms:
            metrics.update(term.metric_values(values))
        for tracker in self.term_trackers:
            tracker.update_state(metrics[tracker.name])
        if training and self.nonfinite == "stop":
            # A non-finite loss or term makes the gradients NaN, so that the
            # guard's optimizer skips the step (exactly 1 otherwise).
            return gate_loss(values["loss"], list(metrics.values()))
        return values["loss"]

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        # Compiled metrics see the student's logits.
        if isinstance(y_pred, dict):
            y_pred = y_pred["logits"]
        return super().compute_metrics(x, y, y_pred, sample_weight)

    def compile(self, optimizer="adam", loss=None, **kwargs):
        """Configure training; the loss is the model's own.

        The loss terms' own weights (`alignment_variables`) train at
        `alignment_learning_rate_multiplier` times the optimizer's learning
        rate (`keras_mta.models.learning_rate_groups`).

        Args:
            optimizer: the optimizer (of the student and the loss terms'
                weights).
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
        if (
            self.optimizer is not None
            and self.alignment_learning_rate_multiplier != 1.0
        ):
            # On the optimizer that updates (the inner one of a
            # `LossScaleOptimizer`). A multiplier of 1 leaves the optimizer
            # as it is (groups you set on it yourself included).
            set_learning_rate_multipliers(
                self.optimizer,
                [
                    (
                        self.alignment_learning_rate_multiplier,
                        self.alignment_variables,
                    )
                ],
            )
        self._guards_gradients = False
        if self.nonfinite == "stop" and self.optimizer is not None:
            # After `super().compile`, so that the compile config (and a
            # saved model) holds your optimizer, wrapped again on loading.
            self.optimizer, self._guards_gradients = guard_optimizer(
                self.optimizer
            )

    def fit(self, *args, **kwargs):
        """`keras.Model.fit`, with the non-finite guard (`nonfinite="stop"`)
        among the callbacks: see the class docstring. For a
        `tf.data.Dataset`, `shuffle` defaults to False: Keras ignores it
        there (and warns when it is True); shuffle the dataset itself."""
        bound = _FIT_SIGNATURE.bind(self, *args, **kwargs)
        self._check_concrete_units(bound.arguments.get("x"))
        if "shuffle" not in bound.arguments and _is_tf_dataset(
            bound.arguments.get("x")
        ):
            # Keras ignores `shuffle` for a `tf.data.Dataset` (shuffle the
            # dataset itself, as `prepare_dataset(shuffle=True)` does) and
            # warns on every `fit` when it is left at its default, True.
            bound.arguments["shuffle"] = False
        callbacks = bound.arguments.get("callbacks") or []
        if isinstance(callbacks, keras.callbacks.CallbackList):
            # Yours, as built: add `NonFiniteGuard` to it yourself.
            return super().fit(*args, **kwargs)
        callbacks = list(callbacks)
        guarded = any(isinstance(c, NonFiniteGuard) for c in callbacks)
        if self.nonfinite == "stop" and not guarded:
            names = ["loss"] + [t.name for t in self.term_trackers]
            # Last, so that it reads the optimizer after the callbacks that
            # restore it at the start (`BackupAndRestore`).
            callbacks.append(NonFiniteGuard(names, self._guards_gradients))
        bound.arguments["callbacks"] = callbacks
        return super().fit(*bound.args[1:], **bound.kwargs)

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        config.pop("loss", None)
        self.compile(**config)
        if self.optimizer is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    # === Serialization ===

    def get_config(self):
        student = keras.saving.serialize_keras_object(self.student)
        # keras-hub tasks compile themselves at construction; their compile
        # state plays no part in distillation.
        student.pop("compile_config", None)
        source = self.teacher_source
        config = {
            "name": self.name,
            "trainable": self.trainable,
            "teacher": None if source is None else source.serialize(),
            "student": student,
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
            "nonfinite": self.nonfinite,
            "alignment_learning_rate_multiplier": (
                self.alignment_learning_rate_multiplier
            ),
        }
        if self._explicit_terms:
            config["terms"] = [
                keras.saving.serialize_keras_object(term) for term in self.terms
            ]
        else:
            config["alignment_losses"] = [
                keras.saving.serialize_keras_object(layer)
                for layer in self.alignment_losses
            ]
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("teacher", "student"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        if config.get("plan") is not None:
            config["plan"] = AlignmentPlan.from_config(config["plan"])
        for key in ("alignment_losses", "terms"):
            if config.get(key) is not None:
                config[key] = [
                    keras.saving.deserialize_keras_object(item)
                    for item in config[key]
                ]
        # The temperature lives in the deserialized divergence.
        config.pop("temperature", None)
        return cls(**config)
