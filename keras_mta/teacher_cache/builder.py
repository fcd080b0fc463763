"""Run the teacher once, store its signals: `build_teacher_cache`.

The teacher's forward pass is the same at every epoch, seed and ablation;
computing it once and training from stored signals removes the teacher
from memory and from every training step (see `CachedTeacher` and
`DistillationModel`'s cached mode).
"""

import hashlib
import json
import os
import time

import keras
import numpy as np

from keras_mta.losses.divergences import check_temperature
from keras_mta.models.cross_tokenizer_teacher import MODEL_KEYS as TEACHER_KEYS
from keras_mta.models.cross_tokenizer_teacher import CrossTokenizerTeacher
from keras_mta.models.teacher_source import TEACHER_TOKENIZER_KEYS
from keras_mta.teacher_cache.cached_cross_tokenizer_teacher import (
    describe_cross_tokenizer_teacher,
)
from keras_mta.teacher_cache.keys import ENTROPY_WEIGHTS
from keras_mta.teacher_cache.keys import LOG_REST
from keras_mta.teacher_cache.keys import TOP_K_INDICES
from keras_mta.teacher_cache.keys import TOP_K_LOG_PROBS
from keras_mta.teacher_cache.keys import hidden_key
from keras_mta.teacher_cache.keys import importance_key
from keras_mta.teacher_cache.signals import TeacherSignals
from keras_mta.teacher_cache.store import STORAGE_DTYPES
from keras_mta.teacher_cache.store import TeacherCache
from keras_mta.teacher_cache.store import format_bytes
from keras_mta.teacher_cache.tokenizer_identity import tokenizer_identity


def _sha256_arrays(arrays):
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(str((array.shape, array.dtype.str)).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def teacher_fingerprint(teacher):
    """A hash of the teacher's class, configuration and every weight."""
    config = json.dumps(
        keras.saving.serialize_keras_object(teacher.backbone),
        sort_keys=True,
        default=str,
    )
    weights = _sha256_arrays(
        keras.ops.convert_to_numpy(w) for w in teacher.backbone.weights
    )
    return hashlib.sha256((config + weights).encode()).hexdigest()


def data_fingerprint(x):
    """A hash of the token ids and padding masks the cache is built on."""
    return _sha256_arrays(
        [np.asarray(x["token_ids"]), np.asarray(x["padding_mask"])]
    )


def cache_key(teacher, x, layers, top_k, dtype, temperature, tokenizer=None):
    """The key of a cache: teacher, data, plan layers and settings.

    `x` holds the tokens the teacher reads (`token_ids`, `padding_mask`);
    `tokenizer`, the `tokenizer_identity` of a teacher with its own
    tokenizer (None: the student's tokens, and the key of a cache on them is
    what it always was)."""
    fields = {
        "teacher": teacher_fingerprint(teacher),
        "data": data_fingerprint(x),
        "layers": [int(i) for i in layers],
        "top_k": int(top_k),
        "dtype": dtype,
        "temperature": float(temperature),
    }
    if tokenizer is not None:
        fields["teacher_tokenizer"] = tokenizer["sha256"]
    return hashlib.sha256(
        json.dumps(fields, sort_keys=True).encode()
    ).hexdigest()


class _SignalModel(keras.Model):
    """The signals as a Keras model, so `predict_on_batch` compiles them
    (jax.jit / tf.function) on every backend."""

    def __init__(self, signals, **kwargs):
        super().__init__(**kwargs)
        self.signals = signals

    def call(self, x):
        return self.signals(x)


def _index_dtype(vocabulary_size):
    return (
        "uint16"
        if vocabulary_size <= np.iinfo(np.uint16).max + 1
        else ("int32")
    )


def _specs(description, sequence_length, dtype):
    t, k = sequence_length, description.top_k
    specs = {
        TOP_K_LOG_PROBS: ((t, k), "float32"),
        TOP_K_INDICES: ((t, k), _index_dtype(description.vocabulary_size)),
        LOG_REST: ((t,), "float32"),
        ENTROPY_WEIGHTS: ((t,), "float32"),
    }
    for pair, dim in enumerate(description.hidden_dims):
        specs[hidden_key(pair)] = ((t, dim), dtype)
        specs[importance_key(pair)] = ((t,), "float32")
    return specs


def build_teacher_cache(
    teacher,
    plan,
    x,
    directory,
    top_k=64,
    dtype="bfloat16",
    temperature=1.0,
    batch_size=8,
    chunk_size=64,
    verbose=True,
    preprocessor=None,
):
    """Run `teacher` once over `x` and store its signals on disk.

    Per example and position it stores: the hidden states of the plan's
    teacher layers (in `dtype`), the teacher's token importance at those
    layers, its `top_k` most likely next tokens (log-probabilities at
    `temperature`, and ids) with the log of the remaining probability mass,
    and its entropy weights (for `plan.entropy_weighting`). The cache lives
    in `directory/KEY`, where `KEY` hashes the teacher's weights and
    configuration, the token ids, the plan's teacher layers and the
    settings, so a changed teacher, dataset or setting gets its own cache.
    Its size is reported (and checked against the free disk space) before
    anything is written; chunks are written atomically, and an interrupted
    build resumes where it stopped. Each chunk's size and checksum are
    recorded; a second build with the same settings rewrites the chunks
    that are missing or of the wrong size (delete a chunk that a read
    reported damaged, and build again to rewrite just that one).

    A teacher with its own tokenizer (a
    `keras_mta.models.CrossTokenizerTeacher`, with the `x` of
    `DistillationPreprocessor(student_preprocessor, teacher_preprocessor)`)
    is run on its own tokens (`teacher_token_ids`, `teacher_padding_mask`)
    and every signal above is stored there, at every teacher position; the
    teacher's units and the KD pairing `teacher_positions` stay in `x`, and
    the stream brings them to the model (see
    `keras_mta.teacher_cache.cached_cross_tokenizer_teacher` for why). The
    key then also holds the teacher tokenizer's identity (`preprocessor`)
    and hashes the teacher's tokens instead of the student's, and the
    cache gives a `CachedCrossTokenizerTeacher`.

    Args:
        teacher: a keras-hub `CausalLM` (it reads the student's tokens), or
            a `keras_mta.models.CrossTokenizerTeacher` (its own tokens).
        plan: the `AlignmentPlan` (its `teacher_layers` are cached).
        x: dict of NumPy arrays with `token_ids` and `padding_mask`
            `(num_examples, seq_len)`, e.g. the `x` of the training
            examples as prepared by `DistillationPreprocessor`.
        directory: the root directory of teacher caches.
        top_k: int, tokens kept per position (64 by default); the
            vocabulary size keeps the full distribution.
        dtype: storage precision of the hidden states: `"bfloat16"`
            (default), `"float16"` or `"float32"`.
        temperature: float > 0, the KD temperature the log-probabilities are
            computed at.
        batch_size: teacher batch size.
        chunk_size: examples per chunk file.
        verbose: print the size and a progress bar.
        preprocessor: with a `CrossTokenizerTeacher`, the
            `keras_mta.DistillationPreprocessor` that made `x` (or its
            teacher's keras-hub preprocessor): the identity of the teacher's
            tokenizer goes into the key and the cache. Unused otherwise.

    Returns:
        The complete `TeacherCache`; `CachedTeacher.from_cache(cache)` is
        the teacher to distill from.
    """
    if dtype not in STORAGE_DTYPES:
        raise ValueError(
            f"`dtype` must be one of {STORAGE_DTYPES}, got {dtype!r}."
        )
    check_temperature(temperature)
    source, tokenizer = None, None
    if isinstance(teacher, CrossTokenizerTeacher):
        source, teacher = teacher, teacher.model
        tokenizer = _teacher_tokenizer(preprocessor)
        x = _teacher_tokens(x)
    elif any(key in x for key in TEACHER_TOKENIZER_KEYS):
        raise ValueError(
            "`x` holds the teacher's own tokens (`teacher_token_ids`, ...): "
            "the teacher tokenizes differently from the student. Wrap it as "
            "`keras_mta.models.CrossTokenizerTeacher(teacher)` and pass "
            "`preprocessor=` (the DistillationPreprocessor that made `x`)."
        )
    for name in ("token_ids", "padding_mask"):
        if name not in x:
            raise ValueError(
                f"`x` lacks {name!r}; give the model inputs of the examples "
                "to cache (keys token_ids, padding_mask)."
            )
    token_ids = np.asarray(x["token_ids"])
    padding_mask = np.asarray(x["padding_mask"])
    num_examples, sequence_length = token_ids.shape
    layers = list(plan.teacher_layers)
    signals = TeacherSignals(teacher, layers, top_k, temperature)
    description = signals.description
    metadata = {}
    if source is not None:
        description = describe_cross_tokenizer_teacher(
            description, source, tokenizer
        )
        metadata["teacher_class"] = type(description).__name__
    key = cache_key(teacher, x, layers, top_k, dtype, temperature, tokenizer)
    path = os.path.join(directory, key[:16])
    cache = TeacherCache.create(
        path,
        key=key,
        num_examples=num_examples,
        specs=_specs(description, sequence_length, dtype),
        chunk_size=chunk_size,
        metadata={
            "teacher": description.get_config(),
            "plan": plan.get_config(),
            "sequence_length": int(sequence_length),
            "dtype": dtype,
            **metadata,
        },
    )
    if verbose and cache.recorded_chunks:
        print(
            f"[keras-mta] teacher cache {path}: recorded the size and "
            f"checksum of {len(cache.recorded_chunks)} chunk(s) written by "
            "an older keras-mta",
            flush=True,
        )
    if verbose and cache.dropped_chunks:
        damaged = "; ".join(
            f"{os.path.basename(p)} ({why})"
            for p, why in cache.dropped_chunks.items()
        )
        print(
            f"[keras-mta] teacher cache {path}: rewriting "
            f"{len(cache.dropped_chunks)} damaged chunk(s): {damaged}",
            flush=True,
        )
    missing = cache.missing_chunks()
    left = cache.check_disk_space()
    if verbose:
        print(
            f"[keras-mta] teacher cache {path}: {num_examples} examples x "
            f"{format_bytes(cache.example_nbytes)} = "
            f"{format_bytes(cache.nbytes)} ({len(missing)} of "
            f"{cache.num_chunks} chunks, {format_bytes(left)}, to write)",
            flush=True,
        )
    if not missing:
        return cache
    model = _SignalModel(signals, name="teacher_signals")
    start = time.perf_counter()
    progress = (
        keras.utils.Progbar(len(missing), unit_name="chunk")
        if verbose
        else None
    )
    for step, index in enumerate(missing):
        rows = cache.chunk_rows(index)
        parts = []
        for begin in range(rows.start, rows.stop, batch_size):
            end = min(begin + batch_size, rows.stop)
            batch = {
                "token_ids": _pad_rows(token_ids[begin:end], batch_size),
                "padding_mask": _pad_rows(padding_mask[begin:end], batch_size),
            }
            out = model.predict_on_batch(batch)
            parts.append(
                {
                    name: np.asarray(value)[: end - begin]
                    for name, value in out.items()
                }
            )
        arrays = {
            name: np.concatenate([p[name] for p in parts], axis=0)
            for name in parts[0]
        }
        cache.write_chunk(index, arrays)
        if progress is not None:
            progress.update(step + 1)
    if verbose:
        seconds = time.perf_counter() - start
        print(
            f"[keras-mta] teacher cache written in {seconds:.0f} s "
            f"({format_bytes(cache.nbytes)})",
            flush=True,
        )
    return cache


def _teacher_tokenizer(preprocessor):
    if preprocessor is None:
        raise ValueError(
            "Caching a CrossTokenizerTeacher needs `preprocessor=`: the "
            "DistillationPreprocessor that made `x` (or the teacher's "
            "keras-hub preprocessor), whose teacher tokenizer goes into the "
            "cache's key, so that the cache is refused for another one."
        )
    return tokenizer_identity(preprocessor)


def _teacher_tokens(x):
    """The teacher's own tokens of `x`, under the names the teacher reads."""
    missing = [k for k in TEACHER_KEYS if k not in x]
    if missing:
        raise ValueError(
            f"`x` lacks {missing}: a CrossTokenizerTeacher reads its own "
            "tokens. Give the inputs of `DistillationPreprocessor("
            "student_preprocessor, teacher_preprocessor)` with two different "
            "tokenizers (it makes no `teacher_*` inputs when the two "
            "tokenize alike: then cache the teacher itself)."
        )
    return {
        "token_ids": x["teacher_token_ids"],
        "padding_mask": x["teacher_padding_mask"],
    }


def _pad_rows(array, rows):
    """`array` padded with zero rows to `rows` rows (a static batch)."""
    missing = rows - len(array)
    if missing <= 0:
        return array
    pad = np.zeros((missing, *array.shape[1:]), dtype=array.dtype)
    return np.concatenate([array, pad], axis=0)
