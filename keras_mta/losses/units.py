"""Semantic units as token ranges: membership, weights and pooling.

A unit is a contiguous token range `[start, end)`. Units come as an int32
tensor of shape `(batch, max_units, 2)`, padded with `[0, 0]`. A token `t`
belongs to unit `u` when `start_u <= t < end_u` and the token is real
(`padding_mask[t] == 1`). Everything here is static-shaped: the ragged
structure lives only in the `(batch, max_units, seq_len)` membership matrix.
"""

import numpy as np
from keras import ops

WEIGHT_EPS = 1e-5


def unit_membership(units, padding_mask):
    """Dense membership matrix of tokens in units.

    Args:
        units: int tensor of shape `(batch, max_units, 2)` of `[start, end)`
            token ranges, padded with `[0, 0]`.
        padding_mask: tensor of shape `(batch, seq_len)`.

    Returns:
        float32 tensor `M` of shape `(batch, max_units, seq_len)` with
        `M[b, u, t] = 1` when token `t` belongs to unit `u` of sample `b`.
    """
    units = ops.cast(units, "int32")
    mask = ops.cast(padding_mask, "float32")
    seq_len = ops.shape(mask)[1]
    positions = ops.arange(seq_len, dtype="int32")[None, None, :]
    starts = units[:, :, 0:1]
    ends = units[:, :, 1:2]
    inside = ops.logical_and(positions >= starts, positions < ends)
    return ops.cast(inside, "float32") * mask[:, None, :]


def normalized_token_weights(importance, membership):
    """Per-sample normalization of token weights over in-unit entries.

    `w_j = a_j / max(sum over (token, unit) memberships of a, 1e-5)`: a token
    that belongs to several units is counted once per unit in the sum.

    Args:
        importance: tensor of shape `(batch, seq_len)`.
        membership: tensor of shape `(batch, max_units, seq_len)` from
            `unit_membership`.

    Returns:
        float32 tensor of shape `(batch, seq_len)`.
    """
    importance = ops.cast(importance, "float32")
    total = ops.sum(membership * importance[:, None, :], axis=(1, 2))
    return importance / ops.maximum(total, WEIGHT_EPS)[:, None]


def pool_units(hidden, weights, membership):
    """Weighted mean of token states inside each unit.

    `z_u = sum_{j in u} w_j h_j / max(sum_{j in u} w_j, 1e-5)`, computed as one
    batched matmul over the membership matrix.

    Args:
        hidden: tensor of shape `(batch, seq_len, dim)`.
        weights: tensor of shape `(batch, seq_len)`.
        membership: tensor of shape `(batch, max_units, seq_len)`.

    Returns:
        float32 tensor of shape `(batch, max_units, dim)`; units with no
        token are zero vectors.
    """
    hidden = ops.cast(hidden, "float32")
    weighted = membership * ops.cast(weights, "float32")[:, None, :]
    sums = ops.einsum("but,btd->bud", weighted, hidden)
    norms = ops.sum(weighted, axis=-1, keepdims=True)
    return sums / ops.maximum(norms, WEIGHT_EPS)


def unit_weights(weights, membership):
    """Unit weight `W_u = sum_{j in u} w_j`, shape `(batch, max_units)`."""
    return ops.sum(membership * ops.cast(weights, "float32")[:, None, :], -1)


def safe_l2_normalize(x, axis=-1, eps=1e-8):
    """`x / ||x||`, scale-free, and 0 with a finite gradient at `x = 0`.

    Each vector is first divided by its largest absolute entry (a constant
    of the gradient), so its norm lies in `[1, sqrt(dim)]`: states of any
    scale, 1e-10 or 1e20, give the exact unit vector (the norm of the raw
    vector would underflow below `eps` or overflow to inf in float32). Only
    an exact zero vector is left at zero; `eps` guards it
    (`y / max(||y||, eps)`), so its gradient is finite.
    """
    scale = ops.stop_gradient(ops.max(ops.abs(x), axis=axis, keepdims=True))
    x = x / ops.where(scale > 0, scale, ops.ones_like(scale))
    squared = ops.sum(ops.square(x), axis=axis, keepdims=True)
    return x * ops.rsqrt(ops.maximum(squared, eps * eps))


def check_units_in_sequence(units, seq_len, name="units"):
    """Raise if a concrete unit ends past the sequence end.

    A unit `[start, end)` with `end > seq_len` would lose its tokens past
    the end without a message (and a layer pair's DSA and HRA would be 0
    when none is left). This reads values, so it runs on concrete (NumPy)
    arrays only, before training; inside a compiled step it cannot raise.
    keras_mta's span preprocessing clips such units and counts them.

    Args:
        units: NumPy int array `(batch, max_units, 2)`.
        seq_len: int, the sequence length of the batch.
        name: the input's name, for the message.

    Raises:
        ValueError: naming the input, the sample, the unit and its end.
    """
    units = np.asarray(units)
    bad = np.argwhere(units[..., 1] > int(seq_len))
    if len(bad):
        b, u = (int(i) for i in bad[0])
        raise ValueError(
            f"`{name}`[{b}, {u}] = {units[b, u].tolist()} ends past the "
            f"sequence length {int(seq_len)} ({len(bad)} such units). "
            "Produce units and token ids with the same `sequence_length` "
            "(keras_mta's span preprocessing clips them and counts the "
            "clipped ones)."
        )
