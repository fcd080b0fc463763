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
"""

import math

import keras
from keras import ops


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


def _check_fraction(name, value):
    if not 0.0 < float(value) < 1.0:
        raise ValueError(
            f"`{name}` must lie strictly between 0 and 1, got {value}. "
            "At 0 or 1 the mixture degenerates; use forward_kl or reverse_kl "
            "instead."
        )


def _check_temperature(temperature):
    if not float(temperature) > 0.0:
        raise ValueError(f"`temperature` must be > 0, got {temperature}.")


def forward_kl(teacher_logits, student_logits, temperature=1.0):
    """Forward KL `KL(p_T || p_S)` per position."""
    _check_temperature(temperature)
    return _kl_from_log_probs(
        _log_probs(teacher_logits, temperature),
        _log_probs(student_logits, temperature),
    )


def reverse_kl(teacher_logits, student_logits, temperature=1.0):
    """Reverse KL `KL(p_S || p_T)` per position."""
    _check_temperature(temperature)
    return _kl_from_log_probs(
        _log_probs(student_logits, temperature),
        _log_probs(teacher_logits, temperature),
    )


def jensen_shannon(teacher_logits, student_logits, beta=0.5, temperature=1.0):
    """Generalized Jensen-Shannon divergence with mixing `beta` per position.

    `JS_beta = beta KL(p_T || m) + (1 - beta) KL(p_S || m)` with
    `m = beta p_T + (1 - beta) p_S`; `beta = 0.5` is the symmetric JSD.
    """
    _check_fraction("beta", beta)
    _check_temperature(temperature)
    log_t = _log_probs(teacher_logits, temperature)
    log_s = _log_probs(student_logits, temperature)
    log_m = _log_mixture(log_t, log_s, beta)
    return beta * _kl_from_log_probs(log_t, log_m) + (
        1.0 - beta
    ) * _kl_from_log_probs(log_s, log_m)


def total_variation(teacher_logits, student_logits, temperature=1.0):
    """Total variation distance `0.5 * sum |p_T - p_S|` per position."""
    _check_temperature(temperature)
    p_t = ops.exp(_log_probs(teacher_logits, temperature))
    p_s = ops.exp(_log_probs(student_logits, temperature))
    return 0.5 * ops.sum(ops.abs(p_t - p_s), axis=-1)


def skew_forward_kl(teacher_logits, student_logits, skew=0.1, temperature=1.0):
    """Skew forward KL `KL(p_T || a p_T + (1 - a) p_S)` per position."""
    _check_fraction("skew", skew)
    _check_temperature(temperature)
    log_t = _log_probs(teacher_logits, temperature)
    log_s = _log_probs(student_logits, temperature)
    return _kl_from_log_probs(log_t, _log_mixture(log_t, log_s, skew))


def skew_reverse_kl(teacher_logits, student_logits, skew=0.1, temperature=1.0):
    """Skew reverse KL `KL(p_S || a p_S + (1 - a) p_T)` per position."""
    _check_fraction("skew", skew)
    _check_temperature(temperature)
    log_t = _log_probs(teacher_logits, temperature)
    log_s = _log_probs(student_logits, temperature)
    return _kl_from_log_probs(log_s, _log_mixture(log_s, log_t, skew))


class _Divergence(keras.losses.Loss):
    """Base of the divergence losses: `y_true` teacher, `y_pred` student."""

    _fn = None

    def __init__(
        self,
        temperature=1.0,
        reduction="mean_with_sample_weight",
        name=None,
        dtype=None,
    ):
        _check_temperature(temperature)
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.temperature = temperature

    def _kwargs(self):
        return {"temperature": self.temperature}

    def call(self, y_true, y_pred):
        return type(self)._fn(y_true, y_pred, **self._kwargs())

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
            `"total_variation"`, `"skew_forward_kl"`, `"skew_reverse_kl"`, a
            `keras.losses.Loss` instance (returned as is) or a serialized
            config.
        **kwargs: constructor arguments when `identifier` is a name.
    """
    if isinstance(identifier, keras.losses.Loss):
        return identifier
    if isinstance(identifier, dict):
        return keras.saving.deserialize_keras_object(identifier)
    if isinstance(identifier, str):
        key = identifier.lower().replace("-", "_")
        if key not in DIVERGENCES:
            raise ValueError(
                f"Unknown divergence {identifier!r}. Choose one of "
                f"{sorted(DIVERGENCES)} or pass a keras.losses.Loss."
            )
        return DIVERGENCES[key](**kwargs)
    raise TypeError(
        "A divergence must be a name, a config dict or a keras.losses.Loss, "
        f"got {type(identifier).__name__}."
    )
