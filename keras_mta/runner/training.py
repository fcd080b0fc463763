"""Training: the optimizer and divergence of a recipe, the compiled model
of a compared variant, and its fit."""

import keras

from keras_mta.losses import get_divergence
from keras_mta.models import CachedTeacher
from keras_mta.models import DistillationModel
from keras_mta.models import NonFiniteError
from keras_mta.models import OptimizerStepSchedule

# `validation_loss` lives with the models (student generation measures it
# too) and is read from here by the runner.
from keras_mta.models.validation_loss import validation_loss  # noqa: F401
from keras_mta.models.validation_loss import validation_model
from keras_mta.models.variants import VARIANTS
from keras_mta.models.variants import split_variant
from keras_mta.runner.models import teacher_source_of
from keras_mta.runner.setup import timed
from keras_mta.utils import fit_verbosity
from keras_mta.utils import say


def accumulation_of(training):
    """The Keras `gradient_accumulation_steps` of a recipe's training
    (`training.gradient_accumulation_steps`; 1, no accumulation, is None
    for Keras, which wants None or an integer >= 2)."""
    steps = int(training.gradient_accumulation_steps)
    return steps if steps > 1 else None


def optimizer_steps(training, batches):
    """Optimizer updates in `batches` batches: `batches //
    training.gradient_accumulation_steps` (the batches of a last,
    incomplete accumulation window are never applied)."""
    return batches // (accumulation_of(training) or 1)


def make_optimizer(training, steps, learning_rate=None):
    """The recipe's optimizer with its learning-rate schedule.

    Args:
        training: the recipe's `TrainingSpec`.
        steps: batches of the whole training (what `fit` runs: epochs
            times steps per epoch). With `training.gradient_accumulation_
            steps = n` the optimizer applies one update every `n` batches,
            averaging their gradients, so the schedule (cosine decay,
            `training.warmup_steps`) runs over `steps // n` updates and is
            counted in updates (`OptimizerStepSchedule`), as the
            reference's scheduler counts them. Keras' accumulation window
            runs across epochs; a last window of fewer than `n` batches
            at the end of training is never applied, and fewer than `n`
            batches in all raise a `ValueError`.
        learning_rate: peak learning rate (default
            `training.learning_rate`).
    """
    learning_rate = learning_rate or training.learning_rate
    accumulation = accumulation_of(training)
    updates = optimizer_steps(training, steps)
    if accumulation and not updates:
        raise ValueError(
            f"training.gradient_accumulation_steps={accumulation} is more "
            f"than the {steps} batches of the whole training: no update "
            "would ever be applied. Lower training.gradient_accumulation_"
            "steps, or train on more batches (training.epochs, "
            "training.steps_per_epoch, more data)."
        )
    if training.schedule == "cosine":
        warmup = int(training.warmup_steps)
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup else learning_rate,
            decay_steps=max(1, updates - warmup),
            warmup_target=learning_rate if warmup else None,
            warmup_steps=warmup,
        )
        if accumulation:
            schedule = OptimizerStepSchedule(schedule, accumulation)
    else:
        schedule = learning_rate
    options = {"gradient_accumulation_steps": accumulation}
    if training.clip_norm:
        options["global_clipnorm"] = training.clip_norm
    if training.optimizer == "adamw":
        return keras.optimizers.AdamW(
            learning_rate=schedule,
            weight_decay=training.weight_decay,
            **options,
        )
    return keras.optimizers.Adam(learning_rate=schedule, **options)


def alignment_multiplier_of(training):
    """`DistillationModel(alignment_learning_rate_multiplier=)` of a recipe:
    `training.alignment_learning_rate / training.learning_rate` (1.0 when
    `training.alignment_learning_rate` is 0, the student's rate)."""
    if not training.alignment_learning_rate:
        return 1.0
    return training.alignment_learning_rate / training.learning_rate


def divergence_of(recipe):
    """The recipe's divergence (`distillation.divergence` with its
    temperature, skew, beta or ULD truncation), a `keras_mta.losses`
    object."""
    dist = recipe.distillation
    kwargs = {"temperature": dist.temperature}
    if dist.divergence.startswith("skew"):
        kwargs["skew"] = dist.skew
    elif dist.divergence == "jensen_shannon":
        kwargs["beta"] = dist.beta
    elif dist.divergence == "uld" and dist.uld_truncation:
        kwargs["truncation"] = dist.uld_truncation
    return get_divergence(dist.divergence, **kwargs)


def ablation_of(recipe, variant):
    """The `DistillationModel` ablation of a compared variant (`mta` takes
    the recipe's `distillation.ablation` when set)."""
    variant = split_variant(variant)[0]  # a generation suffix: same terms
    if variant == "mta" and recipe.distillation.ablation:
        return recipe.distillation.ablation
    return VARIANTS[variant].ablation


def build_variant_model(recipe, variant, teacher, student, plan, steps):
    """The compiled `DistillationModel` of one compared variant, untrained.

    Args:
        recipe: a `keras_mta.Recipe` (divergence, weights, optimizer).
        variant: a name of `keras_mta.models.variants.VARIANTS` (or an
            older alias); `mta` takes `distillation.ablation` when set.
        teacher: the live teacher CausalLM or a `CachedTeacher`; unused by
            `sft`. A CausalLM that tokenizes differently from the student
            is wrapped into a `CrossTokenizerTeacher`.
        student: the student CausalLM (trained in place by `fit`).
        plan: the `AlignmentPlan`.
        steps: batches of the whole training (`make_optimizer` turns them
            into optimizer updates under gradient accumulation).
    """
    dist = recipe.distillation
    variant = split_variant(variant)[0]  # a generation suffix: same model
    teacher = teacher_source_of(teacher, student)  # issue 21
    model = DistillationModel(
        None if variant == "sft" else teacher,
        student,
        plan=None if variant == "sft" else plan,
        divergence=divergence_of(recipe),
        kd_ratio=dist.kd_ratio,
        mta_weight=dist.mta_weight,
        ablation=ablation_of(recipe, variant),
        alignment_learning_rate_multiplier=alignment_multiplier_of(
            recipe.training
        ),
    )
    model.compile(optimizer=make_optimizer(recipe.training, steps))
    return model


# What the command line says to do when training meets a NaN or an
# infinity (the `DistillationModel`'s guard stops it; see
# `keras_mta.models.nonfinite_guard`).
RECIPE_REMEDY = (
    "Lower training.learning_rate (training.teacher_learning_rate for the "
    "teacher), set training.clip_norm, lower the distillation weights, or "
    "check the teacher's weights and the data for NaN or extreme values."
)


# The validation metric early stopping watches: the student's own
# cross-entropy on the validation responses, logged by every variant (the
# total loss of KD and MTA holds their other terms too).
EARLY_STOPPING_MONITOR = "val_ce"


def early_stopping_of(training):
    """The Keras callbacks of a recipe's early stopping: `[]` when
    `training.early_stopping_patience` is 0, else one
    `keras.callbacks.EarlyStopping` on the validation cross-entropy that
    restores the best epoch's weights (also when the epoch cap ends the
    training first)."""
    if not training.early_stopping_patience:
        return []
    return [
        keras.callbacks.EarlyStopping(
            monitor=EARLY_STOPPING_MONITOR,
            mode="min",
            patience=int(training.early_stopping_patience),
            min_delta=float(training.early_stopping_min_delta),
            restore_best_weights=True,
            start_from_epoch=0,
        )
    ]


class StudentValidation(keras.callbacks.Callback):
    """Writes the student's own validation cross-entropy into the logs of
    every epoch, as `val_ce` (`EARLY_STOPPING_MONITOR`), before early
    stopping and the history read them.

    It is what `fit(validation_data=)` logs as `val_ce`, at the cost of
    the student's forward pass alone: a KD or MTA model's own validation
    also runs the teacher and every loss term over the validation data
    (on the default run, about half of a student's epoch went to it). The
    terms' validation values (`val_kd`, `val_dsa`, ...) are not logged.

    Args:
        validation: a compiled `validation_model` of the student (it
            shares the student's weights).
        data: the validation batches `(x, y, sample_weight)`.

    Examples:

    ```python
    callbacks = [
        StudentValidation(validation_model(student), valid),
        *early_stopping_of(recipe.training),
    ]
    fit(model, train, None, epochs, steps, callbacks=callbacks)
    ```
    """

    def __init__(self, validation, data):
        super().__init__()
        self.validation = validation
        self.data = data

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        result = self.validation.evaluate(
            self.data, return_dict=True, verbose=0
        )
        logs[EARLY_STOPPING_MONITOR] = float(result["ce"])


def fit(
    model,
    train,
    valid,
    epochs,
    steps_per_epoch,
    what="the model",
    callbacks=(),
):
    """`model.fit` on tf.data pipelines (shuffled by the pipeline itself)
    or a `StudentGeneratedDataset`, with optional Keras `callbacks`;
    returns the `History`. A `DistillationModel` stops at the first NaN or
    infinite loss, term or gradient with a `NonFiniteError` (a
    `ValueError`, printed by the command line) that names the terms, the
    step and `what` was being trained. `callbacks` go to `fit` (early
    stopping: `early_stopping_of`)."""
    try:
        return model.fit(
            train,
            validation_data=valid,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            # The pipelines shuffle; Keras ignores (and warns about) its own
            # `shuffle=True` with a tf.data dataset.
            shuffle=False,
            verbose=fit_verbosity(),
            callbacks=list(callbacks),
        )
    except NonFiniteError as error:
        raise error.with_remedy(RECIPE_REMEDY, f"Training {what}") from None


def train_teacher(recipe, teacher, datasets):
    """Supervised fine-tuning of the teacher (`training.teacher_epochs`).

    Returns `(history dict, seconds)`.
    """
    training = recipe.training
    model = DistillationModel(None, teacher, ablation="sft_only")
    model.compile(
        optimizer=make_optimizer(
            training,
            datasets.steps_per_epoch * training.teacher_epochs,
            learning_rate=training.teacher_learning_rate,
        )
    )
    cap = "at most " if training.early_stopping_patience else ""
    say(f"fine-tuning the teacher for {cap}{training.teacher_epochs} epochs")
    history, seconds = timed(
        fit,
        model,
        datasets.training_dataset(),
        datasets.valid,
        training.teacher_epochs,
        datasets.steps_per_epoch,
        what="the teacher",
        callbacks=early_stopping_of(training),
    )
    return history.history, seconds


def distill_variant(
    recipe,
    variant,
    teacher,
    student,
    plan,
    datasets,
    caches=None,
    seed=None,
    backup_dir=None,
    compiled=None,
):
    """Train one student variant; returns `(model, history, seconds)`.

    Args:
        recipe, variant, teacher, student, plan: as `build_variant_model`.
        datasets: the run's `Datasets`.
        caches: optional `{"train": TeacherCache, "valid": TeacherCache}`;
            the variants with a teacher then train from the cache.
        seed: the training seed of the data order (default
            `training.seed`); with `training.early_stopping_patience`
            the student trains until its validation cross-entropy stops
            improving (`training.epochs` a cap) and keeps its best weights;
            with `training.student_examples` it sees that many training
            rows only.
        backup_dir: optional directory where a variant that trains on
            the student's own outputs backs up its weights, optimizer and
            generation state after every epoch
            (`GenerationBackupAndRestore`; deleted when training ends): a
            call with the same directory after an interruption resumes
            there, with the same draws.
        compiled: optional `CompiledVariants` of the run: the variant's
            model (and the student's validation model) compiled once and
            reused by every training seed, and by the generating variants
            of the same model (`kd` for `kd+adaptive`). With early
            stopping, the student is validated by its own cross-entropy
            only (`StudentValidation`), not by the variant's whole loss.
    """
    name = variant  # with its generation suffix, if any (issue 20)
    variant, suffix = split_variant(variant)
    epochs = recipe.training.epochs
    share = recipe.training.student_examples  # issue 22: students' share
    steps_per_epoch = datasets.steps_per_epoch_of(share)
    from_cache = caches is not None and variant != "sft"
    if from_cache:
        # A cache of a teacher with its own tokenizer gives a
        # CachedCrossTokenizerTeacher; the preprocessor checks the pairing.
        teacher = CachedTeacher.from_cache(
            caches["train"], preprocessor=datasets.preprocessor
        )
        train = datasets.training_dataset(
            caches["train"], seed=seed, examples=share
        )
        valid = datasets.validation_dataset(caches["valid"])
    else:
        train = datasets.training_dataset(seed=seed, examples=share)
        valid = datasets.valid

    def build():
        return build_variant_model(
            recipe,
            variant,
            teacher,
            student,
            plan,
            steps_per_epoch * epochs,
        )

    # A generating variant (`kd+adaptive`) trains the model of its plain
    # variant (`kd`): with `compiled`, that compiled model, not one more.
    model = build() if compiled is None else compiled.model(variant, build)
    # The whole dataset must hold every unit kind the model's terms align
    # (otherwise their loss is a silent 0): checked over the statistics of
    # the preprocessing, not by peeking at one batch.
    datasets.train_statistics.check_units(model.unit_keys, name="train")
    datasets.valid_statistics.check_units(model.unit_keys, name="valid")
    source = " from the teacher cache" if from_cache else ""
    # Training on the student's own outputs (training.student_generation,
    # or a `+adaptive` / `+on_policy` suffix of the variant; the recipe
    # refuses either with a teacher cache): a StudentGeneratedDataset and
    # its callbacks replace the training pipeline. With the students' share
    # (training.student_examples) it samples that share's prompts.
    callbacks, responder = [], None
    generation = suffix or recipe.training.student_generation.mode
    if generation != "off" and variant != "sft":
        from keras_mta.runner.student_generation import generation_summary
        from keras_mta.runner.student_generation import student_generation

        train, callbacks, responder = student_generation(
            recipe,
            datasets,
            student,
            steps_per_epoch * epochs,
            seed=seed,
            mode=generation,
            examples=share,
            # The run's validation model (compiled once) measures the
            # adaptive mode's validation loss.
            validation=None if compiled is None else compiled.validation(),
        )
        callbacks = list(callbacks)
        source += f" with {generation} student generation"
        if backup_dir:
            from keras_mta.generation import GenerationBackupAndRestore

            # First: the callbacks after it read the resumed step.
            callbacks.insert(0, GenerationBackupAndRestore(train, backup_dir))
    stopping = early_stopping_of(recipe.training)  # issue 22
    if stopping and not from_cache:
        # Early stopping watches the student's own cross-entropy: measured
        # by the student alone, without the teacher and the other terms.
        validation = (
            validation_model(student)
            if compiled is None
            else compiled.validation()
        )
        callbacks.append(StudentValidation(validation, valid))
        valid = None
    callbacks += stopping
    say(f"training the student: {name}{source}")
    try:
        history, seconds = timed(
            fit,
            model,
            train,
            valid,
            epochs,
            steps_per_epoch,
            what=f"the {name} student",
            callbacks=callbacks,
        )
    finally:
        if hasattr(responder, "close"):
            responder.close()
    if responder is not None:
        say(f"  {name}: {generation_summary(train)}")
    return model, history.history, seconds
