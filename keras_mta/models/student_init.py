"""Initialise a shallower student from a subset of its teacher's blocks."""

import keras
import numpy as np

from keras_mta.models.hidden_states import get_backbone

STUDENT_INITS = ("random", "teacher_subset")


def evenly_spaced_layers(num_teacher_layers, num_student_layers):
    """`num_student_layers` teacher block indices, first and last included.

    Block `j` of the student takes teacher block
    `round(j * (L_T - 1) / (L_S - 1))`: for 30 teacher and 10 student
    blocks, `[0, 3, 6, 10, 13, 16, 19, 23, 26, 29]`.

    Args:
        num_teacher_layers: int, the teacher's number of blocks `L_T`.
        num_student_layers: int, the student's number of blocks `L_S`,
            at most `L_T`.

    Returns:
        A list of `L_S` increasing 0-based teacher block indices.
    """
    num_teacher_layers = int(num_teacher_layers)
    num_student_layers = int(num_student_layers)
    if not 0 < num_student_layers <= num_teacher_layers:
        raise ValueError(
            f"Cannot pick {num_student_layers} of {num_teacher_layers} "
            "teacher blocks: the student needs between 1 and as many blocks "
            "as the teacher."
        )
    if num_student_layers == 1:
        return [num_teacher_layers - 1]
    step = (num_teacher_layers - 1) / (num_student_layers - 1)
    # Round half up, so the spacing does not depend on banker's rounding.
    return [int(j * step + 0.5) for j in range(num_student_layers)]


def _copy_layer(source, target, what):
    source_weights = source.weights
    target_weights = target.weights
    if len(source_weights) != len(target_weights):
        raise ValueError(
            f"Cannot copy {what}: the teacher's {source.name!r} has "
            f"{len(source_weights)} weights and the student's "
            f"{target.name!r} {len(target_weights)}. teacher_subset needs "
            "the same backbone class and widths (hidden size, heads, "
            "intermediate size, vocabulary, tied or untied embeddings) in "
            "teacher and student; only the layer count may differ."
        )
    for s, t in zip(source_weights, target_weights):
        if tuple(s.shape) != tuple(t.shape):
            raise ValueError(
                f"Cannot copy {what}: the teacher's {s.path!r} has shape "
                f"{tuple(s.shape)} and the student's {t.path!r} "
                f"{tuple(t.shape)}. teacher_subset needs the same widths in "
                "teacher and student; only the layer count may differ."
            )
        # A host copy, never the teacher's own buffer: under JAX an
        # `assign` of the same-dtype array would share one device buffer
        # between a frozen teacher weight and a trained student weight, and
        # the jitted train step (which donates its state) then fails with
        # "Attempt to donate the same buffer twice".
        value = np.array(keras.ops.convert_to_numpy(s), copy=True)
        t.assign(keras.ops.cast(value, t.dtype))


def init_student_from_teacher(teacher, student, layers=None):
    """Copy the teacher's embeddings, final norm and chosen blocks.

    Student block `j` receives the weights of teacher block `layers[j]`;
    every weight outside the blocks (token and position embeddings, the
    final norm, an untied output projection) is copied from the teacher's
    layer of the same name. Teacher and student must be keras-hub models of
    the same backbone class and widths; only the number of blocks may
    differ. The teacher is not changed.

    With the blocks of a depth-reduced student taken this way, a plan that
    pairs student hidden state `j + 1` with teacher hidden state
    `layers[j] + 1` aligns states that start out computed the same way.

    Args:
        teacher: a keras-hub `CausalLM` or backbone.
        student: a keras-hub `CausalLM` or backbone with as many or fewer
            blocks.
        layers: list of 0-based teacher block indices, one per student
            block. Defaults to `evenly_spaced_layers(L_T, L_S)`.

    Returns:
        The list of teacher block indices used.

    Examples:

    >>> import keras_hub
    >>> def llama(n):
    ...     return keras_hub.models.Llama3Backbone(
    ...         vocabulary_size=32, num_layers=n, num_query_heads=2,
    ...         num_key_value_heads=1, hidden_dim=8, intermediate_dim=16)
    >>> init_student_from_teacher(llama(4), llama(2))
    [0, 3]
    """
    teacher_backbone = get_backbone(teacher)
    student_backbone = get_backbone(student)
    if type(teacher_backbone) is not type(student_backbone):
        raise ValueError(
            "teacher_subset copies blocks between backbones of one class; "
            f"the teacher is a {type(teacher_backbone).__name__} and the "
            f"student a {type(student_backbone).__name__}. Build the student "
            "with the teacher's class, or use student_init = 'random'."
        )
    teacher_blocks = teacher_backbone.transformer_layers
    student_blocks = student_backbone.transformer_layers
    if layers is None:
        layers = evenly_spaced_layers(len(teacher_blocks), len(student_blocks))
    layers = [int(i) for i in layers]
    if len(layers) != len(student_blocks):
        raise ValueError(
            f"student_init_layers {layers} names {len(layers)} teacher "
            f"blocks, but the student has {len(student_blocks)}: give one "
            "teacher block index per student block."
        )
    bad = [i for i in layers if not 0 <= i < len(teacher_blocks)]
    if bad:
        raise ValueError(
            f"student_init_layers {layers}: {bad} out of range; the teacher "
            f"has {len(teacher_blocks)} blocks (0-based indices 0 .. "
            f"{len(teacher_blocks) - 1})."
        )
    blocks = set(id(b) for b in teacher_blocks)
    for layer in teacher_backbone.layers:
        if id(layer) in blocks or not layer.weights:
            continue
        try:
            target = student_backbone.get_layer(layer.name)
        except ValueError:
            raise ValueError(
                f"The student backbone has no layer {layer.name!r} to "
                "receive the teacher's weights; teacher_subset needs one "
                "backbone class in both."
            ) from None
        _copy_layer(layer, target, f"layer {layer.name!r}")
    for j, i in enumerate(layers):
        _copy_layer(
            teacher_blocks[i],
            student_blocks[j],
            f"teacher block {i} into student block {j}",
        )
    return layers
