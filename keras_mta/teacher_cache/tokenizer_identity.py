"""The identity of the tokenizer that made a cached teacher's tokens.

A teacher cache built for a teacher with its own tokenizer
(`keras_mta.models.CrossTokenizerTeacher`) stores signals on the teacher's
tokens; they mean nothing for tokens made by another tokenizer.
`tokenizer_identity` describes the teacher's keras-hub preprocessor (its
tokenizer class, settings, vocabulary, merges or SentencePiece model,
start/end token settings and sequence length) with a hash, so that the
cache's key changes with it and a cache built for one tokenizer is refused
for another (`CachedCrossTokenizerTeacher.check_preprocessor`). Pure
Python: no tensor code.
"""

import hashlib
import json


def teacher_side(preprocessor):
    """The keras-hub preprocessor that tokenizes the teacher's side.

    Args:
        preprocessor: a `keras_mta.DistillationPreprocessor` (its
            `teacher_preprocessor` when the two sides tokenize differently,
            None when they share their tokens) or a keras-hub
            `CausalLMPreprocessor` (the teacher's own).

    Returns:
        The teacher's `CausalLMPreprocessor`, or None when the teacher
        reads the student's tokens.
    """
    if hasattr(preprocessor, "shares_tokens"):
        if preprocessor.shares_tokens:
            return None
        return preprocessor.teacher_preprocessor
    return preprocessor


def _vocabulary_parts(tokenizer):
    proto = getattr(tokenizer, "proto", None)
    if proto is not None:
        return [hashlib.sha256(bytes(proto)).hexdigest()]
    vocabulary = getattr(tokenizer, "vocabulary", None)
    if isinstance(vocabulary, dict):
        parts = [sorted(vocabulary.items(), key=lambda item: item[1])]
    else:
        parts = [list(tokenizer.get_vocabulary())]
    merges = getattr(tokenizer, "merges", None)
    if merges is not None:
        parts.append(list(merges))
    return parts


def tokenizer_identity(preprocessor):
    """A JSON-able description of a teacher preprocessor's tokenization.

    Args:
        preprocessor: see `teacher_side`; must tokenize the teacher's side.

    Returns:
        A dict with `"tokenizer"` (the class name), `"vocabulary_size"`,
        `"sequence_length"` and `"sha256"` (a hash of everything that
        decides the token ids: class, settings, vocabulary, merges or
        SentencePiece model, special token ids, start/end token settings,
        sequence length).

    Examples:

    ```python
    identity = tokenizer_identity(distillation_preprocessor)
    identity["tokenizer"], identity["sha256"][:12]
    ```
    """
    side = teacher_side(preprocessor)
    if side is None:
        raise ValueError(
            "The preprocessor shares the student's tokens with the teacher "
            "(it makes no `teacher_token_ids`), so there is no teacher "
            "tokenizer to cache on. Cache the teacher itself "
            "(`build_teacher_cache(teacher, ...)`), not a "
            "CrossTokenizerTeacher."
        )
    tokenizer = getattr(side, "tokenizer", None)
    if tokenizer is None:
        raise ValueError(
            f"{type(side).__name__} has no `tokenizer`; pass the teacher's "
            "keras-hub CausalLMPreprocessor (or the DistillationPreprocessor "
            "that made the inputs)."
        )
    config = dict(tokenizer.get_config())
    for key in ("name", "trainable", "dtype"):
        config.pop(key, None)
    fields = {
        "class": type(tokenizer).__name__,
        "config": config,
        "vocabulary": _vocabulary_parts(tokenizer),
        "special": [
            getattr(tokenizer, attribute, None)
            for attribute in ("start_token_id", "end_token_id", "pad_token_id")
        ],
        "add_start_token": getattr(side, "add_start_token", None),
        "add_end_token": getattr(side, "add_end_token", None),
        "sequence_length": getattr(side, "sequence_length", None),
    }
    text = json.dumps(fields, sort_keys=True, default=str)
    return {
        "tokenizer": type(tokenizer).__name__,
        "vocabulary_size": int(tokenizer.vocabulary_size()),
        "sequence_length": fields["sequence_length"],
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
    }


def describe_identity(identity):
    """`GPT2Tokenizer (49152 tokens, sequence length 512, sha256
    0123456789ab...)`: an identity for messages."""
    return (
        f"{identity['tokenizer']} ({identity['vocabulary_size']} tokens, "
        f"sequence length {identity['sequence_length']}, sha256 "
        f"{identity['sha256'][:12]}...)"
    )
