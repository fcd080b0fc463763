import keras
import numpy as np
import pytest

from keras_mta import AlignmentPlan
from keras_mta import DistillationModel
from keras_mta.analysis import TrajectoryCallback
from keras_mta.analysis import TrajectoryTable
from keras_mta.analysis import linear_cka
from keras_mta.analysis import plot_trajectory_heatmaps
from keras_mta.analysis import plot_trajectory_lines
from keras_mta.analysis import trajectory
from tests.models.fixtures import gpt2
from tests.models.fixtures import make_batch
from tests.models.fixtures import set_numpy_weights

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def models():
    teacher = gpt2(3, 16)
    student = gpt2(2, 8)
    set_numpy_weights(teacher, seed=1)
    set_numpy_weights(student, seed=2)
    return teacher, student


@pytest.fixture(scope="module")
def batches():
    return [make_batch(seed=s) for s in range(2)]


def test_model_with_itself_agrees_on_the_diagonal(models, batches):
    teacher, _ = models
    table = trajectory(teacher, teacher, batches, progress=False)
    assert table.agreement["word"].shape == (4, 4)
    for granularity in ("word", "phrase"):
        np.testing.assert_allclose(
            np.diag(table.agreement[granularity]), 1.0, atol=1e-5
        )
    np.testing.assert_allclose(np.diag(table.cka), 1.0, atol=1e-6)
    assert table.num_examples == sum(len(b[0]["token_ids"]) for b in batches)


def test_other_student_agrees_less(models, batches):
    teacher, student = models
    plan = AlignmentPlan([2, 3], [1, 2])
    table = trajectory(teacher, student, batches, plan=plan, progress=False)
    assert table.agreement["phrase"].shape == (3, 4)
    assert table.plan_pairs == [(1, 2), (2, 3)]
    for granularity in ("word", "phrase"):
        values = table.agreement[granularity]
        assert np.all((values >= 0) & (values <= 1))
        assert np.nanmean(values) < 0.999
    assert np.all(table.cka[np.isfinite(table.cka)] <= 1.0 + 1e-9)


def test_agreement_is_one_minus_the_training_loss(models):
    """One batch: agreement(i, j) == 1 - structural_alignment(i, j)."""
    from keras_mta.losses import structural_alignment
    from keras_mta.models import hidden_states_model

    teacher, student = models
    batch = make_batch(seed=7)
    x = batch[0]
    table = trajectory(teacher, student, [batch], progress=False)
    inputs = {"token_ids": x["token_ids"], "padding_mask": x["padding_mask"]}
    t_states = hidden_states_model(teacher, [1, 3])(inputs)["hidden_states"]
    s_states = hidden_states_model(student, [2])(inputs)["hidden_states"]
    for granularity in ("word", "phrase"):
        for j, t_hidden in zip((1, 3), t_states):
            dsa = structural_alignment(
                s_states[0],
                t_hidden,
                x[f"{granularity}_units"],
                x["padding_mask"],
            )
            want = max(0.0, 1.0 - float(keras.ops.convert_to_numpy(dsa)))
            got = table.agreement[granularity][2, j]
            assert got == pytest.approx(want, abs=1e-5)


def test_linear_cka_properties():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6))
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    assert linear_cka(x, x @ q * 3.0) == pytest.approx(1.0)
    assert linear_cka(x, rng.normal(size=(50, 4))) < 0.5


def test_table_round_trips_through_json(models, batches, tmp_path):
    teacher, student = models
    table = trajectory(
        teacher,
        student,
        batches,
        label="before",
        plan=AlignmentPlan([2, 3], [1, 2]),
        progress=False,
    )
    table.agreement["word"][0, 0] = np.nan
    path = table.save(str(tmp_path / "t.json"))
    loaded = TrajectoryTable.load(path)
    assert loaded.label == "before"
    assert loaded.plan_pairs == table.plan_pairs
    np.testing.assert_array_equal(
        loaded.agreement["word"], table.agreement["word"]
    )
    np.testing.assert_array_equal(loaded.cka, table.cka)


def test_plots_are_png(models, batches, tmp_path):
    teacher, student = models
    table = trajectory(
        teacher,
        student,
        batches,
        label="before",
        plan=AlignmentPlan([2, 3], [1, 2]),
        progress=False,
    )
    heat = plot_trajectory_heatmaps(table, str(tmp_path / "heat.png"))
    lines = plot_trajectory_lines([table, table], str(tmp_path / "l.png"))
    for path in (heat, lines):
        data = open(path, "rb").read()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000


def test_callback_runs_inside_fit(models, tmp_path):
    teacher, student = gpt2(3, 16), gpt2(2, 8)
    plan = AlignmentPlan([2, 3], [1, 2])
    model = DistillationModel(teacher, student, plan=plan)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x, y, w = make_batch(seed=5)
    callback = TrajectoryCallback(
        teacher,
        student,
        [make_batch(seed=6)],
        str(tmp_path / "out"),
        plan=plan,
        every=1,
        log_dir=str(tmp_path / "logs"),
    )
    model.fit(
        x,
        y,
        sample_weight=w,
        epochs=2,
        batch_size=4,
        verbose=0,
        callbacks=[callback],
    )
    assert [t.label for t in callback.tables] == [
        "before",
        "epoch 1",
        "epoch 2",
    ]
    out = tmp_path / "out"
    for name in (
        "trajectory_before.json",
        "trajectory_epoch_2.png",
        "trajectory_lines.png",
    ):
        assert (out / name).stat().st_size > 0
    assert list((tmp_path / "logs").iterdir())
