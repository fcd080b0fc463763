"""The runner trains through a `StudentGeneratedDataset` when the recipe
asks for student generation (the responder and the fit are stand-ins)."""

import types

import pytest

from keras_mta.generation import AdaptiveGenerationCallback
from keras_mta.generation import GenerationBackupAndRestore
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
    monkeypatch,
    mode,
    variant="mta",
    seed=None,
    backup_dir=None,
    compiled=None,
    **training_fields,
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
    training_fields.setdefault("student_generation", {"mode": mode})
    recipe = recipe_from_dict(
        {
            "training": {
                "epochs": 3,
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
        recipe,
        variant,
        None,
        None,
        None,
        datasets,
        seed=seed,
        backup_dir=backup_dir,
        compiled=compiled,
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


def test_generation_samples_the_students_share(monkeypatch):
    # training.student_examples: the students' prompts and ground-truth
    # rows are the first `student_examples` rows, with or without
    # generation.
    seen, _ = run_distill_variant(monkeypatch, "adaptive", student_examples=4)
    dataset = seen["train"]
    assert dataset.prompts == [f"prompt {i}" for i in range(4)]
    assert len(dataset.arrays[1]) == 4
    assert len(dataset.arrays[0]["token_ids"]) == 4
    assert all(set(dataset.rows(step)) == {0, 1, 2, 3} for step in range(4))


@pytest.mark.parametrize(
    "variant, mode, callbacks",
    [
        ("kd+on_policy", "on_policy", [GenerationMetrics]),
        (
            "mta+adaptive",
            "adaptive",
            [GenerationMetrics, AdaptiveGenerationCallback],
        ),
    ],
)
def test_a_variant_suffix_switches_generation_on(
    monkeypatch, variant, mode, callbacks
):
    # Recipe mode off: the suffix alone asks for generation, in its mode,
    # with the recipe's other generation settings.
    seen, _ = run_distill_variant(
        monkeypatch,
        "off",
        variant,
        student_generation={"mode": "off", "on_policy_fraction": 0.25},
    )
    dataset = seen["train"]
    assert isinstance(dataset, StudentGeneratedDataset)
    assert dataset.schedule.mode == mode
    assert dataset.schedule.on_policy_fraction == 0.25
    assert [type(c) for c in seen["callbacks"]] == callbacks


def test_the_run_says_what_the_batches_were(monkeypatch):
    seen, _ = run_distill_variant(monkeypatch, "on_policy")
    dataset = seen["train"]
    # Step 3 was made ahead (prefetched) but never trained on.
    dataset.sources = {
        0: "generate",
        1: "ground_truth",
        2: "ground_truth",
        3: "generate",
    }
    dataset.initial_step = 3
    assert runner_generation.generation_summary(dataset) == (
        "3 batches: 1 generated (33%), 0 replayed (0%), 2 ground truth (67%)"
    )
    seen, _ = run_distill_variant(monkeypatch, "adaptive")
    dataset = seen["train"]
    dataset.sources = {0: "replay"}
    dataset.initial_step = 1
    dataset.schedule.threshold = 0.2
    assert runner_generation.generation_summary(dataset) == (
        "1 batches: 0 generated (0%), 1 replayed (100%), 0 ground truth "
        "(0%); generation threshold 0.2, replay buffer 0/1000"
    )


def test_each_training_seed_seeds_the_generation(monkeypatch):
    # training.seeds: each seed's run draws its own schedule, data order
    # and responses; without a seed, training.seed does.
    seen, responder = run_distill_variant(monkeypatch, "adaptive", seed=7)
    assert seen["train"].schedule.seed == 7 and responder.seed == 7
    assert seen["train"].seed == 7
    seen, responder = run_distill_variant(monkeypatch, "adaptive")
    assert seen["train"].schedule.seed == 42 and responder.seed == 42


def test_a_generating_variant_backs_up_for_a_resume(monkeypatch, tmp_path):
    seen, _ = run_distill_variant(
        monkeypatch, "adaptive", backup_dir=str(tmp_path)
    )
    backup = seen["callbacks"][0]
    # First, so that the callbacks after it read the resumed step.
    assert isinstance(backup, GenerationBackupAndRestore)
    assert backup.dataset is seen["train"]
    assert backup.backup_dir == str(tmp_path)
    seen, _ = run_distill_variant(monkeypatch, "off", backup_dir="unused")
    assert seen["callbacks"] == []


class RecordingCompiledVariants:
    """A stand-in `CompiledVariants` that records the names asked for."""

    def __init__(self):
        self.names = []

    def model(self, name, build):
        self.names.append(name)
        return build()

    def validation(self):
        return "the run's validation model"


def test_a_generating_variant_trains_its_plain_variant_s_compiled_model(
    monkeypatch,
):
    # `kd+adaptive` is `kd`'s model with other data: one compiled model
    # (one trace of the training step) serves both.
    compiled = RecordingCompiledVariants()
    for variant in ("mta", "mta+adaptive", "mta+on_policy"):
        run_distill_variant(monkeypatch, "off", variant, compiled=compiled)
    assert compiled.names == ["mta", "mta", "mta"]


def test_the_adaptive_mode_measures_with_the_run_s_validation_model(
    monkeypatch,
):
    # Not one more validation model compiled per adaptive variant.
    from keras_mta.generation import adaptive_generation_callback

    seen, _ = run_distill_variant(
        monkeypatch,
        "off",
        "kd+adaptive",
        compiled=RecordingCompiledVariants(),
    )
    callback = seen["callbacks"][-1]
    assert isinstance(callback, AdaptiveGenerationCallback)
    measured = {}

    def validation_loss(student, data, model=None):
        measured.update(student=student, data=data, model=model)
        return 1.0

    monkeypatch.setattr(
        adaptive_generation_callback, "validation_loss", validation_loss
    )
    callback.set_model(types.SimpleNamespace(student="the student"))
    assert callback.measure() == 1.0
    assert measured == {
        "student": "the student",
        "data": "valid batches",
        "model": "the run's validation model",
    }
