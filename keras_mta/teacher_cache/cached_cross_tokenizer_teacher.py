"""`CachedCrossTokenizerTeacher`: a cached teacher with its own tokenizer.

`keras_mta.build_teacher_cache(CrossTokenizerTeacher(teacher), plan, x,
directory, preprocessor=preprocessor)` runs a teacher from another model
family once over its own tokens (`teacher_token_ids`, made by
`DistillationPreprocessor(student_preprocessor, teacher_preprocessor)`)
and stores its signals there; this source trains a student from them as
the live `keras_mta.models.CrossTokenizerTeacher` does.

What is stored, and where the pairing with the student comes from:

- On the teacher's tokens `(teacher_seq_len, ...)`: the hidden states of
  the plan's teacher layers, the token importance and entropy weights
  (computed on `teacher_padding_mask`), and the `top_k` next-token
  log-probabilities with their ids and the log of the remaining mass, at
  *every* teacher position.
- Not stored, read from the batch: the teacher's units
  (`teacher_word_units`, `teacher_phrase_units`), its padding mask and the
  KD pairing `teacher_positions` (the teacher position of each student
  position). The preprocessor makes them with the inputs, and the stream
  (`TeacherCache.dataset((x, y, sample_weight), ...)`) carries them beside
  the cached arrays.

Why the log-probabilities at the teacher's positions, gathered at each
step through `teacher_positions`, rather than stored already gathered at
the student's positions: the two forms are equally exact (the gather is a
copy), and their sizes are `teacher_seq_len` and `student_seq_len` rows
of `top_k` values, the first the same rows as the hidden states; the
teacher's tokenizer usually has the larger vocabulary and so the shorter
sequence. Above all, this form depends on the teacher and its tokens only:
the student's tokenizer, units and response masking enter through the
batch, so one cache serves every student of that teacher, and the cache key
holds the teacher's weights, its tokenizer (`tokenizer_identity`) and its
tokens, nothing of the student's. A student-side form would have to be
rebuilt for every student tokenizer and every change of the pairing.
"""

import keras
from keras import ops

from keras_mta.models.cross_tokenizer_teacher import CROSS_VOCABULARY_HINT
from keras_mta.models.cross_tokenizer_teacher import POSITIONS_KEY
from keras_mta.models.cross_tokenizer_teacher import UNIT_KEYS
from keras_mta.models.cross_tokenizer_teacher import CrossTokenizerTeacher
from keras_mta.models.teacher_source import vocabulary_size
from keras_mta.teacher_cache.cached_teacher import CachedTeacher
from keras_mta.teacher_cache.keys import LOG_REST
from keras_mta.teacher_cache.keys import TOP_K_INDICES
from keras_mta.teacher_cache.keys import TOP_K_LOG_PROBS
from keras_mta.teacher_cache.tokenizer_identity import describe_identity
from keras_mta.teacher_cache.tokenizer_identity import teacher_side
from keras_mta.teacher_cache.tokenizer_identity import tokenizer_identity

PADDING_KEY = "teacher_padding_mask"


def _at_positions(values, positions):
    """`values` `(batch, teacher_len, ...)` read at `positions` `(batch,
    student_len)` (a position < 0 reads position 0; its weight is 0)."""
    index = ops.where(positions >= 0, positions, 0)
    if len(values.shape) == 3:
        index = ops.broadcast_to(
            index[:, :, None],
            (ops.shape(index)[0], ops.shape(index)[1], ops.shape(values)[2]),
        )
    return ops.take_along_axis(values, index, axis=1)


def _full_log_probs(log_probs, indices, log_rest, size):
    """`(batch, len, size)` log-probabilities from the top `k` (placed at
    their token ids) and the rest mass (spread evenly over the other
    `size - k` tokens; none when `k == size`)."""
    k = int(log_probs.shape[-1])
    fill = ops.zeros_like(log_rest)
    if k < size:
        fill = log_rest - ops.log(float(size - k))
    shape = ops.shape(indices)
    batch, length = shape[0], shape[1]
    rows = ops.broadcast_to(
        ops.reshape(ops.arange(batch, dtype="int32"), (-1, 1, 1)), shape
    )
    columns = ops.broadcast_to(
        ops.reshape(ops.arange(length, dtype="int32"), (1, -1, 1)), shape
    )
    where = ops.reshape(ops.stack([rows, columns, indices], axis=-1), (-1, 3))
    # Each listed id appears once per position: the scatter places the
    # difference to the fill exactly there.
    placed = ops.scatter(
        where,
        ops.reshape(log_probs - fill[..., None], (-1,)),
        (batch, length, size),
    )
    return placed + fill[..., None]


@keras.saving.register_keras_serializable(package="keras_mta")
class CachedCrossTokenizerTeacher(CachedTeacher):
    """A teacher cache of a teacher with its own tokenizer and vocabulary.

    The cached counterpart of `keras_mta.models.CrossTokenizerTeacher`
    (`CachedTeacher.from_cache` returns one for a cache built from a
    `CrossTokenizerTeacher`): its hidden states, importance, entropy
    weights and top-k log-probabilities lie on the teacher's own tokens
    (see the module docstring for what is stored and why), and the model
    reads the pairing from the inputs, as with the live teacher:

    - DSA and unit-level HRA pool the cached states over the teacher's
      units `teacher_word_units` / `teacher_phrase_units`, masked by
      `teacher_padding_mask`.
    - KD gathers the cached log-probabilities at the student's positions
      through `teacher_positions` (-1: no partner, weight 0). A
      cross-vocabulary divergence (`cross_vocabulary = True`, e.g.
      `"uld"`) receives the teacher's whole next-token law over its
      vocabulary, rebuilt from the cache: the top `k` at their token ids,
      the rest mass spread evenly over the other tokens, as logits
      `temperature * log p` (so that the divergence's softmax at the
      cache's temperature gives `p` back). With `top_k` the vocabulary
      size this is the live teacher's law exactly; with a smaller `top_k`
      ULD moves by at most twice the rest mass per position (the sorted
      top `k` agree, the tails differ by at most their two masses). A
      truncated ULD (`UniversalLogitDistillation(truncation=m)`, `m <=
      top_k`) reads the cached top `k` and rest mass directly
      (`divergence.top_k`): the live teacher's value, without rebuilding
      the law over the teacher's vocabulary. With
      `same_vocabulary=True` a same-vocabulary divergence uses its top-k
      form, as `CachedTeacher` does.

    The inputs must come from a preprocessor with the teacher tokenizer
    the cache was built for: `from_cache(cache, preprocessor=...)` checks
    it (`check_preprocessor`).

    Args:
        same_vocabulary: bool, as `CrossTokenizerTeacher`'s.
        teacher_tokenizer: dict, the `tokenizer_identity` of the teacher's
            preprocessor the cache was built with.
        **kwargs: `CachedTeacher`'s arguments (`name`, `num_layers`,
            `vocabulary_size` (the teacher's), `layers`, `hidden_dims`,
            `top_k` (per teacher position), `temperature`).

    Examples:

    ```python
    preprocessor = keras_mta.DistillationPreprocessor(
        student.preprocessor, teacher.preprocessor)
    x, y, sample_weight = ...  # preprocessor's arrays of the examples
    cache = keras_mta.build_teacher_cache(
        keras_mta.models.CrossTokenizerTeacher(teacher), plan, x, "cache/",
        preprocessor=preprocessor)
    model = keras_mta.DistillationModel(
        keras_mta.CachedTeacher.from_cache(cache, preprocessor=preprocessor),
        student, plan=plan, divergence="uld")
    model.fit(cache.dataset((x, y, sample_weight), batch_size=8))
    ```
    """

    shares_tokenizer = False
    missing_inputs_hint = (
        " This model trains from the teacher cache of a teacher with its "
        "own tokenizer: stream the inputs of `DistillationPreprocessor("
        "student_preprocessor, teacher_preprocessor)` (with its "
        "`teacher_*` arrays) through `TeacherCache.dataset((x, y, "
        "sample_weight), batch_size)`, which adds the teacher's signals."
    )

    def __init__(self, same_vocabulary=False, teacher_tokenizer=None, **kwargs):
        super().__init__(**kwargs)
        self.same_vocabulary = bool(same_vocabulary)
        self.teacher_tokenizer = (
            None if teacher_tokenizer is None else dict(teacher_tokenizer)
        )
        self.student_vocabulary_size = None

    def check(self, student):
        self.student_vocabulary_size = vocabulary_size(student)
        if not self.same_vocabulary:
            return
        if self.student_vocabulary_size != self.vocabulary_size:
            raise ValueError(
                f"The teacher cache of {self.name!r} was built with "
                f"`same_vocabulary=True` ({self.vocabulary_size} tokens), "
                f"but the student has {self.student_vocabulary_size}. Build "
                "the cache from `CrossTokenizerTeacher(teacher)` and use "
                f"{CROSS_VOCABULARY_HINT}."
            )

    def check_divergence(self, divergence):
        if getattr(divergence, "cross_vocabulary", False):
            self.check_temperature(divergence)
            return
        # The live teacher's refusal (it names the cross-vocabulary
        # objectives) unless `same_vocabulary`; then the top-k form, as
        # from a cache on the student's tokens.
        CrossTokenizerTeacher.check_divergence(self, divergence)
        super().check_divergence(divergence)

    def check_preprocessor(self, preprocessor):
        """Raise unless `preprocessor` tokenizes the teacher's side as the
        cache was built (`tokenizer_identity`), naming both and the fix."""
        fix = (
            "Train with the preprocessor the cache was built with, or build "
            "a cache for this pairing: `build_teacher_cache("
            "CrossTokenizerTeacher(teacher), plan, x, directory, "
            "preprocessor=preprocessor)` (a new key, its own directory)."
        )
        if teacher_side(preprocessor) is None:
            raise ValueError(
                f"The teacher cache of {self.name!r} holds signals on the "
                "teacher's own tokens, but the preprocessor gives the "
                "teacher the student's tokens (it makes no "
                f"`teacher_token_ids`). {fix}"
            )
        given = tokenizer_identity(preprocessor)
        stored = self.teacher_tokenizer
        if stored is None or given["sha256"] != stored["sha256"]:
            built = "an unrecorded tokenizer"
            if stored is not None:
                built = describe_identity(stored)
            raise ValueError(
                f"The teacher cache of {self.name!r} was built on the tokens "
                f"of {built}, but the preprocessor tokenizes the teacher's "
                f"side with {describe_identity(given)}: the cached signals "
                f"lie on other tokens. {fix}"
            )

    def padding_mask(self, inputs):
        return inputs[PADDING_KEY]

    def input_keys(self, layers, needs):
        # The live teacher's pairing inputs, without its token ids (no
        # teacher runs).
        pairing = {"logits": (POSITIONS_KEY,), "hidden_states": UNIT_KEYS}
        keys = super().input_keys(layers, needs) + (PADDING_KEY,)
        for need, own in pairing.items():
            keys += own if need in needs else ()
        return keys

    # The teacher's own inputs are expected (nothing refused), and its
    # units read as the live teacher reads them.
    check_inputs = CrossTokenizerTeacher.check_inputs
    teacher_units = CrossTokenizerTeacher.teacher_units

    def kd(self, divergence, outputs, inputs, student_logits, sample_weight):
        positions = ops.cast(inputs[POSITIONS_KEY], "int32")
        weights = ops.cast(sample_weight, "float32") * ops.cast(
            positions >= 0, "float32"
        )
        log_probs = _at_positions(
            ops.cast(inputs[TOP_K_LOG_PROBS], "float32"), positions
        )
        indices = _at_positions(
            ops.cast(inputs[TOP_K_INDICES], "int32"), positions
        )
        log_rest = _at_positions(
            ops.cast(inputs[LOG_REST], "float32"), positions
        )
        log_probs = ops.stop_gradient(log_probs)
        log_rest = ops.stop_gradient(log_rest)
        # A same-vocabulary divergence, or one that reads the top k as they
        # are (a truncated ULD with m <= k): its top-k form, without the
        # law rebuilt over the teacher's whole vocabulary.
        reads_top_k = getattr(divergence, "reads_top_k", None)
        if not getattr(divergence, "cross_vocabulary", False) or (
            reads_top_k is not None and reads_top_k(log_probs.shape[-1])
        ):
            return divergence.top_k(
                log_probs,
                indices,
                log_rest,
                student_logits,
                sample_weight=weights,
            )
        logits = self.temperature * _full_log_probs(
            log_probs, indices, log_rest, self.vocabulary_size
        )
        return divergence(logits, student_logits, sample_weight=weights)

    def get_config(self):
        config = super().get_config()
        config["same_vocabulary"] = self.same_vocabulary
        config["teacher_tokenizer"] = self.teacher_tokenizer
        return config

    def __repr__(self):
        return (
            f"CachedCrossTokenizerTeacher({self.name!r}, "
            f"layers={self.layers}, top_k={self.top_k}, "
            f"temperature={self.temperature})"
        )


def describe_cross_tokenizer_teacher(description, source, identity):
    """The `CachedCrossTokenizerTeacher` of a `CrossTokenizerTeacher`
    `source` cached as `description` (a `CachedTeacher`) on the tokens of
    the tokenizer `identity`."""
    config = description.get_config()
    config["same_vocabulary"] = source.same_vocabulary
    config["teacher_tokenizer"] = identity
    return CachedCrossTokenizerTeacher(**config)
