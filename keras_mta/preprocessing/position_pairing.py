"""Pairing the student's positions with the teacher's across tokenizers.

Logit distillation across vocabularies (`keras_mta.losses.cross_vocabulary`)
compares, at each trained student position, the student's next-token law
with the teacher's at a teacher position that predicts the continuation of
the same text. Positions are paired through the character offsets of the
tokens (`tokenize_with_offsets`), never by index.

The rule. Position `p` of a side reads the packed tokens `0 .. p` and
predicts token `p + 1`. Its *context end* is the number of characters of
`prompt + response` it has read: the end offset of the text token at `p`,
0 for a start token. Student position `i` pairs with the teacher position
`j` that has the same context end, so both predict the continuation of
exactly the same text prefix:

```
teacher_positions[b, i] = j   if context_end_S[b, i] == context_end_T[b, j]
                              and both positions are trained (response)
                        = -1  otherwise
```

- A context end is undefined (-1, never paired) for positions that read an
  end or padding token, a token without offsets, or a token whose end
  equals the next token's end (a byte-level token holding part of a
  character: the position after it has read the whole character).
  Defined context ends therefore increase strictly along a sequence, and a
  student position has at most one partner.
- Where one side cuts a word into several tokens (`un|believ|able`
  against `unbelievable`), only the position after the last piece
  pairs: the positions inside the word have read a prefix the other side
  never stops at, and get -1.
- Response-only masking holds on both sides: a student position pairs only
  when its own target and the teacher's target at `j` are trained (their
  `sample_weight` is > 0), so a response position never pairs with a
  prompt, padding, or truncated-away teacher position. The positions that
  predict the end token on both sides pair (both have read the whole
  text).

Why this rule: ULD's reference code pairs the k-th response position of
each side, which drifts as soon as the tokenizations cut the text
differently; pairing the positions that have read the same text, as the
alignment groups of TRL's cross-tokenizer (GOLD) trainer do by comparing
decoded prefixes, compares two conditional laws of the same context. The
context end is taken from the token end offsets, which whitespace
conventions do not move (a byte-pair `" cat"` and a SentencePiece
`"▁cat"` both end after `t`; WordPiece drops the space but also ends
there), unlike start offsets.
"""

from keras_mta.imports import import_optional

tf = import_optional("tensorflow", "keras_mta.preprocessing")

NO_PARTNER = -1


def context_ends(offsets, sequence_length, start):
    """The context end of every packed position, `(batch, sequence_length)`.

    Args:
        offsets: int32 ragged `(batch, None, 2)`: each text token's
            `[start, end)` characters (`tokenize_with_offsets`), `-1` where
            a token has none.
        sequence_length: int, the positions of `token_ids`.
        start: 0 or 1, whether the packer adds a start token.

    Returns:
        int32 `(batch, sequence_length)`: the characters read once position
        `p` is read (0 for a start token), -1 where undefined (see the
        module docstring).
    """
    offsets = tf.cast(offsets, "int32")
    ends = offsets.values[:, 1]
    rows = offsets.value_rowids()
    next_ends = tf.concat([ends[1:], [NO_PARTNER]], axis=0)
    same_row = tf.concat([rows[1:] == rows[:-1], [False]], axis=0)
    closes = (ends >= 0) & ~(same_row & (next_ends == ends))
    ends = offsets.with_values(tf.where(closes, ends, NO_PARTNER))
    batch = offsets.nrows(out_type="int32")
    # Positions read the start token (if any), then the text tokens: past
    # the kept text tokens come the end and padding tokens (-1).
    text = ends.to_tensor(
        default_value=NO_PARTNER, shape=[None, sequence_length - start]
    )
    if not start:
        return text
    return tf.concat([tf.zeros([batch, 1], "int32"), text], axis=1)


def pair_positions(
    student_context_ends, student_weight, teacher_context_ends, teacher_weight
):
    """`teacher_positions`: the teacher position paired with each student
    position, -1 where none (the rule of the module docstring).

    Args:
        student_context_ends: int `(batch, student_seq_len)`, from
            `context_ends`.
        student_weight: `(batch, student_seq_len)` sample weights of the
            student's targets; a position of weight 0 is not paired.
        teacher_context_ends: int `(batch, teacher_seq_len)`.
        teacher_weight: `(batch, teacher_seq_len)` sample weights of the
            teacher's targets; a position of weight 0 is no partner.

    Returns:
        int32 `(batch, student_seq_len)` in `[-1, teacher_seq_len)`.

    Examples:

    >>> pair_positions([[0, 3, 7, 9]], [[1, 1, 1, 0]],
    ...                [[0, 7, 9]], [[1, 1, 1]]).numpy().tolist()
    [[0, -1, 1, -1]]
    """
    student_ends = tf.cast(student_context_ends, "int32")
    teacher_ends = tf.cast(teacher_context_ends, "int32")
    student_valid = (student_ends >= 0) & (
        tf.cast(student_weight, "float32") > 0
    )
    teacher_valid = (teacher_ends >= 0) & (
        tf.cast(teacher_weight, "float32") > 0
    )
    length = tf.shape(teacher_ends)[1]
    positions = tf.broadcast_to(
        tf.range(length, dtype="int32")[None, :], tf.shape(teacher_ends)
    )
    # The valid teacher ends, strictly increasing, moved to the front of
    # each row; the rest padded with a value above every end.
    big = tf.int32.max
    sorted_ends = tf.ragged.boolean_mask(teacher_ends, teacher_valid)
    sorted_positions = tf.ragged.boolean_mask(positions, teacher_valid)
    shape = [None, teacher_ends.shape[1]]
    sorted_ends = sorted_ends.to_tensor(default_value=big, shape=shape)
    sorted_positions = sorted_positions.to_tensor(
        default_value=NO_PARTNER, shape=shape
    )
    index = tf.searchsorted(sorted_ends, student_ends, side="left")
    index = tf.minimum(index, length - 1)
    found = student_valid & (
        tf.gather(sorted_ends, index, batch_dims=1) == student_ends
    )
    paired = tf.gather(sorted_positions, index, batch_dims=1)
    return tf.where(found, paired, NO_PARTNER)
