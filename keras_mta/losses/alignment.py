"""MTA's alignment losses as functions: DSA and HRA at one layer pair.

The layers in `keras_mta.layers` wrap these functions (and own the HRA
projector); the functions are the single implementation of the formulas.
"""

from keras import ops

from keras_mta.losses.shapes import check_alignment_inputs
from keras_mta.losses.shapes import check_shape
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
    teacher_units=None,
    teacher_padding_mask=None,
):
    """Dynamic Structural Alignment (DSA) loss of one layer pair.

    In each model, units are pooled from token states with that model's own
    normalized importance, and the cosine-similarity matrices among the units
    of each sample are matched, weighted by the teacher's unit weights:

    ```
    L_DSA = sum_{b, u != v} W_u W_v (C^S_uv - C^T_uv)^2
            / max(sum_{b, u != v} W_u W_v, 1e-5)
    ```

    Across tokenizers (`teacher_units` given) the formula is the same: unit
    `u` is one character span, pooled on each side from that model's own
    tokens (`units` on the student's, `teacher_units` on the teacher's) with
    its own importance, and `W_u` comes from the teacher's tokens; a unit
    counts where it holds a token on both sides. The two sequence lengths
    may differ; the unit rows are paired (`DistillationPreprocessor`).

    Args:
        student_hidden: `(batch, seq_len, student_dim)`.
        teacher_hidden: `(batch, seq_len, teacher_dim)` (or `(batch,
            teacher_seq_len, teacher_dim)` with `teacher_units`); no
            gradient flows into it.
        units: int `(batch, max_units, 2)` token ranges padded with `[0, 0]`.
        padding_mask: `(batch, seq_len)`.
        student_importance: optional precomputed `token_importance` of the
            student states.
        teacher_importance: optional precomputed `token_importance` of the
            teacher states (e.g. shared with HRA, or read from a cache).
        teacher_token_weights: optional `(batch, seq_len)` weights that
            replace the normalized teacher importance in the unit weights
            `W_u` (entropy weighting). Pooling still uses the importance.
        teacher_units: optional int `(batch, max_units, 2)`, the same units
            as token ranges of the teacher's tokens (a teacher with its own
            tokenizer); None: the teacher reads the student's tokens.
        teacher_padding_mask: `(batch, teacher_seq_len)`, with
            `teacher_units`.

    Returns:
        float32 scalar.

    Raises:
        ValueError: when the shapes disagree (rank, batch or sequence
            length; a size-1 dimension is not broadcast).
    """
    sides = _unit_sides(
        "structural_alignment",
        student_hidden,
        teacher_hidden,
        units,
        padding_mask,
        student_importance,
        teacher_importance,
        teacher_token_weights,
        teacher_units,
        teacher_padding_mask,
    )
    z_s = safe_l2_normalize(sides["student_units"], eps=COSINE_EPS)
    z_t = safe_l2_normalize(sides["teacher_units"], eps=COSINE_EPS)
    sim_s = ops.einsum("bud,bvd->buv", z_s, z_s)
    sim_t = ops.einsum("bud,bvd->buv", z_t, z_t)
    weight = sides["unit_weights"]
    membership = sides["membership"]
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


def unit_hidden_alignment(
    student_hidden,
    teacher_hidden,
    units,
    padding_mask,
    teacher_units=None,
    teacher_padding_mask=None,
    projector=None,
    student_importance=None,
    teacher_importance=None,
    teacher_token_weights=None,
):
    """Hidden Representation Alignment at the unit level (HRA across
    tokenizers).

    Token-to-token HRA needs one token per position on both sides, which a
    teacher with its own tokenizer does not give. Unit `u` (one character
    span) exists on both sides, so the states are pooled into unit vectors
    first, each side from its own tokens with its own normalized importance
    (as DSA pools them), and the projected student unit vector is compared
    with the teacher's:

    ```
    z^S_u = sum_{j in u} w^S_j h^S_j / sum_{j in u} w^S_j   # student tokens
    z^T_u = sum_{i in u} w^T_i h^T_i / sum_{i in u} w^T_i   # teacher tokens
    W_u   = sum_{i in u} w^T_i                              # teacher weights
    L_HRA = sum_{b, u} W_u (1 - cos(P z^S_u, z^T_u)) / max(sum W_u, 1e-5)
    ```

    over the units that hold a token on both sides; the cosine guards zero
    norms with eps 1e-5, as token-level HRA. `P` (the pair's projector) is
    applied to the pooled student vector, as the MTA authors' DSKD v2 port
    projects student unit vectors before comparing. For an affine `P` (a
    `Dense` with bias) this equals pooling the projected token states,
    since the pooling weights of a unit sum to 1, at `max_units` instead
    of `seq_len` projections. `W_u` is the teacher's, as in token-level
    HRA (the teacher says which text matters). With one tokenizer, keep
    token-level HRA (`hidden_alignment`): it is the paper's formula.

    Args:
        student_hidden: `(batch, seq_len, student_dim)`.
        teacher_hidden: `(batch, teacher_seq_len, teacher_dim)`; no gradient
            flows into it.
        units: int `(batch, max_units, 2)`, units on the student's tokens.
        padding_mask: `(batch, seq_len)`.
        teacher_units: int `(batch, max_units, 2)`, the same units on the
            teacher's tokens; None: the student's (one tokenizer).
        teacher_padding_mask: `(batch, teacher_seq_len)`; None: the
            student's.
        projector: optional callable mapping `(..., student_dim)` to
            `(..., teacher_dim)` (an HRA projector); None: identity.
        student_importance: optional precomputed student token importance.
        teacher_importance: optional precomputed teacher token importance.
        teacher_token_weights: optional `(batch, teacher_seq_len)` weights
            replacing the teacher's normalized importance in `W_u`.

    Returns:
        float32 scalar.
    """
    sides = _unit_sides(
        "unit_hidden_alignment",
        student_hidden,
        teacher_hidden,
        units,
        padding_mask,
        student_importance,
        teacher_importance,
        teacher_token_weights,
        teacher_units,
        teacher_padding_mask,
    )
    student_units = sides["student_units"]
    if projector is not None:
        student_units = ops.cast(projector(student_units), "float32")
    cosine = ops.sum(
        safe_l2_normalize(student_units, eps=HRA_COSINE_EPS)
        * safe_l2_normalize(sides["teacher_units"], eps=HRA_COSINE_EPS),
        axis=-1,
    )
    weight = ops.stop_gradient(sides["unit_weights"])
    total = ops.sum(weight * (1.0 - cosine))
    return total / ops.maximum(ops.sum(weight), WEIGHT_EPS)


def _unit_sides(
    where,
    student_hidden,
    teacher_hidden,
    units,
    padding_mask,
    student_importance,
    teacher_importance,
    teacher_token_weights,
    teacher_units,
    teacher_padding_mask,
):
    """Both sides' pooled unit vectors and the teacher's unit weights.

    Each side pools its own token states with its own normalized importance
    (a constant of the loss) over its own units: the student's `units`, the
    teacher's `teacher_units` (the student's when None). `unit_weights` is
    `W_u` from the teacher (its normalized importance, or
    `teacher_token_weights`), 0 for a unit without a token on either side.

    Returns:
        A dict with `student_units` `(batch, max_units, student_dim)`,
        `teacher_units` `(batch, max_units, teacher_dim)`, `unit_weights`
        `(batch, max_units)` and the student's `membership`.
    """
    if teacher_units is None:
        if teacher_padding_mask is not None:
            raise ValueError(
                f"{where}: `teacher_padding_mask` is given without "
                "`teacher_units`; pass both (a teacher with its own "
                "tokenizer) or neither."
            )
        check_alignment_inputs(
            where,
            student_hidden,
            teacher_hidden,
            units,
            padding_mask,
            student_importance=student_importance,
            teacher_importance=teacher_importance,
            teacher_token_weights=teacher_token_weights,
        )
    else:
        check_cross_tokenizer_inputs(
            where,
            student_hidden,
            teacher_hidden,
            units,
            padding_mask,
            teacher_units,
            teacher_padding_mask,
            student_importance=student_importance,
            teacher_importance=teacher_importance,
            teacher_token_weights=teacher_token_weights,
        )
    mask = ops.cast(padding_mask, "float32")
    teacher_mask = mask
    if teacher_units is not None:
        teacher_mask = ops.cast(teacher_padding_mask, "float32")
    student_hidden = ops.cast(student_hidden, "float32")
    teacher_hidden = ops.stop_gradient(ops.cast(teacher_hidden, "float32"))
    if student_importance is None:
        student_importance = token_importance(student_hidden, mask)
    if teacher_importance is None:
        teacher_importance = token_importance(teacher_hidden, teacher_mask)
    # Importance weights are constants of the loss, also when passed in.
    student_importance = ops.stop_gradient(
        ops.cast(student_importance, "float32")
    )
    teacher_importance = ops.stop_gradient(
        ops.cast(teacher_importance, "float32")
    )
    membership = unit_membership(units, mask)
    teacher_membership = membership
    if teacher_units is not None:
        teacher_membership = unit_membership(teacher_units, teacher_mask)

    w_s = normalized_token_weights(student_importance, membership)
    w_t = normalized_token_weights(teacher_importance, teacher_membership)
    student_units = pool_units(student_hidden, w_s, membership)
    teacher_units_pooled = pool_units(teacher_hidden, w_t, teacher_membership)
    if teacher_token_weights is not None:
        w_t = ops.stop_gradient(ops.cast(teacher_token_weights, "float32"))
    weight = unit_weights(w_t, teacher_membership)
    valid = ops.cast(ops.sum(membership, axis=-1) > 0, "float32")
    if teacher_units is not None:
        valid = valid * ops.cast(
            ops.sum(teacher_membership, axis=-1) > 0, "float32"
        )
    return {
        "student_units": student_units,
        "teacher_units": teacher_units_pooled,
        "unit_weights": weight * valid,
        "membership": membership,
    }


def check_cross_tokenizer_inputs(
    where,
    student_hidden,
    teacher_hidden,
    units,
    padding_mask,
    teacher_units,
    teacher_padding_mask,
    student_importance=None,
    teacher_importance=None,
    teacher_token_weights=None,
):
    """Shapes of an alignment loss's inputs across tokenizers: each side
    has its own sequence length; both have the same units (rows)."""
    if teacher_padding_mask is None:
        raise ValueError(
            f"{where}: `teacher_units` needs `teacher_padding_mask` "
            "(batch, teacher_seq_len), the teacher's own padding mask."
        )
    sizes = {}
    fix = (
        "Across tokenizers each side has its own sequence length, but the "
        "batch and the unit rows (`max_units`) are shared: feed the "
        "outputs of one DistillationPreprocessor(student, teacher)."
    )
    for name, x, dims in (
        ("student_hidden", student_hidden, ("batch", "seq_len", None)),
        ("padding_mask", padding_mask, ("batch", "seq_len")),
        ("units", units, ("batch", "max_units", 2)),
        ("student_importance", student_importance, ("batch", "seq_len")),
        ("teacher_hidden", teacher_hidden, ("batch", "t_len", None)),
        ("teacher_padding_mask", teacher_padding_mask, ("batch", "t_len")),
        ("teacher_units", teacher_units, ("batch", "max_units", 2)),
        ("teacher_importance", teacher_importance, ("batch", "t_len")),
        ("teacher_token_weights", teacher_token_weights, ("batch", "t_len")),
    ):
        if x is not None:
            check_shape(where, name, x, dims, sizes, fix)
