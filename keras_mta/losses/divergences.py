"""Token-level divergences between teacher and student next-token laws.

Every function takes teacher logits and student logits of shape
`(..., vocab_size)` and returns the divergence per position, shape `(...)`.
They work from `log_softmax` in float32 (also under a bfloat16 policy), so
they never take `log(0)` and stay finite for logits of +-1e4. Mixtures are
formed in log space with `logaddexp`.

The `keras.losses.Loss` subclasses take `y_true` = teacher logits and
`y_pred` = student logits, and by default average over positions weighted by
`sample_weight` (`reduction="mean_with_sample_weight"`), so a position of
weight 0 (a prompt or padding token) changes nothing.

Top-k form (training from a cached teacher, `keras_mta.TeacherCache`
and `DistillationModel(teacher=CachedTeacher)`): the teacher keeps, per
position, only its `k` most likely tokens (their log-probabilities and ids)
and the log of the probability mass of all other tokens. Both
distributions are then coarsened to the same `k + 1` outcomes, the
teacher's `k` tokens plus one bucket holding the rest of the vocabulary
(`coarse_teacher_log_probs`, `coarse_student_log_probs`), and the
divergence is taken over those outcomes (`Divergence.top_k`). Coarsening
can only lower a divergence (data processing inequality); with `k` equal
to the vocabulary size the bucket is empty and the top-k form is the full
divergence.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_mta.losses.shapes import check_same_shape
from keras_mta.losses.shapes import check_shape
from keras_mta.losses.shapes import static_dim
from keras_mta.losses.shapes import static_shape


def _log_probs(logits, temperature):
    return ops.log_softmax(ops.cast(logits, "float32") / temperature, axis=-1)


def _kl_from_log_probs(log_p, log_q):
    """`KL(p || q) = sum p (log p - log q)` from log-probabilities."""
    return ops.sum(ops.exp(log_p) * (log_p - log_q), axis=-1)


def _log_mixture(log_p, log_q, weight_p):
    """`log(weight_p * p + (1 - weight_p) * q)`, computed stably."""
    return ops.logaddexp(
        log_p + math.log(weight_p), log_q + math.log(1.0 - weight_p)
    )


# Log-probability of an empty outcome (the rest bucket when the top k cover
# the whole vocabulary): exp() of it is exactly 0 in float32, and it stays
# finite, so `0 * (log p - log q)` is 0 rather than NaN.
_EMPTY_LOG_PROB = -1e4


def _top_k_mask(indices, vocab_size):
    """`(..., vocab_size)` float mask, 1 at the ids in `indices (..., k)`.

    Built with one `scatter` of `batch * seq_len * k` ones (never a
    `(..., k, vocab_size)` one-hot)."""
    indices = ops.cast(indices, "int32")
    shape = ops.shape(indices)
    batch, length, k = shape[0], shape[1], shape[2]
    rows = ops.broadcast_to(
        ops.reshape(ops.arange(batch, dtype="int32"), (-1, 1, 1)), shape
    )
    cols = ops.broadcast_to(
        ops.reshape(ops.arange(length, dtype="int32"), (1, -1, 1)), shape
    )
    coordinates = ops.reshape(
        ops.stack([rows, cols, indices], axis=-1), (-1, 3)
    )
    ones = ops.ones((batch * length * k,), dtype="float32")
    return ops.scatter(coordinates, ones, (batch, length, vocab_size))


def _rest_log_mass(log_p, indices):
    """`log` of the probability of every token not in `indices`, exactly:
    a log-sum-exp over those tokens (not `log(1 - top-k mass)`, which
    cancels catastrophically in float32 once the rest is below ~1e-7).
    With no token left it is `_EMPTY_LOG_PROB` (probability 0)."""
    vocab_size = ops.shape(log_p)[-1]
    in_top = _top_k_mask(indices, vocab_size) > 0
    rest = ops.logsumexp(ops.where(in_top, -1e9, log_p), axis=-1)
    return ops.maximum(rest, _EMPTY_LOG_PROB)


def top_k_log_probs(logits, k, temperature=1.0):
    """The teacher's `k` most likely tokens and the mass of all the others.

    Args:
        logits: `(batch, seq_len, vocab_size)` teacher logits.
        k: int in `1 .. vocab_size`.
        temperature: float > 0, applied before the softmax.

    Returns:
        `(log_probs, indices, log_rest)`: float32 `(..., k)` log-probabilities
        of the top `k` tokens in decreasing order, int32 `(..., k)` their
        ids, and float32 `(...)` the log of the probability of every other
        token together (`-1e4`, i.e. probability 0, when `k` is the
        vocabulary size).
    """
    check_temperature(temperature)
    vocab_size = ops.shape(logits)[-1]
    if not 1 <= int(k) <= int(vocab_size):
        raise ValueError(
            f"`top_k` must lie in [1, vocabulary size = {vocab_size}], got {k}."
        )
    if len(ops.shape(logits)) != 3:
        raise ValueError(
            "`top_k_log_probs` takes logits of shape (batch, seq_len, "
            f"vocab_size), got shape {ops.shape(logits)}."
        )
    log_p = _log_probs(logits, temperature)
    values, indices = ops.top_k(log_p, int(k), sorted=True)
    indices = ops.cast(indices, "int32")
    return values, indices, _rest_log_mass(log_p, indices)


def coarse_teacher_log_probs(top_k_log_probs, log_rest):
    """`(..., k + 1)` log-probabilities: the top `k`, then the rest bucket.

    Renormalized (the stored values may have lost a little precision), so
    the outcomes sum to exactly 1.
    """
    log_t = ops.concatenate(
        [
            ops.cast(top_k_log_probs, "float32"),
            ops.maximum(ops.cast(log_rest, "float32"), _EMPTY_LOG_PROB)[
                ..., None
            ],
        ],
        axis=-1,
    )
    return ops.log_softmax(log_t, axis=-1)


def coarse_student_log_probs(student_logits, top_k_indices, temperature=1.0):
    """The student's law on the teacher's `k + 1` outcomes, `(..., k + 1)`.

    `log q` of each of the teacher's top-`k` tokens (gathered from the full
    student softmax at `temperature`) and the log of the student's mass on
    every other token (a log-sum-exp over them) for the bucket. Shapes
    `(batch, seq_len, vocab_size)` and `(batch, seq_len, k)`. Gradients flow
    to all student logits.

    Indices outside the vocabulary: `k` above the vocabulary size is
    refused with a ValueError (static shapes). An index value outside
    `[0, vocab_size)` names a token the student does not have (a teacher
    cache built for another vocabulary, or a damaged one): the student's
    law, and so the divergence, is NaN at exactly that position, the same
    on every backend, and the non-finite guard of `DistillationModel.fit`
    stops the run there, naming the KD term. Values cannot raise inside a
    compiled step; `check_top_k_indices` checks concrete (NumPy) indices
    eagerly, and `Divergence.top_k` calls it on NumPy inputs.
    """
    check_temperature(temperature)
    _check_k(
        "coarse_student_log_probs", top_k_indices.shape[-1], student_logits
    )
    log_q = _log_probs(student_logits, temperature)
    vocab_size = ops.shape(log_q)[-1]
    indices = ops.cast(top_k_indices, "int32")
    in_vocabulary = ops.all(
        ops.logical_and(indices >= 0, indices < vocab_size),
        axis=-1,
        keepdims=True,
    )
    # Clipped so that the gather and the scatter stay in range on every
    # backend; the positions that needed it are set to NaN below.
    indices = ops.clip(indices, 0, vocab_size - 1)
    top = ops.take_along_axis(log_q, indices, axis=-1)
    rest = _rest_log_mass(log_q, indices)
    coarse = ops.concatenate([top, rest[..., None]], axis=-1)
    return ops.where(in_vocabulary, coarse, float("nan"))


def check_top_k_indices(indices, vocabulary_size):
    """Raise if a concrete top-k index lies outside `[0, vocabulary_size)`.

    Args:
        indices: NumPy-convertible int array `(batch, seq_len, k)` of token
            ids, e.g. a teacher cache's `teacher_top_k_indices`.
        vocabulary_size: int, the student's vocabulary size.

    Raises:
        ValueError: naming the first bad position and value.
    """
    indices = np.asarray(indices)
    bad = np.argwhere((indices < 0) | (indices >= int(vocabulary_size)))
    if len(bad):
        where = [int(i) for i in bad[0]]
        raise ValueError(
            f"Top-k index {where} = {int(indices[tuple(where)])} lies "
            f"outside the vocabulary [0, {int(vocabulary_size)}) "
            f"({len(bad)} such indices). The teacher cache was built for "
            "another vocabulary, or is damaged: rebuild it with the "
            "teacher that shares the student's tokenizer."
        )


def _check_k(where, k, student_logits):
    vocab_size = static_shape(student_logits)[-1]
    k = static_dim(k)
    if k is not None and vocab_size is not None and k > vocab_size:
        raise ValueError(
            f"{where}: the teacher's top-k has k = {k} tokens, above the "
            f"student's vocabulary size {vocab_size}. Use a teacher cache "
            "built with `top_k` <= the vocabulary size, for a teacher that "
            "shares the student's vocabulary."
        )


def _check_fraction(name, value):
    if not 0.0 < float(value) < 1.0:
        raise ValueError(
            f"`{name}` must lie strictly between 0 and 1, got {value}. "
            "At 0 or 1 the mixture degenerates; use forward_kl or reverse_kl "
            "instead."
        )


def _check_logits(where, teacher_logits, student_logits):
    check_same_shape(
        where,
        "teacher_logits",
        teacher_logits,
        "student_logits",
        student_logits,
    )


def _check_top_k_inputs(
    where,
    log_probs,
    indices,
    log_rest,
    student_logits,
    sample_weight=None,
    same_vocabulary=True,
):
    sizes = {}
    check_shape(
        where,
        "student_logits",
        student_logits,
        ("batch", "seq_len", None),
        sizes,
    )
    check_shape(
        where,
        "teacher_top_k_log_probs",
        log_probs,
        ("batch", "seq_len", "k"),
        sizes,
    )
    check_shape(
        where,
        "teacher_top_k_indices",
        indices,
        ("batch", "seq_len", "k"),
        sizes,
    )
    check_shape(
        where, "teacher_log_rest", log_rest, ("batch", "seq_len"), sizes
    )
    if sample_weight is not None:
        check_shape(
            where, "sample_weight", sample_weight, ("batch", "seq_len"), sizes
        )
    if not same_vocabulary:
        return  # The ids name the teacher's tokens, not the student's.
    _check_k(where, static_shape(indices)[-1], student_logits)
    if isinstance(indices, np.ndarray):
        check_top_k_indices(indices, student_logits.shape[-1])


def check_temperature(temperature):
    """Raises `ValueError` unless `temperature` is a finite number > 0 (the
    one check of a KD temperature: the divergences, `DistillationModel`
    and the teacher-cache build call it)."""
    if not 0.0 < float(temperature) < float("inf"):
        raise ValueError(
            f"`temperature` must be > 0 and finite, got {temperature}."
        )


def forward_kl(teacher_logits, student_logits, temperature=1.0):
    """Forward KL `KL(p_T || p_S)` per position."""
    _check_logits("forward_kl", teacher_logits, student_logits)
    check_temperature(temperature)
    return _kl_from_log_probs(
        _log_probs(teacher_logits, temperature),
        _log_probs(student_logits, temperature),
    )


def reverse_kl(teacher_logits, student_logits, temperature=1.0):
    """Reverse KL `KL(p_S || p_T)` per position."""
    _check_logits("reverse_kl", teacher_logits, student_logits)
    check_temperature(temperature)
    return _kl_from_log_probs(
        _log_probs(student_logits, temperature),
        _log_probs(teacher_logits, temperature),
    )


def jensen_shannon(teacher_logits, student_logits, beta=0.5, temperature=1.0):
    """Generalized Jensen-Shannon divergence with mixing `beta` per position.

    `JS_beta = beta KL(p_T || m) + (1 - beta) KL(p_S || m)` with
    `m = beta p_T + (1 - beta) p_S`; `beta = 0.5` is the symmetric JSD.
    """
    _check_logits("jensen_shannon", teacher_logits, student_logits)
    _check_fraction("beta", beta)
    check_temperature(temperature)
    log_t = _log_probs(teacher_logits, temperature)
    log_s = _log_probs(student_logits, temperature)
    log_m = _log_mixture(log_t, log_s, beta)
    return beta * _kl_from_log_probs(log_t, log_m) + (
        1.0 - beta
    ) * _kl_from_log_probs(log_s, log_m)


def total_variation(teacher_logits, student_logits, temperature=1.0):
    """Total variation distance `0.5 * sum |p_T - p_S|` per position."""
    _check_logits("total_variation", teacher_logits, student_logits)
    check_temperature(temperature)
    p_t = ops.exp(_log_probs(teacher_logits, temperature))
    p_s = ops.exp(_log_probs(student_logits, temperature))
    return 0.5 * ops.sum(ops.abs(p_t - p_s), axis=-1)


def skew_forward_kl(teacher_logits, student_logits, skew=0.1, temperature=1.0):
    """Skew forward KL `KL(p_T || a p_T + (1 - a) p_S)` per position."""
    _check_logits("skew_forward_kl", teacher_logits, student_logits)
    _check_fraction("skew", skew)
    check_temperature(temperature)
    log_t = _log_probs(teacher_logits, temperature)
    log_s = _log_probs(student_logits, temperature)
    return _kl_from_log_probs(log_t, _log_mixture(log_t, log_s, skew))


def skew_reverse_kl(teacher_logits, student_logits, skew=0.1, temperature=1.0):
    """Skew reverse KL `KL(p_S || a p_S + (1 - a) p_T)` per position."""
    _check_logits("skew_reverse_kl", teacher_logits, student_logits)
    _check_fraction("skew", skew)
    check_temperature(temperature)
    log_t = _log_probs(teacher_logits, temperature)
    log_s = _log_probs(student_logits, temperature)
    return _kl_from_log_probs(log_s, _log_mixture(log_s, log_t, skew))


class _Divergence(keras.losses.Loss):
    """Base of the divergence losses: `y_true` teacher, `y_pred` student."""

    _fn = None
    cross_vocabulary = False  # True: compares different vocabularies

    def __init__(
        self,
        temperature=1.0,
        reduction="mean_with_sample_weight",
        name=None,
        dtype=None,
    ):
        check_temperature(temperature)
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.temperature = temperature

    def _kwargs(self):
        return {"temperature": self.temperature}

    def call(self, y_true, y_pred):
        return type(self)._fn(y_true, y_pred, **self._kwargs())

    def top_k(
        self,
        teacher_top_k_log_probs,
        teacher_top_k_indices,
        teacher_log_rest,
        student_logits,
        sample_weight=None,
    ):
        """The divergence over the teacher's top `k` tokens plus the rest.

        Both laws are coarsened to `k + 1` outcomes (see the module
        docstring) and the divergence is taken over them, reduced like
        `__call__`. The teacher's values must have been computed at this
        loss's `temperature` (`top_k_log_probs(logits, k, temperature)`).

        Args:
            teacher_top_k_log_probs: float `(batch, seq_len, k)`.
            teacher_top_k_indices: int `(batch, seq_len, k)` token ids.
            teacher_log_rest: float `(batch, seq_len)`, log of the mass of
                the other tokens.
            student_logits: `(batch, seq_len, vocab_size)`.
            sample_weight: optional `(batch, seq_len)` position weights.

        Returns:
            The reduced loss (a scalar with the default reduction).

        Raises:
            ValueError: when the shapes disagree (rank, batch, sequence
                length or `k`; a size-1 dimension is not broadcast).
        """
        _check_top_k_inputs(
            f"{type(self).__name__}.top_k",
            teacher_top_k_log_probs,
            teacher_top_k_indices,
            teacher_log_rest,
            student_logits,
            sample_weight,
        )
        log_t = coarse_teacher_log_probs(
            teacher_top_k_log_probs, teacher_log_rest
        )
        log_s = coarse_student_log_probs(
            student_logits, teacher_top_k_indices, self.temperature
        )
        # The same loss at temperature 1 on normalized log-probabilities:
        # its log_softmax leaves them unchanged.
        config = self.get_config()
        config["temperature"] = 1.0
        return type(self).from_config(config)(
            log_t, log_s, sample_weight=sample_weight
        )

    def get_config(self):
        config = super().get_config()
        config.update(self._kwargs())
        return config


def _loss_docstring(class_name, formula, extra_args=""):
    return f"""Token-level {formula} as a `keras.losses.Loss`.

    `y_true` holds teacher logits and `y_pred` student logits, both of shape
    `(batch, seq_len, vocab_size)`; `sample_weight` of shape
    `(batch, seq_len)` selects and weights positions. Both logits are divided
    by `temperature`; the divergence is computed in float32 from
    `log_softmax`.

    Args:{extra_args}
        temperature: float > 0, applied to both logits.
        reduction: Keras reduction; the default `"mean_with_sample_weight"`
            divides the weighted sum by the sum of `sample_weight`.
        name: optional name.
        dtype: optional dtype of the loss computation's output.

    Examples:

    >>> import numpy as np
    >>> teacher = np.random.normal(size=(2, 4, 10))
    >>> student = np.random.normal(size=(2, 4, 10))
    >>> weight = np.array([[0, 1, 1, 1], [0, 0, 1, 1]])
    >>> loss = {class_name}()
    >>> value = loss(teacher, student, sample_weight=weight)
    """


@keras.saving.register_keras_serializable(package="keras_mta")
class ForwardKL(_Divergence):
    __doc__ = _loss_docstring("ForwardKL", "forward KL `KL(p_T || p_S)`")
    _fn = staticmethod(forward_kl)


@keras.saving.register_keras_serializable(package="keras_mta")
class ReverseKL(_Divergence):
    __doc__ = _loss_docstring("ReverseKL", "reverse KL `KL(p_S || p_T)`")
    _fn = staticmethod(reverse_kl)


@keras.saving.register_keras_serializable(package="keras_mta")
class TotalVariation(_Divergence):
    __doc__ = _loss_docstring(
        "TotalVariation", "total variation `0.5 sum |p_T - p_S|`"
    )
    _fn = staticmethod(total_variation)


class _MixtureDivergence(_Divergence):
    _mix_name = None

    def __init__(
        self,
        mix,
        temperature=1.0,
        reduction="mean_with_sample_weight",
        name=None,
        dtype=None,
    ):
        _check_fraction(self._mix_name, mix)
        super().__init__(
            temperature=temperature,
            reduction=reduction,
            name=name,
            dtype=dtype,
        )
        setattr(self, self._mix_name, mix)

    def _kwargs(self):
        kwargs = super()._kwargs()
        kwargs[self._mix_name] = getattr(self, self._mix_name)
        return kwargs


@keras.saving.register_keras_serializable(package="keras_mta")
class JensenShannon(_MixtureDivergence):
    __doc__ = _loss_docstring(
        "JensenShannon",
        "generalized Jensen-Shannon divergence "
        "`beta KL(p_T || m) + (1 - beta) KL(p_S || m)`, "
        "`m = beta p_T + (1 - beta) p_S`",
        "\n        beta: mixing weight in (0, 1); 0.5 gives the symmetric JSD.",
    )
    _fn = staticmethod(jensen_shannon)
    _mix_name = "beta"

    def __init__(self, beta=0.5, **kwargs):
        super().__init__(beta, **kwargs)


@keras.saving.register_keras_serializable(package="keras_mta")
class SkewForwardKL(_MixtureDivergence):
    __doc__ = _loss_docstring(
        "SkewForwardKL",
        "skew forward KL `KL(p_T || a p_T + (1 - a) p_S)`",
        "\n        skew: the skew `a` in (0, 1), default 0.1.",
    )
    _fn = staticmethod(skew_forward_kl)
    _mix_name = "skew"

    def __init__(self, skew=0.1, **kwargs):
        super().__init__(skew, **kwargs)


@keras.saving.register_keras_serializable(package="keras_mta")
class SkewReverseKL(_MixtureDivergence):
    __doc__ = _loss_docstring(
        "SkewReverseKL",
        "skew reverse KL `KL(p_S || a p_S + (1 - a) p_T)`",
        "\n        skew: the skew `a` in (0, 1), default 0.1.",
    )
    _fn = staticmethod(skew_reverse_kl)
    _mix_name = "skew"

    def __init__(self, skew=0.1, **kwargs):
        super().__init__(skew, **kwargs)


DIVERGENCES = {
    "forward_kl": ForwardKL,
    "reverse_kl": ReverseKL,
    "jensen_shannon": JensenShannon,
    "total_variation": TotalVariation,
    "skew_forward_kl": SkewForwardKL,
    "skew_reverse_kl": SkewReverseKL,
}


def get_divergence(identifier, **kwargs):
    """Return a divergence `Loss` from a name, a config dict or an instance.

    Args:
        identifier: one of `"forward_kl"`, `"reverse_kl"`, `"jensen_shannon"`,
            `"total_variation"`, `"skew_forward_kl"`, `"skew_reverse_kl"`,
            `"uld"` (across vocabularies: `keras_mta.losses.cross_vocabulary`),
            a `keras.losses.Loss` instance (returned as is) or a serialized
            config.
        **kwargs: constructor arguments when `identifier` is a name.
    """
    if isinstance(identifier, keras.losses.Loss):
        return identifier
    if isinstance(identifier, dict):
        return keras.saving.deserialize_keras_object(identifier)
    if isinstance(identifier, str):
        # Imported here: cross_vocabulary builds on this module.
        from keras_mta.losses.cross_vocabulary import (
            CROSS_VOCABULARY_DIVERGENCES,
        )

        names = {**DIVERGENCES, **CROSS_VOCABULARY_DIVERGENCES}
        key = identifier.lower().replace("-", "_")
        if key not in names:
            raise ValueError(
                f"Unknown divergence {identifier!r}. Choose one of "
                f"{sorted(names)} or pass a keras.losses.Loss."
            )
        return names[key](**kwargs)
    raise TypeError(
        "A divergence must be a name, a config dict or a keras.losses.Loss, "
        f"got {type(identifier).__name__}."
    )
