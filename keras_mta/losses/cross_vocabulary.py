"""Logit distillation between models whose vocabularies differ.

Universal Logit Distillation (ULD; Boizard, El Haddad, Hudelot and
Colombo, 2024, "Towards Cross-Tokenizer Distillation: the Universal Logit
Distillation Loss for LLMs", arXiv 2402.12030). Token ids of two
vocabularies name different things, so ULD compares the two next-token
laws as unlabeled mass profiles: it sorts each probability vector,
pads the shorter vocabulary with zero probabilities to the longer one, and
takes the closed-form Wasserstein-1 distance of the paper between the two
sorted vectors, per position:

```
p_T = softmax(teacher_logits / temperature)   # (..., V_T), sorted, padded
p_S = softmax(student_logits / temperature)   # (..., V_S), sorted, padded
ULD = sum_i | p_S,(i) - p_T,(i) |             # i-th largest probability
```

What is implemented, exactly, against the paper and its public code
(`Nicolas-BZRD/llm-recipes`, `models/distillation_model.py`):

- The sum of absolute differences of the sorted, zero-padded vectors,
  without a factor 1/2 and, by default, without a truncation of the
  sorted vectors (the authors' code sorts and compares the whole
  vocabularies; `truncation` below is keras-mta's cheaper bound).
- One `temperature`, applied to both logits. The authors' code has a
  student and a teacher temperature, both 1 by default.
- The paper adds ULD to the student's cross-entropy (`CE + lambda ULD`);
  here ULD is the KD term alone, the cross-entropy being the model's own
  CE term, weighted as every other term.
- Positions: the authors pair the k-th response token of the student with
  the k-th response token of the teacher, which drifts as soon as the two
  tokenizations cut the text differently. keras-mta pairs positions by
  their character offsets instead (`keras_mta.preprocessing.
  position_pairing`); the teacher's logits arrive already gathered at the
  student's positions, so both inputs have shape `(batch, seq_len, V)`
  with their own `V`.

How it is computed: with `k` the smaller vocabulary, only the `k`
largest probabilities of the larger one meet a non-zero partner; all its
others meet padding zeros and add their own mass. So the smaller law is
sorted whole, the larger one's top `k` is taken with `top_k`, and its
rest mass is added: the same sum, without sorting the larger vocabulary
(on a CPU, sorting SmolLM2's 49,152 probabilities at every position was
most of a training step, about 20x the `top_k`). Two vocabularies of one
size are both sorted whole.

Truncated ULD (`truncation=m`, an option of keras-mta, not of the
paper): sorting the smaller vocabulary whole and taking the larger one's
top of that size still costs most of a step at mid-size vocabularies
(6,000 and 8,000 tokens at 2,048 positions per step on a 2-core CPU:
1.4x to 2.7x a same-tokenizer MTA step; truncated to `m = 64`, 0.96x to
1.04x; BENCHMARKS.md). With `m` smaller than both vocabularies, only
the `m` largest probabilities of each side are compared, in order, and
the two rest masses (each side's sum of its other probabilities):

```
ULD_m = sum_{i<m} | p_S,(i) - p_T,(i) | + | rest_S - rest_T |
ULD_m <= ULD <= ULD_m + 2 min(rest_S, rest_T)
```

Proof, with `a`, `b` the sorted padded vectors: the tail terms
`sum_{i>=m} |a_i - b_i|` of ULD lie between `|sum_{i>=m} (a_i - b_i)| =
|rest_S - rest_T|` (triangle inequality) and `rest_S + rest_T = |rest_S -
rest_T| + 2 min(rest_S, rest_T)`. So `ULD_m` is a lower bound of ULD,
tight once either side puts almost all its mass on its top `m` (the usual
case for a trained model's next-token law). For `m` at least the smaller
vocabulary, `ULD_m` is ULD (the smaller side's rest is 0 and the larger
side's top beyond it meets zeros), and the exact form is computed.

Sorting and `top_k` send probabilities and their gradients through a
permutation, so gradients flow to all logits of both models (the
teacher's are normally constant). Written with `keras.ops` only; static
shapes.
"""

import numbers

import keras
from keras import ops

from keras_mta.losses.divergences import _check_top_k_inputs
from keras_mta.losses.divergences import _Divergence
from keras_mta.losses.divergences import check_temperature
from keras_mta.losses.divergences import coarse_teacher_log_probs
from keras_mta.losses.shapes import static_shape


def _probabilities(logits, temperature):
    return ops.softmax(ops.cast(logits, "float32") / temperature, axis=-1)


def _top_and_rest(probabilities, k):
    """The `k` largest probabilities, ascending, and the mass of the others.

    Only the `k` largest of the larger vocabulary meet a non-zero partner
    (the smaller vocabulary has `k` tokens); every other one meets a zero
    and adds itself to the distance. `top_k` finds the `k` largest without
    sorting the whole vocabulary (a sort of 49,152 probabilities per
    position took most of a CPU training step). The rest mass is summed
    from the probabilities themselves, not as `1 - sum(top)`, which would
    lose the small tail to cancellation; tokens tied with the `k`-th
    largest but left out of the top count once each."""
    top, _ = ops.top_k(probabilities, k, sorted=True)
    # The k-th largest as a reduction over the top, not a slice of it: XLA
    # (jax) then keeps its fast `TopK` instead of sorting the whole
    # vocabulary to serve the extra slice.
    kth = ops.min(top, axis=-1, keepdims=True)
    below = ops.sum(ops.where(probabilities < kth, probabilities, 0.0), axis=-1)
    tied = ops.sum(ops.cast(probabilities >= kth, "float32"), axis=-1) - k
    rest = below + tied * kth[..., 0]
    return ops.flip(top, axis=-1), rest


def _check_cross_vocabulary_logits(where, teacher_logits, student_logits):
    teacher_shape = static_shape(teacher_logits)
    student_shape = static_shape(student_logits)
    if len(teacher_shape) != len(student_shape) or any(
        t is not None and s is not None and t != s
        for t, s in zip(teacher_shape[:-1], student_shape[:-1])
    ):
        raise ValueError(
            f"{where}: teacher_logits {tuple(teacher_shape)} and "
            f"student_logits {tuple(student_shape)} must agree on every "
            "dimension but the last (the vocabulary). Gather the teacher's "
            "logits at the student's positions first (`teacher_positions` "
            "from DistillationPreprocessor)."
        )
    if teacher_shape[-1] is None or student_shape[-1] is None:
        raise ValueError(
            f"{where}: the vocabulary sizes must be static, got "
            f"{teacher_shape[-1]} (teacher) and {student_shape[-1]} "
            "(student)."
        )


def check_truncation(truncation):
    """Raise `ValueError` unless `truncation` is None or an integer >= 1
    (the number of largest probabilities a truncated ULD compares)."""
    if truncation is None:
        return
    integer = isinstance(truncation, numbers.Integral) and not isinstance(
        truncation, bool
    )
    if not integer or int(truncation) < 1:
        raise ValueError(
            f"`truncation` must be None (exact ULD) or an integer >= 1 (how "
            "many of the largest probabilities of each side are compared), "
            f"got {truncation!r}."
        )


def _truncated(teacher, student, truncation):
    """`ULD_m` from two probability vectors: both sides' top `m` in order,
    then their rest masses (see the module docstring)."""
    teacher, teacher_rest = _top_and_rest(teacher, truncation)
    student, student_rest = _top_and_rest(student, truncation)
    return _compare_tops(teacher, teacher_rest, student, student_rest)


def _compare_tops(teacher, teacher_rest, student, student_rest):
    return ops.sum(ops.abs(student - teacher), axis=-1) + ops.abs(
        student_rest - teacher_rest
    )


def universal_logit_distillation(
    teacher_logits, student_logits, temperature=1.0, truncation=None
):
    """Universal Logit Distillation per position, across vocabularies.

    `sum_i |p_S,(i) - p_T,(i)|` over the sorted probabilities of both
    models, the smaller vocabulary padded with zeros (see the module
    docstring). 0 when the two laws are permutations of each other (after
    padding); at most 2. With `truncation=m` below both vocabulary sizes,
    `ULD_m`: the `m` largest probabilities of each side compared in order,
    plus the difference of the two rest masses; a lower bound of ULD, at
    most `2 min(rest_S, rest_T)` below it (module docstring).

    Args:
        teacher_logits: `(..., teacher_vocab_size)`.
        student_logits: `(..., student_vocab_size)`, the same leading
            dimensions as `teacher_logits`; the vocabulary sizes may differ.
        temperature: float > 0, applied to both logits.
        truncation: None (exact ULD) or an int `m >= 1`; `m` at least the
            smaller vocabulary size is exact ULD.

    Returns:
        float32 `(...)`, the distance per position.

    Examples:

    >>> import numpy as np
    >>> teacher = np.random.normal(size=(2, 4, 12))
    >>> student = np.random.normal(size=(2, 4, 7))
    >>> universal_logit_distillation(teacher, student).shape
    (2, 4)
    """
    _check_cross_vocabulary_logits(
        "universal_logit_distillation", teacher_logits, student_logits
    )
    check_temperature(temperature)
    check_truncation(truncation)
    teacher = _probabilities(teacher_logits, temperature)
    student = _probabilities(student_logits, temperature)
    teacher_size = static_shape(teacher_logits)[-1]
    student_size = static_shape(student_logits)[-1]
    if truncation is not None and int(truncation) < min(
        teacher_size, student_size
    ):
        return _truncated(teacher, student, int(truncation))
    if teacher_size == student_size:
        teacher = ops.sort(teacher, axis=-1)
        student = ops.sort(student, axis=-1)
        return ops.sum(ops.abs(student - teacher), axis=-1)
    # The smaller vocabulary sorted whole, the larger one's top alone: the
    # rest of the larger one meets the padding zeros.
    if teacher_size > student_size:
        student = ops.sort(student, axis=-1)
        teacher, rest = _top_and_rest(teacher, student_size)
    else:
        teacher = ops.sort(teacher, axis=-1)
        student, rest = _top_and_rest(student, teacher_size)
    return ops.sum(ops.abs(student - teacher), axis=-1) + rest


@keras.saving.register_keras_serializable(package="keras_mta")
class UniversalLogitDistillation(_Divergence):
    """Universal Logit Distillation as a `keras.losses.Loss`.

    `y_true` holds teacher logits `(batch, seq_len, teacher_vocab_size)`,
    gathered at the student's positions, and `y_pred` student logits
    `(batch, seq_len, student_vocab_size)`; the vocabulary sizes may
    differ. Per position, `universal_logit_distillation` (the sorted,
    zero-padded probability vectors compared by their summed absolute
    differences; see the module docstring for what is taken from the paper).
    `sample_weight` `(batch, seq_len)` selects and weights positions: 0 on
    prompt, padding and student positions without a teacher partner. Like
    every divergence here, the default reduction is the
    `sample_weight`-weighted mean over positions.

    `cross_vocabulary = True` tells teacher sources that this divergence
    compares different vocabularies (the same-vocabulary divergences have
    `False`).

    Args:
        temperature: float > 0, applied to both logits.
        truncation: None (exact ULD, the default) or an int `m >= 1`: the
            truncated `ULD_m`, only the `m` largest probabilities of each
            side compared in order plus the two rest masses; a lower bound
            of ULD, at most `2 min(rest_S, rest_T)` below it per position
            (module docstring). Much cheaper for large vocabularies (no
            sort of a whole vocabulary); it also runs from a teacher cache
            that keeps at least `m` tokens (`top_k`).
        reduction: Keras reduction; the default `"mean_with_sample_weight"`
            divides the weighted sum by the sum of `sample_weight`.
        name: optional name.
        dtype: optional dtype of the loss computation's output.

    Examples:

    >>> import numpy as np
    >>> teacher = np.random.normal(size=(2, 4, 12))
    >>> student = np.random.normal(size=(2, 4, 7))
    >>> weight = np.array([[0, 1, 1, 1], [0, 0, 1, 1]])
    >>> loss = UniversalLogitDistillation(temperature=2.0)
    >>> value = loss(teacher, student, sample_weight=weight)
    >>> cheaper = UniversalLogitDistillation(temperature=2.0, truncation=3)
    >>> bound = cheaper(teacher, student, sample_weight=weight)

    References:
        - Boizard et al., Towards Cross-Tokenizer Distillation: the
          Universal Logit Distillation Loss for LLMs (arXiv 2402.12030).
    """

    _fn = staticmethod(universal_logit_distillation)
    cross_vocabulary = True

    def __init__(
        self,
        temperature=1.0,
        truncation=None,
        reduction="mean_with_sample_weight",
        name=None,
        dtype=None,
    ):
        check_truncation(truncation)
        super().__init__(
            temperature=temperature,
            reduction=reduction,
            name=name,
            dtype=dtype,
        )
        self.truncation = None if truncation is None else int(truncation)

    def _kwargs(self):
        kwargs = super()._kwargs()
        kwargs["truncation"] = self.truncation
        return kwargs

    def reads_top_k(self, k):
        """Whether `top_k` can compute this loss from a teacher's top `k`
        probabilities and rest mass: the truncated form with `m <= k`."""
        return self.truncation is not None and self.truncation <= int(k)

    def top_k(
        self,
        teacher_top_k_log_probs,
        teacher_top_k_indices,
        teacher_log_rest,
        student_logits,
        sample_weight=None,
    ):
        """The truncated ULD from a teacher's top `k` and its rest mass.

        `ULD_m` needs only the teacher's `m` largest probabilities, in
        order, and the mass of all its others: with `m <= k` the top `k`
        log-probabilities of a teacher cache (`top_k_log_probs`, sorted)
        and its `log_rest` give them exactly (`rest_T` is the cache's
        top `m+1 .. k` plus its rest mass), the same value as the live
        teacher's up to float rounding. The ids are not used (they name
        the teacher's tokens). The exact form needs every probability and
        raises.

        Args:
            teacher_top_k_log_probs: float `(batch, seq_len, k)`, in
                decreasing order, at this loss's temperature.
            teacher_top_k_indices: int `(batch, seq_len, k)` (shape only).
            teacher_log_rest: float `(batch, seq_len)`.
            student_logits: `(batch, seq_len, student_vocab_size)`.
            sample_weight: optional `(batch, seq_len)` position weights.

        Returns:
            The reduced loss (a scalar with the default reduction).

        Raises:
            NotImplementedError: the exact form, or `truncation > k`.
        """
        k = None
        if self.truncation is not None:
            k = static_shape(teacher_top_k_log_probs)[-1]
        if k is None or not self.reads_top_k(k):
            raise NotImplementedError(
                "UniversalLogitDistillation from a top-k teacher cache "
                f"needs `truncation` <= the cache's top_k ({k}), got "
                f"truncation={self.truncation}: the sorted teacher vector "
                "needs every probability, and the cache keeps the top k and "
                "one bucket. Use UniversalLogitDistillation(truncation=m) "
                "with m <= top_k, or train with the live teacher."
            )
        _check_top_k_inputs(
            f"{type(self).__name__}.top_k",
            teacher_top_k_log_probs,
            teacher_top_k_indices,
            teacher_log_rest,
            student_logits,
            sample_weight,
            same_vocabulary=False,
        )
        student = _probabilities(student_logits, self.temperature)
        # m at least the student's vocabulary: exact ULD, the student's
        # whole law against the teacher's top of that size and its rest.
        m = min(self.truncation, static_shape(student_logits)[-1])
        teacher = ops.exp(
            coarse_teacher_log_probs(teacher_top_k_log_probs, teacher_log_rest)
        )
        teacher_top = ops.flip(teacher[..., :m], axis=-1)
        teacher_rest = ops.sum(teacher[..., m:], axis=-1)
        student_top, student_rest = _top_and_rest(student, m)
        values = _compare_tops(
            teacher_top, teacher_rest, student_top, student_rest
        )
        return _Given(reduction=self.reduction, dtype=self.dtype)(
            values, values, sample_weight=sample_weight
        )


class _Given(keras.losses.Loss):
    """Reduces per-position values already computed (`y_pred`), as the
    divergence's own `__call__` reduces its values."""

    def call(self, y_true, y_pred):
        return y_pred


# Names `get_divergence` accepts for the divergences across vocabularies.
CROSS_VOCABULARY_DIVERGENCES = {"uld": UniversalLogitDistillation}
