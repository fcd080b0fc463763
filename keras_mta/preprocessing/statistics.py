"""Statistics of the semantic units of a dataset."""

import dataclasses

GRANULARITIES = ("phrases", "words")


@dataclasses.dataclass
class SpanStatistics:
    """Counts of the semantic units of a dataset, and of those dropped.

    The chunker fills `texts`, `phrases` and `words` (character spans
    found); the span masker fills the counts of units dropped because a
    text has more than `max_units` of them, or because they lie wholly
    outside the truncated token window (or cover no token). The span cache
    fills `cache_hits` and `cache_misses` (texts read from disk, texts
    chunked).

    A dropped count is `None` until something counted it (chunking alone
    cannot: it needs the tokenizer and `max_units`); it then prints as
    "not counted" rather than as a misleading 0.

    Statistics of parts of a dataset add up with `merge` (or `+`); `None`
    plus a count is that count.

    Args:
        texts: number of texts.
        phrases: number of phrase units found by the chunker.
        words: number of word units found by the chunker.
        phrases_dropped_max_units: phrase units over `max_units`.
        words_dropped_max_units: word units over `max_units`.
        phrases_dropped_truncation: phrase units outside the token window
            (or with no token).
        words_dropped_truncation: word units outside the token window (or
            with no token).
        cache_hits: texts whose spans were read from the cache.
        cache_misses: texts chunked because the cache lacked them.

    Examples:

    >>> spans = [{"phrases": [(0, 3)], "words": [(0, 1), (2, 3)]},
    ...          {"phrases": [], "words": []}]
    >>> stats = SpanStatistics.from_spans(spans)
    >>> stats.phrases_per_text, stats.words_per_text
    (0.5, 1.0)
    >>> (stats + stats).texts
    4
    """

    texts: int = 0
    phrases: int = 0
    words: int = 0
    phrases_dropped_max_units: int | None = None
    words_dropped_max_units: int | None = None
    phrases_dropped_truncation: int | None = None
    words_dropped_truncation: int | None = None
    cache_hits: int = 0
    cache_misses: int = 0

    @classmethod
    def from_spans(cls, spans, **counts):
        """Statistics of span dicts `{"phrases": [...], "words": [...]}`.

        Args:
            spans: iterable of span dicts, one per text.
            **counts: other fields to set, e.g. `cache_hits=...`.
        """
        stats = cls(**counts)
        for item in spans:
            stats.texts += 1
            stats.phrases += len(item["phrases"])
            stats.words += len(item["words"])
        return stats

    def merge(self, other):
        """A new `SpanStatistics` with the counts of both added."""
        if not isinstance(other, SpanStatistics):
            raise TypeError(
                f"Cannot merge SpanStatistics with {type(other).__name__}."
            )
        merged = {}
        for field in dataclasses.fields(self):
            a = getattr(self, field.name)
            b = getattr(other, field.name)
            merged[field.name] = b if a is None else a if b is None else a + b
        return SpanStatistics(**merged)

    def __add__(self, other):
        if not isinstance(other, SpanStatistics):
            return NotImplemented
        return self.merge(other)

    def _per_text(self, count):
        return count / self.texts if self.texts else 0.0

    @property
    def phrases_per_text(self):
        """Mean number of phrase units per text (0 without texts)."""
        return self._per_text(self.phrases)

    @property
    def words_per_text(self):
        """Mean number of word units per text (0 without texts)."""
        return self._per_text(self.words)

    def dropped(self, granularity):
        """Units of a granularity dropped (by `max_units` and truncation).

        `None` when neither count was filled.
        """
        if granularity not in GRANULARITIES:
            raise ValueError(
                f"`granularity` must be one of {GRANULARITIES}, got "
                f"{granularity!r}."
            )
        counts = [
            getattr(self, f"{granularity}_dropped_{cause}")
            for cause in ("max_units", "truncation")
        ]
        counts = [count for count in counts if count is not None]
        return sum(counts) if counts else None

    def dropped_fraction(self, granularity):
        """Fraction of the units of a granularity that were dropped.

        `None` when no dropped count was filled; 0 without units.
        """
        dropped = self.dropped(granularity)
        if dropped is None:
            return None
        total = getattr(self, granularity)
        return dropped / total if total else 0.0

    def to_dict(self):
        """The counts and the per-text means, as a JSON-able dict."""
        result = dataclasses.asdict(self)
        result["phrases_per_text"] = self.phrases_per_text
        result["words_per_text"] = self.words_per_text
        return result

    def __str__(self):
        lines = [
            f"texts: {self.texts}",
            f"phrases: {self.phrases} ({self.phrases_per_text:.2f} per text)",
            f"words: {self.words} ({self.words_per_text:.2f} per text)",
        ]
        for granularity in GRANULARITIES:
            if self.dropped(granularity) is None:
                lines.append(
                    f"{granularity} dropped: not counted (needs the "
                    "tokenizer and max_units)"
                )
                continue
            parts = []
            for cause in ("max_units", "truncation"):
                count = getattr(self, f"{granularity}_dropped_{cause}")
                shown = "not counted" if count is None else count
                parts.append(f"{shown} by {cause}")
            fraction = 100 * self.dropped_fraction(granularity)
            lines.append(
                f"{granularity} dropped: {', '.join(parts)} "
                f"({fraction:.2f}% of {granularity})"
            )
        if self.cache_hits or self.cache_misses:
            lines.append(
                f"cache: {self.cache_hits} hits, {self.cache_misses} misses"
            )
        return "\n".join(lines)


def span_statistics(spans, **counts):
    """Texts, phrases and words of span dicts, as `SpanStatistics`.

    Args:
        spans: iterable of `{"phrases": [...], "words": [...]}` dicts, one
            per text (the output of `PhraseChunker.chunk`).
        **counts: other `SpanStatistics` fields to set.

    Examples:

    >>> stats = span_statistics([{"phrases": [(0, 3)], "words": [(0, 3)]}])
    >>> stats.texts, stats.phrases_per_text, stats.words_per_text
    (1, 1.0, 1.0)
    """
    return SpanStatistics.from_spans(spans, **counts)
