"""Tiny keras-hub models, synthetic batches and a float64 NumPy GPT-2.

Everything is built from configs (no preset download) and seeded with
NumPy, so the same weights and batch come out under every backend.
"""

import math
import string

import keras
import keras_hub
import numpy as np

from tests import numpy_reference as ref

VOCAB = 64
SEQ_LEN = 12
BATCH = 4
TEACHER_LAYERS = 3
STUDENT_LAYERS = 2
TEACHER_DIM = 16
STUDENT_DIM = 8


def gpt2(num_layers, hidden_dim, vocab=VOCAB, name=None, preprocessor=None):
    """A tiny GPT-2 `CausalLM` without dropout."""
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=vocab,
        num_layers=num_layers,
        num_heads=2,
        hidden_dim=hidden_dim,
        intermediate_dim=2 * hidden_dim,
        dropout=0.0,
        max_sequence_length=32,
        name=name,
    )
    return keras_hub.models.GPT2CausalLM(
        backbone=backbone, preprocessor=preprocessor
    )


def qwen(num_layers, hidden_dim, vocab=VOCAB):
    backbone = keras_hub.models.QwenBackbone(
        vocabulary_size=vocab,
        num_layers=num_layers,
        num_query_heads=2,
        num_key_value_heads=1,
        hidden_dim=hidden_dim,
        intermediate_dim=2 * hidden_dim,
    )
    return keras_hub.models.QwenCausalLM(backbone=backbone, preprocessor=None)


def teacher_student(**kwargs):
    """The tiny GPT-2 pair used throughout: 3x16 teacher, 2x8 student."""
    return gpt2(TEACHER_LAYERS, TEACHER_DIM, **kwargs), gpt2(
        STUDENT_LAYERS, STUDENT_DIM, **kwargs
    )


# (backend, kwargs) -> (teacher, student, their initial weights).
_SHARED = {}


def shared_teacher_student(**kwargs):
    """`teacher_student(**kwargs)` built once per backend, weights restored.

    For tests that only need the tiny pair with fresh weights: the first
    call builds it, later calls give the same two models back with their
    first weights restored by `set_weights` (building costs about 0.3 s a
    pair). Not for tests that change anything else about the models (their
    dtype policy, layers, or name scopes before `DistillationModel` scopes
    their paths), and not for `preprocessor=` (not restored).
    """
    key = (keras.backend.backend(), tuple(sorted(kwargs.items())))
    if key not in _SHARED:
        teacher, student = teacher_student(**kwargs)
        _SHARED[key] = (
            teacher,
            student,
            teacher.get_weights(),
            student.get_weights(),
        )
    teacher, student, teacher_weights, student_weights = _SHARED[key]
    teacher.set_weights(teacher_weights)
    student.set_weights(student_weights)
    return teacher, student


def set_numpy_weights(model, seed, scale=0.3):
    """Overwrite every weight of `model` with NumPy-seeded values.

    Norm scales get `1 + noise`, everything else `noise`, so the values do
    not depend on the backend's initializers.
    """
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        noise = rng.normal(scale=scale, size=weight.shape)
        if weight.path.endswith("gamma") or weight.path.endswith("scale"):
            noise = 1.0 + noise
        weight.assign(noise.astype(weight.dtype))


def weights_numpy(model):
    return [keras.ops.convert_to_numpy(w).copy() for w in model.weights]


def make_batch(seed=0, batch=BATCH, seq_len=SEQ_LEN, empty_units=False):
    """`(x, y, sample_weight)` with padding, prompts and units."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, (batch, seq_len)).astype("int32")
    lengths = [seq_len, seq_len - 3, seq_len - 1, seq_len - 5][:batch]
    lengths += [seq_len] * (batch - len(lengths))
    padding_mask = np.zeros((batch, seq_len), "int32")
    for b, n in enumerate(lengths):
        padding_mask[b, :n] = 1
    ids = ids * padding_mask
    word_units = np.zeros((batch, 8, 2), "int32")
    phrase_units = np.zeros((batch, 4, 2), "int32")
    if not empty_units:
        for b, n in enumerate(lengths):
            # Words of one or two tokens; phrases of three or four.
            starts = [0, 1, 3, 4, 6, 7, 9, 10]
            ends = [1, 3, 4, 6, 7, 9, 10, 12]
            k = 0
            for s, e in zip(starts, ends):
                if e <= n:
                    word_units[b, k] = [s, e]
                    k += 1
            k = 0
            for s, e in [(0, 3), (3, 7), (7, 10), (10, 12)]:
                if e <= n:
                    phrase_units[b, k] = [s, e]
                    k += 1
    y = np.roll(ids, -1, axis=1) * padding_mask
    sample_weight = np.roll(padding_mask, -1, axis=1).astype("float32")
    sample_weight[:, -1] = 0.0
    sample_weight[:, :3] = 0.0  # the prompt
    x = {
        "token_ids": ids,
        "padding_mask": padding_mask,
        "word_units": word_units,
        "phrase_units": phrase_units,
    }
    return x, y, sample_weight


def tiny_gpt2_tokenizer():
    """A 64-token byte-level BPE GPT-2 tokenizer (letters and digits)."""
    vocab = {"<|endoftext|>": 0}
    for c in string.ascii_lowercase:
        vocab[c] = len(vocab)
    for c in string.ascii_lowercase:
        vocab["\u0120" + c] = len(vocab)
    vocab["\u0120"] = len(vocab)
    for c in string.digits:
        vocab[c] = len(vocab)
    merges = ["\u0120 " + c for c in string.ascii_lowercase]
    return keras_hub.models.GPT2Tokenizer(vocabulary=vocab, merges=merges)


# === float64 NumPy reference ===


def _by_suffix(model):
    """Weights of a GPT-2 CausalLM by path without the leading scope."""
    out = {}
    for w in model.weights:
        path = (
            w.path.split("/", 1)[1]
            if w.path.startswith(("teacher/", "student/"))
            else w.path
        )
        out[path] = keras.ops.convert_to_numpy(w).astype(np.float64)
    return out


def _layer_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def _gelu_tanh(x):
    return (
        0.5
        * x
        * (1.0 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    )


def gpt2_reference(model, token_ids, padding_mask):
    """Hidden states (HF convention, `L + 1` entries) and logits, float64."""
    w = _by_suffix(model)
    num_layers = len(model.backbone.transformer_layers)
    batch, seq_len = token_ids.shape
    x = w["token_embedding/embeddings"][token_ids]
    x = x + w["position_embedding/embeddings"][:seq_len][None]
    hidden = [x]
    causal = np.tril(np.ones((seq_len, seq_len), bool))
    allowed = causal[None] & padding_mask.astype(bool)[:, None, :]
    for i in range(num_layers):
        p = f"transformer_layer_{i}/"
        h = _layer_norm(
            x,
            w[p + "self_attention_layer_norm/gamma"],
            w[p + "self_attention_layer_norm/beta"],
        )
        a = p + "self_attention/"
        q = np.einsum("btd,dhk->bthk", h, w[a + "query/kernel"])
        q = q + w[a + "query/bias"]
        k = np.einsum("btd,dhk->bthk", h, w[a + "key/kernel"])
        k = k + w[a + "key/bias"]
        v = np.einsum("btd,dhk->bthk", h, w[a + "value/kernel"])
        v = v + w[a + "value/bias"]
        scores = np.einsum("bqhk,bshk->bhqs", q, k) / math.sqrt(q.shape[-1])
        scores = np.where(allowed[:, None], scores, -np.inf)
        scores = scores - scores.max(-1, keepdims=True)
        probs = np.exp(scores)
        probs = probs / probs.sum(-1, keepdims=True)
        att = np.einsum("bhqs,bshk->bqhk", probs, v)
        att = np.einsum("bqhk,hkd->bqd", att, w[a + "attention_output/kernel"])
        x = x + att + w[a + "attention_output/bias"]
        h = _layer_norm(
            x,
            w[p + "feedforward_layer_norm/gamma"],
            w[p + "feedforward_layer_norm/beta"],
        )
        h = _gelu_tanh(
            h @ w[p + "feedforward_intermediate_dense/kernel"]
            + w[p + "feedforward_intermediate_dense/bias"]
        )
        h = (
            h @ w[p + "feedforward_output_dense/kernel"]
            + w[p + "feedforward_output_dense/bias"]
        )
        x = x + h
        hidden.append(x)
    final = _layer_norm(x, w["layer_norm/gamma"], w["layer_norm/beta"])
    hidden[-1] = final
    logits = final @ w["token_embedding/embeddings"].T
    return hidden, logits


def reference_terms(model, x, y, sample_weight):
    """All loss terms of `model` (a DistillationModel) in float64 NumPy."""
    mask = x["padding_mask"]
    t_hidden, t_logits = gpt2_reference(model.teacher, x["token_ids"], mask)
    s_hidden, s_logits = gpt2_reference(model.student, x["token_ids"], mask)
    log_p = ref.log_softmax(s_logits)
    ce_tok = -np.take_along_axis(log_p, y[..., None].astype(int), -1)[..., 0]
    ce = (ce_tok * sample_weight).sum() / sample_weight.sum()
    kd_tok = ref.divergence("forward_kl", t_logits, s_logits)
    kd = (kd_tok * sample_weight).sum() / sample_weight.sum()
    plan = model.plan
    token_weights = None
    if plan.entropy_weighting:
        token_weights = ref.entropy_weights(t_logits, mask)
    dsa, hra = [], []
    for k, (ti, si) in enumerate(zip(plan.teacher_layers, plan.student_layers)):
        units = x["word_units"] if k < plan.word_pairs else x["phrase_units"]
        teacher, student = t_hidden[ti], s_hidden[si]
        dsa.append(
            ref.structural_alignment(
                student, teacher, units, mask, token_weights=token_weights
            )
        )
        proj = model.alignment.hidden[k].projector
        projected = student @ keras.ops.convert_to_numpy(proj.kernel).astype(
            np.float64
        ) + keras.ops.convert_to_numpy(proj.bias)
        hra.append(
            ref.hidden_alignment(
                projected, teacher, units, mask, token_weights=token_weights
            )
        )
    dsa, hra = np.array(dsa), np.array(hra)
    mta = np.mean(dsa + plan.hra_scale * hra)
    r, m = model.kd_ratio, model.mta_weight
    loss = (1 - r) * ce + r * (kd + m * mta)
    return {
        "loss": loss,
        "ce": ce,
        "kd": kd,
        "mta": mta,
        "dsa": dsa.mean(),
        "hra": hra.mean(),
        "pair_dsa": dsa,
        "pair_hra": hra,
    }
