import keras
import keras_hub
import numpy as np
import pytest

from keras_mta import AlignmentPlan
from keras_mta import DistillationModel
from keras_mta.generation import StudentResponses
from keras_mta.generation.student_responses import DEGENERATE_PLACEHOLDER
from keras_mta.preprocessing import DistillationPreprocessor
from keras_mta.preprocessing import SpanCache
from tests.models.fixtures import tiny_gpt2_tokenizer
from tests.preprocessing.test_distillation_preprocessor import WhitespaceChunker
from tests.tiny_models import tiny_gpt2_causal_lm

SEQUENCE_LENGTH = 32
PROMPTS = [
    "Name a fruit:\n",
    "Say hi to the cat. ",
    "Count to three. ",
    "Why?",
]
RESPONSES = ["An apple.", "Hi cat", "one two three", "because it is"]
# Short prompts and responses (`max_new_tokens=8`): 16 generation steps
# instead of 33 where only the draws matter (eager torch pays per step).
SHORT = ["Hi:", "Why?", "Go on:", "Yes?"]


@pytest.fixture(scope="module")
def models():
    """A tiny byte-level GPT-2 student (2 x 8) and teacher (3 x 16)."""
    keras.utils.set_random_seed(0)
    student = tiny_gpt2_causal_lm(
        num_layers=2, hidden_dim=8, sequence_length=SEQUENCE_LENGTH
    )
    teacher = tiny_gpt2_causal_lm(
        num_layers=3, hidden_dim=16, sequence_length=SEQUENCE_LENGTH
    )
    return teacher, student


class NamedChunker(WhitespaceChunker):
    """A stand-in chunker a `SpanCache` can hold."""

    def fingerprint(self):
        return "whitespace"


def _preprocessor(student, chunker=None):
    return DistillationPreprocessor(
        student.preprocessor,
        max_word_units=12,
        max_phrase_units=6,
        chunker=chunker or WhitespaceChunker(),
    )


@pytest.fixture(scope="module")
def preprocessor(models):
    return _preprocessor(models[1])


def _numpy(batch):
    x, y, sample_weight = batch
    x = {k: keras.ops.convert_to_numpy(v) for k, v in x.items()}
    return (
        x,
        keras.ops.convert_to_numpy(y),
        keras.ops.convert_to_numpy(sample_weight),
    )


def _assert_same_layout(batch, reference):
    x, y, weight = batch
    ref_x, ref_y, ref_weight = reference
    assert sorted(x) == sorted(ref_x)
    for key in ref_x:
        assert isinstance(x[key], np.ndarray), key
        assert x[key].shape == ref_x[key].shape, key
        assert x[key].dtype == ref_x[key].dtype, key
    assert (y.shape, y.dtype) == (ref_y.shape, ref_y.dtype)
    assert (weight.shape, weight.dtype) == (ref_weight.shape, ref_weight.dtype)


def _assert_batches_equal(a, b):
    for key in a[0]:
        np.testing.assert_array_equal(a[0][key], b[0][key], err_msg=key)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2], b[2])


def test_generated_batches_train_like_ground_truth(
    models, preprocessor, monkeypatch
):
    """Same keys, dtypes and static shapes as the ground-truth batches,
    units on the new text, and finite KD and MTA terms (also when every
    generation is degenerate)."""
    teacher, student = models
    responder = StudentResponses(student, preprocessor, seed=3)
    batch = responder.generate_batch(PROMPTS)
    truth = _numpy(preprocessor({"prompt": PROMPTS, "response": RESPONSES}))
    _assert_same_layout(batch, truth)
    x, y, weight = batch
    assert x["token_ids"].shape == (len(PROMPTS), SEQUENCE_LENGTH)
    # Units of the generated text, not of the ground-truth responses.
    units = x["word_units"]
    assert (units[..., 1] > units[..., 0]).sum(axis=1).min() > 0
    assert not np.array_equal(units, truth[0]["word_units"])
    # Prompts are kept and never trained; responses are.
    np.testing.assert_array_equal(
        x["token_ids"][:, :4], truth[0]["token_ids"][:, :4]
    )
    assert np.all(weight[:, 0] == 0)
    assert np.all(weight.sum(axis=1) > 0)
    model = DistillationModel(
        teacher,
        student,
        plan=AlignmentPlan(teacher_layers=[2, 3], student_layers=[1, 2]),
    )
    terms = model.compute_losses(x, y, sample_weight=weight)
    for name in ("loss", "kd", "dsa", "hra"):
        value = keras.ops.convert_to_numpy(terms[name])
        assert np.all(np.isfinite(value)) and np.all(value > 0), name
    monkeypatch.setattr(student, "generate", lambda p, **kw: [""] * len(p))
    x, y, weight = responder.generate_batch(PROMPTS)
    assert np.all(weight == 0) and np.all(x["phrase_units"] == 0)
    terms = model.compute_losses(x, y, sample_weight=weight)
    for name, value in terms.items():
        assert np.all(np.isfinite(keras.ops.convert_to_numpy(value))), name


def test_seeded_draws_reproduce(models, preprocessor):
    _, student = models
    first = StudentResponses(student, preprocessor, seed=7, max_new_tokens=8)
    assert first._max_length(SHORT) == 16
    draws = [first.sample(SHORT)]
    compiled = first._generate_function
    assert compiled is not None
    draws.append(first.sample(SHORT))
    assert first._generate_function is compiled  # not compiled again
    assert draws[0] != draws[1]  # each batch a new draw
    again = StudentResponses(student, preprocessor, seed=7, max_new_tokens=8)
    assert again.sample(SHORT) == draws[0]
    # Another responder of the same student and settings (the next
    # variant of a run) reuses the compiled function.
    assert again._generate_function is compiled
    # A draw is a function of (seed, draw index) alone: resumable.
    again.draws = 1
    assert again.sample(SHORT) == draws[1]
    again.seed = 8
    again.draws = 0
    assert again.sample(SHORT) != draws[0]
    # The student's own sampler is left alone.
    assert not isinstance(student.sampler, keras_hub.samplers.RandomSampler)


@pytest.mark.once
def test_degenerate_generations_weigh_nothing_and_are_counted(
    models, preprocessor, monkeypatch
):
    _, student = models
    responder = StudentResponses(student, preprocessor, seed=0)
    sampled = ["", " \n", "A real answer here.", ""]
    monkeypatch.setattr(
        student, "generate", lambda prompts, **kwargs: list(sampled)
    )
    x, y, weight = responder.generate_batch(PROMPTS)
    truth = _numpy(preprocessor({"prompt": PROMPTS, "response": RESPONSES}))
    _assert_same_layout((x, y, weight), truth)
    degenerate = [0, 1, 3]
    assert np.all(weight[degenerate] == 0)
    assert weight[2].sum() > 0
    for key in ("word_units", "phrase_units"):
        assert np.all(x[key][degenerate] == 0)
        assert np.any(x[key][2] != 0)
    assert responder.degenerate_responses == 3
    assert responder.generated_responses == 4
    # Only the real response is in the preprocessor's counts, counted as
    # the preprocessor counts it.
    counted = preprocessor.compute_statistics(
        _examples_dataset(preprocessor, [PROMPTS[2]], [sampled[2]])
    )
    assert responder.statistics == counted
    # The rows' texts: prompt + placeholder, so no row is empty.
    expected = _numpy(
        preprocessor(
            {
                "prompt": PROMPTS,
                "response": [
                    DEGENERATE_PLACEHOLDER,
                    DEGENERATE_PLACEHOLDER,
                    sampled[2],
                    DEGENERATE_PLACEHOLDER,
                ],
            }
        )
    )
    np.testing.assert_array_equal(x["token_ids"], expected[0]["token_ids"])


@pytest.mark.once
def test_end_token_at_once_is_degenerate():
    """A student whose end token is id 0 stops at once (keras-hub): every
    generation is empty; the batch trains nothing."""
    tokenizer = tiny_gpt2_tokenizer()
    student = keras_hub.models.GPT2CausalLM(
        backbone=keras_hub.models.GPT2Backbone(
            vocabulary_size=tokenizer.vocabulary_size(),
            num_layers=2,
            num_heads=2,
            hidden_dim=8,
            intermediate_dim=16,
            max_sequence_length=64,
        ),
        preprocessor=keras_hub.models.GPT2CausalLMPreprocessor(
            tokenizer=tokenizer, sequence_length=SEQUENCE_LENGTH
        ),
    )
    responder = StudentResponses(student, _preprocessor(student), seed=0)
    x, y, weight = responder.generate_batch(PROMPTS)
    assert responder.degenerate_responses == len(PROMPTS)
    assert responder.statistics.examples == 0
    assert np.all(weight == 0)
    assert np.all(x["word_units"] == 0)


def _examples_dataset(preprocessor, prompts, responses):
    import tensorflow as tf

    prompts, responses = list(prompts), list(responses)
    spans = preprocessor.chunker.chunk(
        [p + r for p, r in zip(prompts, responses)]
    )

    def ragged(key):
        rows = [s[key] for s in spans]
        flat = np.asarray(
            [pair for row in rows for pair in row], np.int32
        ).reshape((-1, 2))
        return tf.RaggedTensor.from_row_lengths(flat, [len(r) for r in rows])

    return tf.data.Dataset.from_tensor_slices(
        {
            "prompt": prompts,
            "response": responses,
            "word_spans": ragged("words"),
            "phrase_spans": ragged("phrases"),
        }
    )


@pytest.mark.once
def test_off_thread_batches_equal_synchronous_ones(models, preprocessor):
    _, student = models
    synchronous = StudentResponses(
        student, preprocessor, seed=5, max_new_tokens=8
    )
    background = StudentResponses(
        student, preprocessor, seed=5, max_new_tokens=8
    )
    expected = [synchronous.generate_batch(SHORT) for _ in range(2)]
    with background:
        pending = [background.submit(SHORT) for _ in range(2)]
        got = [future.result() for future in pending]
    assert background.draws == 2
    for a, b in zip(got, expected):
        _assert_batches_equal(a, b)
    assert background.statistics == synchronous.statistics
    # Over the same texts and spans, the counts are the preprocessor's
    # (degenerate responses left out).
    synchronous.draws = 0
    responses = synchronous.sample(SHORT) + synchronous.sample(SHORT)
    kept = [(p, r) for p, r in zip(SHORT * 2, responses) if r.strip()]
    counted = preprocessor.compute_statistics(
        _examples_dataset(preprocessor, *zip(*kept)), batch_size=4
    )
    assert synchronous.statistics == counted
    assert counted.units["word_units"]["kept"] > 0


@pytest.mark.once
def test_chunker_and_settings(models, preprocessor, tmp_path):
    _, student = models
    chunker = NamedChunker()
    preprocessor = _preprocessor(student, SpanCache(tmp_path, chunker))
    responder = StudentResponses(student, preprocessor)
    assert responder.chunker is chunker  # the span cache's
    assert isinstance(responder.seed, int)
    assert responder.get_config()["seed"] == responder.seed
    assert isinstance(responder.sampler, keras_hub.samplers.RandomSampler)
    for kwargs, sampler in (
        ({"top_k": 5}, keras_hub.samplers.TopKSampler),
        ({"top_p": 0.9}, keras_hub.samplers.TopPSampler),
        ({"num_beams": 2}, keras_hub.samplers.BeamSampler),
    ):
        made = StudentResponses(student, preprocessor, **kwargs)
        assert isinstance(made.sampler, sampler)
    for kwargs, match in (
        ({"temperature": 0}, "temperature"),
        ({"top_k": -1}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"num_beams": 2, "top_p": 0.5}, "Beam search"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"n_process": 0}, "n_process"),
    ):
        with pytest.raises(ValueError, match=match):
            StudentResponses(student, preprocessor, **kwargs)
    with pytest.raises(TypeError, match="CausalLM"):
        StudentResponses(student.backbone, preprocessor)
    with pytest.raises(TypeError, match="DistillationPreprocessor"):
        StudentResponses(student, student.preprocessor)
    with pytest.raises(TypeError, match="list of strings"):
        responder.generate_batch("one prompt")
    with pytest.raises(ValueError, match="empty"):
        responder.generate_batch([])


@pytest.mark.once
def test_max_new_tokens_cuts_responses(models, preprocessor):
    _, student = models
    responder = StudentResponses(
        student, preprocessor, seed=1, max_new_tokens=3
    )
    # Byte-level tokens: 3 tokens are at most 3 characters (invalid UTF-8
    # decodes to one replacement character).
    assert max(len(r) for r in responder.sample(PROMPTS)) <= 3
    # Generation stops at the longest prompt (19 tokens) + 3 + start and
    # end tokens, rounded up to 16, rather than at the window (33).
    assert responder._max_length(PROMPTS) == 32
    assert responder._max_length(["Hi"]) == 16


# Worker processes start spaCy (seconds); the thread path runs everyday
# (test_off_thread_batches_equal_synchronous_ones).
@pytest.mark.large
@pytest.mark.once
def test_worker_processes_give_the_spans_of_one_process(models):
    from keras_mta.preprocessing import PhraseChunker

    _, student = models
    chunker = PhraseChunker()
    preprocessor = _preprocessor(student, chunker)
    synchronous = StudentResponses(student, preprocessor, seed=2)
    workers = StudentResponses(student, preprocessor, seed=2, n_process=2)
    expected = [synchronous.generate_batch(PROMPTS * 2) for _ in range(3)]
    with workers:
        pending = [workers.submit(PROMPTS * 2) for _ in range(2)]
        got = [future.result() for future in pending]
        got.append(workers.generate_batch(PROMPTS * 2))
    for a, b in zip(got, expected):
        _assert_batches_equal(a, b)
    assert workers.statistics == synchronous.statistics
    assert workers.statistics.units["word_units"]["kept"] > 0
