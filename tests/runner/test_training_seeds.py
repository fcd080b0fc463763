"""Training seeds: the same seed gives every variant the same student
start and the same data order (paired differences); seeds differ."""

import keras
import numpy as np
import pytest

from keras_mta.recipe import ModelSpec
from keras_mta.recipe import TrainingSpec
from keras_mta.runner.datasets import Datasets
from keras_mta.runner.training import EARLY_STOPPING_MONITOR
from keras_mta.runner.training import early_stopping_of
from keras_mta.runner.training_seeds import SeedStarts
from keras_mta.runner.training_seeds import training_seeds
from tests.tiny_models import tiny_gpt2_causal_lm

ARCHITECTURE = {"class": "GPT2Backbone", "num_layers": 1}


@pytest.mark.once
def test_training_seeds_default_to_the_run_seed():
    assert training_seeds(TrainingSpec(seed=7)) == [7]
    assert training_seeds(TrainingSpec(seed=7, seeds=[1, 2, 3])) == [1, 2, 3]
    with pytest.raises(ValueError, match=r"\[2\] more than once"):
        training_seeds(TrainingSpec(seeds=[1, 2, 2]))


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_same_seed_same_start_other_seed_other_start():
    student = tiny_gpt2_causal_lm(num_layers=1, hidden_dim=8)
    built = student.get_weights()
    starts = SeedStarts(ModelSpec(architecture=ARCHITECTURE), student)
    assert _same(starts.weights(0), built)
    second = starts.weights(1)
    assert not _same(second, built)  # a new draw for another seed
    # Every variant of seed 1 gets the same start, and drawing it leaves
    # the student as it was.
    assert _same(starts.weights(1), second)
    assert _same(student.get_weights(), built)
    assert [w.shape for w in second] == [w.shape for w in built]


@pytest.mark.once
def test_a_loaded_student_starts_from_its_weights_at_every_seed():
    student = tiny_gpt2_causal_lm(num_layers=1, hidden_dim=8)
    starts = SeedStarts(ModelSpec(preset="some_preset"), student)
    assert _same(starts.weights(2), student.get_weights())


def _datasets(seed=42):
    # A `Datasets` holding only what `training_dataset` reads (its arrays
    # come from the preprocessing, not under test here).
    datasets = object.__new__(Datasets)
    datasets.train_arrays = {"token_ids": np.arange(64).reshape(32, 2)}
    datasets.train_examples = [None] * 32
    datasets.batch_size = 4
    datasets.drop_remainder = True
    datasets.cap = 0
    datasets.seed = seed
    return datasets


def _first_batches(dataset, count=3):
    return [b["token_ids"].numpy().tolist() for b in dataset.take(count)]


@pytest.mark.once
def test_same_seed_same_first_batches_across_calls():
    datasets = _datasets()
    one = _first_batches(datasets.training_dataset(seed=5))
    assert one == _first_batches(datasets.training_dataset(seed=5))
    assert one != _first_batches(datasets.training_dataset(seed=6))
    # No seed: the recipe's training.seed, as before.
    assert _first_batches(datasets.training_dataset()) == _first_batches(
        datasets.training_dataset(seed=42)
    )


@pytest.mark.once
def test_early_stopping_follows_the_recipe():
    assert early_stopping_of(TrainingSpec()) == []
    (callback,) = early_stopping_of(
        TrainingSpec(early_stopping_patience=2, early_stopping_min_delta=1e-3)
    )
    assert isinstance(callback, keras.callbacks.EarlyStopping)
    assert callback.monitor == EARLY_STOPPING_MONITOR == "val_ce"
    assert callback.patience == 2
    assert callback.restore_best_weights
    assert callback.min_delta == pytest.approx(1e-3)


@pytest.mark.once
def test_the_students_share_of_the_training_rows():
    datasets = _datasets()
    rows = [
        row
        for batch in datasets.training_dataset(seed=5, examples=8)
        for row in batch["token_ids"].numpy().tolist()
    ]
    # One epoch over the first 8 rows only, shuffled by the seed.
    assert sorted(rows) == [[2 * i, 2 * i + 1] for i in range(8)]
    assert datasets.steps_per_epoch_of(8) == 2
    assert datasets.steps_per_epoch_of(0) == 8  # all 32 rows
    assert datasets.steps_per_epoch_of(100) == 8
    with pytest.raises(ValueError, match="teacher cache"):
        datasets.training_dataset(cache=object(), examples=8)
