import json

import pytest

from keras_mta.data import holdout_split
from keras_mta.data import load_holdout_split
from keras_mta.evaluation import datasets as datasets_module
from keras_mta.evaluation.datasets import evaluation_sets
from keras_mta.recipe import RecipeError
from keras_mta.recipe import load_recipe
from keras_mta.runner.data import load_data

# Backend-independent (Python and NumPy only).
pytestmark = pytest.mark.once


def _write_dolly(tmp_path, n):
    path = tmp_path / "dolly.jsonl"
    rows = [
        {"instruction": f"Say {i}.", "context": "", "response": f"{i}."}
        for i in range(n)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_holdout_split_is_a_seeded_partition_in_file_order():
    split = holdout_split(range(50), valid=5, test=7, seed=42)
    assert [len(split[k]) for k in ("train", "valid", "test")] == [38, 5, 7]
    assert sorted(split["train"] + split["valid"] + split["test"]) == list(
        range(50)
    )
    for part in split.values():
        assert part == sorted(part)
    # The same arguments give the same split; another seed another one.
    assert holdout_split(range(50), valid=5, test=7, seed=42) == split
    assert holdout_split(range(50), valid=5, test=7, seed=1) != split
    # The test set does not depend on how many validation examples are
    # held out (it is taken first).
    other = holdout_split(range(50), valid=9, test=7, seed=42)
    assert other["test"] == split["test"]


def test_holdout_split_refuses_bad_counts():
    with pytest.raises(ValueError, match="no training example"):
        holdout_split(range(10), valid=5, test=5)
    with pytest.raises(ValueError, match="integer >= 0"):
        holdout_split(range(10), valid=-1)
    with pytest.raises(ValueError, match="a limit"):
        load_holdout_split("x.jsonl", valid=1, limit=3)


def _holdout_recipe(path, **data):
    overrides = [
        f"data.train={path}",
        "data.valid=",
        "data.holdout_valid=4",
        "data.holdout_test=3",
        "evaluation.datasets=['valid', 'test']",
    ]
    overrides += [f"data.{k}={v}" for k, v in data.items()]
    return load_recipe("tiny-cpu", overrides=overrides)


def test_a_run_holds_out_valid_and_test_of_the_training_file(
    tmp_path, monkeypatch
):
    path = _write_dolly(tmp_path, 20)
    recipe = _holdout_recipe(path)
    recipe.validate(check_files=True)
    train, valid, test, reports = load_data(recipe, str(tmp_path / "run"))
    assert (len(train), len(valid), len(test)) == (13, 4, 3)
    # Without the run's test examples, the recipe's data gives the same
    # ones again; with them, the file is not read a second time.
    again = evaluation_sets(["test"], data=recipe.data)
    assert again["test"] == test

    def read_again(*args, **kwargs):
        raise AssertionError("the training file was read a second time")

    monkeypatch.setattr(datasets_module, "load_holdout_split", read_again)
    sets = evaluation_sets(
        recipe.evaluation.datasets, valid, data=recipe.data, test_examples=test
    )
    assert sets["test"] == test and sets["valid"] == valid
    sources = [{e.source for e in s} for s in (train, valid, test)]
    assert not (sources[0] & sources[1] or sources[0] & sources[2])
    assert not sources[1] & sources[2]
    # data.max_examples cuts the training set after the split, so the
    # held-out examples stay the same.
    recipe = _holdout_recipe(path, max_examples=5)
    train_cut, valid_cut, test_cut, _ = load_data(recipe, str(tmp_path / "run"))
    assert train_cut == train[:5] and valid_cut == valid and test_cut == test


def test_holdout_fields_are_checked_against_valid_and_test(tmp_path):
    path = _write_dolly(tmp_path, 20)
    with pytest.raises(RecipeError, match="comes from one place"):
        _holdout_recipe(path, valid=str(path))
    with pytest.raises(RecipeError, match="data.holdout_test is 0"):
        _holdout_recipe(path, holdout_test=0)
    with pytest.raises(ValueError, match="set data.holdout_test"):
        evaluation_sets(["test"])
