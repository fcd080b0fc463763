"""SpanMasker: character spans + token offsets to dense token-range units."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from keras_mta.preprocessing import SpanMasker
from keras_mta.preprocessing.span_masker import ragged_pairs
from keras_mta.preprocessing.span_masker import spans_to_units


def to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def reference(spans, offsets, max_units, length, shift=0, slack=0):
    """Loops written from the rule: units, and counts, of one sample."""
    candidates = []
    counts = dict.fromkeys(
        (
            "units",
            "kept",
            "dropped_overflow",
            "dropped_truncation",
            "dropped_empty",
            "clipped",
        ),
        0,
    )
    for cs, ce in spans:
        counts["units"] += 1
        members = [
            j
            for j, (s, e) in enumerate(offsets)
            if s >= 0 and s + slack >= cs and e <= ce
        ]
        if not members:
            counts["dropped_empty"] += 1
            continue
        start, end = members[0] + shift, members[-1] + 1 + shift
        if start >= length:
            counts["dropped_truncation"] += 1
            continue
        if end > length:
            counts["clipped"] += 1
        candidates.append((start, min(end, length)))
    candidates.sort()
    kept = candidates[:max_units]
    counts["kept"] = len(kept)
    counts["dropped_overflow"] = len(candidates) - len(kept)
    units = np.zeros((max_units, 2), dtype=np.int32)
    if kept:
        units[: len(kept)] = kept
    return units, counts


SPANS = [[[0, 4], [4, 7], [8, 12]]]
# "the cat. dog": "the", " cat" (start skips its space), ".", " dog"
OFFSETS = [[[0, 3], [4, 7], [7, 8], [9, 12]]]


def test_rule_by_hand():
    # The docstring example.
    units = SpanMasker(max_units=3, sequence_length=4)(SPANS, OFFSETS)
    assert to_numpy(units).tolist() == [[[0, 1], [1, 2], [3, 4]]]
    assert to_numpy(units).dtype == np.int32

    # A start token shifts the positions; a unit wholly outside the window
    # is dropped and counted.
    masker = SpanMasker(2, 3, position_offset=1, return_counts=True)
    units, counts = masker(SPANS, OFFSETS)
    assert to_numpy(units).tolist() == [[[1, 2], [2, 3]]]
    counts = {k: to_numpy(v).tolist() for k, v in counts.items()}
    assert counts == {
        "units": [3],
        "kept": [2],
        "dropped_overflow": [0],
        "dropped_truncation": [1],
        "dropped_empty": [0],
        "clipped": [0],
    }

    # A unit partly inside the window keeps its part inside.
    units, counts = SpanMasker(4, 2, return_counts=True)([[[0, 12]]], OFFSETS)
    assert to_numpy(units).tolist() == [[[0, 2], [0, 0], [0, 0], [0, 0]]]
    assert to_numpy(counts["clipped"]).tolist() == [1]
    assert to_numpy(counts["dropped_truncation"]).tolist() == [0]

    # Over max_units: the first units are kept, the others counted.
    spans = [[[k, k + 1] for k in range(10)]]
    units, counts = SpanMasker(4, 16, return_counts=True)(spans, spans)
    assert to_numpy(units).tolist() == [[[0, 1], [1, 2], [2, 3], [3, 4]]]
    assert to_numpy(counts["dropped_overflow"]).tolist() == [6]
    assert to_numpy(counts["kept"]).tolist() == [4]

    # A word inside one token ("do" of the token "don") maps to no token.
    units, counts = SpanMasker(3, 8, return_counts=True)(
        [[[0, 2], [0, 5]]], [[[0, 3], [3, 5]]]
    )
    assert to_numpy(units).tolist() == [[[0, 2], [0, 0], [0, 0]]]
    assert to_numpy(counts["dropped_empty"]).tolist() == [1]

    # Tokens without characters ([-1, -1]) belong to no unit.
    units = SpanMasker(2, 8)([[[0, 3], [3, 6]]], [[[-1, -1], [0, 3], [3, 6]]])
    assert to_numpy(units).tolist() == [[[1, 2], [2, 3]]]

    # start_slack=1 on raw offsets is the literal `s + 1 >= cs` rule.
    raw = [[[0, 3], [3, 7]]]  # " cat" starts at its space
    spans = [[[0, 4], [4, 7]]]
    strict = to_numpy(SpanMasker(2, 4)(spans, raw)).tolist()
    slack = to_numpy(SpanMasker(2, 4, start_slack=1)(spans, raw)).tolist()
    assert strict == [[[0, 1], [0, 0]]]
    assert slack == [[[0, 1], [1, 2]]]

    # Units come out sorted whatever the order of the spans.
    units = SpanMasker(3, 4)([[[8, 12], [0, 4], [4, 7]]], OFFSETS)
    assert to_numpy(units).tolist() == [[[0, 1], [1, 2], [3, 4]]]


@pytest.mark.once
def test_input_forms_unbatched_and_empty():
    masker = SpanMasker(3, 4)
    for spans, offsets in [
        (SPANS, OFFSETS),
        (np.array(SPANS), np.array(OFFSETS)),
        (
            tf.ragged.constant(SPANS, ragged_rank=1, inner_shape=(2,)),
            tf.ragged.constant(OFFSETS, ragged_rank=1, inner_shape=(2,)),
        ),
        (tf.ragged.constant(SPANS), tf.ragged.constant(OFFSETS)),
    ]:
        units = masker(spans, offsets)
        assert to_numpy(units).tolist() == [[[0, 1], [1, 2], [3, 4]]]
    masker = SpanMasker(2, 4, return_counts=True)
    units, counts = masker(SPANS[0], OFFSETS[0])
    assert to_numpy(units).tolist() == [[0, 1], [1, 2]]
    assert int(to_numpy(counts["dropped_overflow"])) == 1
    units, counts = masker([], [])
    assert to_numpy(units).tolist() == [[0, 0], [0, 0]]
    units, _ = masker([[], [[0, 3]]], [[[0, 3]], []])
    assert to_numpy(units).shape == (2, 2, 2)
    assert not to_numpy(units).any()


@pytest.mark.once
def test_in_tf_data_and_graph():
    masker = SpanMasker(3, 4, position_offset=1, return_counts=True)
    spans = tf.ragged.constant(
        [SPANS[0], [[0, 3]], []], ragged_rank=1, inner_shape=(2,)
    )
    offsets = tf.ragged.constant(
        [OFFSETS[0], [[0, 3]], [[0, 1]]], ragged_rank=1, inner_shape=(2,)
    )
    ds = tf.data.Dataset.from_tensor_slices({"s": spans, "o": offsets})
    mapped = ds.map(lambda d: masker(d["s"], d["o"])).batch(3)
    batched = ds.batch(3).map(lambda d: masker(d["s"], d["o"]))
    assert batched.element_spec[0].shape.as_list() == [None, 3, 2]
    (units_a, counts_a), (units_b, counts_b) = (
        next(iter(mapped)),
        next(iter(batched)),
    )
    assert units_a.shape == (3, 3, 2) and units_b.dtype == tf.int32
    np.testing.assert_array_equal(units_a, units_b)
    for key in counts_a:
        np.testing.assert_array_equal(counts_a[key], counts_b[key])
    assert units_b.numpy()[0].tolist() == [[1, 2], [2, 3], [0, 0]]
    assert counts_b["dropped_truncation"].numpy().tolist() == [1, 0, 0]


@pytest.mark.once
def test_get_config_round_trip():
    masker = SpanMasker(
        7, 32, position_offset=1, start_slack=1, return_counts=True
    )
    config = masker.get_config()
    for key, value in dict(
        max_units=7,
        sequence_length=32,
        position_offset=1,
        start_slack=1,
        return_counts=True,
    ).items():
        assert config[key] == value
    clone = SpanMasker.from_config(config)
    assert clone.get_config() == config
    units, _ = clone(SPANS, OFFSETS)
    expected, _ = masker(SPANS, OFFSETS)
    np.testing.assert_array_equal(to_numpy(units), to_numpy(expected))
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(masker)
    )
    assert isinstance(restored, SpanMasker)
    assert restored.get_config() == config


@pytest.mark.once
def test_bad_arguments():
    with pytest.raises(ValueError, match="max_units"):
        SpanMasker(0, 4)
    with pytest.raises(TypeError, match="sequence_length"):
        SpanMasker(2, 4.5)
    with pytest.raises(ValueError, match="position_offset"):
        SpanMasker(2, 4, position_offset=-1)
    masker = SpanMasker(2, 4)
    with pytest.raises(ValueError, match="last dimension"):
        masker([[[0, 1, 2]]], OFFSETS)
    with pytest.raises(TypeError, match="integer"):
        masker([[[0.5, 1.0]]], OFFSETS)
    with pytest.raises(ValueError, match="both"):
        masker(SPANS[0], OFFSETS)


@st.composite
def samples(draw):
    """Sorted token offsets over a text, and spans over it."""
    length = draw(st.integers(0, 40))
    cuts = sorted(draw(st.lists(st.integers(0, length), max_size=30)))
    offsets = []
    previous = 0
    for cut in cuts:
        offsets.append([previous, cut])  # may be zero-width
        previous = cut
    offsets = [
        o if o[1] > o[0] or draw(st.booleans()) else [-1, -1] for o in offsets
    ]
    if draw(st.booleans()):
        offsets = [[-1, -1]] + offsets
    spans = draw(
        st.lists(
            st.tuples(st.integers(0, length), st.integers(0, length)).map(
                lambda p: [min(p), max(p)]
            ),
            max_size=25,
        )
    )
    return spans, offsets


@pytest.mark.once
@settings(max_examples=50, deadline=None)
@given(
    batch=st.lists(samples(), min_size=1, max_size=4),
    max_units=st.integers(1, 8),
    length=st.integers(1, 24),
    shift=st.integers(0, 2),
    slack=st.integers(0, 1),
)
def test_property_matches_reference_loops(
    batch, max_units, length, shift, slack
):
    # The layer's computation, run eagerly (a layer per example would trace
    # a graph per example).
    spans, _ = ragged_pairs([s for s, _ in batch])
    offsets, _ = ragged_pairs([o for _, o in batch])
    units, counts = spans_to_units(
        spans,
        offsets,
        max_units=max_units,
        sequence_length=length,
        position_offset=shift,
        start_slack=slack,
    )
    units = to_numpy(units)
    counts = {k: to_numpy(v) for k, v in counts.items()}
    assert units.shape == (len(batch), max_units, 2)
    for b, (row_spans, row_offsets) in enumerate(batch):
        expected, expected_counts = reference(
            row_spans, row_offsets, max_units, length, shift, slack
        )
        np.testing.assert_array_equal(units[b], expected)
        for key, value in expected_counts.items():
            assert counts[key][b] == value, key
        # Invariants: sorted, non-empty, inside the window, [0, 0] padding.
        kept = expected_counts["kept"]
        real = units[b, :kept]
        assert (real[:, 0] < real[:, 1]).all()
        assert (real[:, 1] <= length).all() and (real[:, 0] >= shift).all()
        assert (np.diff(real[:, 0]) >= 0).all()
        assert not units[b, kept:].any()
        total = sum(
            expected_counts[k]
            for k in (
                "kept",
                "dropped_overflow",
                "dropped_truncation",
                "dropped_empty",
            )
        )
        assert total == len(row_spans)
