"""The toy run of student generation (`recipes/tiny-cpu-student-generation`)
end to end at a test size, in-process under this backend: the plain,
adaptive and on-policy variants train, the run logs what their batches
were, and a forced rise of the validation loss switches the adaptive
generation on. (The pieces are tested cheaply in the everyday tier:
tests/generation, tests/runner/test_student_generation.py.)"""

import pytest

from keras_mta.generation import adaptive_generation_callback
from keras_mta.recipe import load_recipe
from tests.cli.test_distill_command import TEST_SIZE

# Minutes: the full tier, under every backend.
pytestmark = pytest.mark.large

GENERATION_TEST_SIZE = [
    *[item for item in TEST_SIZE if not item.startswith("training.seeds")],
    "training.seeds=[1]",
    "training.epochs=3",
    "training.early_stopping_patience=0",
    "distillation.compare=['kd', 'kd+adaptive', 'mta+on_policy']",
    "name=generation-test-size",
    # The reference's start: no generation until the validation loss rises.
    "training.student_generation.init_threshold=0.0",
    "training.student_generation.capacity=2",
    "training.student_generation.eval_interval=1",
]


def test_a_forced_validation_loss_rise_switches_generation_on(
    tmp_path, monkeypatch, capsys
):
    from keras_mta.runner import run_distill

    # The student's validation loss, as the adaptive schedule measures it,
    # rises by 0.2 at every measure (before training and after each
    # step): the threshold climbs by 0.1 each time.
    measures = []

    def rising_loss(student, data, model=None):
        measures.append(2.0 + 0.2 * len(measures))
        return measures[-1]

    monkeypatch.setattr(
        adaptive_generation_callback, "validation_loss", rising_loss
    )
    monkeypatch.setenv("KERAS_MTA_CACHE_DIR", str(tmp_path / "cache"))
    recipe = load_recipe("tiny-cpu-student-generation", GENERATION_TEST_SIZE)
    results = run_distill(recipe, output_dir=str(tmp_path / "run"))
    out = capsys.readouterr().out

    histories = results["histories"]
    adaptive = histories["student (KD+ADAPTIVE)"]
    # Nothing generated before the first rise; then the threshold climbs
    # and fresh (and replayed) batches come.
    assert adaptive["generation_threshold"] == [0.3, 0.6, 0.9]
    assert adaptive["generated_fraction"][0] < 1.0
    assert sum(adaptive["generated_fraction"]) > 0
    assert len(measures) == 1 + 3 * 3
    on_policy = histories["student (MTA+ON_POLICY)"]
    assert "generation_threshold" not in on_policy
    assert sum(on_policy["generated_fraction"]) > 0
    plain = histories["student (KD)"]
    assert "generated_fraction" not in plain
    for history in (adaptive, on_policy):
        total = [
            sum(parts)
            for parts in zip(
                history["generated_fraction"],
                history["replayed_fraction"],
                history["ground_truth_fraction"],
            )
        ]
        assert total == pytest.approx([1.0] * 3)
    for term in ("kd", "dsa", "hra"):
        assert all(v == v for v in on_policy[term]), term  # no NaN
    # The log says what each generating student's batches were.
    assert "training the student: kd+adaptive with adaptive student" in out
    said = [line for line in out.splitlines() if " batches: " in line]
    assert len(said) == 2, said
    assert "kd+adaptive: 9 batches: " in said[0], said
    assert "generation threshold 0.9, replay buffer 2/2" in said[0], said
    assert "mta+on_policy: 9 batches: " in said[1], said
    roles = [entry["model"] for entry in results["models"]]
    assert "student (MTA+ON_POLICY)" in roles
