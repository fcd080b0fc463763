"""Small keras-hub tokenizers trained offline on the shared data, for tests.

Under the tensorflow backend, `keras.utils.clear_session()` (run after every
test by conftest) clears TensorFlow's kernel cache, which deletes the
tf-text SentencePiece resource of any SentencePiece tokenizer built before
(keras-hub's own `tokenize` then fails too). So SentencePiece tokenizers are
built anew per test (cheap: the model proto is cached); the byte-pair and
WordPiece tokenizers survive and are shared (their traced graphs and caches
stay warm).

One per family the offsets support: byte-level BPE (trained with HF
`tokenizers`, written as the vocabulary and merges of a keras-hub
`BytePairTokenizer`), SentencePiece (trained with `sentencepiece`, byte
fallback on, as Llama and Gemma) and WordPiece (HF `tokenizers` trainer,
vocabulary handed to keras-hub's `WordPieceTokenizer`). Each takes well under
a second; results are cached per process.
"""

import functools
import io
import json
from pathlib import Path

import keras_hub
import pytest

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SELFINST = SHARED_DATA / "selfinst" / "user_oriented_instructions.jsonl"
T0_TRAIN = SHARED_DATA / "t0_mix" / "train.jsonl"
END_TOKEN = "<|endoftext|>"


def require(path):
    if not path.exists():
        pytest.skip(f"shared data file {path} is not present")
    return path


@functools.lru_cache(maxsize=None)
def selfinst_examples():
    """`(prompt, response)` pairs of the SelfInst file, every instance.

    The prompt is the instruction template the training data uses.
    """
    from keras_mta.data.template import format_prompt

    pairs = []
    with open(require(SELFINST), encoding="utf-8") as file:
        for line in file:
            row = json.loads(line)
            for instance in row["instances"]:
                prompt = format_prompt(row["instruction"], instance["input"])
                pairs.append((prompt, instance["output"]))
    return tuple(pairs)


@functools.lru_cache(maxsize=None)
def t0_texts(count=400):
    """The first `count` prompt + response texts of t0_mix/train.jsonl."""
    texts = []
    with open(require(T0_TRAIN), encoding="utf-8") as file:
        for line in file:
            row = json.loads(line)
            texts.append(
                "\n".join(
                    part
                    for part in (row["instruction"], row["context"])
                    if part
                )
                + "\n"
                + row["response"]
            )
            if len(texts) == count:
                break
    return tuple(texts)


@functools.lru_cache(maxsize=None)
def training_texts():
    return tuple(p + r for p, r in selfinst_examples()[:300])


@functools.lru_cache(maxsize=None)
def byte_pair_vocabulary(vocabulary_size=1000):
    """`(vocabulary, merges)` of a byte-level BPE trained on shared text."""
    from tokenizers import Tokenizer
    from tokenizers import models
    from tokenizers import pre_tokenizers
    from tokenizers import trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocabulary_size,
        special_tokens=[END_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(training_texts(), trainer)
    model = json.loads(tokenizer.to_str())["model"]
    merges = [
        merge if isinstance(merge, str) else " ".join(merge)
        for merge in model["merges"]
    ]
    return model["vocab"], tuple(merges)


def gpt2_tokenizer(**kwargs):
    """A GPT-2 tokenizer; without arguments, one shared instance (its BPE
    cache stays warm across tests: keras-hub's first pass over new words is
    slow)."""
    if not kwargs:
        return _shared_gpt2_tokenizer()
    vocabulary, merges = byte_pair_vocabulary()
    return keras_hub.models.GPT2Tokenizer(
        vocabulary=vocabulary, merges=list(merges), **kwargs
    )


@functools.lru_cache(maxsize=None)
def _shared_gpt2_tokenizer():
    vocabulary, merges = byte_pair_vocabulary()
    return keras_hub.models.GPT2Tokenizer(
        vocabulary=vocabulary, merges=list(merges)
    )


_GRAPH_TOKENIZE = {}


def graph_ids(tokenizer, texts):
    """The tokenizer's own ids on its `tf.data` (TensorFlow) path, as lists.

    One `tf.function` per tokenizer (tracing keras-hub's regexes is slow).
    """
    import tensorflow as tf

    fn = _GRAPH_TOKENIZE.get(id(tokenizer))
    if fn is None or fn[0] is not tokenizer:
        fn = (
            tokenizer,
            tf.function(
                lambda t: tokenizer.tokenize(t),
                input_signature=[tf.TensorSpec([None], tf.string)],
                autograph=False,
            ),
        )
        _GRAPH_TOKENIZE[id(tokenizer)] = fn
    return fn[1](tf.constant(list(texts), tf.string)).to_list()


def byte_pair_tokenizer(**kwargs):
    vocabulary, merges = byte_pair_vocabulary()
    return keras_hub.tokenizers.BytePairTokenizer(
        vocabulary=vocabulary, merges=list(merges), **kwargs
    )


@functools.lru_cache(maxsize=None)
def sentence_piece_proto(vocabulary_size=800, style="llama"):
    """A SentencePiece BPE model with byte fallback, as Llama and Gemma.

    `style="llama"`: `<unk>`, `<s>`, `</s>` (ids 0, 1, 2);
    `style="gemma"`: `<pad>`, `<eos>`, `<bos>`, `<unk>` (ids 0 to 3).
    """
    import sentencepiece

    if style == "llama":
        ids = dict(unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
        names = {}
    else:
        ids = dict(pad_id=0, eos_id=1, bos_id=2, unk_id=3)
        names = dict(
            pad_piece="<pad>",
            eos_piece="<eos>",
            bos_piece="<bos>",
            unk_piece="<unk>",
        )
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(training_texts()),
        model_writer=model,
        vocab_size=vocabulary_size,
        model_type="bpe",
        byte_fallback=True,
        minloglevel=2,
        **ids,
        **names,
    )
    return model.getvalue()


def sentence_piece_tokenizer(**kwargs):
    return keras_hub.tokenizers.SentencePieceTokenizer(
        proto=sentence_piece_proto(), **kwargs
    )


def llama_tokenizer():
    return keras_hub.models.LlamaTokenizer(proto=sentence_piece_proto())


@functools.lru_cache(maxsize=None)
def word_piece_vocabulary(vocabulary_size=700):
    from tokenizers import Tokenizer
    from tokenizers import models
    from tokenizers import normalizers
    from tokenizers import pre_tokenizers
    from tokenizers import trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocabulary_size,
        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"],
        show_progress=False,
    )
    tokenizer.train_from_iterator(training_texts(), trainer)
    vocabulary = tokenizer.get_vocab()
    return tuple(sorted(vocabulary, key=vocabulary.get))


def word_piece_tokenizer(**kwargs):
    """A lower-casing, accent-stripping WordPiece tokenizer; without
    arguments, one shared instance."""
    if not kwargs:
        return _shared_word_piece_tokenizer()
    kwargs.setdefault("lowercase", True)
    kwargs.setdefault("strip_accents", True)
    return keras_hub.tokenizers.WordPieceTokenizer(
        vocabulary=list(word_piece_vocabulary()), **kwargs
    )


@functools.lru_cache(maxsize=None)
def _shared_word_piece_tokenizer():
    return keras_hub.tokenizers.WordPieceTokenizer(
        vocabulary=list(word_piece_vocabulary()),
        lowercase=True,
        strip_accents=True,
    )
