"""DistillationPreprocessor: tokens, next-token targets, response weights
and semantic units, in tf.data, against keras-hub's own preprocessors."""

import warnings

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

import keras_mta
from keras_mta.preprocessing import DistillationPreprocessor
from keras_mta.preprocessing import PreprocessingStatistics
from keras_mta.preprocessing import TruncationWarning
from keras_mta.preprocessing import tokenize_with_offsets
from tests.preprocessing import offline_tokenizers as ot
from tests.preprocessing.test_offsets import token_text
from tests.preprocessing.test_span_masker import reference

PROMPT = (
    "Below is an instruction that describes a task. Write a response that "
    "appropriately completes the request.\n\n### Instruction:\nName two "
    "fruits.\n\n### Response:\n"
)
RESPONSE = "Apples and ripe pears are fruits."


def word_spans(text):
    """Whitespace-separated words as spans (with their trailing space)."""
    spans = []
    start = None
    for k, char in enumerate(text + " "):
        if not char.isspace() and start is None:
            start = k
        elif char.isspace() and start is not None:
            spans.append((start, min(k + 1, len(text))))
            start = None
    return spans


def phrase_spans(text):
    """Pairs of consecutive words."""
    words = word_spans(text)
    return [(words[k][0], words[k + 1][1]) for k in range(0, len(words) - 1, 2)]


class WhitespaceChunker:
    """A stand-in chunker (the real one is tested in test_chunking)."""

    def __init__(self):
        self.calls = 0

    def chunk(self, texts):
        self.calls += 1
        return [
            {"phrases": phrase_spans(t), "words": word_spans(t)} for t in texts
        ]


def features(pairs, spans=None):
    spans = spans or WhitespaceChunker().chunk([p + r for p, r in pairs])
    return {
        "prompt": [p for p, _ in pairs],
        "response": [r for _, r in pairs],
        "word_spans": [s["words"] for s in spans],
        "phrase_spans": [s["phrases"] for s in spans],
    }


def ragged(rows):
    flat = [pair for row in rows for pair in row]
    values = np.asarray(flat, dtype=np.int32).reshape((-1, 2))
    return tf.RaggedTensor.from_row_lengths(values, [len(r) for r in rows])


def dataset(pairs, spans=None):
    f = features(pairs, spans)
    for key in ("word_spans", "phrase_spans"):
        f[key] = ragged(f[key])
    return tf.data.Dataset.from_tensor_slices(f)


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


@pytest.fixture  # per test: see offline_tokenizers on SentencePiece
def llama():
    return keras_hub.models.LlamaCausalLMPreprocessor(
        tokenizer=ot.llama_tokenizer(), sequence_length=48
    )


@pytest.fixture
def gemma():
    tokenizer = keras_hub.models.GemmaTokenizer(
        proto=ot.sentence_piece_proto(style="gemma")
    )
    return keras_hub.models.GemmaCausalLMPreprocessor(
        tokenizer=tokenizer, sequence_length=40
    )


def expected_weights(offsets, prompt_length, length, start=1, end=1):
    """Response weights of the targets, from the token offsets."""
    ends = [e for _, e in offsets]
    flags = np.maximum.accumulate(
        [int(e > prompt_length) for e in ends] or [0]
    )[: len(ends)]
    kept = min(len(ends), length + 1 - start - end)
    truncated = len(ends) > length - start
    packed = [0] * start + list(flags[:kept]) + [int(not truncated)] * end
    packed += [0] * (length + 1 - len(packed))
    return np.asarray(packed[1:], dtype=np.float32)


def check_example(
    text,
    prompt_length,
    x,
    y,
    weight,
    spans,
    ids,
    offsets,
    tokenizer,
    family,
    prefix="",
    length=None,
    max_units=None,
):
    token_ids = numpy(x[prefix + "token_ids"])
    length = length or token_ids.shape[0]
    kept = min(len(ids), length - 1)
    assert token_ids[1 : 1 + kept].tolist() == ids[:kept]
    for kind, key in (("word_units", "words"), ("phrase_units", "phrases")):
        units = numpy(x[prefix + kind])
        limit = max_units[kind] if max_units else units.shape[0]
        expected, _ = reference(spans[key], offsets, limit, length, shift=1)
        np.testing.assert_array_equal(units, expected)
        starts = np.asarray([s for s, _ in offsets])
        ends = np.asarray([e for _, e in offsets])
        for cs, ce in spans[key]:
            members = np.flatnonzero((starts >= cs) & (ends <= ce))
            for j in members:
                piece = token_text(tokenizer, family, ids[j])
                if isinstance(piece, bytes):
                    assert piece.lstrip() in text[cs:ce].encode(), (piece, cs)
                else:
                    assert piece.strip() in text[cs:ce], (piece, cs)
    if y is not None:
        np.testing.assert_array_equal(
            numpy(weight), expected_weights(offsets, prompt_length, length)
        )


@pytest.fixture(scope="module")
def selfinst_spans(request):
    """Real phrase and word spans of the whole SelfInst file (spaCy), from
    a span cache kept in pytest's cache directory between runs."""
    pairs = ot.selfinst_examples()
    texts = [p + r for p, r in pairs]
    try:
        from keras_mta.preprocessing import SpanCache

        cache = SpanCache(request.config.cache.mkdir("keras_mta_spans"))
        return cache.get_or_compute(texts)
    except (ImportError, OSError) as error:  # no spaCy pipeline
        pytest.skip(f"no spaCy pipeline for the real chunker: {error}")


def packed(ids, length, start, end, pad):
    """`(token_ids, padding_mask, y)` as keras-hub's CausalLMPreprocessor
    packs `ids` (start token, content cut to fit, end token)."""
    content = ids[: length - 1]
    row = [start] + content + [end]
    mask = [1] * len(row) + [0] * (length + 1 - len(row))
    row = row + [pad] * (length + 1 - len(row))
    return row[:-1], mask[:-1], row[1:]


# A whole real file (about 35 s); the same tf.data path runs on small
# batches in the everyday tier (test_map_then_batch_*, test_statistics_*).
@pytest.mark.large
@pytest.mark.once  # inside tf.data the layer runs on TensorFlow
def test_whole_selfinst_file_byte_pair_in_tf_data(selfinst_spans):
    """The whole SelfInst file, real spaCy units, through tf.data (batch,
    then map): the ids are the tokenizer's own, packed as keras-hub packs
    them; units follow the rule and every unit's tokens decode to text
    inside its characters; response weights."""
    tokenizer = ot.gpt2_tokenizer()
    length = 384
    gpt2 = keras_hub.models.GPT2CausalLMPreprocessor(
        tokenizer=tokenizer, sequence_length=length
    )
    preprocessor = DistillationPreprocessor(
        gpt2, max_word_units=256, max_phrase_units=96
    )
    pairs = ot.selfinst_examples()
    texts = [p + r for p, r in pairs]
    ds = dataset(pairs, selfinst_spans).batch(128).map(preprocessor)
    assert ds.element_spec[0]["token_ids"].shape.as_list() == [None, length]
    assert ds.element_spec[0]["word_units"].shape.as_list() == [None, 256, 2]
    assert ds.element_spec[0]["phrase_units"].shape.as_list() == [None, 96, 2]
    own_ids = ot.graph_ids(tokenizer, texts)
    ids, offsets = tokenize_with_offsets(
        tokenizer, texts, skip_leading_whitespace=True
    )
    assert ids.to_list() == own_ids
    offsets = offsets.to_list()
    index = 0
    end = tokenizer.end_token_id
    for x, y, weight in ds:
        for b in range(x["token_ids"].shape[0]):
            token_ids, mask, targets = packed(
                own_ids[index], length, end, end, tokenizer.pad_token_id
            )
            assert x["token_ids"][b].numpy().tolist() == token_ids
            assert x["padding_mask"][b].numpy().tolist() == mask
            assert y[b].numpy().tolist() == targets
            check_example(
                texts[index],
                len(pairs[index][0]),
                {k: v[b] for k, v in x.items()},
                y[b],
                weight[b],
                selfinst_spans[index],
                own_ids[index],
                offsets[index],
                tokenizer,
                "byte_pair",
                max_units={"word_units": 256, "phrase_units": 96},
            )
            index += 1
    assert index == len(pairs) == 252


def test_eager_call_equals_keras_hub_and_weights_response_only(llama):
    chunker = WhitespaceChunker()
    preprocessor = DistillationPreprocessor(
        llama,
        max_word_units=16,
        max_phrase_units=8,
        sequence_length=128,
        chunker=chunker,
    )
    text = PROMPT + RESPONSE
    f = features([(PROMPT, RESPONSE)])
    x, y, weight = preprocessor(f)
    ref_x, ref_y, _ = llama([text], sequence_length=128)
    for key in ("token_ids", "padding_mask"):
        np.testing.assert_array_equal(numpy(x[key]), numpy(ref_x[key]))
    np.testing.assert_array_equal(numpy(y), numpy(ref_y))
    assert numpy(x["word_units"]).shape == (1, 16, 2)
    assert numpy(weight).dtype == np.float32
    # Weight 1 exactly on the response targets and the end token.
    tokenizer = llama.tokenizer
    ids, offsets = tokenize_with_offsets(
        tokenizer, text, skip_leading_whitespace=True
    )
    trained = numpy(y)[0][numpy(weight)[0] == 1]
    assert trained[-1] == tokenizer.end_token_id
    assert tokenizer.detokenize(trained[:-1].tolist()).strip() == RESPONSE
    check_example(
        text,
        len(PROMPT),
        {k: v[0] for k, v in x.items()},
        y[0],
        weight[0],
        WhitespaceChunker().chunk([text])[0],
        ids.numpy().tolist(),
        offsets.numpy().tolist(),
        tokenizer,
        "sentence_piece",
        max_units={"word_units": 16, "phrase_units": 8},
    )
    # One example (scalars) gives unbatched outputs.
    x1, _, w1 = preprocessor({k: v[0] for k, v in f.items()})
    np.testing.assert_array_equal(
        numpy(x1["token_ids"]), numpy(x["token_ids"])[0]
    )
    np.testing.assert_array_equal(numpy(w1), numpy(weight)[0])
    # Without spans, the chunker runs (eagerly).
    x2, _, _ = preprocessor({"prompt": [PROMPT], "response": [RESPONSE]})
    assert chunker.calls == 1
    np.testing.assert_array_equal(
        numpy(x2["word_units"]), numpy(x["word_units"])
    )


@pytest.mark.once  # inside tf.data the layer runs on TensorFlow
def test_map_then_batch_with_another_teacher_tokenizer(llama, gemma):
    preprocessor = DistillationPreprocessor(
        llama, gemma, max_word_units=16, max_phrase_units=8
    )
    assert not preprocessor.shares_tokens
    pairs = list(ot.selfinst_examples()[:10])
    texts = [p + r for p, r in pairs]
    spans = WhitespaceChunker().chunk(texts)
    ds = dataset(pairs, spans).map(preprocessor).batch(4)
    spec = ds.element_spec
    assert spec[0]["token_ids"].shape.as_list() == [None, 48]
    assert spec[0]["word_units"].shape.as_list() == [None, 16, 2]
    assert spec[0]["teacher_token_ids"].shape.as_list() == [None, 40]
    assert spec[0]["teacher_padding_mask"].shape.as_list() == [None, 40]
    assert spec[0]["teacher_word_units"].shape.as_list() == [None, 16, 2]
    assert spec[0]["teacher_phrase_units"].shape.as_list() == [None, 8, 2]
    assert spec[1].shape.as_list() == [None, 48]
    batches = list(ds)
    assert [b[0]["token_ids"].shape[0] for b in batches] == [4, 4, 2]
    x = {
        k: np.concatenate([b[0][k].numpy() for b in batches])
        for k in batches[0][0]
    }
    ref_x, _, _ = gemma(texts)
    np.testing.assert_array_equal(
        x["teacher_token_ids"], numpy(ref_x["token_ids"])
    )
    np.testing.assert_array_equal(
        x["teacher_padding_mask"], numpy(ref_x["padding_mask"])
    )
    ref_x, _, _ = llama(texts)
    np.testing.assert_array_equal(x["token_ids"], numpy(ref_x["token_ids"]))
    ids, offsets = tokenize_with_offsets(
        gemma.tokenizer, texts, skip_leading_whitespace=True
    )
    for b in range(len(texts)):
        check_example(
            texts[b],
            len(pairs[b][0]),
            {k: v[b] for k, v in x.items()},
            None,
            None,
            spans[b],
            ids[b].numpy().tolist(),
            offsets[b].numpy().tolist(),
            gemma.tokenizer,
            "sentence_piece",
            prefix="teacher_",
            max_units={"word_units": 16, "phrase_units": 8},
        )


@pytest.mark.once
def test_same_tokenizer_shares_token_ids_and_config(llama, gemma):
    twin = keras_hub.models.LlamaCausalLMPreprocessor(
        tokenizer=ot.llama_tokenizer(), sequence_length=128
    )
    preprocessor = DistillationPreprocessor(llama, twin)
    assert preprocessor.shares_tokens
    x, _, _ = preprocessor(features([(PROMPT, RESPONSE)]))
    assert sorted(x) == [
        "padding_mask",
        "phrase_units",
        "token_ids",
        "word_units",
    ]
    # Same tokens, other start/end tokens: not shared.
    other = keras_hub.models.LlamaCausalLMPreprocessor(
        tokenizer=ot.llama_tokenizer(),
        sequence_length=48,
        add_end_token=False,
    )
    assert not DistillationPreprocessor(llama, other).shares_tokens

    preprocessor = DistillationPreprocessor(
        llama, gemma, max_word_units=16, max_phrase_units=8, sequence_length=32
    )
    config = preprocessor.get_config()
    assert config["max_word_units"] == 16
    assert config["max_phrase_units"] == 8
    assert config["sequence_length"] == 32
    assert config["student_preprocessor"]["class_name"] == (
        "LlamaCausalLMPreprocessor"
    )
    assert config["teacher_preprocessor"]["class_name"] == (
        "GemmaCausalLMPreprocessor"
    )
    assert keras_mta.DistillationPreprocessor is DistillationPreprocessor
    assert keras_mta.layers.SpanMasker is keras_mta.SpanMasker


@pytest.mark.once
def test_statistics_and_warning(llama):
    chunker = WhitespaceChunker()
    preprocessor = DistillationPreprocessor(
        llama, max_word_units=4, max_phrase_units=2, chunker=chunker
    )
    pairs = ot.selfinst_examples()[:12]
    examples = [{"prompt": p, "response": r} for p, r in pairs]
    with pytest.warns(TruncationWarning, match=r"truncated to sequence_length"):
        ds = preprocessor.prepare_dataset(examples, batch_size=5, name="toy")
    assert chunker.calls == 1
    stats = preprocessor.statistics
    assert isinstance(stats, PreprocessingStatistics)
    assert stats.examples == 12
    # Templated prompts alone exceed 48 tokens: every example is cut, most
    # responses lie wholly outside the window (nothing to train: not even
    # the end token, which follows a truncated text).
    assert stats.truncated_examples == 12
    assert stats.truncated_tokens > 0
    assert stats.examples_without_response > 0
    words = stats.units["word_units"]
    total = sum(len(word_spans(p + r)) for p, r in pairs)
    assert words["units"] == total
    assert words["kept"] == 12 * 4  # at most 4 per example
    assert words["dropped_overflow"] > 0 and words["dropped_truncation"] > 0
    assert (
        words["kept"]
        + words["dropped_overflow"]
        + words["dropped_truncation"]
        + words["dropped_empty"]
        == total
    )
    assert 0 < stats.dropped_fraction("word_units") < 1
    assert "word_units" in str(stats) and "%" in str(stats)
    span_stats = stats.to_span_statistics()
    assert span_stats.words == total
    assert span_stats.words_dropped_max_units == words["dropped_overflow"]
    batches = list(ds)
    assert sum(b[0]["token_ids"].shape[0] for b in batches) == 12
    weights = np.concatenate([b[2].numpy() for b in batches])
    assert (weights.sum(axis=1) == 0).sum() == stats.examples_without_response

    # Nothing lost: no warning.
    preprocessor = DistillationPreprocessor(
        llama, sequence_length=512, max_word_units=256, max_phrase_units=128
    )
    pairs = [(PROMPT, RESPONSE), ("Q: 1+1?\nA: ", "Two.")]
    spans = WhitespaceChunker().chunk([p + r for p, r in pairs])
    examples = [
        {
            "prompt": p,
            "response": r,
            "word_spans": s["words"],
            "phrase_spans": s["phrases"],
        }
        for (p, r), s in zip(pairs, spans)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncationWarning)
        ds = preprocessor.prepare_dataset(examples, batch_size=2)
    assert preprocessor.statistics.truncated_examples == 0
    assert not preprocessor.statistics.has_losses()
    x, _, _ = next(iter(ds))
    assert x["token_ids"].shape == (2, 512)


@pytest.mark.once
def test_text_utf8_cannot_hold_is_named_with_its_example(llama):
    preprocessor = DistillationPreprocessor(llama, chunker=WhitespaceChunker())
    good = {"prompt": PROMPT, "response": RESPONSE}
    bad = {"prompt": PROMPT, "response": "Apples \ud800 pears."}
    with pytest.raises(ValueError, match="'response' of example 1 holds a lo"):
        preprocessor.prepare_dataset([good, bad], statistics=False)
    with pytest.raises(ValueError, match="'prompt' of example 0 holds a lone"):
        preprocessor(dict(features([(PROMPT, RESPONSE)]), prompt=["\udc00"]))
    with pytest.raises(ValueError, match="'response' of example 0 is not va"):
        preprocessor({"prompt": PROMPT, "response": b"caf\xe9"})


@pytest.mark.once
def test_bad_inputs_name_the_problem(llama):
    preprocessor = DistillationPreprocessor(llama)
    good = features([(PROMPT, RESPONSE)])
    with pytest.raises(ValueError, match="response of example 0 is empty"):
        preprocessor(dict(good, response=[""]))
    with pytest.raises(ValueError, match="whitespace"):
        preprocessor(dict(good, response=["  \n"]))
    with pytest.raises(TypeError, match="'prompt' of example 0 must be"):
        preprocessor(dict(good, prompt=[3]))
    with pytest.raises(KeyError, match="response"):
        preprocessor({"prompt": [PROMPT]})
    with pytest.raises(ValueError, match="no `chunker`"):
        preprocessor({"prompt": [PROMPT], "response": [RESPONSE]})
    with pytest.raises(ValueError, match="phrase_spans"):
        preprocessor({k: v for k, v in good.items() if k != "phrase_spans"})
    with pytest.raises(ValueError, match="builds `y`"):
        preprocessor(good, y=[1])
    with pytest.raises(TypeError, match="CausalLMPreprocessor"):
        DistillationPreprocessor(llama.tokenizer)
    with pytest.raises(ValueError, match="max_word_units"):
        DistillationPreprocessor(llama, max_word_units=0)
    with pytest.raises(TypeError, match="'response' of example 1"):
        preprocessor.prepare_dataset(
            [{"prompt": "a", "response": "b"}, {"prompt": "a", "response": 2}]
        )

    # Inside tf.data.
    empty = dataset([(PROMPT, "")], [{"words": [], "phrases": []}])
    with pytest.raises(tf.errors.InvalidArgumentError, match="empty"):
        list(empty.map(preprocessor))
    stale = dataset(
        [(PROMPT, RESPONSE)], [{"words": [(0, 5000)], "phrases": []}]
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="stale cache"):
        list(stale.batch(1).map(preprocessor))
    no_spans = tf.data.Dataset.from_tensor_slices(
        {"prompt": [PROMPT], "response": [RESPONSE]}
    )
    with pytest.raises(ValueError, match="prepare_dataset"):
        no_spans.map(preprocessor)
    ints = tf.data.Dataset.from_tensor_slices(
        {
            "prompt": [1],
            "response": [RESPONSE],
            "word_spans": ragged([[]]),
            "phrase_spans": ragged([[]]),
        }
    )
    with pytest.raises(TypeError, match="'prompt' must be strings"):
        ints.map(preprocessor)
