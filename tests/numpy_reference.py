"""Independent float64 NumPy implementations of the MTA formulas.

Written from the formulas of issue 2, with explicit loops over samples,
units and tokens: deliberately unlike the vectorized `keras.ops` code they
check.
"""

import math

import numpy as np


def token_importance(hidden, mask):
    hidden = np.asarray(hidden, np.float64)
    mask = np.asarray(mask).astype(bool)
    batch, seq_len, dim = hidden.shape
    out = np.zeros((batch, seq_len))
    for b in range(batch):
        real = [t for t in range(seq_len) if mask[b, t]]
        x = np.zeros((seq_len, dim))
        for t in range(seq_len):
            std = np.std(hidden[b, t], ddof=1)
            x[t] = hidden[b, t] / (std + 1e-5)
        rows = []
        for i in real:
            keys = [j for j in real if j != i]
            p = np.zeros(seq_len)
            if keys:
                s = np.array([x[i] @ x[j] / math.sqrt(dim) for j in keys])
                e = np.exp(s - s.max())
                p[keys] = e / e.sum()
            rows.append(p)
        if rows:
            out[b] = np.mean(rows, axis=0)
    return out


def memberships(units, mask):
    """List per sample of (unit index, [token indices]) for valid units."""
    units = np.asarray(units)
    mask = np.asarray(mask).astype(bool)
    result = []
    for b in range(units.shape[0]):
        sample = []
        for u in range(units.shape[1]):
            start, end = int(units[b, u, 0]), int(units[b, u, 1])
            tokens = [
                t
                for t in range(start, end)
                if 0 <= t < mask.shape[1] and mask[b, t]
            ]
            sample.append((u, tokens))
        result.append(sample)
    return result


def normalized_weights(importance, members):
    w = np.zeros_like(importance)
    for b, sample in enumerate(members):
        total = sum(importance[b, j] for _, tokens in sample for j in tokens)
        w[b] = importance[b] / max(total, 1e-5)
    return w


def _cos(a, b, eps):
    na = max(np.linalg.norm(a), eps)
    nb = max(np.linalg.norm(b), eps)
    return float(a @ b) / (na * nb)


def structural_alignment(student, teacher, units, mask, token_weights=None):
    student = np.asarray(student, np.float64)
    teacher = np.asarray(teacher, np.float64)
    members = memberships(units, mask)
    w_s = normalized_weights(token_importance(student, mask), members)
    w_t = normalized_weights(token_importance(teacher, mask), members)
    w_unit = (
        w_t if token_weights is None else np.asarray(token_weights, np.float64)
    )
    numerator = 0.0
    denominator = 0.0
    for b, sample in enumerate(members):
        pooled_s, pooled_t, weights = [], [], []
        for _, tokens in sample:
            if not tokens:
                continue
            ws = w_s[b, tokens]
            wt = w_t[b, tokens]
            pooled_s.append(
                (ws[:, None] * student[b, tokens]).sum(0) / max(ws.sum(), 1e-5)
            )
            pooled_t.append(
                (wt[:, None] * teacher[b, tokens]).sum(0) / max(wt.sum(), 1e-5)
            )
            weights.append(w_unit[b, tokens].sum())
        n = len(weights)
        for u in range(n):
            for v in range(n):
                if u == v:
                    continue
                c_s = _cos(pooled_s[u], pooled_s[v], 1e-8)
                c_t = _cos(pooled_t[u], pooled_t[v], 1e-8)
                ww = weights[u] * weights[v]
                numerator += ww * (c_s - c_t) ** 2
                denominator += ww
    return numerator / max(denominator, 1e-5)


def hidden_alignment(projected, teacher, units, mask, token_weights=None):
    projected = np.asarray(projected, np.float64)
    teacher = np.asarray(teacher, np.float64)
    members = memberships(units, mask)
    if token_weights is None:
        weights = normalized_weights(token_importance(teacher, mask), members)
    else:
        weights = np.asarray(token_weights, np.float64)
    numerator = 0.0
    denominator = 0.0
    for b, sample in enumerate(members):
        for _, tokens in sample:
            for j in tokens:
                c = _cos(projected[b, j], teacher[b, j], 1e-5)
                numerator += weights[b, j] * (1.0 - c)
                denominator += weights[b, j]
    return numerator / max(denominator, 1e-5)


def entropy_weights(logits, mask):
    logits = np.asarray(logits, np.float64)
    out = np.zeros(logits.shape[:2])
    vocab = logits.shape[-1]
    for b in range(logits.shape[0]):
        for t in range(logits.shape[1]):
            if not mask[b, t]:
                continue
            z = logits[b, t] - logits[b, t].max()
            p = np.exp(z) / np.exp(z).sum()
            nz = p[p > 0]
            entropy = -(nz * np.log(nz)).sum()
            out[b, t] = 1.0 - entropy / math.log(vocab)
    return out


def softmax(logits, temperature=1.0):
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def log_softmax(logits, temperature=1.0):
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def kl(p, q, log_p=None, log_q=None):
    """KL(p || q) per position, with 0 log 0 = 0.

    Log-probabilities may be given for distributions whose small entries
    underflow to 0 in probability space.
    """
    out = np.zeros(p.shape[:-1])
    for idx in np.ndindex(*p.shape[:-1]):
        total = 0.0
        for k, (pi, qi) in enumerate(zip(p[idx], q[idx])):
            if pi > 0:
                lp = math.log(pi) if log_p is None else log_p[idx][k]
                lq = math.log(qi) if log_q is None else log_q[idx][k]
                total += pi * (lp - lq)
        out[idx] = total
    return out


def divergence(name, teacher_logits, student_logits, temperature=1.0, mix=None):
    p_t = softmax(teacher_logits, temperature)
    p_s = softmax(student_logits, temperature)
    log_t = log_softmax(teacher_logits, temperature)
    log_s = log_softmax(student_logits, temperature)
    if name == "forward_kl":
        return kl(p_t, p_s, log_t, log_s)
    if name == "reverse_kl":
        return kl(p_s, p_t, log_s, log_t)
    if name == "jensen_shannon":
        m = mix * p_t + (1 - mix) * p_s
        return mix * kl(p_t, m) + (1 - mix) * kl(p_s, m)
    if name == "total_variation":
        return 0.5 * np.abs(p_t - p_s).sum(-1)
    if name == "skew_forward_kl":
        return kl(p_t, mix * p_t + (1 - mix) * p_s)
    if name == "skew_reverse_kl":
        return kl(p_s, mix * p_s + (1 - mix) * p_t)
    raise ValueError(name)
