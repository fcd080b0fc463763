"""Token ids with the character offsets of each token, for keras-hub
tokenizers.

keras-hub tokenizers return ids only. Here every id comes with the
`[start, end)` character range of the text it stands for, computed for the
very ids the tokenizer produces (the TensorFlow path keras-hub runs inside
`tf.data`), never by decoding and re-tokenizing:

- **Byte-pair** (`BytePairTokenizer`: GPT-2, OPT, Qwen, Llama 3, ...): the
  ids come from `tokenizer.tokenize` itself. Byte-level tokens are a lossless
  cover of the bytes of their word, so the offsets are a walk over the byte
  length of each id. The words (and the few characters keras-hub drops: its
  `"६"` marker trick removes a real `"६"` before a space) come from keras-hub's
  own splitting regexes, run with tf-text's regex split op with offsets.
- **SentencePiece** (`SentencePieceTokenizer`: Llama 2, Gemma, Mistral, ...):
  `tf_text.SentencepieceTokenizer.tokenize_with_offsets` on the tokenizer's
  own op (the one its `tokenize` calls).
- **WordPiece** (`WordPieceTokenizer`): keras-hub's pre-tokenization regexes
  with offsets (through the NFD offset map when accents are stripped) and the
  tokenizer's own `tf_text.FastWordpieceTokenizer.tokenize_with_offsets`.
  Piece offsets are exact inside words that normalization leaves unchanged
  or that are ASCII; inside other words (where lower-casing or accent
  stripping can change lengths) every piece gets the span of its word.

tensorflow-text reports byte offsets; they are converted to characters of the
Python string (code points). A byte-level token that holds only part of a
multi-byte character covers that whole character.
"""

import re
import weakref

import numpy as np
from keras_hub.src.tokenizers import byte_pair_tokenizer as bpe_lib
from keras_hub.src.tokenizers import word_piece_tokenizer as wp_lib
from keras_hub.tokenizers import BytePairTokenizer
from keras_hub.tokenizers import SentencePieceTokenizer
from keras_hub.tokenizers import WordPieceTokenizer

from keras_mta.imports import import_optional

tf = import_optional("tensorflow", "keras_mta.preprocessing")
tf_text = import_optional("tensorflow_text", "keras_mta.preprocessing")
gen_regex_split_ops = import_optional(
    "tensorflow_text.python.ops.regex_split_ops",
    "keras_mta.preprocessing",
).gen_regex_split_ops

NO_OFFSET = -1
_BIG = np.iinfo(np.int64).max
# keras-hub's byte-pair splitting marks the space before a non-space with
# this 3-byte character and drops every split piece that equals it.
_MARKER = "\u096c"
_MARKER_BYTES = len(_MARKER.encode("utf-8"))
_MARKER_SITE = rf"( )([^\s{bpe_lib.SPECIAL_WHITESPACES}])"
_MARKER_AT_END = rf"(\s{bpe_lib.SPECIAL_WHITESPACES})$"
_LEADING_WHITESPACE = r"^[\s\v\p{Z}\x{85}]+"

FAMILIES = ("byte_pair", "sentence_piece", "word_piece")


def tokenizer_family(tokenizer):
    """The offset family of a keras-hub tokenizer.

    Returns `"byte_pair"`, `"sentence_piece"` or `"word_piece"`; raises a
    `TypeError` naming the supported classes for anything else.
    """
    if isinstance(tokenizer, BytePairTokenizer):
        return "byte_pair"
    if isinstance(tokenizer, SentencePieceTokenizer):
        return "sentence_piece"
    if isinstance(tokenizer, WordPieceTokenizer):
        return "word_piece"
    hint = ""
    if hasattr(tokenizer, "tokenizer"):
        hint = " (pass the `.tokenizer` of a preprocessor, not the " + (
            "preprocessor itself)"
        )
    raise TypeError(
        "Character offsets are available for keras-hub BytePairTokenizer, "
        "SentencePieceTokenizer and WordPieceTokenizer (and their model "
        f"subclasses). Received: {type(tokenizer).__name__}{hint}."
    )


def tokenize_with_offsets(tokenizer, texts, skip_leading_whitespace=False):
    """Token ids of a keras-hub tokenizer with each token's character span.

    The ids are those the tokenizer produces on its TensorFlow path (the
    path of `tf.data` pipelines, hence of training); called eagerly, the
    computation runs inside a `tf.function` so that the same path is used.
    Works inside `tf.data.Dataset.map`; the computation is traced once per
    tokenizer and reused (tracing keras-hub's byte-pair graph takes
    seconds).

    Token `j` covers the characters `texts[b][start_j:end_j]` (code points of
    the Python string). Offsets are sorted: starts and ends never decrease
    along a sequence. A token that covers no character (a start or end token
    added by the tokenizer) has `[-1, -1]`; so does every token of a text
    whose tokens could not be located in it (only when keras-hub itself
    alters the text, e.g. a byte-pair text containing keras-hub's internal
    placeholder `"ĴA"` for special tokens).

    Args:
        tokenizer: a keras-hub `BytePairTokenizer`, `SentencePieceTokenizer`
            or `WordPieceTokenizer` (or a model subclass such as
            `GPT2Tokenizer`, `LlamaTokenizer`, `GemmaTokenizer`), with
            `sequence_length=None` and an integer output dtype.
        texts: a string, a list of strings, or a `tf.string` tensor of rank
            0 or 1.
        skip_leading_whitespace: bool. If `True`, a token's start skips the
            whitespace it begins with, unless it is only whitespace (so the
            byte-pair token `" cat"` starts at `c`, as a unit-membership test
            needs).

    Returns:
        `(token_ids, offsets)`: for a batch, int32 `tf.RaggedTensor`s of
        shapes `(batch, None)` and `(batch, None, 2)`; for a single string,
        dense tensors of shapes `(None,)` and `(None, 2)`.

    Examples:

    >>> ids, offsets = tokenize_with_offsets(tokenizer, ["The cat sat."])
    >>> offsets[0].numpy().tolist()  # GPT-2 style: "The", " cat", ...
    [[0, 3], [3, 7], [7, 11], [11, 12]]
    """
    return _offsetter(tokenizer)(texts, skip_leading_whitespace)


_OFFSETTERS = weakref.WeakKeyDictionary()


def _offsetter(tokenizer):
    family = tokenizer_family(tokenizer)
    offsetter = _OFFSETTERS.get(tokenizer)
    if offsetter is None:
        cls = {
            "byte_pair": _BytePairOffsets,
            "sentence_piece": _SentencePieceOffsets,
            "word_piece": _WordPieceOffsets,
        }[family]
        offsetter = cls(tokenizer)
        _OFFSETTERS[tokenizer] = offsetter
    return offsetter


def _check_tokenizer(tokenizer):
    if getattr(tokenizer, "sequence_length", None):
        raise ValueError(
            "tokenize_with_offsets needs a tokenizer without "
            "`sequence_length` (ragged output; packing and truncation happen "
            "later). Received a tokenizer with "
            f"sequence_length={tokenizer.sequence_length}."
        )
    if tokenizer.compute_dtype == "string":
        raise ValueError(
            "tokenize_with_offsets needs a tokenizer with an integer dtype. "
            "Received dtype='string'."
        )


def _to_string_tensor(texts):
    """Validates eager inputs and converts them to a `tf.string` tensor."""
    if isinstance(texts, (tf.Tensor, tf.RaggedTensor)):
        if texts.dtype != tf.string:
            raise TypeError(
                f"`texts` must be strings. Received a tensor of {texts.dtype}."
            )
        return texts
    if isinstance(texts, (str, bytes)):
        return tf.constant(texts)
    if isinstance(texts, np.ndarray) and texts.dtype.kind in "US":
        texts = texts.tolist()
    if isinstance(texts, (list, tuple)):
        for i, text in enumerate(texts):
            if not isinstance(text, (str, bytes)):
                raise TypeError(
                    "`texts` must be a string or a list of strings. "
                    f"Element {i} is a {type(text).__name__}: {text!r}."
                )
        return tf.constant(list(texts), dtype=tf.string)
    raise TypeError(
        "`texts` must be a string, a list of strings or a string tensor. "
        f"Received: {type(texts).__name__}."
    )


class _Offsets:
    """Ids and offsets of one tokenizer; the plumbing shared by families.

    The computation is flat: per-token values with a row index, no padding.
    """

    def __init__(self, tokenizer):
        _check_tokenizer(tokenizer)
        # Weak: the offsetter is cached per tokenizer, in a weak-key dict.
        self._tokenizer = weakref.ref(tokenizer)
        self._fn = None

    @property
    def tokenizer(self):
        return self._tokenizer()

    def __call__(self, texts, skip_leading_whitespace):
        _check_tokenizer(self.tokenizer)
        if tf.executing_eagerly():
            texts = _to_string_tensor(texts)
        else:
            texts = tf.convert_to_tensor(texts)
        if texts.dtype != tf.string:
            raise TypeError(
                f"`texts` must be strings. Received a tensor of {texts.dtype}."
            )
        if texts.shape.rank not in (0, 1):
            raise ValueError(
                "`texts` must be a string or a batch of strings (rank 0 or "
                f"1). Received rank {texts.shape.rank}."
            )
        batch = texts[None] if texts.shape.rank == 0 else texts
        ids, offsets, content_starts = self._traced()(batch)
        if skip_leading_whitespace:
            offsets = offsets.with_values(
                tf.stack([content_starts, offsets.values[:, 1]], axis=-1)
            )
        if texts.shape.rank == 0:
            return ids[0], offsets[0]
        return ids, offsets

    def _traced(self):
        """The computation, traced once per tokenizer and called from eager
        code and from graphs (`tf.data`) alike: tracing keras-hub's
        byte-pair graph takes seconds. Eagerly, it also makes the tokenizer
        take its TensorFlow path."""
        if self._fn is None:
            self._fn = tf.function(
                self._both,
                input_signature=[tf.TensorSpec([None], tf.string)],
                autograph=False,
            )
        return self._fn

    def _both(self, texts):
        ids, starts, ends = self._char_offsets(texts)
        rows = ids.value_rowids()
        content_starts = _skip_leading_whitespace(texts, rows, starts, ends)
        return ids, _pairs(ids, starts, ends), content_starts

    def _char_offsets(self, texts):
        ids, starts, ends = self.byte_offsets(texts)
        ids = tf.cast(ids, "int32")
        empty = ends <= starts
        starts = tf.where(empty, _none(starts), starts)
        ends = tf.where(empty, _none(ends), ends)
        starts, ends = _bytes_to_chars(texts, ids.value_rowids(), starts, ends)
        return ids, starts, ends

    def byte_offsets(self, texts):
        """`(ids, starts, ends)`: ragged ids `(batch, None)` and the flat
        int64 byte offsets of their values (`-1`: no character)."""
        raise NotImplementedError


class _BytePairOffsets(_Offsets):
    def __init__(self, tokenizer):
        super().__init__(tokenizer)
        vocabulary = tokenizer.vocabulary
        special = set(tokenizer.unsplittable_tokens or [])
        _, alphabet = bpe_lib.bytes_to_unicode()
        alphabet = set(alphabet)
        lengths = np.zeros(max(vocabulary.values()) + 1, dtype=np.int64)
        for token, index in vocabulary.items():
            if token in special or not set(token) <= alphabet:
                # Matched literally in the text.
                lengths[index] = len(token.encode("utf-8"))
            else:
                # One byte per byte-level character.
                lengths[index] = len(token)
        self.byte_lengths = lengths
        self.special_tokens = list(tokenizer.unsplittable_tokens or [])
        # keras-hub's own TensorFlow split (GPT-2 regexes) drops characters;
        # subclasses that tokenize otherwise (e.g. through HF `tokenizers`,
        # which is lossless) are walked over the whole text.
        self.keras_hub_split = (
            getattr(type(tokenizer), "_tokenize_tf", None)
            is BytePairTokenizer._tokenize_tf
        )

    def byte_offsets(self, texts):
        tokenizer = self.tokenizer
        batch = _batch_size(texts)
        ids = tokenizer.tokenize(texts)
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.RaggedTensor.from_tensor(ids)
        rows = ids.value_rowids()
        values = tf.cast(ids.values, "int64")
        size = len(self.byte_lengths)
        known = (values >= 0) & (values < size)
        lengths = tf.where(
            known,
            tf.gather(
                tf.constant(self.byte_lengths),
                tf.clip_by_value(values, 0, size - 1),
            ),
            tf.zeros_like(values),
        )
        shift = 1 if tokenizer.add_prefix_space else 0
        source = tf.strings.join([" ", texts]) if shift else texts
        if self.keras_hub_split:
            word_starts, word_ends, word_rows = _byte_pair_words(
                source, self.special_tokens
            )
        else:
            word_starts = tf.zeros([batch], "int64")
            word_ends = _byte_length(source)
            word_rows = tf.range(batch)
        word_lengths = word_ends - word_starts
        word_totals = tf.math.unsorted_segment_sum(
            word_lengths, word_rows, batch
        )
        token_totals = tf.math.unsorted_segment_sum(lengths, rows, batch)
        bad = tf.math.unsorted_segment_sum(
            tf.cast(~known | (lengths <= 0), "int64"), rows, batch
        )
        aligned = tf.equal(word_totals, token_totals) & tf.equal(bad, 0)
        # Where each token starts in the concatenation of its row's kept
        # words, hence in which word and where in the text.
        token_kept = _row_exclusive_cumsum(lengths, rows, batch)
        word_kept = _row_exclusive_cumsum(word_lengths, word_rows, batch)
        token_kept = tf.minimum(token_kept, tf.gather(word_totals, rows))
        word = _count_in_row(
            word_kept, word_rows, token_kept, rows, batch, side="right"
        )
        word = tf.gather(_row_starts(word_rows, batch), rows) + word - 1
        word = tf.clip_by_value(word, 0, tf.maximum(_size(word_starts) - 1, 0))
        word_start = _gather_or_zero(word_starts, word)
        word_kept_start = _gather_or_zero(word_kept, word)
        starts = word_start + token_kept - word_kept_start
        ends = starts + lengths
        starts = tf.maximum(starts - shift, 0)
        ends = tf.maximum(ends - shift, 0)
        row_aligned = tf.gather(aligned, rows)
        starts = tf.where(row_aligned, starts, _none(starts))
        ends = tf.where(row_aligned, ends, _none(ends))
        return ids, starts, ends


def _byte_pair_words(texts, special_tokens=()):
    """Byte ranges of keras-hub's byte-pair words, flat.

    Mirrors `keras_hub`'s `split_strings_for_bpe` (its `tf.data` path): the
    `"६"` marker before each space that precedes a non-space, the special
    tokens kept whole, the two GPT-2 splitting regexes, and the removal of
    every piece equal to `"६"`.

    Args:
        texts: 1-D `tf.string` tensor.
        special_tokens: the tokenizer's `unsplittable_tokens`.

    Returns:
        `(starts, ends, rows)`: flat int64 byte offsets in `texts` of the
        words keras-hub hands to the byte-pair merges, and their rows.
    """
    batch = _batch_size(texts)
    # Where keras-hub inserts its marker, in text and in marked-text bytes.
    pieces, piece_starts, _, counts = _split(texts, _MARKER_SITE)
    piece_rows = tf.repeat(tf.range(batch), counts)
    is_site = tf.strings.regex_full_match(pieces, _MARKER_SITE)
    site_rows = tf.boolean_mask(piece_rows, is_site)
    sites = tf.boolean_mask(piece_starts, is_site)
    site_index = tf.range(_size(sites)) - tf.gather(
        _row_starts(site_rows, batch), site_rows
    )
    sites = sites + _MARKER_BYTES * site_index
    marked = tf.strings.regex_replace(texts, _MARKER_SITE, _MARKER + r"\1\2")
    marked = tf.strings.regex_replace(marked, _MARKER_AT_END, r"\1" + _MARKER)

    # Flat pieces: string, start in the marked text, row, special or not.
    values = marked
    starts = tf.zeros([batch], "int64")
    rows = tf.range(batch)
    special = tf.zeros([batch], "bool")
    for token in special_tokens:
        escaped = re.escape(token)
        values, split_starts, _, counts = _split(values, escaped)
        starts = tf.repeat(starts, counts) + split_starts
        rows = tf.repeat(rows, counts)
        special = tf.repeat(special, counts) | tf.equal(values, token)
    special_ends = starts + _byte_length(values)
    # A special piece stays one word (keras-hub swaps it for a letter-only
    # placeholder that the regexes keep whole).
    values = tf.where(special, "a", values)
    ends = special_ends
    for pattern in (bpe_lib.SPLIT_PATTERN_1, bpe_lib.SPLIT_PATTERN_2):
        values, split_starts, split_ends, counts = _split(values, pattern)
        base = tf.repeat(starts, counts)
        special = tf.repeat(special, counts)
        special_ends = tf.repeat(special_ends, counts)
        rows = tf.repeat(rows, counts)
        starts = base + split_starts
        ends = base + split_ends
    ends = tf.where(special, special_ends, ends)
    keep = tf.not_equal(values, _MARKER) | special
    starts = tf.boolean_mask(starts, keep)
    ends = tf.boolean_mask(ends, keep)
    rows = tf.boolean_mask(rows, keep)

    # Marked-text bytes to text bytes: drop the markers before each offset.
    before = _count_in_row(sites, site_rows, starts, rows, batch, "left")
    starts = starts - _MARKER_BYTES * before
    before = _count_in_row(sites, site_rows, ends, rows, batch, "left")
    ends = ends - _MARKER_BYTES * before
    return starts, ends, rows


def byte_pair_words(texts, special_tokens=()):
    """Byte ranges of keras-hub's byte-pair words (see `_byte_pair_words`).

    Returns:
        `(starts, ends)`: int64 ragged `(batch, None)` byte offsets.
    """
    texts = tf.convert_to_tensor(texts)
    starts, ends, rows = _byte_pair_words(texts, special_tokens)
    batch = _batch_size(texts)
    return (
        tf.RaggedTensor.from_value_rowids(starts, rows, nrows=batch),
        tf.RaggedTensor.from_value_rowids(ends, rows, nrows=batch),
    )


class _SentencePieceOffsets(_Offsets):
    def __init__(self, tokenizer):
        super().__init__(tokenizer)
        tokenizer._maybe_initialized_spm()
        processor = tokenizer._sentence_piece_spm
        size = tokenizer.vocabulary_size()
        self.is_control = np.array(
            [bool(processor.IsControl(i)) for i in range(size)], dtype=bool
        )

    def byte_offsets(self, texts):
        tokenizer = self.tokenizer
        tokenizer._maybe_initialized_tf()
        ids, starts, ends = tokenizer._sentence_piece.tokenize_with_offsets(
            texts
        )
        starts = tf.cast(starts.values, "int64")
        ends = tf.cast(ends.values, "int64")
        # Pieces of one character (byte-fallback bytes, or the pieces of a
        # character NFKC expands, such as "..." for "…"): tf-text gives the
        # whole character to the last piece and nothing to the others. Give
        # each of them the span of the piece that carries the character.
        # Control pieces (start/end tokens) keep their empty span.
        is_control = tf.gather(
            tf.constant(self.is_control),
            tf.clip_by_value(
                tf.cast(ids.values, "int64"), 0, len(self.is_control) - 1
            ),
        )
        rows = ids.value_rowids()
        nonempty = tf.cast(ends > starts, "int64")
        # Index of the first non-empty piece at or after each piece.
        seen = tf.cumsum(nonempty)
        following = tf.searchsorted(
            tf.concat([seen, [_BIG]], 0),
            seen - nonempty + 1,
            side="left",
            out_type="int64",
        )
        last = tf.maximum(_size(starts) - 1, 0)
        following_row = _gather_or_zero(rows, tf.minimum(following, last))
        has_next = (following <= last) & tf.equal(following_row, rows)
        following = tf.minimum(following, last)
        next_start = _gather_or_zero(starts, following)
        next_end = _gather_or_zero(ends, following)
        extend = (
            ~is_control
            & (ends <= starts)
            & has_next
            & tf.equal(next_start, starts)
        )
        ends = tf.where(extend, next_end, ends)
        return ids, starts, ends


class _WordPieceOffsets(_Offsets):
    def byte_offsets(self, texts):
        tokenizer = self.tokenizer
        tokenizer._maybe_initialized_tf()
        batch = _batch_size(texts)
        special_pattern = wp_lib.get_special_tokens_pattern(
            tokenizer._special_tokens_for_splitting()
        )
        if tokenizer.strip_accents:
            normalized, offsets_map = tf_text.normalize_utf8_with_offsets_map(
                texts, "NFD"
            )
        else:
            normalized = texts
        if tokenizer.split:
            if tokenizer.split_on_cjk:
                split = wp_lib.WHITESPACE_PUNCTUATION_AND_CJK_REGEX
                keep = wp_lib.PUNCTUATION_AND_CJK_REGEX
            else:
                split = wp_lib.WHITESPACE_AND_PUNCTUATION_REGEX
                keep = wp_lib.PUNCTUATION_REGEX
            if special_pattern is not None:
                split = r"|".join([special_pattern, split])
                keep = r"|".join([special_pattern, keep])
            words, word_starts, word_ends, counts = _split(
                normalized, split, keep
            )
            rows = tf.repeat(tf.range(batch), counts)
        else:
            words = normalized
            word_starts = tf.zeros([batch], "int64")
            word_ends = _byte_length(normalized)
            rows = tf.range(batch)
        if tokenizer.strip_accents:
            word_starts = _source_offsets(offsets_map, word_starts, rows)
            word_ends = _source_offsets(offsets_map, word_ends, rows)
        pieces = words
        if tokenizer.strip_accents:
            pieces = tf.strings.regex_replace(pieces, r"\p{Mn}", "")
        if tokenizer.lowercase:
            folded = tf_text.case_fold_utf8(pieces)
            if special_pattern is not None:
                is_special = tf.equal(
                    tf.strings.regex_replace(pieces, special_pattern, _MARKER),
                    _MARKER,
                )
                pieces = tf.where(is_special, pieces, folded)
            else:
                pieces = folded
        originals = tf.strings.substr(
            tf.gather(texts, rows), word_starts, word_ends - word_starts
        )
        exact = tf.equal(pieces, originals) | tf.strings.regex_full_match(
            originals, r"[\x00-\x7f]*"
        )
        ids, sub_starts, sub_ends = (
            tokenizer._fast_word_piece.tokenize_with_offsets(pieces)
        )
        counts = ids.row_lengths()
        word_starts = tf.repeat(word_starts, counts)
        word_ends = tf.repeat(word_ends, counts)
        exact = tf.repeat(exact, counts)
        rows = tf.repeat(rows, counts)
        starts = tf.where(
            exact,
            word_starts + tf.cast(sub_starts.values, "int64"),
            word_starts,
        )
        ends = tf.where(
            exact, word_starts + tf.cast(sub_ends.values, "int64"), word_ends
        )
        ids = tf.RaggedTensor.from_value_rowids(
            ids.values, rows, nrows=batch, validate=False
        )
        return ids, starts, ends


def _source_offsets(offsets_map, offsets, rows):
    # `find_source_offsets` wants offsets shaped like the texts; it rejects
    # ragged offsets whose last row is empty: hand it a dense tensor with
    # one spare column.
    ragged = tf.RaggedTensor.from_value_rowids(
        offsets, rows, nrows=tf.shape(offsets_map, out_type="int64")[0]
    )
    dense = _pad_column(ragged.to_tensor(default_value=0), value=0)
    source = tf_text.find_source_offsets(offsets_map, dense)
    return tf.RaggedTensor.from_tensor(
        source[:, :-1], lengths=ragged.row_lengths()
    ).values


def _split(values, pattern, keep=None):
    """Flat regex split of a 1-D string tensor (the tf-text op, without its
    ragged wrapping): `(pieces, starts, ends, pieces per input)`."""
    keep = pattern if keep is None else keep
    pieces, starts, ends, splits = gen_regex_split_ops.regex_split_with_offsets(
        values, f"({pattern})", f"({keep})"
    )
    return pieces, starts, ends, splits[1:] - splits[:-1]


def _count_in_row(sorted_values, sorted_rows, queries, query_rows, batch, side):
    """For each query, how many values of its row are `<` it (`side="left"`)
    or `<=` it (`side="right"`). Values are sorted within rows, rows
    ascending; values and queries are non-negative."""
    zero = tf.zeros([1], "int64")
    span = tf.reduce_max(tf.concat([sorted_values, queries, zero], 0)) + 1
    keys = sorted_values + sorted_rows * span
    keys = tf.concat([keys, [_BIG]], axis=0)
    found = tf.searchsorted(
        keys, queries + query_rows * span, side=side, out_type="int64"
    )
    return found - tf.gather(_row_starts(sorted_rows, batch), query_rows)


def _row_starts(rows, batch):
    """Index of the first value of each row (rows ascending)."""
    counts = tf.math.unsorted_segment_sum(tf.ones_like(rows), rows, batch)
    return tf.cumsum(counts, exclusive=True)


def _row_exclusive_cumsum(values, rows, batch):
    totals = tf.math.unsorted_segment_sum(values, rows, batch)
    return tf.cumsum(values, exclusive=True) - tf.gather(
        tf.cumsum(totals, exclusive=True), rows
    )


def _bytes_to_chars(texts, rows, starts, ends):
    """Byte offsets to code-point offsets (start rounds down, end up)."""
    batch = _batch_size(texts)
    _, char_starts = tf.strings.unicode_decode_with_offsets(
        texts, "UTF-8", errors="replace"
    )
    char_rows = char_starts.value_rowids()
    char_starts = char_starts.values
    none = starts < 0
    s = tf.maximum(starts, 0)
    e = tf.maximum(ends, 0)
    char_s = _count_in_row(char_starts, char_rows, s, rows, batch, "right")
    char_e = _count_in_row(char_starts, char_rows, e, rows, batch, "left")
    char_s = tf.where(none, _none(char_s), char_s - 1)
    char_e = tf.where(none, _none(char_e), char_e)
    return tf.cast(char_s, "int32"), tf.cast(char_e, "int32")


def _skip_leading_whitespace(texts, rows, starts, ends):
    valid = starts >= 0
    pos = tf.where(valid, starts, 0)
    span = tf.strings.substr(
        tf.gather(texts, rows),
        pos,
        tf.where(valid, ends - starts, 0),
        unit="UTF8_CHAR",
    )
    rest = tf.strings.regex_replace(span, _LEADING_WHITESPACE, "")
    span_length = tf.strings.length(span, unit="UTF8_CHAR")
    rest_length = tf.strings.length(rest, unit="UTF8_CHAR")
    lead = tf.where(rest_length > 0, span_length - rest_length, 0)
    return tf.where(valid, starts + lead, starts)


def _pairs(ids, starts, ends):
    return tf.RaggedTensor.from_row_splits(
        tf.stack([starts, ends], axis=-1), ids.row_splits, validate=False
    )


def _gather_or_zero(values, indices):
    """`values[indices]`, or zeros when `values` is empty."""
    padded = tf.concat([values, tf.zeros([1], values.dtype)], axis=0)
    return tf.gather(padded, indices)


def _none(values):
    return tf.cast(NO_OFFSET, values.dtype)


def _batch_size(texts):
    return tf.shape(texts, out_type="int64")[0]


def _size(values):
    return tf.shape(values, out_type="int64")[0]


def _byte_length(strings):
    return tf.cast(tf.strings.length(strings), "int64")


def _pad_column(dense, value=_BIG):
    """Appends one column of `value`."""
    column = tf.fill([tf.shape(dense)[0], 1], tf.cast(value, dense.dtype))
    return tf.concat([dense, column], axis=1)
