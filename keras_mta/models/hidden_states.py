"""Logits and selected hidden states of a keras-hub decoder, one pass."""

import keras

from keras_mta.models.alignment_plan import INDEX_CONVENTION


def get_backbone(model):
    """The keras-hub backbone of a `CausalLM` (or the backbone itself).

    Raises:
        ValueError: the model has no backbone that exposes a non-empty
            `transformer_layers` list.
    """
    backbone = getattr(model, "backbone", model)
    layers = getattr(backbone, "transformer_layers", None)
    if not isinstance(backbone, keras.Model) or not layers:
        raise ValueError(
            f"Cannot read hidden states from {type(model).__name__} "
            f"{getattr(model, 'name', '')!r}: its backbone "
            f"({type(backbone).__name__}) exposes no `transformer_layers`. "
            "MTA needs a keras-hub decoder-only CausalLM (GPT-2, OPT, Llama, "
            "Qwen, Gemma, ...), whose backbone lists its blocks in "
            "`backbone.transformer_layers`. Use such a model, or train "
            "without hidden-state alignment (`mta_weight=0`)."
        )
    return backbone


def num_hidden_layers(model):
    """Number of transformer blocks `L` of a keras-hub `CausalLM`/backbone.

    Valid hidden-state indices are `0 .. L` (see `AlignmentPlan`).
    """
    return len(get_backbone(model).transformer_layers)


def _first_tensor(value):
    """The first tensor of a (possibly nested) layer input."""
    flat = keras.tree.flatten(value)
    return flat[0] if flat else None


def hidden_state_tensor(backbone, index):
    """The symbolic hidden state of `backbone` at a HF-convention index.

    Args:
        backbone: a built keras-hub functional backbone with
            `transformer_layers`.
        index: int in `0 .. L`; see `AlignmentPlan` for the convention.

    Returns:
        A `KerasTensor` of shape `(batch, seq_len, hidden_dim)` in the
        backbone's own graph.
    """
    layers = backbone.transformer_layers
    num_layers = len(layers)
    if not 0 <= index <= num_layers:
        raise ValueError(
            f"Hidden-state index {index} is out of range for "
            f"{backbone.name!r}, which has {num_layers} transformer blocks "
            f"(valid indices 0 .. {num_layers}). {INDEX_CONVENTION}"
        )
    if index == num_layers:
        tensor = backbone.output
    elif index == 0:
        # The embedding output is the first positional input of block 0
        # (keras-hub blocks are called as `block(x, ...masks)`).
        tensor = _first_tensor(layers[0].input)
    else:
        tensor = layers[index - 1].output
        if isinstance(tensor, (list, tuple)):
            # Blocks that also return a cache or aux values: the states come
            # first.
            tensor = tensor[0]
    if tensor is None or len(tensor.shape) != 3:
        raise ValueError(
            f"Could not find the hidden states of index {index} in "
            f"{backbone.name!r}: expected a rank-3 tensor, got {tensor!r}."
        )
    return tensor


def hidden_states_model(model, layer_indices=(), name=None):
    """A functional view returning logits and selected hidden states.

    The view is a `keras.Model` over the layers of the keras-hub backbone of
    `model` (it creates no variables; it shares the backbone's), so one
    forward pass yields the next-token logits and the hidden states of only
    the requested layers:

    ```
    {"logits": (batch, seq_len, vocab_size),
     "hidden_states": [(batch, seq_len, hidden_dim) for i in layer_indices]}
    ```

    The logits are `backbone.token_embedding(backbone.output, reverse=True)`,
    which is how keras-hub's decoder-only `CausalLM`s compute them (tied or
    untied `ReversibleEmbedding`), so they equal `model(inputs)`.

    Layer indices follow the Hugging Face `output_hidden_states`
    convention: 0 is the embedding output (input of the first block),
    `i` in `1 .. L - 1` the output of block `i`
    (`backbone.transformer_layers[i - 1].output`), and `L` the output after
    the final norm (`backbone.output`).

    Args:
        model: a keras-hub `CausalLM` (or its `Backbone`) whose backbone
            exposes `transformer_layers` and `token_embedding`.
        layer_indices: list of int indices in `0 .. L`. Defaults to none
            (logits only).
        name: optional name of the view.

    Call arguments:
        inputs: the backbone's input dict (`token_ids`, `padding_mask`).
        training: bool, dropout on or off.

    Returns:
        A `keras.Model`.

    Examples:

    >>> import keras_hub
    >>> import numpy as np
    >>> backbone = keras_hub.models.GPT2Backbone(
    ...     vocabulary_size=64, num_layers=2, num_heads=2, hidden_dim=16,
    ...     intermediate_dim=32, max_sequence_length=16)
    >>> view = hidden_states_model(backbone, [0, 1, 2])
    >>> out = view({"token_ids": np.ones((1, 8), "int32"),
    ...             "padding_mask": np.ones((1, 8), "int32")})
    >>> [h.shape for h in out["hidden_states"]]
    [(1, 8, 16), (1, 8, 16), (1, 8, 16)]

    References:
        - Hugging Face `output_hidden_states`, keras-hub `CausalLM`.
    """
    backbone = get_backbone(model)
    embedding = getattr(backbone, "token_embedding", None)
    if embedding is None:
        raise ValueError(
            f"{type(backbone).__name__} has no `token_embedding`; the "
            "logits of a keras-hub decoder are computed with "
            "`backbone.token_embedding(hidden, reverse=True)`. Use a "
            "decoder-only keras-hub CausalLM."
        )
    layer_indices = [int(i) for i in layer_indices]
    hidden = [hidden_state_tensor(backbone, i) for i in layer_indices]
    logits = embedding(backbone.output, reverse=True)
    return keras.Model(
        inputs=backbone.input,
        outputs={"logits": logits, "hidden_states": hidden},
        name=name or f"{backbone.name}_hidden_states",
    )
