"""Exact parameter counts of a recipe's models from their `architecture`
tables, with no weight allocated and nothing downloaded."""

import dataclasses
import math

import keras

# Keras keeps the variables created in a `StatelessScope` in one global
# list until they are initialised (no public API reads it); the counts
# below remove theirs from it, so that no later scope allocates them.
from keras.src.backend.common import global_state

from keras_mta.models.loading import backbone_class

# Layer counts built to count a deep model (see `count_parameters`).
_PROBE_LAYERS = (1, 2, 3)


@dataclasses.dataclass(frozen=True)
class ParameterCount:
    """The parameters of a backbone built from an architecture.

    Attributes:
        total: every weight of the backbone (the keras-hub `CausalLM`
            adds none: its language-model head is the backbone's).
        trainable: the weights an optimizer updates (`total`, or the
            LoRA adapters only when `lora_rank` > 0).
        lora: the LoRA adapters' weights (0 without LoRA).
        hidden_dim: the backbone's hidden size.
        num_heads: its attention (query) heads.
        num_layers: its transformer blocks.
        vocabulary_size: its vocabulary.
    """

    total: int
    trainable: int
    lora: int
    hidden_dim: int
    num_heads: int
    num_layers: int
    vocabulary_size: int


def _size(variables):
    return sum(math.prod(v.shape) for v in variables)


def _pending():
    """Keras' list of deferred variables (created in a `StatelessScope`
    and not initialised yet)."""
    return global_state.get_global_attribute(
        "uninitialized_variables", [], set_to_default=True
    )


def _first_attribute(obj, names, default=0):
    for name in names:
        value = getattr(obj, name, None)
        if value is not None:
            return int(value)
    return default


def _probe(architecture, num_layers, lora_rank):
    """`(total, trainable, lora, backbone)` of the architecture built with
    `num_layers` blocks; the weights are created deferred (shapes only)."""
    kwargs = dict(architecture)
    cls = backbone_class(kwargs.pop("class"))
    if num_layers is not None:
        kwargs["num_layers"] = num_layers
    before = {id(v) for v in _pending()}
    # In a `StatelessScope` that does not initialise on exit, a new
    # variable records its shape and initializer and allocates nothing.
    try:
        with keras.StatelessScope(initialize_variables=False):
            backbone = cls(**kwargs)
            if lora_rank:
                # keras-hub's own targets (the attention query and value
                # projections), as the runner enables LoRA.
                backbone.enable_lora(lora_rank)
    finally:
        # Forget every variable the build deferred (weights, and the
        # seed generators' states): no later scope may allocate them.
        pending = _pending()
        pending[:] = [v for v in pending if id(v) in before]
    weights = list(backbone.weights)
    lora = _size(v for v in weights if "lora_kernel" in v.path)
    # `keras_mta.models.enable_student_lora` also freezes the adapted
    # layers' biases (PEFT's `bias="none"`): only the factors train.
    trainable = lora if lora_rank else _size(backbone.trainable_weights)
    return _size(weights), trainable, lora, backbone


def count_parameters(architecture, lora_rank=0):
    """The exact parameter counts of a backbone from its architecture.

    No weight is allocated: the backbone is built in a
    `keras.StatelessScope` that leaves its variables uninitialised (shapes
    only), and a deep model is counted from builds with 1, 2 and 3
    blocks. That is exact: a keras-hub decoder backbone is its embeddings
    and final norm (which do not depend on the number of blocks) plus
    `num_layers` blocks built from the same arguments, so
    `count(L) = count(1) + (L - 1) * (count(2) - count(1))`; the third
    build checks that the blocks are alike, and a backbone whose blocks
    differ is built whole (still unallocated). `tests/runner` compares
    the counts with real builds.

    Args:
        architecture: a recipe's `architecture` table (`class` and the
            backbone's constructor arguments).
        lora_rank: int, count the student with keras-hub's
            `backbone.enable_lora(lora_rank)` (0: no LoRA).

    Returns:
        A `ParameterCount`.

    Examples:

    ```python
    count = count_parameters(
        {"class": "GPT2Backbone", "vocabulary_size": 50257,
         "num_layers": 48, "num_heads": 25, "hidden_dim": 1600,
         "intermediate_dim": 6400, "max_sequence_length": 1024}
    )
    count.total  # 1557611200, without allocating 6 GB
    ```
    """
    num_layers = architecture.get("num_layers")
    counts = None
    if num_layers is not None and int(num_layers) > _PROBE_LAYERS[-1]:
        probes = [_probe(architecture, n, lora_rank) for n in _PROBE_LAYERS]
        steps = [
            tuple(b - a for a, b in zip(low[:3], high[:3]))
            for low, high in zip(probes, probes[1:])
        ]
        if steps[0] == steps[1]:
            extra = int(num_layers) - 1
            counts = [
                first + extra * step
                for first, step in zip(probes[0][:3], steps[0])
            ]
            backbone = probes[0][3]
    if counts is None:
        *counts, backbone = _probe(architecture, None, lora_rank)
    total, trainable, lora = counts
    return ParameterCount(
        total=total,
        trainable=trainable,
        lora=lora,
        hidden_dim=_first_attribute(backbone, ("hidden_dim",)),
        num_heads=_first_attribute(backbone, ("num_query_heads", "num_heads")),
        num_layers=int(
            num_layers
            if num_layers is not None
            else _first_attribute(backbone, ("num_layers",))
        ),
        vocabulary_size=_first_attribute(backbone, ("vocabulary_size",)),
    )


def projector_parameters(student_dims, teacher_dims):
    """Weights of the HRA projectors: one `Dense` (kernel and bias) from
    each pair's student width to its teacher width
    (`keras_mta.layers.HiddenAlignmentLoss`)."""
    return sum(s * t + t for s, t in zip(student_dims, teacher_dims))
