"""Parameter counts without allocation equal the counts of real builds."""

import keras
import pytest
from keras.src.backend.common import global_state

from keras_mta.layers import TrajectoryAlignmentLoss
from keras_mta.models import build_causal_lm
from keras_mta.models import enable_student_lora
from keras_mta.models import get_backbone
from keras_mta.runner.parameter_counts import count_parameters
from keras_mta.runner.parameter_counts import projector_parameters

# Tiny shapes of the backbone classes the recipes use, deeper than the
# three probe builds (so the counts are extrapolated).
ARCHITECTURES = {
    "gpt2": {
        "class": "GPT2Backbone",
        "vocabulary_size": 97,
        "num_layers": 5,
        "num_heads": 2,
        "hidden_dim": 16,
        "intermediate_dim": 24,
        "max_sequence_length": 32,
    },
    "opt": {
        "class": "OPTBackbone",
        "vocabulary_size": 101,
        "num_layers": 6,
        "num_heads": 2,
        "hidden_dim": 16,
        "intermediate_dim": 40,
        "max_sequence_length": 32,
    },
    "qwen_untied": {
        "class": "QwenBackbone",
        "vocabulary_size": 103,
        "num_layers": 5,
        "num_query_heads": 4,
        "num_key_value_heads": 2,
        "hidden_dim": 16,
        "intermediate_dim": 24,
        "tie_word_embeddings": False,
    },
    "qwen_tied": {
        "class": "QwenBackbone",
        "vocabulary_size": 103,
        "num_layers": 4,
        "num_query_heads": 2,
        "num_key_value_heads": 2,
        "hidden_dim": 8,
        "intermediate_dim": 12,
        "tie_word_embeddings": True,
    },
    "llama3_shallow": {
        "class": "Llama3Backbone",
        "vocabulary_size": 64,
        "num_layers": 2,
        "num_query_heads": 2,
        "num_key_value_heads": 1,
        "hidden_dim": 8,
        "intermediate_dim": 16,
    },
}


def _pending():
    return list(
        global_state.get_global_attribute("uninitialized_variables") or []
    )


# GPT-2 base as its recipe describes it: 124,439,808 weights, its
# published size.
GPT2_BASE = {
    "class": "GPT2Backbone",
    "vocabulary_size": 50257,
    "num_layers": 12,
    "num_heads": 12,
    "hidden_dim": 768,
    "intermediate_dim": 3072,
    "max_sequence_length": 1024,
}


def test_counts_allocate_nothing_under_this_backend():
    pending = _pending()
    count = count_parameters(GPT2_BASE, lora_rank=4)
    assert count.total - count.lora == 124_439_808
    assert len(_pending()) == len(pending)


# The shapes, and so the counts, do not depend on the backend; the real
# builds are cheapest under torch (seconds; a minute under jax).
@pytest.mark.once(backend="torch")
@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_count_equals_a_real_build(name):
    architecture = ARCHITECTURES[name]
    pending = _pending()
    count = count_parameters(architecture)
    lora_count = count_parameters(architecture, lora_rank=3)
    # The counting builds left no deferred variable behind for a later
    # scope to allocate.
    assert len(_pending()) == len(pending)

    model = build_causal_lm(architecture)
    backbone = get_backbone(model)
    assert count.total == model.count_params()
    assert count.trainable == count.total and count.lora == 0
    assert count.hidden_dim == architecture["hidden_dim"]
    assert count.num_layers == architecture["num_layers"]
    assert count.vocabulary_size == architecture["vocabulary_size"]
    heads = getattr(backbone, "num_query_heads", None)
    assert count.num_heads == (heads or backbone.num_heads)

    # LoRA as the runner enables it (keras-hub's targets, the attention
    # query and value; their biases frozen): the adapters are what trains.
    enable_student_lora(model, 3)
    lora = [w for w in backbone.weights if "lora_kernel" in w.path]
    assert lora_count.lora == sum(int(keras.ops.size(w)) for w in lora) > 0
    assert lora_count.trainable == sum(
        int(keras.ops.size(w)) for w in backbone.trainable_weights
    )
    assert lora_count.total == backbone.count_params()


@pytest.mark.once(backend="torch")
def test_projector_count_equals_the_alignment_layers():
    layer = TrajectoryAlignmentLoss(
        teacher_dims=[12, 12, 20], student_dims=[8, 8, 6]
    )
    assert projector_parameters([8, 8, 6], [12, 12, 20]) == (
        layer.count_params()
    )
