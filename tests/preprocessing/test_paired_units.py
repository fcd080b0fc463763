"""Teacher and student of different tokenizers: unit `u` is the same
character span on both sides (`paired_units`), and the units one side
loses are dropped on both and counted."""

import keras_hub
import numpy as np
import pytest

from keras_mta.preprocessing import DistillationPreprocessor
from keras_mta.preprocessing import tokenize_with_offsets
from tests.preprocessing import offline_tokenizers as ot
from tests.preprocessing.test_distillation_preprocessor import WhitespaceChunker
from tests.preprocessing.test_distillation_preprocessor import dataset
from tests.preprocessing.test_distillation_preprocessor import gemma  # noqa: F401
from tests.preprocessing.test_distillation_preprocessor import llama  # noqa: F401
from tests.preprocessing.test_distillation_preprocessor import numpy


def token_range(span, offsets, shift):
    """`(start, end)` of the tokens inside `span` (None: no token)."""
    cs, ce = span
    members = [
        j for j, (s, e) in enumerate(offsets) if s >= 0 and s >= cs and e <= ce
    ]
    if not members:
        return None
    return members[0] + shift, members[-1] + 1 + shift


def paired_reference(spans, offsets, lengths, max_units):
    """Loops written from the rule: the paired units of both sides of one
    example, and the `dropped_unpaired` count of each side."""
    ranges = []
    for side_offsets, length in zip(offsets, lengths):
        side = []
        for span in spans:
            found = token_range(span, side_offsets, shift=1)
            if found is not None and found[0] < length:
                found = (found[0], min(found[1], length))
            else:
                found = None
            side.append(found)
        ranges.append(side)
    both = [
        k
        for k in range(len(spans))
        if ranges[0][k] is not None and ranges[1][k] is not None
    ]
    both.sort(key=lambda k: (ranges[0][k], k))
    kept = both[:max_units]
    units = []
    for side in ranges:
        array = np.zeros((max_units, 2), np.int32)
        for row, k in enumerate(kept):
            array[row] = side[k]
        units.append(array)
    unpaired = [
        sum(
            1
            for k in range(len(spans))
            if ranges[s][k] is not None and ranges[1 - s][k] is None
        )
        for s in (0, 1)
    ]
    return units, unpaired, len(kept)


@pytest.fixture
def short_gemma(gemma):  # noqa: F811
    # Shorter than the student's window: the teacher cuts units the
    # student keeps.
    return keras_hub.models.GemmaCausalLMPreprocessor(
        tokenizer=gemma.tokenizer, sequence_length=24
    )


@pytest.mark.once  # inside tf.data the layer runs on TensorFlow
def test_units_are_the_same_spans_on_both_sides(llama, short_gemma):  # noqa: F811
    preprocessor = DistillationPreprocessor(
        llama, short_gemma, max_word_units=12, max_phrase_units=8
    )
    pairs = list(ot.selfinst_examples()[:6])
    texts = [p + r for p, r in pairs]
    spans = WhitespaceChunker().chunk(texts)
    # A span of whitespace only covers no token on either side.
    spans[0]["words"].append((len(pairs[0][0]) - 1, len(pairs[0][0])))
    x, _, _ = next(iter(dataset(pairs, spans).batch(6).map(preprocessor)))
    x = {k: numpy(v) for k, v in x.items()}
    assert x["word_units"].shape == x["teacher_word_units"].shape == (6, 12, 2)
    offsets = [
        tokenize_with_offsets(p.tokenizer, texts, skip_leading_whitespace=True)[
            1
        ]
        for p in (llama, short_gemma)
    ]
    unpaired_seen = 0
    for kind, key, limit in (
        ("word_units", "words", 12),
        ("phrase_units", "phrases", 8),
    ):
        for b in range(len(texts)):
            units, unpaired, kept = paired_reference(
                spans[b][key],
                [o[b].numpy().tolist() for o in offsets],
                (48, 24),
                limit,
            )
            np.testing.assert_array_equal(x[kind][b], units[0])
            np.testing.assert_array_equal(x["teacher_" + kind][b], units[1])
            # Paired rows: a row is empty on both sides or on neither.
            student_real = x[kind][b, :, 1] > x[kind][b, :, 0]
            teacher_real = (
                x["teacher_" + kind][b, :, 1] > x["teacher_" + kind][b, :, 0]
            )
            np.testing.assert_array_equal(student_real, teacher_real)
            assert student_real.sum() == kept
            unpaired_seen += unpaired[0]
    # The teacher's shorter window lost units the student could keep.
    assert unpaired_seen > 0


@pytest.mark.once
def test_statistics_count_units_lost_on_the_other_side(
    llama,  # noqa: F811
    short_gemma,
):
    preprocessor = DistillationPreprocessor(
        llama,
        short_gemma,
        max_word_units=64,
        max_phrase_units=32,
        chunker=WhitespaceChunker(),
    )
    pairs = ot.selfinst_examples()[:5]
    examples = [{"prompt": p, "response": r} for p, r in pairs]
    with pytest.warns(UserWarning, match="other model's tokens lost them"):
        preprocessor.prepare_dataset(examples, batch_size=5)
    stats = preprocessor.statistics
    student = stats.units["word_units"]
    teacher = stats.units["teacher_word_units"]
    # The teacher (window 24) loses words the student (window 48) keeps.
    assert student["dropped_unpaired"] > 0
    assert teacher["dropped_unpaired"] == 0
    assert student["kept"] == teacher["kept"]
    for counts in (student, teacher):
        assert counts["units"] == (
            counts["kept"]
            + counts["dropped_overflow"]
            + counts["dropped_truncation"]
            + counts["dropped_empty"]
            + counts["dropped_unpaired"]
        )
    assert stats.dropped("word_units") >= student["dropped_unpaired"]
