"""Training from a teacher cache: the cached path against the live teacher."""

import keras
import numpy as np
import pytest

from keras_mta import AlignmentPlan
from keras_mta import CachedTeacher
from keras_mta import DistillationModel
from keras_mta import TeacherCache
from keras_mta import build_teacher_cache
from keras_mta.teacher_cache import keys as signals
from tests.models import fixtures as F

PLAN = AlignmentPlan([1, 3], [1, 2], word_pairs=1)


def _models(seed=0):
    teacher, student = F.teacher_student()
    F.set_numpy_weights(teacher, seed)
    F.set_numpy_weights(student, seed + 1)
    return teacher, student


def _cache(tmp_path, teacher, x, plan=PLAN, top_k=F.VOCAB, **kwargs):
    kwargs.setdefault("dtype", "float32")
    kwargs.setdefault("verbose", False)
    return build_teacher_cache(
        teacher,
        plan,
        x,
        str(tmp_path / "cache"),
        top_k=top_k,
        batch_size=3,
        chunk_size=2,
        **kwargs,
    )


def _with_signals(cache, x):
    merged = dict(x)
    merged.update(cache.read())
    return merged


def _both_losses(live, cached, cache, batch):
    """The loss terms of the live model and of the cached one, as NumPy."""
    x, y, sample_weight = batch
    expected = live.compute_losses(x, y, sample_weight=sample_weight)
    got = cached.compute_losses(
        _with_signals(cache, x), y, sample_weight=sample_weight
    )

    def numpy(terms):
        return {k: keras.ops.convert_to_numpy(v) for k, v in terms.items()}

    return numpy(got), numpy(expected)


def _live_and_cached(teacher, student, cache, **kwargs):
    live = DistillationModel(teacher, student, plan=PLAN, **kwargs)
    cached = DistillationModel(
        CachedTeacher.from_cache(cache), student, plan=PLAN, **kwargs
    )
    if live.alignment is not None:
        cached.alignment.set_weights(live.alignment.get_weights())
    return live, cached


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        # The other settings (about 15 s each) in the full tier.
        pytest.param(
            {"divergence": "reverse_kl", "temperature": 2.0},
            marks=pytest.mark.large,
        ),
        pytest.param({"divergence": "jensen_shannon"}, marks=pytest.mark.large),
        pytest.param({"units": "phrase"}, marks=pytest.mark.large),
    ],
)
def test_full_vocabulary_cache_gives_the_live_loss(tmp_path, kwargs):
    teacher, student = _models()
    x, y, sample_weight = F.make_batch()
    cache = _cache(
        tmp_path, teacher, x, temperature=kwargs.get("temperature", 1.0)
    )
    live, cached = _live_and_cached(teacher, student, cache, **kwargs)
    got, expected = _both_losses(live, cached, cache, (x, y, sample_weight))
    for name in ("loss", "ce", "kd", "dsa", "hra"):
        np.testing.assert_allclose(
            got[name], expected[name], rtol=1e-4, atol=1e-5, err_msg=name
        )
    assert float(expected["kd"]) > 0
    assert float(expected["dsa"]) > 0


def test_entropy_weighting_reads_the_cached_weights(tmp_path):
    plan = AlignmentPlan([1, 3], [1, 2], entropy_weighting=True)
    teacher, student = _models()
    x, y, sample_weight = F.make_batch()
    cache = _cache(tmp_path, teacher, x, plan=plan)
    live = DistillationModel(teacher, student, plan=plan)
    cached = DistillationModel(
        CachedTeacher.from_cache(cache), student, plan=plan
    )
    cached.alignment.set_weights(live.alignment.get_weights())
    got, expected = _both_losses(live, cached, cache, (x, y, sample_weight))
    np.testing.assert_allclose(got["loss"], expected["loss"], rtol=1e-4)


def test_plan_with_some_of_the_cached_layers_gives_the_live_loss(tmp_path):
    # One cache serves ablations of the number of pairs: here the plan keeps
    # only the upper pair (teacher 3, student 2) of the cached [1, 3].
    plan = AlignmentPlan([3], [2], word_pairs=0)
    teacher, student = _models()
    x, y, sample_weight = F.make_batch()
    cache = _cache(tmp_path, teacher, x)
    live = DistillationModel(teacher, student, plan=plan)
    cached = DistillationModel(
        CachedTeacher.from_cache(cache), student, plan=plan
    )
    cached.alignment.set_weights(live.alignment.get_weights())
    assert signals.hidden_key(1) in cached.input_keys
    assert signals.hidden_key(0) not in cached.input_keys
    got, expected = _both_losses(live, cached, cache, (x, y, sample_weight))
    for name in ("loss", "dsa", "hra"):
        np.testing.assert_allclose(
            got[name], expected[name], rtol=1e-4, atol=1e-6, err_msg=name
        )
    assert float(expected["dsa"]) > 0


def test_top_k_below_vocabulary_lowers_kd_and_keeps_alignment(tmp_path):
    teacher, student = _models()
    x, y, sample_weight = F.make_batch()
    cache = _cache(tmp_path, teacher, x, top_k=8)
    live, cached = _live_and_cached(teacher, student, cache)
    got, expected = _both_losses(live, cached, cache, (x, y, sample_weight))
    kd_full, kd_top = float(expected["kd"]), float(got["kd"])
    # Coarsening can only lower a divergence, and k=8 of 64 keeps most of it.
    assert 0.3 * kd_full < kd_top <= kd_full + 1e-6
    for name in ("dsa", "hra", "ce"):
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-4)


def test_bfloat16_storage_is_close(tmp_path):
    teacher, student = _models()
    x, y, sample_weight = F.make_batch()
    cache = _cache(tmp_path, teacher, x, dtype="bfloat16")
    live, cached = _live_and_cached(teacher, student, cache)
    got, expected = _both_losses(live, cached, cache, (x, y, sample_weight))
    for name in ("dsa", "hra"):
        np.testing.assert_allclose(got[name], expected[name], rtol=2e-2)


@pytest.mark.large
def test_fit_from_the_streamed_cache_without_a_teacher(tmp_path):
    teacher, student = _models()
    x, y, sample_weight = F.make_batch(batch=4)
    cache = _cache(tmp_path, teacher, x, top_k=16)
    del teacher
    model = DistillationModel(
        CachedTeacher.from_cache(cache), student, plan=PLAN
    )
    assert model.teacher is None
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    dataset = cache.dataset((x, y, sample_weight), batch_size=2, seed=1)
    history = model.fit(dataset, epochs=3, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    assert history.history["dsa"][-1] > 0
    # The student alone still generates logits from plain inputs.
    out = model(
        {"token_ids": x["token_ids"], "padding_mask": x["padding_mask"]}
    )
    assert tuple(out["logits"].shape) == (4, F.SEQ_LEN, F.VOCAB)


def test_config_round_trip(tmp_path):
    teacher, student = _models()
    x, _, _ = F.make_batch()
    cache = _cache(tmp_path, teacher, x, top_k=4)
    model = DistillationModel(
        CachedTeacher.from_cache(cache), student, plan=PLAN, mta_weight=1.5
    )
    clone = DistillationModel.from_config(model.get_config())
    assert clone.teacher is None
    assert clone.teacher_source.get_config() == (
        model.teacher_source.get_config()
    )
    assert clone.mta_weight == 1.5


def test_errors(tmp_path):
    teacher, student = _models()
    x, y, sample_weight = F.make_batch()
    cache = _cache(tmp_path, teacher, x, top_k=4)
    described = CachedTeacher.from_cache(cache)
    with pytest.raises(ValueError, match=r"holds layers \[1, 3\], not \[2\]"):
        DistillationModel(
            described, student, plan=AlignmentPlan([2, 3], [1, 2])
        )
    with pytest.raises(ValueError, match="temperature"):
        DistillationModel(described, student, plan=PLAN, temperature=2.0)
    with pytest.raises(ValueError, match="top-k form"):
        DistillationModel(
            described,
            student,
            plan=PLAN,
            divergence=keras.losses.KLDivergence(),
        )
    with pytest.raises(ValueError, match="needs the plan"):
        DistillationModel(described, student)
    model = DistillationModel(described, student, plan=PLAN)
    with pytest.raises(ValueError, match="TeacherCache.dataset"):
        model.compute_losses(x, y, sample_weight=sample_weight)
    other = F.gpt2(2, 8, vocab=32)
    with pytest.raises(ValueError, match="vocabulary"):
        DistillationModel(described, other, plan=PLAN)


def test_signal_keys_of_the_cache(tmp_path):
    teacher, _ = _models()
    x, _, _ = F.make_batch()
    cache = _cache(tmp_path, teacher, x, top_k=5)
    assert sorted(cache.specs) == sorted(signals.signal_keys(2))
    arrays = cache.read()
    assert arrays[signals.TOP_K_INDICES].dtype == np.int32
    assert arrays[signals.TOP_K_LOG_PROBS].shape == (F.BATCH, F.SEQ_LEN, 5)
    assert arrays[signals.hidden_key(1)].shape == (
        F.BATCH,
        F.SEQ_LEN,
        F.TEACHER_DIM,
    )
    assert isinstance(TeacherCache(cache.directory).key, str)


@pytest.mark.once
def test_a_second_build_rewrites_a_truncated_chunk_only(tmp_path, capsys):
    teacher, _ = _models()
    x, _, _ = F.make_batch()
    cache = _cache(tmp_path, teacher, x, top_k=4)
    expected = cache.read()
    path = f"{cache.directory}/chunk-00001.npz"
    with open(path, "r+b") as f:
        f.truncate(100)
    capsys.readouterr()
    again = _cache(tmp_path, teacher, x, top_k=4, verbose=True)
    out = capsys.readouterr().out
    assert "rewriting 1 damaged chunk(s): chunk-00001.npz (truncated" in out
    assert f"(1 of {cache.num_chunks} chunks" in out
    for name, value in again.read().items():
        np.testing.assert_array_equal(value, expected[name])


@pytest.mark.once  # a check of the configuration, backend-independent
def test_uld_from_a_cache_needs_its_truncated_form_within_top_k():
    # Issue 21: ULD's top-k form is its truncated form with m <= top_k;
    # the exact form, or m above top_k, is refused before any step.
    from keras_mta.losses import UniversalLogitDistillation

    source = CachedTeacher(
        name="t",
        num_layers=2,
        vocabulary_size=64,
        layers=[1],
        hidden_dims=[8],
        top_k=16,
    )
    source.check_divergence(UniversalLogitDistillation(truncation=16))
    for truncation in (None, 17):
        loss = UniversalLogitDistillation(truncation=truncation)
        with pytest.raises(ValueError, match="truncation=m\\) with m <= 16"):
            source.check_divergence(loss)
