"""Train a tokenizer offline on a dataset's own text."""

import contextlib
import os
import sys

import keras_hub

from keras_mta.imports import import_optional
from keras_mta.utils.files import atomic_write

# SentencePiece's models (`train_sentencepiece_tokenizer(model_type=)`).
MODEL_TYPES = ("unigram", "bpe", "word", "char")


def train_sentencepiece_tokenizer(
    texts, vocabulary_size, proto_path=None, model_type="unigram"
):
    """A Llama-style SentencePiece tokenizer trained on `texts`.

    Uses keras-hub's `compute_sentence_piece_proto` (the SentencePiece
    trainer, about a second for a few MB of text); the proto
    uses keras-hub's ids: `<pad>` 0, `<unk>` 1, `<s>` 2, `</s>` 3. The
    trainer's own log (several screens, written by its C++ code to the
    process's stderr) is silenced.

    Args:
        texts: iterable of str, the training text.
        vocabulary_size: int, the vocabulary size.
        proto_path: optional path; when given, the proto is written there
            atomically and can be reloaded with
            `keras_hub.models.LlamaTokenizer(proto=proto_path)`.
        model_type: SentencePiece's model: `"unigram"` (the default),
            `"bpe"`, `"word"` or `"char"`. On a small text with few
            distinct words (the toy dataset) the unigram trainer stops
            short of a vocabulary that holds whole words (about 300 pieces
            for the toy data), where BPE goes on merging until most words
            are one piece.

    Returns:
        A `keras_hub.models.LlamaTokenizer`.
    """
    if model_type not in MODEL_TYPES:
        raise ValueError(
            f"train_sentencepiece_tokenizer: model_type={model_type!r} is "
            f"not a SentencePiece model; use one of {MODEL_TYPES}."
        )
    tf = import_optional("tensorflow", "train_sentencepiece_tokenizer")
    texts = [t for t in texts if t and t.strip()]
    if not texts:
        raise ValueError("Cannot train a tokenizer on no text.")
    try:
        with _quiet_stderr():
            proto = keras_hub.tokenizers.compute_sentence_piece_proto(
                tf.data.Dataset.from_tensor_slices(texts),
                vocabulary_size=vocabulary_size,
                model_type=model_type,
            )
    except RuntimeError as e:
        if "Vocabulary size too high" not in str(e):
            raise
        raise ValueError(
            f"The text is too small for a vocabulary of {vocabulary_size} "
            f"pieces ({str(e).split('] ')[-1]}). Lower `vocabulary_size` or "
            "train on more text."
        ) from None
    if proto_path is not None:
        atomic_write(proto_path, proto)
    return keras_hub.models.LlamaTokenizer(proto=proto)


@contextlib.contextmanager
def _quiet_stderr():
    """Point file descriptor 2 at /dev/null for the block.

    SentencePiece's trainer logs from C++ straight to the descriptor and
    has no option to stop it; Python's `sys.stderr` is untouched.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
