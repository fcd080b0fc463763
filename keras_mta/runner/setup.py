"""What every recipe command starts from: Keras settings, data, models,
plan and datasets, built once."""

import dataclasses
import os
import time

import keras

from keras_mta.recipe import RecipeError
from keras_mta.recipe import cross_tokenizer_conflicts
from keras_mta.runner.data import load_data
from keras_mta.runner.datasets import Datasets
from keras_mta.runner.models import load_models
from keras_mta.runner.models import make_plan
from keras_mta.utils import say


def output_dir_of(recipe):
    """The run's output directory (`training.output_dir`, `{name}`
    replaced by the recipe's name)."""
    return recipe.training.output_dir.format(name=recipe.name)


class Settings:
    """Global Keras settings of a run (seed, dtype policy, distribution),
    restored on exit.

    Args:
        training: the recipe's `TrainingSpec`.
    """

    def __init__(self, training):
        self.training = training
        self.policy = None
        self.distribution = None

    def __enter__(self):
        self.policy = keras.config.dtype_policy()
        self.distribution = keras.distribution.distribution()
        keras.utils.set_random_seed(self.training.seed)
        keras.config.set_dtype_policy(self.training.precision)
        if self.training.distribution == "data_parallel":
            if keras.backend.backend() != "jax":
                raise ValueError(
                    "training.distribution = 'data_parallel' uses "
                    "keras.distribution, which needs KERAS_BACKEND=jax. "
                    "With torch, launch one process per GPU with torchrun "
                    "instead (see guides/scaling_out.py)."
                )
            keras.distribution.set_distribution(
                keras.distribution.DataParallel()
            )
        return self

    def __exit__(self, *exc):
        keras.config.set_dtype_policy(self.policy)
        keras.distribution.set_distribution(self.distribution)
        return False


@dataclasses.dataclass(frozen=True)
class RunSetup:
    """The pieces of a run that `setup_run` builds (once)."""

    recipe: object
    output_dir: str
    train: list
    valid: list
    test: list
    reports: dict
    teacher: object
    student: object
    plan: object
    datasets: object
    stages: dict
    # Issue 21: the data tokenized by the teacher alone when it reads its
    # own tokens (its fine-tuning and validation loss); None: `datasets`.
    teacher_datasets: object = None

    @property
    def teacher_data(self):
        """The `Datasets` the teacher trains and is scored on alone."""
        return self.teacher_datasets or self.datasets


def setup_run(recipe, tiny=False, output_dir=None, student=True):
    """Data, models, plan and datasets of a recipe, shared by `keras-mta
    distill`, `teacher-cache` and `train-teacher`.

    Call it inside `Settings(recipe.training)` (the seed and dtype policy
    apply to model building).

    Args:
        recipe: a `keras_mta.Recipe`.
        tiny: build the models from their architectures with tiny widths.
        output_dir: overrides `training.output_dir` (created).
        student: `False` tokenizes with the teacher alone (fine-tuning the
            teacher); `RunSetup.plan` is then `None`.

    Returns:
        A `RunSetup`; `stages` holds the seconds of each stage.
    """
    output_dir = output_dir or output_dir_of(recipe)
    os.makedirs(output_dir, exist_ok=True)
    stages = {}
    (train, valid, test, reports), stages["data"] = timed(
        load_data, recipe, output_dir
    )
    (teacher, student_model), stages["models"] = timed(
        load_models, recipe, train, output_dir, tiny=tiny
    )
    plan, teacher_datasets = None, None
    if student:
        plan = make_plan(recipe, teacher, student_model)
        say(f"plan: {plan}")
        datasets, stages["spans"] = timed(
            Datasets, recipe, train, valid, student_model, teacher
        )
        if datasets.cross_tokenizer:  # issue 21
            teacher_datasets, stages["teacher_spans"] = timed(
                cross_tokenizer_data, recipe, train, valid, teacher
            )
    else:
        student_model = None
        datasets, stages["spans"] = timed(
            Datasets, recipe, train, valid, teacher
        )
    return RunSetup(
        recipe=recipe,
        output_dir=output_dir,
        train=train,
        valid=valid,
        test=test,
        reports=reports,
        teacher=teacher,
        student=student_model,
        plan=plan,
        datasets=datasets,
        stages=stages,
        teacher_datasets=teacher_datasets,
    )


def cross_tokenizer_data(recipe, train, valid, teacher):
    """The data of a teacher that tokenizes differently from the student
    (issue 21), tokenized by the teacher alone: what it is fine-tuned and
    scored on. Refuses first what such a run cannot do
    (`keras_mta.recipe.cross_tokenizer_conflicts`), also when the two
    tokenizers come from two presets rather than
    `data.student_tokenizer`."""
    problems = cross_tokenizer_conflicts(
        recipe,
        "teacher and student tokenize differently",
        "give the student the teacher's tokenizer",
    )
    if problems:
        raise RecipeError(" ".join(problems))
    say(
        "teacher and student tokenize differently: the student reads its "
        "own tokens, the teacher its own (paired units and positions)"
    )
    return Datasets(recipe, train, valid, teacher)


def timed(fn, *args, **kwargs):
    """`(fn(*args, **kwargs), seconds)`."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start
