"""A teacher with its own tokenizer, cached: the losses from the cache are
the live `CrossTokenizerTeacher`'s, a student fits from the stream, and a
cache is refused for inputs of another teacher tokenizer."""

import keras
import keras_hub
import numpy as np
import pytest

from keras_mta import AlignmentPlan
from keras_mta import CachedTeacher
from keras_mta import DistillationModel
from keras_mta import build_teacher_cache
from keras_mta.models import CrossTokenizerTeacher
from keras_mta.teacher_cache import CachedCrossTokenizerTeacher
from keras_mta.teacher_cache import tokenizer_identity
from keras_mta.teacher_cache.builder import cache_key
from keras_mta.teacher_cache.keys import LOG_REST
from tests.models import fixtures as F
from tests.models.test_cross_tokenizer_teacher import TEACHER_LEN
from tests.models.test_cross_tokenizer_teacher import TEACHER_VOCAB
from tests.models.test_cross_tokenizer_teacher import cross_batch

PLAN = AlignmentPlan([1, 3], [1, 2], word_pairs=1, entropy_weighting=True)


def _teacher_preprocessor(sequence_length=TEACHER_LEN, merges=True):
    tokenizer = F.tiny_gpt2_tokenizer()
    if not merges:
        tokenizer = keras_hub.models.GPT2Tokenizer(
            vocabulary=dict(tokenizer.vocabulary),
            merges=list(tokenizer.merges)[:-1],
        )
    return keras_hub.models.GPT2CausalLMPreprocessor(
        tokenizer=tokenizer, sequence_length=sequence_length
    )


class _SharedTokens:
    """A stand-in DistillationPreprocessor whose two sides tokenize alike."""

    shares_tokens = True


SAME_KEYS = (
    "name",
    "num_layers",
    "vocabulary_size",
    "layers",
    "hidden_dims",
    "top_k",
    "temperature",
)


def _models():
    teacher = F.gpt2(F.TEACHER_LAYERS, F.TEACHER_DIM, vocab=TEACHER_VOCAB)
    student = F.gpt2(F.STUDENT_LAYERS, F.STUDENT_DIM)
    F.set_numpy_weights(teacher, 0)
    F.set_numpy_weights(student, 1)
    return teacher, student


def _cache(tmp_path, teacher, x, preprocessor, top_k=TEACHER_VOCAB):
    return build_teacher_cache(
        CrossTokenizerTeacher(teacher),
        PLAN,
        x,
        str(tmp_path / "cache"),
        top_k=top_k,
        dtype="float32",
        batch_size=4,
        chunk_size=2,
        verbose=False,
        preprocessor=preprocessor,
    )


def _numpy(values):
    return {k: keras.ops.convert_to_numpy(v) for k, v in values.items()}


@pytest.mark.parametrize(
    "top_k",
    [
        TEACHER_VOCAB,
        # The truncated cache (as long again) in the full tier.
        pytest.param(8, marks=pytest.mark.large),
    ],
)
def test_cached_losses_are_the_live_cross_tokenizer_teachers(tmp_path, top_k):
    # ULD across vocabularies (80 teacher tokens, 64 student tokens), DSA
    # pooled on each side's own tokens, unit-level HRA and entropy weights
    # on the teacher's padding mask: from a full-vocabulary cache, the live
    # values up to float32 rounding (rtol 1e-5: the cache holds float32
    # log-probabilities, the live path softmaxes the logits); from a top-8
    # cache, the alignment terms unchanged and ULD within twice the
    # teacher's rest mass (the bound of CachedCrossTokenizerTeacher).
    teacher, student = _models()
    x, y, sample_weight = cross_batch()
    preprocessor = _teacher_preprocessor()
    live = DistillationModel(
        CrossTokenizerTeacher(teacher), student, plan=PLAN, divergence="uld"
    )
    expected = _numpy(live.compute_losses(x, y, sample_weight=sample_weight))
    assert float(expected["kd"]) > 0 and float(expected["hra"]) > 0
    cache = _cache(tmp_path, teacher, x, preprocessor, top_k=top_k)
    source = CachedTeacher.from_cache(cache, preprocessor=preprocessor)
    assert isinstance(source, CachedCrossTokenizerTeacher)
    cached = DistillationModel(source, student, plan=PLAN, divergence="uld")
    assert cached.teacher is None
    assert "teacher_token_ids" not in cached.input_keys
    cached.alignment.set_weights(live.alignment.get_weights())
    stored = cache.read()
    merged = dict(x, **stored)
    got = _numpy(cached.compute_losses(merged, y, sample_weight=sample_weight))
    for name in ("ce", "dsa", "hra", "mta"):
        np.testing.assert_allclose(
            got[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name
        )
    if top_k == TEACHER_VOCAB:
        for name in ("kd", "loss"):
            np.testing.assert_allclose(
                got[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name
            )
        return
    # Per paired position ULD moves by at most 2 x the rest mass.
    positions = x["teacher_positions"]
    weights = sample_weight * (positions >= 0)
    rest = np.take_along_axis(
        np.exp(stored[LOG_REST]), np.maximum(positions, 0), axis=1
    )
    bound = 2 * (weights * rest).sum() / weights.sum()
    assert 0 < bound < float(expected["kd"])
    assert abs(got["kd"] - expected["kd"]) <= bound + 1e-6


def test_a_short_fit_from_the_streamed_cache(tmp_path):
    teacher, student = _models()
    x, y, sample_weight = cross_batch()
    preprocessor = _teacher_preprocessor()
    cache = _cache(tmp_path, teacher, x, preprocessor, top_k=16)
    model = DistillationModel(
        CachedTeacher.from_cache(cache, preprocessor=preprocessor),
        student,
        plan=PLAN,
        divergence="uld",
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    # One step of the compiled train function on the stream (jit /
    # tf.function: the gather and the rebuilt law in graph mode).
    dataset = cache.dataset((x, y, sample_weight), batch_size=4, seed=1)
    history = model.fit(dataset, epochs=1, verbose=0)
    for name in ("loss", "kd", "dsa", "hra"):
        value = history.history[name][-1]
        assert np.isfinite(value) and value > 0, name


@pytest.mark.once
def test_a_cache_is_refused_for_another_teacher_tokenizer(tmp_path):
    teacher, student = _models()
    x, _, _ = cross_batch()
    built_for = _teacher_preprocessor()
    cache = _cache(tmp_path, teacher, x, built_for, top_k=4)
    assert (
        cache.metadata["teacher"]["teacher_tokenizer"]["sha256"]
        == (tokenizer_identity(built_for)["sha256"])
    )
    # Other merges, another sequence length: other teacher tokens.
    for other in (
        _teacher_preprocessor(merges=False),
        _teacher_preprocessor(sequence_length=TEACHER_LEN + 2),
    ):
        with pytest.raises(ValueError, match="was built on the tokens") as e:
            CachedTeacher.from_cache(cache, preprocessor=other)
        message = str(e.value)
        assert "GPT2Tokenizer" in message and "build_teacher_cache(" in message
        # The key holds the teacher's tokenizer: a cache of its own.
        keys = [
            cache_key(
                teacher,
                {
                    "token_ids": x["teacher_token_ids"],
                    "padding_mask": x["teacher_padding_mask"],
                },
                PLAN.teacher_layers,
                4,
                "float32",
                1.0,
                tokenizer_identity(p),
            )
            for p in (built_for, other)
        ]
        assert keys[0] != keys[1] and keys[0].startswith(cache.key[:16])
    with pytest.raises(ValueError, match="student's tokens"):
        CachedTeacher.from_cache(cache, preprocessor=_SharedTokens())
    # A cache on the student's tokens is refused a teacher tokenizer.
    config = cache.metadata["teacher"]
    same = CachedTeacher(**{k: config[k] for k in SAME_KEYS})
    with pytest.raises(ValueError, match="CrossTokenizerTeacher"):
        same.check_preprocessor(built_for)
    same.check_preprocessor(_SharedTokens())
    # The model refuses a same-vocabulary divergence and names ULD.
    source = CachedTeacher.from_cache(cache)
    with pytest.raises(ValueError, match="'uld'"):
        DistillationModel(source, student, plan=PLAN, divergence="forward_kl")
    model = DistillationModel(source, student, plan=PLAN, divergence="uld")
    clone = DistillationModel.from_config(model.get_config())
    assert clone.teacher_source.get_config() == source.get_config()
    # Building: a cross-tokenizer teacher needs the preprocessor; a plain
    # teacher is refused inputs with the teacher's own tokens.
    with pytest.raises(ValueError, match="preprocessor="):
        _cache(tmp_path, teacher, x, None)
    with pytest.raises(ValueError, match="CrossTokenizerTeacher"):
        build_teacher_cache(teacher, PLAN, x, str(tmp_path / "c2"))


def test_a_truncated_uld_reads_the_cached_top_k(monkeypatch):
    # ULD truncated to m <= the cache's top_k is computed from the cached
    # top k and rest mass directly (the live value), without the law
    # rebuilt over the teacher's vocabulary; the exact form, or m > top_k,
    # still rebuilds it.
    from keras_mta.losses import UniversalLogitDistillation
    from keras_mta.losses import top_k_log_probs
    from keras_mta.teacher_cache import cached_cross_tokenizer_teacher
    from keras_mta.teacher_cache.keys import TOP_K_INDICES
    from keras_mta.teacher_cache.keys import TOP_K_LOG_PROBS

    rng = np.random.default_rng(0)
    teacher_logits = (2 * rng.normal(size=(2, 5, 80))).astype("float32")
    student_logits = (2 * rng.normal(size=(2, 4, 64))).astype("float32")
    positions = np.array([[0, 2, 3, -1], [1, 1, 4, 0]], "int32")
    weight = np.array([[1, 1, 1, 1], [0, 1, 2, 1]], "float32")
    cached = _numpy(
        dict(
            zip(
                (TOP_K_LOG_PROBS, TOP_K_INDICES, LOG_REST),
                top_k_log_probs(teacher_logits, 8, 1.5),
            )
        )
    )
    inputs = dict(cached, teacher_positions=positions)
    source = CachedCrossTokenizerTeacher(
        name="t",
        num_layers=2,
        vocabulary_size=80,
        layers=[1],
        hidden_dims=[8],
        top_k=8,
        temperature=1.5,
    )

    class Rebuilt(Exception):
        pass

    def rebuilding(*args):
        raise Rebuilt  # The law over the teacher's vocabulary: not needed.

    monkeypatch.setattr(
        cached_cross_tokenizer_teacher, "_full_log_probs", rebuilding
    )
    for m in (9, None):  # Above the cache's top_k, or exact: rebuilt.
        loss = UniversalLogitDistillation(temperature=1.5, truncation=m)
        with pytest.raises(Rebuilt):
            source.kd(loss, None, inputs, student_logits, weight)
    loss = UniversalLogitDistillation(temperature=1.5, truncation=4)
    got = source.kd(loss, None, inputs, student_logits, weight)
    gathered = np.take_along_axis(
        teacher_logits, np.maximum(positions, 0)[..., None], axis=1
    )
    want = loss(gathered, student_logits, weight * (positions >= 0))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(got),
        keras.ops.convert_to_numpy(want),
        rtol=1e-5,
    )
