"""`SpanMasker`: character spans to the token-range units of MTA."""

import keras
import numpy as np
from keras_hub.src.layers.preprocessing.preprocessing_layer import (
    PreprocessingLayer,
)
from keras_hub.src.utils.tensor_utils import convert_preprocessing_outputs

from keras_mta.imports import import_optional

tf = import_optional("tensorflow", "keras_mta.preprocessing")


@keras.saving.register_keras_serializable(package="keras_mta")
class SpanMasker(PreprocessingLayer):
    """Character spans to dense token-range `units`, overflow counted.

    A preprocessing layer (TensorFlow ops, usable inside `tf.data` maps like
    keras-hub preprocessors) that turns ragged character spans (phrases or
    words, from `PhraseChunker`) plus the character offsets of the tokens
    (from `keras_mta.preprocessing.tokenize_with_offsets`) into the int32
    `units` tensor of the MTA losses: `(batch, max_units, 2)` token ranges
    `[start, end)` in the model sequence, padded with `[0, 0]`.

    ```
    member(u, j) = cs_u <= s_j + start_slack  and  e_j <= ce_u
    range(u)     = [min_j + p, max_j + 1 + p)  over members j of u;
                   p = position_offset
    ```

    A unit `[cs, ce)` holds the tokens `j` whose characters `[s_j, e_j)` lie
    inside it. Give the layer token starts that skip the token's leading
    whitespace (`tokenize_with_offsets(..., skip_leading_whitespace=True)`)
    and the default `start_slack=0`: the byte-pair token `" cat"` then
    belongs to the word `"cat"`. (With raw starts, `start_slack=1` is the
    rule `s_j + 1 >= cs` for such a token; it also pulls a one-character
    token just before the unit, such as an opening quote, into it.) Tokens
    with offsets `[-1, -1]` (start/end tokens) belong to no unit. The token
    offsets of a sample must be sorted (starts and ends non-decreasing), as
    `tokenize_with_offsets` returns them; the members of a unit then form a
    contiguous range.

    Then, per sample:
    - a unit with no token is dropped (`dropped_empty`);
    - token `j` sits at position `j + position_offset`; positions from
      `sequence_length` on are cut off: a unit wholly outside is dropped
      (`dropped_truncation`), one partly inside keeps its part inside
      (`clipped`);
    - the remaining units are sorted by `(start, end)`; the first `max_units`
      are kept (`kept`), the others dropped (`dropped_overflow`).

    Args:
        max_units: int. Static number of unit rows of the output.
        sequence_length: int. Length of the model sequence (the window).
        position_offset: int. Position in the model sequence of the first
            token of `token_offsets` (1 when a start token is prepended).
            Defaults to `0`.
        start_slack: int. Slack on the start test, see above. Defaults to
            `0`.
        return_counts: bool. If `True`, `call` returns `(units, counts)`
            where `counts` maps `"units"`, `"kept"`, `"dropped_overflow"`,
            `"dropped_truncation"`, `"dropped_empty"` and `"clipped"` to
            int32 tensors of shape `(batch,)` (scalars for unbatched input).
            Defaults to `False`.

    Call arguments:
        spans: int `(batch, None, 2)` ragged character spans `[cs, ce)`, or
            `(None, 2)` for one sample. A `tf.RaggedTensor`, a dense tensor
            or nested Python lists.
        token_offsets: int `(batch, None, 2)` ragged character offsets
            `[s, e)` of the tokens, or `(None, 2)` for one sample.

    Returns:
        int32 `units` of shape `(batch, max_units, 2)` (or `(max_units, 2)`),
        and the counts when `return_counts=True`.

    Examples:

    >>> masker = SpanMasker(max_units=3, sequence_length=4)
    >>> spans = [[[0, 4], [4, 7], [8, 12]]]
    >>> offsets = [[[0, 3], [4, 7], [7, 8], [9, 12]]]  # "the| cat|.| dog"
    >>> keras.ops.convert_to_numpy(masker(spans, offsets)).tolist()
    [[[0, 1], [1, 2], [3, 4]]]

    With a start token and a short window, units are cut and counted:

    >>> masker = SpanMasker(2, 3, position_offset=1, return_counts=True)
    >>> units, counts = masker(spans, offsets)
    >>> keras.ops.convert_to_numpy(units).tolist()
    [[[1, 2], [2, 3]]]
    >>> int(counts["dropped_truncation"][0])
    1

    References:
        - Multi-Granular Trajectory Alignment for LLM distillation
          (ACL 2026, arXiv 2605.01374).
    """

    def __init__(
        self,
        max_units,
        sequence_length,
        position_offset=0,
        start_slack=0,
        return_counts=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, value, low in (
            ("max_units", max_units, 1),
            ("sequence_length", sequence_length, 1),
            ("position_offset", position_offset, 0),
            ("start_slack", start_slack, 0),
        ):
            if isinstance(value, bool) or not isinstance(
                value, (int, np.integer)
            ):
                raise TypeError(
                    f"`{name}` must be an int. Received: {name}={value!r}."
                )
            if value < low:
                raise ValueError(
                    f"`{name}` must be >= {low}. Received: {name}={value}."
                )
        self.max_units = int(max_units)
        self.sequence_length = int(sequence_length)
        self.position_offset = int(position_offset)
        self.start_slack = int(start_slack)
        self.return_counts = bool(return_counts)
        self.built = True

    def call(self, spans, token_offsets):
        eager = tf.executing_eagerly()
        with tf.device("cpu"):
            spans, unbatched = ragged_pairs(spans, "spans")
            token_offsets, unbatched_offsets = ragged_pairs(
                token_offsets, "token_offsets"
            )
            if unbatched != unbatched_offsets:
                raise ValueError(
                    "`spans` and `token_offsets` must both be batched or "
                    "both be one sample. Received ranks "
                    f"{spans.shape.rank - unbatched} and "
                    f"{token_offsets.shape.rank - unbatched_offsets}."
                )
            units, counts = spans_to_units(
                spans,
                token_offsets,
                max_units=self.max_units,
                sequence_length=self.sequence_length,
                position_offset=self.position_offset,
                start_slack=self.start_slack,
            )
            if unbatched:
                units = units[0]
                counts = {k: v[0] for k, v in counts.items()}
            outputs = (units, counts) if self.return_counts else units
        if eager:
            return convert_preprocessing_outputs(outputs)
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "max_units": self.max_units,
                "sequence_length": self.sequence_length,
                "position_offset": self.position_offset,
                "start_slack": self.start_slack,
                "return_counts": self.return_counts,
            }
        )
        return config


def spans_to_units(
    spans,
    token_offsets,
    max_units,
    sequence_length,
    position_offset=0,
    start_slack=0,
):
    """The computation of `SpanMasker` on batched ragged tensors.

    Flat (no padding): each unit's first member is found with one
    `searchsorted` over the token starts and its last with one over the
    token ends, so the token offsets of a row must be sorted (starts and
    ends non-decreasing, as `tokenize_with_offsets` returns them); tokens
    at `[-1, -1]` may sit anywhere.

    Args:
        spans: int `tf.RaggedTensor` `(batch, None, 2)` of character spans.
        token_offsets: int `tf.RaggedTensor` `(batch, None, 2)` of token
            character offsets.
        max_units, sequence_length, position_offset, start_slack: see
            `SpanMasker`.

    Returns:
        `(units, counts)`: int32 `(batch, max_units, 2)` and a dict of int32
        `(batch,)` counts (keys `COUNT_KEYS`).
    """
    ranges = span_token_ranges(
        spans,
        token_offsets,
        sequence_length,
        position_offset=position_offset,
        start_slack=start_slack,
    )
    candidate = ranges["candidate"]
    (units,), kept = select_units(
        spans, candidate, [ranges], max_units, sequence_length
    )
    counts = {
        "units": tf.cast(spans.row_lengths(), "int32"),
        "kept": kept,
        "dropped_overflow": count_per_row(spans, candidate) - kept,
        "dropped_truncation": count_per_row(
            spans, ranges["has_token"] & ~ranges["inside"]
        ),
        "dropped_empty": count_per_row(spans, ~ranges["has_token"]),
        "clipped": count_per_row(spans, ranges["clipped"]),
    }
    return units, counts


def span_token_ranges(
    spans,
    token_offsets,
    sequence_length,
    position_offset=0,
    start_slack=0,
):
    """The token range of every span (flat, one entry per `spans.values`).

    Args:
        spans, token_offsets, sequence_length, position_offset,
            start_slack: see `spans_to_units`.

    Returns:
        A dict of `(num_spans,)` tensors: `start` and `end` (int64 positions
        in the model sequence, `end` clipped to `sequence_length`),
        `has_token` (the span holds a token), `inside` (its first token lies
        in the window), `candidate` (both) and `clipped` (a candidate cut
        by the window).
    """
    spans = tf.cast(spans, "int64")
    token_offsets = tf.cast(token_offsets, "int64")
    cs = spans.values[:, 0]
    ce = spans.values[:, 1]
    span_rows = spans.value_rowids()
    ts = token_offsets.values[:, 0]
    te = token_offsets.values[:, 1]
    token_rows = token_offsets.value_rowids()
    num_tokens = tf.shape(ts, out_type="int64")[0]
    token_row_starts = token_offsets.row_splits[:-1]
    valid = ts >= 0

    # Keys `row * span + value` order tokens by row, then by offset.
    zero = tf.zeros([1], "int64")
    span = tf.reduce_max(tf.concat([cs, ce, ts, te, zero], 0)) + 2
    index = tf.range(num_tokens)
    valid_index = tf.boolean_mask(index, valid)
    padded = tf.concat([valid_index, [-1]], 0)
    following = tf.gather(
        padded, tf.searchsorted(valid_index, index, side="left")
    )
    preceding = tf.searchsorted(valid_index, index, side="right") - 1
    preceding = tf.gather(
        padded,
        tf.where(preceding < 0, tf.shape(valid_index)[0], preceding),
    )
    following_ok = (following >= 0) & tf.equal(
        tf.gather(token_rows, tf.maximum(following, 0)), token_rows
    )
    preceding_ok = (preceding >= 0) & tf.equal(
        tf.gather(token_rows, tf.maximum(preceding, 0)), token_rows
    )
    # Tokens without characters take the next start and the previous end:
    # the keys stay sorted and such tokens are stepped over below.
    start_filled = tf.where(
        valid,
        ts,
        tf.where(
            following_ok, tf.gather(ts, tf.maximum(following, 0)), span - 1
        ),
    )
    end_filled = tf.where(
        valid,
        te,
        tf.where(preceding_ok, tf.gather(te, tf.maximum(preceding, 0)), 0),
    )
    start_keys = token_rows * span + start_filled
    end_keys = token_rows * span + end_filled

    lower = tf.maximum(cs - start_slack, 0)
    first = tf.searchsorted(
        start_keys, span_rows * span + lower, side="left", out_type="int64"
    )
    last = (
        tf.searchsorted(
            end_keys, span_rows * span + ce, side="right", out_type="int64"
        )
        - 1
    )
    row_start = tf.gather(token_row_starts, span_rows)
    row_end = tf.gather(token_offsets.row_splits[1:], span_rows)
    first_in_row = (first < row_end) & (first >= row_start)
    last_in_row = (last >= row_start) & (last < row_end)
    first = tf.clip_by_value(first, 0, tf.maximum(num_tokens - 1, 0))
    last = tf.clip_by_value(last, 0, tf.maximum(num_tokens - 1, 0))
    first_valid = _gather_or(following, first, -1)
    last_valid = _gather_or(preceding, last, -1)
    has_token = (
        first_in_row
        & last_in_row
        & (first_valid >= row_start)
        & (last_valid >= row_start)
        & (first_valid < row_end)
        & (last_valid < row_end)
        & (first_valid <= last_valid)
    )
    start = first_valid - row_start + position_offset
    end = last_valid - row_start + 1 + position_offset
    inside = start < sequence_length
    candidate = has_token & inside
    clipped = candidate & (end > sequence_length)
    end = tf.minimum(end, sequence_length)
    return {
        "start": start,
        "end": end,
        "has_token": has_token,
        "inside": inside,
        "candidate": candidate,
        "clipped": clipped,
    }


def select_units(spans, candidate, ranges, max_units, sequence_length):
    """The first `max_units` candidate spans of each row, as units.

    The candidates are sorted by `(row, start, end)` of `ranges[0]` (stable:
    ties keep the spans' order), and the same spans are taken from every
    entry of `ranges`, so that row `u` of every output is the same span.

    Args:
        spans: the int `tf.RaggedTensor` `(batch, None, 2)` of spans.
        candidate: bool `(num_spans,)`, the spans that may be kept.
        ranges: list of dicts with the `start` and `end` of every span (as
            `span_token_ranges` returns them), one per model.
        max_units, sequence_length: see `SpanMasker`.

    Returns:
        `(units, kept)`: a list of int32 `(batch, max_units, 2)`, one per
        entry of `ranges`, and the int32 `(batch,)` number of units kept.
    """
    batch = tf.shape(spans.row_splits, out_type="int64")[0] - 1
    span_rows = spans.value_rowids()
    start, end = ranges[0]["start"], ranges[0]["end"]
    length = sequence_length + 1
    key = (span_rows * length + start) * length + end
    key = tf.where(candidate, key, tf.int64.max)
    order = tf.argsort(key, stable=True)
    num_candidates = tf.math.unsorted_segment_sum(
        tf.cast(candidate, "int64"), span_rows, batch
    )
    rows = tf.gather(span_rows, order)
    rank = tf.range(tf.shape(order, out_type="int64")[0]) - tf.gather(
        tf.cumsum(num_candidates, exclusive=True), rows
    )
    # Non-candidates sort last: past their row's candidates in the order.
    keep = tf.gather(candidate, order) & (rank < max_units)
    indices = tf.stack(
        [tf.boolean_mask(rows, keep), tf.boolean_mask(rank, keep)], -1
    )
    units = []
    for side in ranges:
        pairs = tf.stack(
            [tf.gather(side["start"], order), tf.gather(side["end"], order)],
            -1,
        )
        side_units = tf.scatter_nd(
            indices,
            tf.cast(tf.boolean_mask(pairs, keep), "int32"),
            tf.stack([batch, max_units, 2]),
        )
        units.append(tf.ensure_shape(side_units, [None, max_units, 2]))
    kept = tf.cast(tf.minimum(num_candidates, max_units), "int32")
    return units, kept


def count_per_row(spans, mask):
    """The int32 `(batch,)` number of spans of each row where `mask`."""
    batch = tf.shape(spans.row_splits, out_type="int64")[0] - 1
    return tf.cast(
        tf.math.unsorted_segment_sum(
            tf.cast(mask, "int64"), spans.value_rowids(), batch
        ),
        "int32",
    )


def _gather_or(values, indices, default):
    padded = tf.concat(
        [values, tf.fill([1], tf.cast(default, values.dtype))], 0
    )
    return tf.gather(padded, indices)


def ragged_pairs(x, name="spans"):
    """Spans or offsets in any form as an int32 ragged `(batch, None, 2)`.

    Accepts a `tf.RaggedTensor` (ragged rank 1 or 2), a dense tensor or
    array of shape `(batch, n, 2)` or `(n, 2)`, or nested Python lists.

    Returns:
        `(pairs, unbatched)`: the ragged tensor, and whether the input was
        one sample (then `pairs` has a batch of one).
    """
    if isinstance(x, tf.RaggedTensor):
        if x.shape.rank != 3:
            raise ValueError(
                f"`{name}` must have shape (batch, None, 2) or (None, 2). "
                f"Received a ragged tensor of shape {x.shape}."
            )
        if x.ragged_rank > 1:
            x = tf.RaggedTensor.from_row_splits(
                x.values.to_tensor(shape=[None, 2]), x.row_splits
            )
        _check_pair_dim(x.flat_values, name)
        return tf.cast(x.with_row_splits_dtype("int64"), "int32"), False
    if not isinstance(x, tf.Tensor):
        if isinstance(x, (list, tuple)):
            try:
                array = np.asarray(x)
            except ValueError:
                array = None
            if array is None or array.dtype == object:
                x = tf.ragged.constant(
                    x, dtype="int32", ragged_rank=1, inner_shape=(2,)
                )
                return ragged_pairs(x, name)
            x = array
        x = keras.ops.convert_to_numpy(x) if keras.ops.is_tensor(x) else x
        x = np.asarray(x)
        if x.size == 0:
            x = x.astype("int32")
            if x.ndim == 1:  # one sample without pairs
                x = x.reshape((0, 2))
            elif x.ndim == 2 and x.shape[-1] == 0:  # rows without pairs
                x = x.reshape((x.shape[0], 0, 2))
        if x.dtype.kind not in "iu":
            raise TypeError(
                f"`{name}` must hold integer character offsets. Received "
                f"dtype {x.dtype}."
            )
        x = tf.convert_to_tensor(x.astype("int32"))
    if not x.dtype.is_integer:
        raise TypeError(
            f"`{name}` must hold integer character offsets. Received dtype "
            f"{x.dtype}."
        )
    if x.shape.rank == 2:
        _check_pair_dim(x, name)
        return tf.RaggedTensor.from_tensor(tf.cast(x, "int32")[None]), True
    if x.shape.rank == 3:
        _check_pair_dim(x, name)
        return tf.RaggedTensor.from_tensor(tf.cast(x, "int32")), False
    raise ValueError(
        f"`{name}` must have shape (batch, None, 2) or (None, 2). Received "
        f"shape {x.shape}."
    )


def _check_pair_dim(x, name):
    if x.shape[-1] is not None and x.shape[-1] != 2:
        raise ValueError(
            f"The last dimension of `{name}` must be 2 (`[start, end)`). "
            f"Received shape {x.shape}."
        )
