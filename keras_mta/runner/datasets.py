"""The tf.data pipelines of a run, built once from arrays computed once."""

import numpy as np
import tensorflow as tf

from keras_mta.preprocessing import DistillationPreprocessor
from keras_mta.preprocessing.distillation_preprocessor import same_tokenization
from keras_mta.runner.data import span_cache_of
from keras_mta.runner.data import truncate_prompts
from keras_mta.utils import say


class Datasets:
    """The data of a run, tokenized and unit-mapped once.

    Tokens, targets and units are computed once per split and kept as NumPy
    arrays (a few MB even for Dolly at 256 tokens); epochs and variants
    then only shuffle and batch them. Nothing here changes after
    construction: `training_dataset` and `validation_dataset` return a new
    pipeline at every call, so that every variant sees the same seeded
    data order.

    Args:
        recipe: the run's `keras_mta.Recipe`.
        train: training `Example`s.
        valid: validation `Example`s.
        student: the student CausalLM (its preprocessor tokenizes).
        teacher: optional teacher CausalLM. When it tokenizes differently
            from the student (`cross_tokenizer`), the arrays also hold its
            own tokens, paired units and positions (`teacher_*`, see
            `keras_mta.DistillationPreprocessor`).
    """

    def __init__(self, recipe, train, valid, student, teacher=None):
        data = recipe.data
        tokenizer = student.preprocessor.tokenizer
        # Issue 21: a teacher with its own tokenizer reads its own tokens.
        self.cross_tokenizer = teacher is not None and not same_tokenization(
            student.preprocessor, teacher.preprocessor
        )
        self.train_examples, self.train_prompts_cut = truncate_prompts(
            train, tokenizer, data.max_prompt_length
        )
        self.valid_examples, self.valid_prompts_cut = truncate_prompts(
            valid, tokenizer, data.max_prompt_length
        )
        for split, cut in (
            ("train", self.train_prompts_cut),
            ("valid", self.valid_prompts_cut),
        ):
            if cut:
                say(
                    f"{split}: {cut} prompts longer than "
                    f"data.max_prompt_length={data.max_prompt_length} tokens "
                    "were cut to their first tokens"
                )
        self.preprocessor = DistillationPreprocessor(
            student.preprocessor,
            teacher.preprocessor if self.cross_tokenizer else None,
            max_word_units=data.max_word_units,
            max_phrase_units=data.max_phrase_units,
            chunker=span_cache_of(recipe),
            sequence_length=data.sequence_length,
            teacher_sequence_length=(
                data.sequence_length if self.cross_tokenizer else None
            ),
        )
        self.batch_size = recipe.training.batch_size
        self.seed = recipe.training.seed
        self.cap = recipe.training.steps_per_epoch
        self.drop_remainder = len(self.train_examples) >= self.batch_size
        say("spans and tokens of the training data")
        self.train_arrays, self.train_statistics = self._prepare(
            self.train_examples, "train"
        )
        say("spans and tokens of the validation data")
        self.valid_arrays, self.valid_statistics = self._prepare(
            self.valid_examples, "valid"
        )
        self.valid = self.validation_dataset()
        full = len(self.train_examples) // self.batch_size or 1
        self.steps_per_epoch = min(full, self.cap or full)

    def _prepare(self, examples, split):
        arrays = _materialize(
            self.preprocessor.prepare_dataset(
                examples, batch_size=256, name=split
            )
        )
        statistics = self.preprocessor.statistics
        return arrays, statistics

    def training_dataset(self, cache=None, seed=None, examples=0):
        """A new training pipeline: every call yields the same seeded
        sequence of shuffled epochs (so that every variant sees the same
        data order). With a teacher `cache` (`TeacherCache` of the
        training data), the cache's stream (same seed, chunked shuffle)
        with the teacher's signals beside the inputs. `seed` (default
        `training.seed`) picks the order: one per training seed.
        `examples` > 0 keeps the first `examples` training rows only (the
        students' share, `training.student_examples`)."""
        seed = self.seed if seed is None else seed
        arrays, count = self.train_arrays, len(self.train_examples)
        if examples and examples < count and cache is not None:
            raise ValueError(
                "training.student_examples trains the students on a part of "
                "the training data, which a teacher cache (distillation."
                "teacher_cache) does not support: set one of them only."
            )
        if examples and examples < count:
            count = int(examples)
            arrays = tf.nest.map_structure(lambda a: a[:count], arrays)
        if cache is not None:
            dataset = cache.dataset(
                self.train_arrays,
                batch_size=self.batch_size,
                seed=seed,
                drop_remainder=self.drop_remainder,
            )
            return dataset.repeat() if self.cap else dataset
        dataset = (
            tf.data.Dataset.from_tensor_slices(arrays)
            .shuffle(
                count,
                seed=seed,
                reshuffle_each_iteration=True,
            )
            .batch(self.batch_size, drop_remainder=self.drop_remainder)
        )
        if self.cap:
            dataset = dataset.repeat()
        return dataset.prefetch(tf.data.AUTOTUNE)

    def steps_per_epoch_of(self, examples=0):
        """Steps per epoch over the first `examples` training rows (0:
        all), with `training.steps_per_epoch` as a cap."""
        count = len(self.train_examples)
        if examples:
            count = min(count, int(examples))
        full = count // self.batch_size or 1
        return min(full, self.cap or full)

    def validation_dataset(self, cache=None):
        """The validation pipeline (in order); with a teacher `cache` of
        the validation data, its signals stream beside the inputs."""
        if cache is not None:
            return cache.dataset(
                self.valid_arrays, batch_size=self.batch_size, shuffle=False
            )
        return (
            tf.data.Dataset.from_tensor_slices(self.valid_arrays)
            .batch(self.batch_size)
            .prefetch(tf.data.AUTOTUNE)
        )

    def statistics(self):
        return {
            "train": self.train_statistics.as_dict(),
            "valid": self.valid_statistics.as_dict(),
            "train_prompts_cut": self.train_prompts_cut,
            "valid_prompts_cut": self.valid_prompts_cut,
        }


def _materialize(dataset):
    """The batches of a finite dataset, concatenated into NumPy arrays
    with the same structure."""
    batches = [
        tf.nest.map_structure(lambda t: np.asarray(t), batch)
        for batch in dataset
    ]
    return tf.nest.map_structure(
        lambda *parts: np.concatenate(parts, axis=0), *batches
    )
