"""The runner trains through a `StudentGeneratedDataset` when the recipe
asks for student generation (the responder and the fit are stand-ins)."""

import types

import pytest

from keras_mta.generation import AdaptiveGenerationCallback
from keras_mta.generation import GenerationMetrics
from keras_mta.generation import StudentGeneratedDataset
from keras_mta.recipe import recipe_from_dict
from keras_mta.runner import student_generation as runner_generation
from keras_mta.runner import training
from tests.generation.fake_responder import FakeResponder
from tests.generation.fake_responder import examples

pytestmark = pytest.mark.once


class Responder(FakeResponder):
    closed = False

    def close(self):
        self.closed = True


def run_distill_variant(
    monkeypatch, mode, variant="mta", seed=None, **training_fields
):
    arrays, prompts = examples(8)
    datasets = types.SimpleNamespace(
        train_arrays=arrays,
        train_examples=[types.SimpleNamespace(prompt=p) for p in prompts],
        batch_size=4,
        steps_per_epoch=2,
        steps_per_epoch_of=lambda examples=0: 2,
        valid="valid batches",
        training_dataset=lambda cache=None, seed=None, examples=0: (
            "ground-truth pipeline"
        ),
        train_statistics=types.SimpleNamespace(check_units=lambda *a, **k: 0),
        valid_statistics=types.SimpleNamespace(check_units=lambda *a, **k: 0),
    )
    recipe = recipe_from_dict(
        {
            "training": {
                "epochs": 3,
                "student_generation": {"mode": mode},
                **training_fields,
            }
        }
    )
    responder = Responder()
    monkeypatch.setattr(
        runner_generation,
        "make_responder",
        lambda *args: setattr(responder, "seed", args[-1]) or responder,
    )
    monkeypatch.setattr(
        training,
        "build_variant_model",
        lambda *args: types.SimpleNamespace(unit_keys=()),
    )
    seen = {}

    def fit(model, train, valid, epochs, steps, what, callbacks=None):
        seen.update(train=train, callbacks=callbacks, epochs=epochs)
        return types.SimpleNamespace(history={})

    monkeypatch.setattr(training, "fit", fit)
    training.distill_variant(
        recipe, variant, None, None, None, datasets, seed=seed
    )
    return seen, responder


def test_adaptive_generation_trains_through_the_dataset(monkeypatch):
    seen, responder = run_distill_variant(monkeypatch, "adaptive")
    dataset = seen["train"]
    assert isinstance(dataset, StudentGeneratedDataset)
    assert dataset.responder is responder and responder.closed
    assert dataset.schedule.total_steps == 6
    assert dataset.schedule.capacity == 1000
    assert dataset.prompts == [f"prompt {i}" for i in range(8)]
    kinds = [type(c) for c in seen["callbacks"]]
    assert kinds == [GenerationMetrics, AdaptiveGenerationCallback]
    assert seen["callbacks"][1].validation_data == "valid batches"


def test_on_policy_needs_no_validation_callback(monkeypatch):
    seen, _ = run_distill_variant(monkeypatch, "on_policy")
    assert seen["train"].schedule.mode == "on_policy"
    assert [type(c) for c in seen["callbacks"]] == [GenerationMetrics]


@pytest.mark.parametrize("mode, variant", [("off", "mta"), ("adaptive", "sft")])
def test_off_or_sft_trains_on_the_data(monkeypatch, mode, variant):
    seen, _ = run_distill_variant(monkeypatch, mode, variant)
    assert seen["train"] == "ground-truth pipeline"
    assert seen["callbacks"] == []  # early stopping is off in this recipe


def test_generation_with_a_students_share_is_refused(monkeypatch):
    with pytest.raises(ValueError, match="student_examples=0"):
        run_distill_variant(monkeypatch, "adaptive", student_examples=4)


def test_each_training_seed_seeds_the_generation(monkeypatch):
    # training.seeds: each seed's run draws its own schedule, data order
    # and responses; without a seed, training.seed does.
    seen, responder = run_distill_variant(monkeypatch, "adaptive", seed=7)
    assert seen["train"].schedule.seed == 7 and responder.seed == 7
    assert seen["train"].seed == 7
    seen, responder = run_distill_variant(monkeypatch, "adaptive")
    assert seen["train"].schedule.seed == 42 and responder.seed == 42
