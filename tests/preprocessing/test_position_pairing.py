"""Student-to-teacher position pairing through character offsets."""

import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from keras_mta.preprocessing import DistillationPreprocessor
from keras_mta.preprocessing import tokenize_with_offsets
from keras_mta.preprocessing.position_pairing import context_ends
from keras_mta.preprocessing.position_pairing import pair_positions
from tests.preprocessing import offline_tokenizers as ot
from tests.preprocessing.test_distillation_preprocessor import PROMPT
from tests.preprocessing.test_distillation_preprocessor import RESPONSE
from tests.preprocessing.test_distillation_preprocessor import expected_weights
from tests.preprocessing.test_distillation_preprocessor import features
from tests.preprocessing.test_distillation_preprocessor import numpy

pytestmark = pytest.mark.once  # TensorFlow preprocessing, any backend

# "say unbelievable cats", prompt "say " (4 characters).
# Student (byte-pair style, the word in three pieces):
#   "say" [0,3) " un" [4,6) "believ" [6,12) "able" [12,16) " cats" [17,21)
# Teacher (SentencePiece style, the word whole, "cats" in two):
#   "▁say" [0,3) "▁unbelievable" [4,16) "▁ca" [17,19) "ts" [19,21)
STUDENT_OFFSETS = [[0, 3], [4, 6], [6, 12], [12, 16], [17, 21]]
TEACHER_OFFSETS = [[0, 3], [4, 16], [17, 19], [19, 21]]


def ragged(rows):
    flat = [pair for row in rows for pair in row]
    values = np.asarray(flat, dtype=np.int32).reshape((-1, 2))
    return tf.RaggedTensor.from_row_lengths(values, [len(r) for r in rows])


def test_context_ends_of_packed_positions():
    ends = context_ends(ragged([STUDENT_OFFSETS]), 8, start=1)
    # Start token (0), the five tokens' ends, then end and padding (-1).
    assert ends.numpy().tolist() == [[0, 3, 6, 12, 16, 21, -1, -1]]
    ends = context_ends(ragged([STUDENT_OFFSETS]), 3, start=0)
    assert ends.numpy().tolist() == [[3, 6, 12]]  # truncated
    # Two byte tokens of one 2-byte character share its end: only the
    # second has read the whole character. A token without offsets: -1.
    rows = [[[0, 2], [2, 3], [2, 3], [3, 5]], [[-1, -1], [0, 4]]]
    ends = context_ends(ragged(rows), 5, start=1)
    assert ends.numpy().tolist() == [[0, 2, -1, 3, 5], [0, -1, 4, -1, -1]]


def test_multi_token_word_pairs_after_its_last_piece_only():
    student = context_ends(ragged([STUDENT_OFFSETS]), 8, start=1)
    teacher = context_ends(ragged([TEACHER_OFFSETS]), 6, start=1)
    # Targets: prompt "say" weighs 0; the end token weighs 1; padding 0.
    student_weight = [[0, 1, 1, 1, 1, 1, 0, 0]]
    teacher_weight = [[0, 1, 1, 1, 1, 0]]
    got = pair_positions(student, student_weight, teacher, teacher_weight)
    assert got.dtype == tf.int32
    # Student position 1 has read "say" like teacher position 1; positions
    # 2 and 3 stop inside "unbelievable", which the teacher never does;
    # position 4 has read "say unbelievable" (teacher 2); position 5 the
    # whole text (teacher 4: both predict the end token). Teacher 3 stops
    # inside "cats": no student position partners it.
    assert got.numpy().tolist() == [[-1, 1, -1, -1, 2, 4, -1, -1]]


def test_response_only_masking_holds_on_both_sides():
    student = context_ends(ragged([STUDENT_OFFSETS]), 8, start=1)
    teacher = context_ends(ragged([TEACHER_OFFSETS]), 6, start=1)
    # A teacher target that is not trained (prompt, or its end token after
    # a truncation) is no partner; an untrained student position pairs
    # with nothing even when the teacher's is trained.
    got = pair_positions(
        student, [[1, 1, 1, 1, 0, 1, 0, 0]], teacher, [[1, 0, 1, 1, 0, 0]]
    )
    assert got.numpy().tolist() == [[0, -1, -1, -1, -1, -1, -1, -1]]


def reference_pairs(student_ends, student_weight, teacher_ends, weight):
    out = np.full(student_ends.shape, -1)
    for b, i in np.ndindex(*student_ends.shape):
        if student_ends[b, i] < 0 or student_weight[b, i] <= 0:
            continue
        for j in range(teacher_ends.shape[1]):
            if teacher_ends[b, j] == student_ends[b, i] and weight[b, j] > 0:
                out[b, i] = j
    return out


def random_ends(rng, batch, length):
    ends = np.cumsum(rng.integers(1, 4, size=(batch, length)), axis=1)
    return np.where(rng.random((batch, length)) < 0.2, -1, ends)


def test_matches_brute_force_on_random_sequences():
    rng = np.random.default_rng(0)
    student, teacher = random_ends(rng, 6, 20), random_ends(rng, 6, 13)
    student_weight = (rng.random(student.shape) < 0.8).astype("float32")
    teacher_weight = (rng.random(teacher.shape) < 0.8).astype("float32")
    got = pair_positions(student, student_weight, teacher, teacher_weight)
    want = reference_pairs(student, student_weight, teacher, teacher_weight)
    assert (want >= 0).sum() > 10  # the case pairs something
    np.testing.assert_array_equal(got.numpy(), want)


def closing(ends):
    """Token ends, -1 where the next token ends at the same character."""
    return [e if e != (ends + [-2])[k + 1] else -1 for k, e in enumerate(ends)]


def check_preprocessor_pairing(student, teacher, pairs):
    """Every pair of `teacher_positions` against the rule, recomputed
    from each side's own offsets and response weights; returns the
    fraction of trained student positions that pair."""
    x, _, sample_weight = DistillationPreprocessor(student, teacher)(
        features(pairs)
    )
    positions = numpy(x["teacher_positions"])
    sample_weight = numpy(sample_weight)
    length = student.sequence_length
    assert positions.shape == (len(pairs), length)
    assert positions.dtype == np.int32
    texts = [p + r for p, r in pairs]
    sides = []
    for side in (student, teacher):
        _, offsets = tokenize_with_offsets(side.tokenizer, texts)
        start = int(side.add_start_token)
        rows = []
        for b in range(len(texts)):
            pieces = offsets[b].numpy().tolist()
            ends = [0] * start + closing([e for _, e in pieces])
            weight = expected_weights(
                pieces, len(pairs[b][0]), side.sequence_length, start=start
            )
            rows.append((ends, weight))
        sides.append(rows)
    paired = 0
    for b in range(len(texts)):
        (s_ends, s_weight), (t_ends, t_weight) = sides[0][b], sides[1][b]
        np.testing.assert_array_equal(s_weight, sample_weight[b])
        for i, j in enumerate(positions[b]):
            partners = [
                q
                for q in range(min(len(t_ends), teacher.sequence_length))
                if t_weight[q] > 0 and i < len(s_ends) and s_ends[i] >= 0
                if t_ends[q] == s_ends[i]
            ]
            if s_weight[i] > 0 and partners:
                assert j == partners[0], (b, i)
                paired += 1
            else:
                assert j == -1, (b, i)
    return paired / float(np.sum(sample_weight))


SHORT_PAIRS = [
    ("Name two fruits.\n", RESPONSE),
    ("Q: what colour is the sky?\nA: ", "The sky is blue, mostly."),
]


def test_preprocessor_pairs_two_sentence_piece_tokenizers():
    # The everyday check of the preprocessor's plumbing (two SentencePiece
    # models with different special tokens; the byte-pair pair below is
    # slower to trace).
    student = keras_hub.models.LlamaCausalLMPreprocessor(
        tokenizer=ot.llama_tokenizer(), sequence_length=40
    )
    teacher = keras_hub.models.GemmaCausalLMPreprocessor(
        tokenizer=keras_hub.models.GemmaTokenizer(
            proto=ot.sentence_piece_proto(style="gemma")
        ),
        sequence_length=24,
    )
    assert check_preprocessor_pairing(student, teacher, SHORT_PAIRS) > 0.5


@pytest.mark.large  # traces keras-hub's byte-pair graph (about 30 s)
def test_preprocessor_pairs_byte_pair_student_with_sentence_piece_teacher():
    student = keras_hub.models.GPT2CausalLMPreprocessor(
        tokenizer=ot.gpt2_tokenizer(), sequence_length=128
    )
    teacher = keras_hub.models.LlamaCausalLMPreprocessor(
        tokenizer=ot.llama_tokenizer(), sequence_length=96
    )
    pairs = [(PROMPT, RESPONSE)] + list(ot.selfinst_examples()[:3])
    # Most trained positions end at word boundaries both sides share.
    assert check_preprocessor_pairing(student, teacher, pairs) > 0.5
