"""Truncation and unit counts of a dataset run through the
`DistillationPreprocessor`."""

import dataclasses
import logging
import warnings

import numpy as np

from keras_mta.preprocessing.statistics import SpanStatistics

# The logger of the statistics since they were first reported.
logger = logging.getLogger("keras_mta.preprocessing.distillation_preprocessor")

# The unit kinds of the student's inputs.
UNIT_KINDS = ("word_units", "phrase_units")
# The per-example counts of `SpanMasker(return_counts=True)`.
COUNT_KEYS = (
    "units",
    "kept",
    "dropped_overflow",
    "dropped_truncation",
    "dropped_empty",
    "clipped",
    # Teacher and student of different tokenizers: units this side kept
    # but the other side lost (dropped on both, so that rows stay paired).
    "dropped_unpaired",
)


class TruncationWarning(UserWarning):
    """Tokens, semantic units or response targets of a dataset were cut,
    dropped or lost (truncation, `max_units`, units covering no token,
    texts whose tokens cannot be located in them)."""


@dataclasses.dataclass
class PreprocessingStatistics:
    """Truncation and unit counts of a dataset run through the
    `DistillationPreprocessor`.

    Attributes:
        examples: number of examples.
        tokens: student tokens of prompt + response, before truncation.
        truncated_examples: examples longer than the window.
        truncated_tokens: student tokens cut off.
        response_tokens: response targets inside the window (weight 1).
        examples_without_response: examples whose response lies wholly
            outside the window (no target is trained).
        unaligned_examples: examples none of whose tokens could be located
            in their text: the tokenizer does not represent the text
            faithfully (keras-hub's byte-pair tokenizer turns its internal
            placeholder `"ĴA"` into a special token), so the response keeps
            no target but the end token and no unit.
        teacher_tokens, teacher_truncated_examples,
        teacher_truncated_tokens, teacher_unaligned_examples: the same for
            the teacher's tokens, when the tokenizers differ.
        units: per unit kind (`"word_units"`, `"phrase_units"`, and
            `"teacher_..."`), a dict of the `SpanMasker` counts: `units`,
            `kept`, `dropped_overflow`, `dropped_truncation`,
            `dropped_empty`, `clipped`, and `dropped_unpaired` (tokenizers
            that differ: units this side could keep that the other side
            lost, dropped on both so that unit rows stay paired).
        sequence_length, max_word_units, max_phrase_units,
        teacher_sequence_length: the settings counted against.
    """

    examples: int = 0
    tokens: int = 0
    truncated_examples: int = 0
    truncated_tokens: int = 0
    response_tokens: int = 0
    examples_without_response: int = 0
    unaligned_examples: int = 0
    teacher_tokens: int = 0
    teacher_truncated_examples: int = 0
    teacher_truncated_tokens: int = 0
    teacher_unaligned_examples: int = 0
    units: dict = dataclasses.field(default_factory=dict)
    sequence_length: int = None
    max_word_units: int = None
    max_phrase_units: int = None
    teacher_sequence_length: int = None

    _FIELDS = {
        "examples": "examples",
        "tokens": "tokens",
        "truncated": "truncated_examples",
        "truncated_tokens": "truncated_tokens",
        "response_tokens": "response_tokens",
        "no_response": "examples_without_response",
        "unaligned": "unaligned_examples",
        "teacher_unaligned": "teacher_unaligned_examples",
        "teacher_tokens": "teacher_tokens",
        "teacher_truncated": "teacher_truncated_examples",
        "teacher_truncated_tokens": "teacher_truncated_tokens",
    }

    def update(self, counts):
        """Adds per-example counts (a dict of arrays) of one batch."""
        for key, value in counts.items():
            total = int(np.sum(value))
            if "/" in key:
                kind, name = key.split("/")
                kind_counts = self.units.setdefault(
                    kind, {k: 0 for k in COUNT_KEYS}
                )
                kind_counts[name] += total
            elif key in self._FIELDS:
                field = self._FIELDS[key]
                setattr(self, field, getattr(self, field) + total)

    def check_units(self, kinds=UNIT_KINDS, name=None):
        """Raises when a unit kind the alignment reads keeps no unit at all.

        With MTA on, a unit kind that keeps no unit over the whole dataset
        makes its alignment terms a silent 0 (e.g. every phrase dropped by
        truncation, or spans that cover no token). Call it with the unit
        kinds the model reads (`DistillationModel.unit_keys`: none when
        `mta_weight=0`).

        Args:
            kinds: iterable of unit kinds (`"word_units"`, `"phrase_units"`,
                or their `"teacher_..."` forms).
            name: optional name of the dataset, for the message.

        Raises:
            ValueError: naming the kind, its counts, and the fixes; also
                when a kind was not counted (the statistics come from
                `compute_statistics` or `prepare_dataset`).

        Examples:

        ```python
        preprocessor.prepare_dataset(examples, batch_size=8)
        preprocessor.statistics.check_units(model.unit_keys)
        ```
        """
        label = f" {name!r}" if name else ""
        for kind in kinds:
            counts = self.units.get(kind)
            if counts is None:
                raise ValueError(
                    f"PreprocessingStatistics: no counts of {kind!r} "
                    f"(counted: {sorted(self.units)}). Compute the "
                    "statistics of the dataset with the "
                    "DistillationPreprocessor (`prepare_dataset` or "
                    "`compute_statistics`) before checking its units."
                )
            if counts["kept"]:
                continue
            limit = (
                self.max_phrase_units
                if "phrase" in kind
                else self.max_word_units
            )
            raise ValueError(
                f"Alignment is on but the dataset{label} keeps no "
                f"{kind.replace('_units', '')} unit (`{kind}`) in any of its "
                f"{self.examples} examples: {counts['units']} units found, "
                f"{counts['dropped_overflow']} over max_units={limit}, "
                f"{counts['dropped_truncation']} cut off by truncation to "
                f"sequence_length={self.sequence_length}, "
                f"{counts['dropped_empty']} covering no token, "
                f"{counts.get('dropped_unpaired', 0)} lost on the other "
                "model's tokens. The MTA "
                f"terms on `{kind}` would silently be 0. Check the span "
                "preprocessing (the spans must cover tokens inside the "
                "window: spans, chunker, sequence_length, max_*_units), or "
                "set `mta_weight=0` (KD only), or `units='word'` / "
                "`units='phrase'` to align on the other unit kind only."
            )

    def dropped(self, kind):
        """Units of `kind` dropped by `max_units`, by truncation and (two
        tokenizers) because the other model's tokens lost them."""
        counts = self.units.get(kind, {})
        return (
            counts.get("dropped_overflow", 0)
            + counts.get("dropped_truncation", 0)
            + counts.get("dropped_unpaired", 0)
        )

    def dropped_fraction(self, kind):
        """`dropped(kind)` over the units of `kind` (0 without units)."""
        total = self.units.get(kind, {}).get("units", 0)
        return self.dropped(kind) / total if total else 0.0

    @property
    def truncated_fraction(self):
        return self.truncated_examples / self.examples if self.examples else 0.0

    def has_losses(self):
        """Whether anything was truncated, dropped or lost: truncation,
        units over `max_units`, by truncation or covering no token, and
        texts whose tokens could not be located in them."""
        return bool(
            self.truncated_examples
            or self.teacher_truncated_examples
            or self.examples_without_response
            or self.unaligned_examples
            or self.teacher_unaligned_examples
            or any(self.dropped(kind) for kind in self.units)
            or any(c["dropped_empty"] for c in self.units.values())
        )

    def to_span_statistics(self, spans_statistics=None):
        """The dropped counts as a `SpanStatistics` (student units).

        Args:
            spans_statistics: optional `SpanStatistics` of the chunking
                (texts, phrases, words) to fill; a new one otherwise.
        """
        stats = spans_statistics or SpanStatistics(texts=self.examples)
        stats = dataclasses.replace(stats)
        for granularity, kind in (
            ("phrases", "phrase_units"),
            ("words", "word_units"),
        ):
            counts = self.units.get(kind)
            if counts is None:
                continue
            if spans_statistics is None:
                setattr(stats, granularity, counts["units"])
            setattr(
                stats,
                f"{granularity}_dropped_max_units",
                counts["dropped_overflow"],
            )
            setattr(
                stats,
                f"{granularity}_dropped_truncation",
                counts["dropped_truncation"] + counts["dropped_empty"],
            )
        return stats

    def as_dict(self):
        return dataclasses.asdict(self)

    def summary(self, name=None):
        label = f" {name!r}" if name else ""
        lines = [
            f"dataset{label}: {self.examples} examples, {self.tokens} tokens",
            f"truncated to sequence_length={self.sequence_length}: "
            f"{self.truncated_examples} examples "
            f"({100 * self.truncated_fraction:.2f}%), "
            f"{self.truncated_tokens} tokens cut",
            f"response targets: {self.response_tokens}; examples with no "
            f"response inside the window: {self.examples_without_response}",
        ]
        for field, side in (
            ("unaligned_examples", ""),
            ("teacher_unaligned_examples", "teacher "),
        ):
            if getattr(self, field):
                lines.append(
                    f"{getattr(self, field)} examples whose {side}tokens "
                    "could not be located in their text (the tokenizer "
                    "altered it, e.g. keras-hub's byte-pair placeholder "
                    "'ĴA'): their response keeps no target but the end "
                    "token and no unit; fix or drop those texts"
                )
        if self.teacher_sequence_length is not None:
            lines.append(
                "teacher truncated to sequence_length="
                f"{self.teacher_sequence_length}: "
                f"{self.teacher_truncated_examples} examples, "
                f"{self.teacher_truncated_tokens} tokens cut"
            )
        for kind, counts in self.units.items():
            limit = (
                self.max_phrase_units
                if "phrase" in kind
                else self.max_word_units
            )
            lines.append(
                f"{kind}: {counts['units']} units, {counts['kept']} kept; "
                f"dropped {100 * self.dropped_fraction(kind):.2f}% "
                f"({counts['dropped_overflow']} over max_units={limit}, "
                f"{counts['dropped_truncation']} by truncation); "
                f"{counts['dropped_empty']} cover no token; "
                f"{counts['clipped']} clipped by truncation"
            )
            if counts.get("dropped_unpaired"):
                lines[-1] += (
                    f"; {counts['dropped_unpaired']} dropped because the "
                    "other model's tokens lost them (kept units are paired)"
                )
        return "\n".join(lines)

    def __str__(self):
        return self.summary()

    def report(self, name=None):
        """Logs the summary; warns (`TruncationWarning`) on any loss."""
        summary = self.summary(name)
        logger.info("DistillationPreprocessor statistics:\n%s", summary)
        if self.has_losses():
            warnings.warn(
                "DistillationPreprocessor cut tokens, dropped units or lost "
                "response targets:\n" + summary,
                TruncationWarning,
                stacklevel=3,
            )
