"""An on-disk cache of phrase and word spans, computed once per dataset.

Layout: `directory/spans-<fingerprint hash>/` holds the entries of one
chunker configuration (pipeline name and version, spaCy version, rules;
see `PhraseChunker.fingerprint`), with a `settings.json` for people to read
and shard files `shard-<hash>.spans`. Each shard maps the hash of a text to
its spans. A shard file is one header line,

```
keras-mta-spans 1 <sha256 of the payload> <payload length in bytes>
```

followed by the JSON payload `{"fingerprint": ..., "entries": [[key,
phrases, words], ...]}` (`phrases` and `words` are flat lists of
`start, end` character offsets).

- Writes are atomic: a shard is written to a temporary file, flushed to
  disk and renamed over its final name; a crash leaves at most a temporary
  file, which readers ignore.
- A truncated, corrupted or foreign shard fails its header, checksum,
  fingerprint or structure check: a `SpanCacheWarning` is issued, the file
  is removed and its texts are chunked again.
- Missing texts are chunked in one stream and written a shard at a time
  (`shard_size` texts), so an interrupted run keeps its finished shards and
  the next run chunks only the rest.
- Looking up texts that are all cached loads neither spaCy nor the
  pipeline: the chunker is only asked for its fingerprint, read from the
  installed packages' metadata.
"""

import hashlib
import json
import os
import warnings

from keras_mta.preprocessing.statistics import SpanStatistics
from keras_mta.preprocessing.unicode_text import check_not_bytes
from keras_mta.preprocessing.unicode_text import checked_text
from keras_mta.utils.cache_dir import cache_dir
from keras_mta.utils.files import atomic_write

MAGIC = "keras-mta-spans"
FORMAT_VERSION = 1
SHARD_PREFIX = "shard-"
SHARD_SUFFIX = ".spans"
SETTINGS_FILE = "settings.json"
DEFAULT_SHARD_SIZE = 512


class SpanCacheWarning(UserWarning):
    """A cache file was unreadable and is being rebuilt."""


class _InvalidShard(ValueError):
    pass


def default_cache_dir():
    """The default span cache directory: `keras_mta.utils.cache_dir("spans")`
    (`$KERAS_MTA_CACHE_DIR/spans`, else `~/.cache/keras-mta/spans`)."""
    return cache_dir("spans")


def text_key(text):
    """The cache key of one text: a 128-bit hex digest of its UTF-8 bytes."""
    data = text.encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:32]


def _digest(data):
    return hashlib.sha256(data).hexdigest()


def _flatten(spans):
    return [offset for span in spans for offset in span]


def _pairs(flat, name):
    if not isinstance(flat, list) or len(flat) % 2:
        raise _InvalidShard(f"{name} is not a flat list of (start, end)")
    pairs = list(zip(flat[::2], flat[1::2]))
    for start, end in pairs:
        if not (type(start) is int and type(end) is int and 0 <= start < end):
            raise _InvalidShard(f"{name} has an invalid span")
    return pairs


def encode_shard(fingerprint, entries):
    """Bytes of a shard file for `{key: span dict}` entries."""
    payload = {
        "fingerprint": fingerprint,
        "entries": [
            [key, _flatten(spans["phrases"]), _flatten(spans["words"])]
            for key, spans in sorted(entries.items())
        ],
    }
    data = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    header = f"{MAGIC} {FORMAT_VERSION} {_digest(data)} {len(data)}\n"
    return header.encode("ascii") + data


def decode_shard(data, fingerprint):
    """`{key: span dict}` entries of shard bytes.

    Raises:
        ValueError: when the bytes are not a complete, intact shard of this
            format written for `fingerprint`.
    """
    newline = data.find(b"\n", 0, 256)
    if newline < 0:
        raise _InvalidShard("no header line")
    try:
        magic, version, digest, length = (
            data[:newline].decode("ascii").split(" ")
        )
        version, length = int(version), int(length)
    except ValueError:
        raise _InvalidShard("not a span cache header") from None
    if magic != MAGIC:
        raise _InvalidShard("not a span cache file")
    if version != FORMAT_VERSION:
        raise _InvalidShard(f"format version {version}, not {FORMAT_VERSION}")
    body = data[newline + 1 :]
    if len(body) != length:
        raise _InvalidShard(
            f"payload of {len(body)} bytes, header says {length} (truncated?)"
        )
    if _digest(body) != digest:
        raise _InvalidShard("checksum mismatch")
    try:
        payload = json.loads(body.decode("utf-8"))
    except ValueError:
        raise _InvalidShard("payload is not JSON") from None
    if not isinstance(payload, dict):
        raise _InvalidShard("payload is not an object")
    if payload.get("fingerprint") != fingerprint:
        raise _InvalidShard("written for other chunker settings")
    rows = payload.get("entries")
    if not isinstance(rows, list):
        raise _InvalidShard("no entries")
    entries = {}
    for row in rows:
        if not (isinstance(row, list) and len(row) == 3):
            raise _InvalidShard("malformed entry")
        key, phrases, words = row
        if not isinstance(key, str):
            raise _InvalidShard("malformed key")
        entries[key] = {
            "phrases": _pairs(phrases, "phrases"),
            "words": _pairs(words, "words"),
        }
    return entries


class SpanCache:
    """Phrase and word spans of texts, cached on disk.

    Entries are keyed by the hash of the text within a directory named by
    the hash of the chunker's fingerprint (pipeline name and version, spaCy
    version, extraction rules): changing any of them starts a new cache.
    See the module docstring for the file format and its guarantees.

    Args:
        directory: root directory of the cache (created when needed);
            defaults to `default_cache_dir()`.
        chunker: a `PhraseChunker`, a dict of its arguments, or `None` for
            `PhraseChunker()`. Its spaCy pipeline is loaded only when some
            text is missing from the cache.
        shard_size: int, texts per shard file (the unit of resumption).

    Examples:

    >>> import tempfile
    >>> cache = SpanCache(tempfile.mkdtemp())
    >>> spans = cache.get_or_compute(["The cat sat on the mat."])
    >>> spans[0]["phrases"]
    [(0, 7), (8, 11), (15, 22)]
    >>> cache.statistics.cache_misses
    1
    """

    def __init__(self, directory=None, chunker=None, shard_size=None):
        if directory is None:
            directory = default_cache_dir()
        shard_size = DEFAULT_SHARD_SIZE if shard_size is None else shard_size
        if not isinstance(shard_size, int) or shard_size < 1:
            raise ValueError(
                f"`shard_size` must be a positive int, got {shard_size!r}."
            )
        if chunker is None or isinstance(chunker, dict):
            from keras_mta.preprocessing.chunking import PhraseChunker

            chunker = PhraseChunker(**(chunker or {}))
        self.root = os.fspath(directory)
        self.chunker = chunker
        self.shard_size = shard_size
        self.fingerprint = chunker.fingerprint()
        name = "spans-" + _digest(self.fingerprint.encode("utf-8"))[:16]
        self.directory = os.path.join(self.root, name)
        self.statistics = SpanStatistics()

    def _shard_paths(self):
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(
            os.path.join(self.directory, name)
            for name in names
            if name.startswith(SHARD_PREFIX) and name.endswith(SHARD_SUFFIX)
        )

    def load(self):
        """All valid entries on disk, `{text key: span dict}`.

        Invalid shard files are reported with a `SpanCacheWarning` and
        removed, so that their texts are chunked again.
        """
        entries = {}
        for path in self._shard_paths():
            try:
                with open(path, "rb") as f:
                    data = f.read()
                entries.update(decode_shard(data, self.fingerprint))
            except (OSError, _InvalidShard) as e:
                warnings.warn(
                    f"Span cache file {path} is unreadable ({e}); removing "
                    "it and chunking its texts again.",
                    SpanCacheWarning,
                    stacklevel=2,
                )
                try:
                    os.remove(path)
                except OSError:
                    pass
        return entries

    def _write_settings(self):
        path = os.path.join(self.directory, SETTINGS_FILE)
        if os.path.exists(path):
            return
        data = json.dumps(
            json.loads(self.fingerprint), indent=2, sort_keys=True
        )
        atomic_write(path, (data + "\n").encode("utf-8"))

    def _write_shard(self, entries):
        os.makedirs(self.directory, exist_ok=True)
        self._write_settings()
        data = encode_shard(self.fingerprint, entries)
        name = f"{SHARD_PREFIX}{_digest(data)[:20]}{SHARD_SUFFIX}"
        atomic_write(os.path.join(self.directory, name), data)

    def get_or_compute(self, texts, progress=None):
        """Span dicts of `texts`, from the cache or chunked and cached.

        Args:
            texts: iterable of strings.
            progress: bool or None; show a progress bar while chunking
                missing texts. `None` shows it for 1,000 or more of them.

        Returns:
            A list of `{"phrases": [...], "words": [...]}` dicts in the
            order of `texts`. `self.statistics` holds the `SpanStatistics`
            of this call (texts, units, cache hits and misses).
        """
        check_not_bytes(texts)
        texts = [checked_text(text, k) for k, text in enumerate(texts)]
        keys = [text_key(text) for text in texts]
        entries = self.load()
        missing = {}
        for key, text in zip(keys, texts):
            if key not in entries:
                missing.setdefault(key, text)
        misses = sum(key not in entries for key in keys)
        if missing:
            self._compute(missing, entries, progress)
        results = [entries[key] for key in keys]
        self.statistics = SpanStatistics.from_spans(
            results, cache_hits=len(texts) - misses, cache_misses=misses
        )
        return results

    def _compute(self, missing, entries, progress):
        """Chunk `{key: text}`, writing a shard every `shard_size` texts."""
        if progress is None:
            from keras_mta.preprocessing.chunking import PROGRESS_THRESHOLD

            progress = len(missing) >= PROGRESS_THRESHOLD
        keys = list(missing)
        spans = self.chunker.iter_chunk(missing[key] for key in keys)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(keys), desc="chunking", unit="text")
        try:
            shard = {}
            for key, item in zip(keys, spans):
                shard[key] = item
                if bar is not None:
                    bar.update(1)
                if len(shard) >= self.shard_size:
                    self._write_shard(shard)
                    entries.update(shard)
                    shard = {}
            if shard:
                self._write_shard(shard)
                entries.update(shard)
        finally:
            if bar is not None:
                bar.close()
        absent = [key for key in keys if key not in entries]
        if absent:
            raise RuntimeError(
                f"The chunker returned spans for {len(keys) - len(absent)} "
                f"of {len(keys)} texts."
            )

    def __repr__(self):
        return (
            f"SpanCache({self.directory!r}, chunker={self.chunker!r}, "
            f"shard_size={self.shard_size})"
        )


def build_span_cache(
    texts, directory=None, chunker=None, shard_size=None, progress=True
):
    """Chunk texts into the span cache, and return their statistics.

    Texts already cached are not chunked again; an interrupted build
    resumes from its last complete shard.

    Args:
        texts: iterable of strings (the full training texts).
        directory: cache root; defaults to `default_cache_dir()`.
        chunker: a `PhraseChunker`, a dict of its arguments, or `None`.
        shard_size: texts per shard file.
        progress: bool or None; show a progress bar while chunking.

    Returns:
        `SpanStatistics`: texts, phrases and words (and per text), cache
        hits and misses.

    Examples:

    >>> import tempfile
    >>> texts = ["The cat sat on the mat."]
    >>> stats = build_span_cache(texts, tempfile.mkdtemp(), progress=False)
    >>> stats.texts, stats.phrases, stats.words
    (1, 3, 5)
    """
    cache = SpanCache(directory, chunker=chunker, shard_size=shard_size)
    cache.get_or_compute(texts, progress=progress)
    return cache.statistics
