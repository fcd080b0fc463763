"""Tiny keras-hub models and tokenizers built offline, for tests."""

import keras_hub
from keras_hub.src.tokenizers.byte_pair_tokenizer import bytes_to_unicode

END_TOKEN = "<|endoftext|>"


def char_gpt2_tokenizer():
    """A byte-level GPT-2 tokenizer: one token per byte, one merge.

    (keras-hub needs at least one merge: an empty merge table fails.)
    """
    _, chars = bytes_to_unicode()
    # As in GPT-2, the end token comes last (id 0 trips keras-hub's
    # generation, which then stops at once).
    vocabulary = {char: i for i, char in enumerate(chars)}
    vocabulary["\u0120t"] = len(vocabulary)
    vocabulary[END_TOKEN] = len(vocabulary)
    return keras_hub.models.GPT2Tokenizer(
        vocabulary=vocabulary, merges=["\u0120 t"]
    )


def tiny_gpt2_causal_lm(
    num_layers=2, hidden_dim=16, sequence_length=64, seed=None
):
    """A randomly initialized GPT-2 CausalLM with its preprocessor."""
    tokenizer = char_gpt2_tokenizer()
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=tokenizer.vocabulary_size(),
        num_layers=num_layers,
        num_heads=2,
        hidden_dim=hidden_dim,
        intermediate_dim=2 * hidden_dim,
        max_sequence_length=max(sequence_length, 128),
    )
    preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(
        tokenizer=tokenizer, sequence_length=sequence_length
    )
    return keras_hub.models.GPT2CausalLM(
        backbone=backbone, preprocessor=preprocessor
    )
