"""Static shape checks at the boundaries of the losses.

The losses are written with broadcasting ops, so a size-1 batch or
sequence dimension (or a missing axis) would be broadcast silently and give
a number for inputs that do not belong together. These checks read only
static shapes (`x.shape`), never values, so they run at trace time inside
`jax.jit` and `tf.function` and cost nothing per step. An unknown (`None`)
dimension, e.g. the batch of a symbolic input, is not checked.
"""

import operator


def static_dim(dim):
    """`dim` as an int, or None where unknown or symbolic."""
    if dim is None or isinstance(dim, int):
        return dim
    try:
        return operator.index(dim)
    except Exception:  # a symbolic dimension (jax shape polymorphism)
        return None


def static_shape(x):
    """The static shape of `x` as a tuple of ints (None where unknown or
    symbolic)."""
    return tuple(static_dim(d) for d in x.shape)


def _expected(dims):
    return "(" + ", ".join(str(d) for d in dims) + ")"


def check_shape(where, name, x, dims, sizes, fix=None):
    """Check the rank of `x` and its named dimensions against `sizes`.

    Args:
        where: the function or layer being called, for the message.
        name: the argument's name.
        x: a tensor or array.
        dims: the expected dimensions, one per axis: an int (that size), a
            name (the same size as every other argument's axis of that name,
            recorded in `sizes` by the first argument that knows it) or None
            (any size).
        sizes: dict `name -> (size, argument)`, updated in place.
        fix: optional text appended to the message.

    Raises:
        ValueError: naming the argument, its shape, the expected shape and
            the fix.
    """
    shape = static_shape(x)
    fix = fix or (
        "Pass tensors whose batch and sequence dimensions agree; a size-1 "
        "dimension is not broadcast."
    )
    if len(shape) != len(dims):
        raise ValueError(
            f"{where}: `{name}` must have rank {len(dims)}, shape "
            f"{_expected(dims)}, got shape {shape}. {fix}"
        )
    for axis, (dim, size) in enumerate(zip(dims, shape)):
        if dim is None or size is None:
            continue
        if isinstance(dim, int):
            if size != dim:
                raise ValueError(
                    f"{where}: `{name}` must have shape {_expected(dims)} "
                    f"with {dim} on axis {axis}, got shape {shape}. {fix}"
                )
            continue
        if dim not in sizes:
            sizes[dim] = (size, name)
            continue
        want, source = sizes[dim]
        if size != want:
            raise ValueError(
                f"{where}: `{name}` has shape {shape}, expected "
                f"{_expected(dims)} with {dim} = {want} (from `{source}`), "
                f"got {size} on axis {axis}. {fix}"
            )


def check_alignment_inputs(
    where,
    student_hidden,
    teacher_hidden,
    units,
    padding_mask,
    student_name="student_hidden",
    **token_tensors,
):
    """Shapes of an alignment loss's inputs (DSA or HRA of one pair).

    Checks `student_hidden (batch, seq_len, student_dim)`, `teacher_hidden
    (batch, seq_len, teacher_dim)`, `units (batch, max_units, 2)`,
    `padding_mask (batch, seq_len)` and every other given `(batch,
    seq_len)` tensor (importances, token weights; None is skipped).
    """
    sizes = {}
    check_shape(
        where,
        student_name,
        student_hidden,
        ("batch", "seq_len", "student_dim"),
        sizes,
    )
    check_shape(
        where,
        "teacher_hidden",
        teacher_hidden,
        ("batch", "seq_len", "teacher_dim"),
        sizes,
    )
    check_shape(where, "units", units, ("batch", "max_units", 2), sizes)
    check_shape(
        where, "padding_mask", padding_mask, ("batch", "seq_len"), sizes
    )
    for name, tensor in token_tensors.items():
        if tensor is not None:
            check_shape(where, name, tensor, ("batch", "seq_len"), sizes)


def check_same_shape(where, first_name, first, second_name, second):
    """Two tensors of the same shape (no broadcasting), e.g. teacher and
    student logits `(..., vocab_size)`."""
    a, b = static_shape(first), static_shape(second)
    same = len(a) == len(b) and all(
        x is None or y is None or x == y for x, y in zip(a, b)
    )
    if not same:
        raise ValueError(
            f"{where}: `{first_name}` has shape {a} but `{second_name}` has "
            f"shape {b}; they must have the same shape (..., vocab_size). "
            "Pass teacher and student logits of the same batch, sequence "
            "and vocabulary sizes; a size-1 dimension is not broadcast."
        )
