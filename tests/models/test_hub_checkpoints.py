"""Teachers and students from Transformers checkpoints (`hf://` handles),
offline: the tests write tiny checkpoints in the Transformers layout
(config.json, model.safetensors, tokenizer files) and load them through
the project's loader from the local directory, where keras-hub dispatches
on the config's `model_type` as it does for a Hub download."""

import json
import struct

import keras
import numpy as np
import pytest

from keras_mta.models.loading import load_causal_lm
from keras_mta.recipe import ModelSpec

# The conversion (NumPy tensors assigned to variables) does not depend on
# the backend: scripts/test.sh runs these under torch only, where an eager
# forward pass is cheapest (about 1 s each; JAX compiles every op).
pytestmark = pytest.mark.once(backend="torch")

RNG = np.random.default_rng(0)


def _write_safetensors(path, tensors):
    """The safetensors layout: u64 header size, JSON header, raw data."""
    header, chunks, offset = {}, [], 0
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {
            "dtype": "F32",
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    blob = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob + b"".join(chunks))


@pytest.fixture
def safetensors_reader():
    """keras-hub reads the weights with the `safetensors` package (in the
    project's `test` and `hub` extras)."""
    import safetensors  # noqa: F401


def _tensor(*shape):
    return RNG.normal(0.0, 0.2, size=shape).astype("float32")


VOCAB = ["<|endoftext|>", "\u0120", *"abcdehilorstw", "\u0120a", "ab"]
MERGES = ["\u0120 a", "a b"]


def _gpt2_checkpoint(path, layers=2, hidden=8, heads=2, positions=16):
    vocab = len(VOCAB)
    config = {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": vocab,
        "n_layer": layers,
        "n_head": heads,
        "n_embd": hidden,
        "n_positions": positions,
        "resid_pdrop": 0.0,
    }
    # GPT2LMHeadModel saves its weights under `transformer.`.
    w = {"wte.weight": _tensor(vocab, hidden)}
    w["wpe.weight"] = _tensor(positions, hidden)
    for i in range(layers):
        for name, shape in (
            ("ln_1.weight", (hidden,)),
            ("ln_1.bias", (hidden,)),
            ("attn.c_attn.weight", (hidden, 3 * hidden)),
            ("attn.c_attn.bias", (3 * hidden,)),
            ("attn.c_proj.weight", (hidden, hidden)),
            ("attn.c_proj.bias", (hidden,)),
            ("ln_2.weight", (hidden,)),
            ("ln_2.bias", (hidden,)),
            ("mlp.c_fc.weight", (hidden, 4 * hidden)),
            ("mlp.c_fc.bias", (4 * hidden,)),
            ("mlp.c_proj.weight", (4 * hidden, hidden)),
            ("mlp.c_proj.bias", (hidden,)),
        ):
            w[f"h.{i}.{name}"] = _tensor(*shape)
            if name.endswith("ln_1.weight") or name.endswith("ln_2.weight"):
                w[f"h.{i}.{name}"] += 1.0
    w["ln_f.weight"] = _tensor(hidden) + 1.0
    w["ln_f.bias"] = _tensor(hidden)
    path.mkdir()
    (path / "config.json").write_text(json.dumps(config))
    _write_safetensors(
        path / "model.safetensors",
        {f"transformer.{k}": v for k, v in w.items()},
    )
    (path / "vocab.json").write_text(
        json.dumps({t: i for i, t in enumerate(VOCAB)})
    )
    (path / "merges.txt").write_text("\n".join(MERGES) + "\n")
    return config, w


def _layer_norm(x, gamma, beta):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * gamma + beta


def _gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def gpt2_logits(w, config, ids):
    """GPT-2's forward pass in NumPy, on the Transformers tensors."""
    hidden, heads = config["n_embd"], config["n_head"]
    length = len(ids)
    x = w["wte.weight"][ids] + w["wpe.weight"][:length]
    causal = np.tril(np.ones((length, length), bool))
    for i in range(config["n_layer"]):
        p = f"h.{i}."
        h = _layer_norm(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"])
        qkv = h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
        q, k, v = (
            a.reshape(length, heads, -1).transpose(1, 0, 2)
            for a in np.split(qkv, 3, axis=-1)
        )
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(hidden // heads)
        scores = np.where(causal, scores, -1e9)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        attention = scores / scores.sum(-1, keepdims=True)
        out = (attention @ v).transpose(1, 0, 2).reshape(length, hidden)
        x = x + out @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        h = _layer_norm(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"])
        h = _gelu(h @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"])
        x = x + h @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
    x = _layer_norm(x, w["ln_f.weight"], w["ln_f.bias"])
    return x @ w["wte.weight"].T


def _logits(causal_lm, ids):
    ids = np.asarray([ids], "int32")
    inputs = {"token_ids": ids, "padding_mask": np.ones_like(ids, bool)}
    return keras.ops.convert_to_numpy(causal_lm(inputs)[0]).astype("float32")


def test_a_gpt2_transformers_checkpoint_loads_with_its_weights(
    tmp_path, safetensors_reader
):
    import keras_hub

    config, weights = _gpt2_checkpoint(tmp_path / "gpt2")
    spec = ModelSpec(preset=str(tmp_path / "gpt2"))
    model = load_causal_lm(spec, role="teacher")
    assert isinstance(model, keras_hub.models.GPT2CausalLM)
    assert model.backbone.num_layers == 2
    assert model.backbone.hidden_dim == 8
    ids = [3, 5, 1, 7, 2, 9]
    np.testing.assert_allclose(
        _logits(model, ids), gpt2_logits(weights, config, ids), atol=2e-4
    )
    # The tokenizer comes from vocab.json / merges.txt.
    assert model.preprocessor.tokenizer.vocabulary_size() == len(VOCAB)


def _qwen2_checkpoint(path, layers=1, hidden=8, heads=2, kv_heads=1):
    vocab, inter, head_dim = 32, 16, hidden // heads
    config = {
        "model_type": "qwen2",
        "architectures": ["Qwen2ForCausalLM"],
        "vocab_size": vocab,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "intermediate_size": inter,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "use_sliding_window": False,
        "sliding_window": 32,
        "tie_word_embeddings": False,
    }
    w = {"model.embed_tokens.weight": _tensor(vocab, hidden)}
    w["lm_head.weight"] = _tensor(vocab, hidden)
    w["model.norm.weight"] = _tensor(hidden) + 1.0
    for i in range(layers):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = _tensor(hidden) + 1.0
        w[p + "post_attention_layernorm.weight"] = _tensor(hidden) + 1.0
        for name, rows in (
            ("q", heads * head_dim),
            ("k", kv_heads * head_dim),
            ("v", kv_heads * head_dim),
        ):
            w[p + f"self_attn.{name}_proj.weight"] = _tensor(rows, hidden)
            w[p + f"self_attn.{name}_proj.bias"] = _tensor(rows)
        w[p + "self_attn.o_proj.weight"] = _tensor(hidden, hidden)
        w[p + "mlp.gate_proj.weight"] = _tensor(inter, hidden)
        w[p + "mlp.up_proj.weight"] = _tensor(inter, hidden)
        w[p + "mlp.down_proj.weight"] = _tensor(hidden, inter)
    path.mkdir()
    (path / "config.json").write_text(json.dumps(config))
    _write_safetensors(path / "model.safetensors", w)
    tokens = VOCAB[1:] + ["<|im_start|>", "<|im_end|>"]
    tokenizer = {
        "model": {
            "vocab": {t: i for i, t in enumerate(tokens)},
            "merges": MERGES,
        },
        "added_tokens": [{"id": len(tokens), "content": "<|endoftext|>"}],
    }
    (path / "tokenizer.json").write_text(json.dumps(tokenizer))
    return config, w


def test_a_qwen2_transformers_checkpoint_loads_with_its_weights(
    tmp_path, safetensors_reader
):
    import keras_hub

    _, weights = _qwen2_checkpoint(tmp_path / "qwen")
    model = load_causal_lm(ModelSpec(preset=str(tmp_path / "qwen")), "student")
    assert isinstance(model, keras_hub.models.QwenCausalLM)
    backbone = model.backbone
    assert (backbone.num_layers, backbone.hidden_dim) == (1, 8)
    embedding = backbone.get_layer("token_embedding")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(embedding.embeddings),
        weights["model.embed_tokens.weight"],
    )
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(embedding.reverse_embeddings),
        weights["lm_head.weight"].T,
    )
    logits = _logits(model, [1, 4, 2, 6])
    assert logits.shape == (4, 32) and np.isfinite(logits).all()


def test_an_opt_checkpoint_is_refused_with_the_fallback(
    tmp_path, safetensors_reader
):
    path = tmp_path / "opt"
    path.mkdir()
    (path / "config.json").write_text(
        json.dumps({"model_type": "opt", "architectures": ["OPTForCausalLM"]})
    )
    (path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="model type `'opt'`.*train-teacher"):
        load_causal_lm(ModelSpec(preset=str(path)), role="teacher")
