"""Parameter-free token importance and teacher-entropy token weights."""

import math

from keras import ops

# Finite stand-in for -inf in masked softmax logits: large enough that
# exp() underflows to exactly 0 in float32, finite so that a row with no
# valid key never produces NaN.
_MASK_VALUE = -1e9
_STD_EPS = 1e-5


def token_importance(hidden, padding_mask):
    """Parameter-free attention importance of every token.

    The hidden states are scaled by their per-token sample standard deviation
    (no centering), every real token attends to every other real token with
    scaled dot-product attention, and the importance of token `j` is the mean
    attention it receives over the real query rows:

    ```
    X = H / (std(H, axis=-1, ddof=1) + 1e-5)
    S = X X^T / sqrt(D)            # padded keys and the diagonal masked out
    P = softmax(S) * mask, renormalized per row
    a_j = mean over real rows i of P_ij
    ```

    A row with no valid key (a one-token sequence) contributes zeros. Padded
    positions get importance 0, and the result does not depend on how much
    padding the batch has. No gradient flows through the result.

    Args:
        hidden: float tensor of shape `(batch, seq_len, hidden_dim)`.
        padding_mask: tensor of shape `(batch, seq_len)`, 1 (or True) on real
            tokens and 0 on padding.

    Returns:
        float32 tensor of shape `(batch, seq_len)`.

    Examples:

    >>> import numpy as np
    >>> h = np.random.normal(size=(2, 5, 8)).astype("float32")
    >>> mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    >>> a = token_importance(h, mask)  # shape (2, 5)

    References:
        - Multi-Granular Trajectory Alignment for LLM distillation
          (ACL 2026, arXiv 2605.01374).
    """
    hidden = ops.stop_gradient(ops.cast(hidden, "float32"))
    mask = ops.cast(padding_mask, "float32")
    dim = ops.shape(hidden)[-1]
    seq_len = ops.shape(hidden)[1]

    std = ops.std(hidden, axis=-1, keepdims=True)
    # Sample standard deviation (divide by D - 1).
    std = std * math.sqrt(dim / max(dim - 1, 1))
    x = hidden / (std + _STD_EPS)
    scores = ops.einsum("bid,bjd->bij", x, x) / math.sqrt(dim)

    not_diag = 1.0 - ops.eye(seq_len, dtype="float32")
    valid = mask[:, None, :] * not_diag[None, :, :]
    scores = ops.where(valid > 0, scores, _MASK_VALUE)
    probs = ops.softmax(scores, axis=-1) * valid
    row_sum = ops.sum(probs, axis=-1, keepdims=True)
    probs = probs / ops.maximum(row_sum, 1e-12)
    # Padded query rows do not count.
    probs = probs * mask[:, :, None]
    num_rows = ops.maximum(ops.sum(mask, axis=-1, keepdims=True), 1.0)
    importance = ops.sum(probs, axis=1) / num_rows
    return ops.stop_gradient(importance)


def entropy_weights(teacher_logits, padding_mask, temperature=1.0):
    """Teacher-confidence token weights `e_j = 1 - H(p_j) / log V`.

    `p_j` is the teacher's next-token distribution at position `j`
    (`softmax(logits / temperature)`), `H` its entropy and `V` the vocabulary
    size, so `e_j` is 1 for a one-hot prediction and 0 for a uniform one.
    Padded positions get 0. No gradient flows through the result. Used by
    MTA's optional entropy weighting in place of the teacher importance in
    the unit weights and the HRA weights.

    Args:
        teacher_logits: tensor of shape `(batch, seq_len, vocab_size)`.
        padding_mask: tensor of shape `(batch, seq_len)`.
        temperature: float, applied to the logits.

    Returns:
        float32 tensor of shape `(batch, seq_len)`.
    """
    logits = ops.stop_gradient(ops.cast(teacher_logits, "float32"))
    vocab_size = ops.shape(logits)[-1]
    if vocab_size < 2:
        raise ValueError(
            "entropy_weights needs a vocabulary of at least 2 tokens, got "
            f"vocab_size={vocab_size}."
        )
    log_p = ops.log_softmax(logits / temperature, axis=-1)
    entropy = -ops.sum(ops.exp(log_p) * log_p, axis=-1)
    weights = 1.0 - entropy / math.log(vocab_size)
    weights = ops.clip(weights, 0.0, 1.0)
    return ops.stop_gradient(weights * ops.cast(padding_mask, "float32"))
