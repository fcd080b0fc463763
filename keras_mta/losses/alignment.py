"""MTA's alignment losses as functions: DSA and HRA at one layer pair.

The layers in `keras_mta.layers` wrap these functions (and own the HRA
projector); the functions are the single implementation of the formulas.
"""

from keras import ops

from keras_mta.losses.shapes import check_alignment_inputs
from keras_mta.losses.token_importance import token_importance
from keras_mta.losses.units import WEIGHT_EPS
from keras_mta.losses.units import normalized_token_weights
from keras_mta.losses.units import pool_units
from keras_mta.losses.units import safe_l2_normalize
from keras_mta.losses.units import unit_membership
from keras_mta.losses.units import unit_weights

COSINE_EPS = 1e-8
HRA_COSINE_EPS = 1e-5


def structural_alignment(
    student_hidden,
    teacher_hidden,
    units,
    padding_mask,
    student_importance=None,
    teacher_importance=None,
    teacher_token_weights=None,
):
    """Dynamic Structural Alignment (DSA) loss of one layer pair.

    In each model, units are pooled from token states with that model's own
    normalized importance, and the cosine-similarity matrices among the units
    of each sample are matched, weighted by the teacher's unit weights:

    ```
    L_DSA = sum_{b, u != v} W_u W_v (C^S_uv - C^T_uv)^2
            / max(sum_{b, u != v} W_u W_v, 1e-5)
    ```

    Args:
        student_hidden: `(batch, seq_len, student_dim)`.
        teacher_hidden: `(batch, seq_len, teacher_dim)`; no gradient flows
            into it.
        units: int `(batch, max_units, 2)` token ranges padded with `[0, 0]`.
        padding_mask: `(batch, seq_len)`.
        student_importance: optional precomputed `token_importance` of the
            student states.
        teacher_importance: optional precomputed `token_importance` of the
            teacher states (e.g. shared with HRA, or read from a cache).
        teacher_token_weights: optional `(batch, seq_len)` weights that
            replace the normalized teacher importance in the unit weights
            `W_u` (entropy weighting). Pooling still uses the importance.

    Returns:
        float32 scalar.

    Raises:
        ValueError: when the shapes disagree (rank, batch or sequence
            length; a size-1 dimension is not broadcast).
    """
    check_alignment_inputs(
        "structural_alignment",
        student_hidden,
        teacher_hidden,
        units,
        padding_mask,
        student_importance=student_importance,
        teacher_importance=teacher_importance,
        teacher_token_weights=teacher_token_weights,
    )
    mask = ops.cast(padding_mask, "float32")
    student_hidden = ops.cast(student_hidden, "float32")
    teacher_hidden = ops.stop_gradient(ops.cast(teacher_hidden, "float32"))
    if student_importance is None:
        student_importance = token_importance(student_hidden, mask)
    if teacher_importance is None:
        teacher_importance = token_importance(teacher_hidden, mask)
    # Importance weights are constants of the loss, also when passed in.
    student_importance = ops.stop_gradient(
        ops.cast(student_importance, "float32")
    )
    teacher_importance = ops.stop_gradient(
        ops.cast(teacher_importance, "float32")
    )
    membership = unit_membership(units, mask)

    w_s = normalized_token_weights(student_importance, membership)
    w_t = normalized_token_weights(teacher_importance, membership)
    z_s = safe_l2_normalize(
        pool_units(student_hidden, w_s, membership), eps=COSINE_EPS
    )
    z_t = safe_l2_normalize(
        pool_units(teacher_hidden, w_t, membership), eps=COSINE_EPS
    )
    sim_s = ops.einsum("bud,bvd->buv", z_s, z_s)
    sim_t = ops.einsum("bud,bvd->buv", z_t, z_t)

    if teacher_token_weights is not None:
        w_t = ops.stop_gradient(ops.cast(teacher_token_weights, "float32"))
    weight = unit_weights(w_t, membership)
    valid = ops.cast(ops.sum(membership, axis=-1) > 0, "float32")
    weight = weight * valid
    num_units = ops.shape(membership)[1]
    off_diag = 1.0 - ops.eye(num_units, dtype="float32")
    pair_weight = weight[:, :, None] * weight[:, None, :] * off_diag[None]
    pair_weight = ops.stop_gradient(pair_weight)
    total = ops.sum(pair_weight * ops.square(sim_s - sim_t))
    return total / ops.maximum(ops.sum(pair_weight), WEIGHT_EPS)


def hidden_alignment(
    projected_student,
    teacher_hidden,
    units,
    padding_mask,
    teacher_importance=None,
    teacher_token_weights=None,
):
    """Hidden Representation Alignment (HRA) loss of one layer pair.

    Over every (token, unit) membership entry of the batch:

    ```
    L_HRA = sum w^T_j (1 - cos(P h^S_j, h^T_j)) / max(sum w^T_j, 1e-5)
    ```

    where `w^T` is the teacher's normalized importance (or the given
    `teacher_token_weights`) and the cosine guards zero norms with eps 1e-5.

    Args:
        projected_student: `(batch, seq_len, teacher_dim)`, the student
            states already mapped by the projector `P`.
        teacher_hidden: `(batch, seq_len, teacher_dim)`; no gradient flows
            into it.
        units: int `(batch, max_units, 2)`.
        padding_mask: `(batch, seq_len)`.
        teacher_importance: optional precomputed teacher `token_importance`.
        teacher_token_weights: optional `(batch, seq_len)` weights that
            replace the normalized teacher importance (entropy weighting).

    Returns:
        float32 scalar.

    Raises:
        ValueError: when the shapes disagree (rank, batch or sequence
            length; a size-1 dimension is not broadcast).
    """
    check_alignment_inputs(
        "hidden_alignment",
        projected_student,
        teacher_hidden,
        units,
        padding_mask,
        student_name="projected_student",
        teacher_importance=teacher_importance,
        teacher_token_weights=teacher_token_weights,
    )
    mask = ops.cast(padding_mask, "float32")
    teacher_hidden = ops.stop_gradient(ops.cast(teacher_hidden, "float32"))
    projected_student = ops.cast(projected_student, "float32")
    membership = unit_membership(units, mask)
    if teacher_token_weights is not None:
        weights = ops.cast(teacher_token_weights, "float32")
    else:
        if teacher_importance is None:
            teacher_importance = token_importance(teacher_hidden, mask)
        weights = normalized_token_weights(
            ops.stop_gradient(ops.cast(teacher_importance, "float32")),
            membership,
        )
    # Each (token, unit) entry counts once: weight token j by its number of
    # units.
    entry_weight = ops.stop_gradient(
        ops.sum(membership, axis=1) * ops.cast(weights, "float32")
    )
    cosine = ops.sum(
        safe_l2_normalize(projected_student, eps=HRA_COSINE_EPS)
        * safe_l2_normalize(teacher_hidden, eps=HRA_COSINE_EPS),
        axis=-1,
    )
    total = ops.sum(entry_weight * (1.0 - cosine))
    return total / ops.maximum(ops.sum(entry_weight), WEIGHT_EPS)
