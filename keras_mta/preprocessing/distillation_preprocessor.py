"""Prompt + response examples to the inputs of MTA distillation."""

import keras
import keras_hub
import numpy as np
from keras_hub.src.layers.preprocessing.preprocessing_layer import (
    PreprocessingLayer,
)
from keras_hub.src.utils.tensor_utils import convert_preprocessing_outputs

from keras_mta.imports import import_optional
from keras_mta.preprocessing.offsets import tokenize_with_offsets
from keras_mta.preprocessing.offsets import tokenizer_family
from keras_mta.preprocessing.position_pairing import context_ends
from keras_mta.preprocessing.position_pairing import pair_positions
from keras_mta.preprocessing.preprocessing_statistics import UNIT_KINDS
from keras_mta.preprocessing.preprocessing_statistics import (
    PreprocessingStatistics,
)
from keras_mta.preprocessing.span_masker import SpanMasker
from keras_mta.preprocessing.span_masker import count_per_row
from keras_mta.preprocessing.span_masker import ragged_pairs
from keras_mta.preprocessing.span_masker import select_units
from keras_mta.preprocessing.span_masker import span_token_ranges
from keras_mta.preprocessing.unicode_text import lone_surrogate

tf = import_optional("tensorflow", "keras_mta.preprocessing")

SPAN_KEYS = ("word_spans", "phrase_spans")
_NEEDS_RESPONSE = "every example needs a response to train on"
# A response of whitespace only, in the graph (`str.strip()` eagerly).
_BLANK = r"[\s\p{Z}]*"
_RAGGED_SPANS = tf.RaggedTensorSpec([None, None, 2], tf.int32, ragged_rank=1)
_INPUT_SIGNATURE = {
    "prompt": tf.TensorSpec([None], tf.string),
    "response": tf.TensorSpec([None], tf.string),
    "word_spans": _RAGGED_SPANS,
    "phrase_spans": _RAGGED_SPANS,
}


@keras.saving.register_keras_serializable(package="keras_mta")
class DistillationPreprocessor(PreprocessingLayer):
    """Prompt + response examples to tokens, targets and semantic units.

    Wraps the student's keras-hub `CausalLMPreprocessor` (and the teacher's
    when the two tokenize differently) with the semantic units of MTA. For
    each example the model reads `text = prompt + response` (the prompt
    already formatted with the instruction template). Its phrase and word
    spans (characters, from `PhraseChunker` or a `SpanCache`) are mapped to
    token ranges through the character offsets of the very tokens the model
    sees (`tokenize_with_offsets`) by `SpanMasker`:

    ```
    token_ids     = pack(tokens(text))[:-1]      # start/end tokens as the
    y             = pack(tokens(text))[1:]       # CausalLMPreprocessor packs
    sample_weight = padding_mask[1:] * response[1:]
    response_j    = 1 for a token holding a response character (its end
                    offset > len(prompt)) and every token after it, and for
                    the end token unless the text was truncated; 0 for
                    prompt and start tokens
    units         = SpanMasker(spans, token offsets)  # (max_units, 2)
    ```

    Prompt tokens are not trained (their targets weigh 0), as in the MTA
    reference code. keras-hub's packer keeps the end token after a truncated
    text; that target weighs 0 here (it would teach the model to stop in
    the middle of a text).

    When teacher and student tokenize alike (same tokenizer class,
    vocabulary and settings, same start/end tokens) they share
    `token_ids`; otherwise `x` also carries `teacher_token_ids`,
    `teacher_padding_mask`, `teacher_word_units` and `teacher_phrase_units`,
    the teacher's units coming from the same character spans, paired: row
    `u` of `word_units` and of `teacher_word_units` is the same span. A
    span dropped on either side (covering no token, cut by truncation, over
    `max_word_units`) is dropped on both, and counted as
    `dropped_unpaired` on the side that could have kept it; both sides have
    `max_word_units` rows (`max_phrase_units` for phrases), while the two
    sequence lengths may differ.

    The layer runs the TensorFlow path of the tokenizers (the one of
    `tf.data`): map it over a `tf.data.Dataset` (batched or not), or call it
    eagerly (then it runs through a `tf.function`, with the same ids).
    Shapes are static: `(batch, sequence_length)` and `(batch,
    max_units, 2)`.

    Truncation and dropped units are never silent: `prepare_dataset` and
    `compute_statistics` count, per dataset, the examples truncated, the
    response-less examples and the units dropped (over `max_*_units`, cut
    off by truncation, or covering no token) into `self.statistics` (a
    `PreprocessingStatistics`) and emit a `TruncationWarning` with the
    fractions.

    Args:
        student_preprocessor: the student's `keras_hub.models.
            CausalLMPreprocessor` (e.g. `GPT2CausalLMPreprocessor`), with a
            byte-pair, SentencePiece or WordPiece tokenizer.
        teacher_preprocessor: the teacher's `CausalLMPreprocessor`, or
            `None` when the teacher reads the student's tokens.
        max_word_units: int. Rows of `word_units`. Defaults to the
            sequence length.
        max_phrase_units: int. Rows of `phrase_units`. Defaults to the
            sequence length.
        chunker: optional `PhraseChunker` or `SpanCache` (anything with
            `chunk(texts)` or `get_or_compute(texts)` returning
            `{"phrases": [...], "words": [...]}` per text), used when the
            examples carry no spans. Chunking runs in Python, so inside
            `tf.data` the spans must come with the examples
            (`prepare_dataset` adds them).
        sequence_length: int. Overrides the student preprocessor's
            `sequence_length`.
        teacher_sequence_length: int. Overrides the teacher preprocessor's
            `sequence_length` (only used when the tokenizers differ).

    Call arguments:
        x: a dict with `"prompt"` and `"response"` strings (scalars or a
            batch), and `"word_spans"` and `"phrase_spans"`: int
            `(batch, None, 2)` ragged character spans of `prompt +
            response` (or `(None, 2)` for one example). Eagerly, the spans
            may be left out when a `chunker` is set.
        y: must be `None` (the layer builds the targets).
        sample_weight: must be `None`.

    Returns:
        `(x, y, sample_weight)`: `x` a dict of `token_ids` (int32),
        `padding_mask` (bool), `word_units` and `phrase_units` (int32), plus
        the `teacher_*` entries when the tokenizers differ; `y` the int32
        next-token targets; `sample_weight` float32, 1 on response targets.

    Examples:

    ```python
    preprocessor = keras_mta.DistillationPreprocessor(
        keras_hub.models.GPT2CausalLMPreprocessor.from_preset(
            "gpt2_base_en", sequence_length=512
        ),
        max_word_units=256,
        max_phrase_units=128,
        chunker=keras_mta.preprocessing.SpanCache("spans/"),
    )
    examples = keras_mta.data.load_examples("dolly.jsonl")[0]
    ds = preprocessor.prepare_dataset(examples, batch_size=8, shuffle=True)
    print(preprocessor.statistics)

    # Or with spans already in the examples:
    x, y, sample_weight = preprocessor({
        "prompt": ["### Instruction:\\nName a fruit.\\n\\n### Response:\\n"],
        "response": ["An apple."],
        "word_spans": [[[44, 47], [47, 53]]],
        "phrase_spans": [[[44, 53]]],
    })
    ```

    References:
        - Multi-Granular Trajectory Alignment for LLM distillation
          (ACL 2026, arXiv 2605.01374).
    """

    def __init__(
        self,
        student_preprocessor,
        teacher_preprocessor=None,
        max_word_units=None,
        max_phrase_units=None,
        chunker=None,
        sequence_length=None,
        teacher_sequence_length=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_preprocessor(student_preprocessor, "student_preprocessor")
        if teacher_preprocessor is not None:
            _check_preprocessor(teacher_preprocessor, "teacher_preprocessor")
        for name, value in (
            ("max_word_units", max_word_units),
            ("max_phrase_units", max_phrase_units),
            ("sequence_length", sequence_length),
            ("teacher_sequence_length", teacher_sequence_length),
        ):
            _check_optional_positive_int(name, value)
        if chunker is not None and not (
            hasattr(chunker, "get_or_compute") or hasattr(chunker, "chunk")
        ):
            raise TypeError(
                "`chunker` must have a `chunk(texts)` or "
                "`get_or_compute(texts)` method (a PhraseChunker or a "
                f"SpanCache). Received: {type(chunker).__name__}."
            )
        self.student_preprocessor = student_preprocessor
        self.teacher_preprocessor = teacher_preprocessor
        self.max_word_units = max_word_units
        self.max_phrase_units = max_phrase_units
        self.chunker = chunker
        self.sequence_length = sequence_length
        self.teacher_sequence_length = teacher_sequence_length
        self.shares_tokens = teacher_preprocessor is None or (
            same_tokenization(student_preprocessor, teacher_preprocessor)
        )
        self.statistics = None
        self._sides = [
            _Side(
                student_preprocessor,
                sequence_length or student_preprocessor.sequence_length,
                max_word_units,
                max_phrase_units,
                prefix="",
            )
        ]
        if not self.shares_tokens:
            self._sides.append(
                _Side(
                    teacher_preprocessor,
                    teacher_sequence_length
                    or teacher_preprocessor.sequence_length,
                    max_word_units,
                    max_phrase_units,
                    prefix="teacher_",
                )
            )
        self._eager_process = None
        self.built = True

    @property
    def student_sequence_length(self):
        """The length of `token_ids`."""
        return self._sides[0].sequence_length

    def call(self, x, y=None, sample_weight=None):
        if y is not None or sample_weight is not None:
            raise ValueError(
                "DistillationPreprocessor builds `y` and `sample_weight` "
                "itself (next tokens, response only); pass examples alone. "
                f"Received y={y!r}, sample_weight={sample_weight!r}."
            )
        outputs, _ = self.process_with_counts(x)
        if tf.executing_eagerly():
            return convert_preprocessing_outputs(outputs)
        return outputs

    def process_with_counts(self, x):
        """`((x, y, sample_weight), counts)`: the call's outputs and the
        per-example int32 counts (tokens, truncation, units kept and
        dropped) that `compute_statistics` adds up. In graph or eagerly
        (then as TensorFlow tensors)."""
        if tf.executing_eagerly():
            features, unbatched = self._python_features(x)
        else:
            features, unbatched = _tensor_features(x)
        return self._run(features, unbatched)

    # ------------------------------------------------------------------
    # One path: every entry point normalises its examples to a batch of
    # `features` (strings and int32 ragged spans) and runs `_run`.

    def _run(self, features, unbatched=False):
        """The traced computation on normalised features."""
        outputs, counts = self._traced()(features)
        if unbatched:
            outputs = tf.nest.map_structure(lambda t: t[0], outputs)
            counts = {k: v[0] for k, v in counts.items()}
        return outputs, counts

    def _traced(self):
        """`_process` traced once (tracing keras-hub's tokenizers takes
        seconds); shared by eager calls, `compute_statistics` and
        `tf.data` maps."""
        if self._eager_process is None:
            self._eager_process = tf.function(
                self._process,
                input_signature=[_INPUT_SIGNATURE],
                autograph=False,
            )
        return self._eager_process

    def _python_features(self, x):
        """Eager inputs (a dict of strings, lists, arrays or eager
        tensors) to `(features, unbatched)`."""
        _check_example_dict(x)
        prompts, unbatched = _python_strings(x["prompt"], "prompt")
        responses, unbatched_responses = _python_strings(
            x["response"], "response"
        )
        if unbatched != unbatched_responses or len(prompts) != len(responses):
            raise ValueError(
                "DistillationPreprocessor: 'prompt' and 'response' must have "
                f"the same batch size. Received {len(prompts)} prompts and "
                f"{len(responses)} responses."
            )
        spans = {key: [None] * len(prompts) for key in SPAN_KEYS}
        if SPAN_KEYS[0] in x:
            spans = _span_features(x, unbatched)
            for key, pairs in spans.items():
                if pairs.nrows() != len(prompts):
                    raise ValueError(
                        f"DistillationPreprocessor: {key!r} has "
                        f"{int(pairs.nrows())} rows for {len(prompts)} "
                        "examples."
                    )
        return self._features(prompts, responses, spans), unbatched

    def _features(self, prompts, responses, spans):
        """Checked Python strings and spans to a batch of features.

        Args:
            prompts, responses: lists of `str`.
            spans: per key of `SPAN_KEYS`, an int32 ragged tensor of every
                example's spans, or a list of one entry per example: its
                `(start, end)` pairs, or `None` to take them from the
                `chunker`.
        """
        _check_responses(responses)
        spans = dict(spans)
        rows = {key: spans[key] for key in SPAN_KEYS}
        if isinstance(rows[SPAN_KEYS[0]], list):
            missing = [
                i for i, row in enumerate(rows[SPAN_KEYS[0]]) if row is None
            ]
            if missing:
                words, phrases = self._chunk(
                    [prompts[i] + responses[i] for i in missing]
                )
                for key, chunked in zip(SPAN_KEYS, (words, phrases)):
                    rows[key] = list(rows[key])
                    for i, row in zip(missing, chunked):
                        rows[key][i] = row
            for key in SPAN_KEYS:
                spans[key] = _ragged_spans(rows[key])
        features = {
            "prompt": tf.constant(prompts, tf.string),
            "response": tf.constant(responses, tf.string),
        }
        features.update(spans)
        return features

    def _chunk(self, texts):
        """`(word spans, phrase spans)` of `texts`, lists of pairs per
        text, from the `chunker`."""
        if self.chunker is None:
            raise ValueError(
                "DistillationPreprocessor: the examples have no "
                "'word_spans' / 'phrase_spans' and no `chunker` was given. "
                "Pass `chunker=PhraseChunker()` (or a `SpanCache`), or add "
                "the spans to the examples."
            )
        if hasattr(self.chunker, "get_or_compute"):
            results = self.chunker.get_or_compute(texts)
        else:
            results = self.chunker.chunk(texts)
        return (
            [[tuple(pair) for pair in r["words"]] for r in results],
            [[tuple(pair) for pair in r["phrases"]] for r in results],
        )

    # ------------------------------------------------------------------
    # The TensorFlow computation.

    def _process(self, features):
        """A batch of normalised features to `((x, y, sample_weight),
        counts)`, with in-graph checks of the responses and spans."""
        prompt = features["prompt"]
        response = features["response"]
        spans = {key: features[key] for key in SPAN_KEYS}
        text = tf.strings.join([prompt, response])
        text_length = tf.strings.length(text, unit="UTF8_CHAR")
        empty = tf.strings.regex_full_match(response, _BLANK)
        checks = [
            tf.debugging.Assert(
                tf.reduce_all(~empty),
                [
                    "DistillationPreprocessor: empty (or whitespace-only) "
                    f"`response`; {_NEEDS_RESPONSE}. Prompt of the first "
                    "such example:",
                    tf.boolean_mask(prompt, empty)[:1],
                ],
            )
        ]
        for key, pairs in spans.items():
            starts = pairs.values[:, 0]
            ends = pairs.values[:, 1]
            limit = tf.repeat(text_length, pairs.row_lengths())
            checks.append(
                tf.debugging.Assert(
                    tf.reduce_all((starts >= 0) & (ends <= limit)),
                    [
                        f"DistillationPreprocessor: {key!r} reach outside "
                        "prompt + response (negative or past its last "
                        "character): spans of another text, e.g. a stale "
                        "cache? Text length and offending spans:",
                        text_length,
                        tf.boolean_mask(
                            pairs.values, (starts < 0) | (ends > limit)
                        )[:3],
                    ],
                )
            )
        with tf.control_dependencies(checks):
            text = tf.identity(text)
        prompt_length = tf.strings.length(prompt, unit="UTF8_CHAR")

        x = {}
        counts = {"examples": tf.ones_like(prompt_length)}
        offsets = []
        for index, side in enumerate(self._sides):
            side_x, side_y, side_weight, side_counts, side_offsets = side(
                text, prompt_length
            )
            x.update(side_x)
            counts.update(side_counts)
            offsets.append(side_offsets)
            if index == 0:
                y, weight = side_y, side_weight
        for kind, key in zip(UNIT_KINDS, SPAN_KEYS):
            if len(self._sides) == 1:
                side = self._sides[0]
                units, unit_counts = side.maskers[kind](spans[key], offsets[0])
                x[kind] = units
                for name, value in unit_counts.items():
                    counts[f"{kind}/{name}"] = value
                continue
            for side, (units, unit_counts) in zip(
                self._sides,
                paired_units(self._sides, kind, spans[key], offsets),
            ):
                x[side.prefix + kind] = units
                for name, value in unit_counts.items():
                    counts[f"{side.prefix}{kind}/{name}"] = value
        # Cross-tokenizer KD: the pairing of preprocessing.position_pairing.
        ends = [x.pop(side.prefix + "context_ends") for side in self._sides]
        if len(ends) == 2:
            x["teacher_positions"] = pair_positions(
                ends[0], weight, ends[1], side_weight
            )
        return (x, y, weight), counts

    # ------------------------------------------------------------------
    # Datasets and statistics.

    def prepare_dataset(
        self,
        examples,
        batch_size=8,
        shuffle=False,
        seed=None,
        drop_remainder=False,
        name=None,
        statistics=True,
    ):
        """A batched `tf.data.Dataset` of `(x, y, sample_weight)`.

        Validates every example, adds spans from the `chunker` to the
        examples that have none, counts truncation and dropped units over
        the whole dataset (`self.statistics`, and a `TruncationWarning` when
        anything is cut), then maps this layer over batches. With MTA on,
        `self.statistics.check_units(model.unit_keys)` then raises when a
        unit kind the model reads keeps no unit in the whole dataset.

        Args:
            examples: iterable of dicts or objects (e.g.
                `keras_mta.data.Example`) with `prompt` and `response`, and
                optionally `word_spans` and `phrase_spans`.
            batch_size: int.
            shuffle: bool. Shuffle the examples (each epoch).
            seed: optional int seed of the shuffle.
            drop_remainder: bool. Drop the last, smaller batch.
            name: optional name of the dataset, for the warning.
            statistics: bool. Count truncation and dropped units (one pass
                over the data). Only skip it for a dataset already counted
                (e.g. a fresh pipeline over the same examples).

        Returns:
            The dataset.

        Note: `keras.utils.set_random_seed` (through `tf.random.set_seed`)
        clears TensorFlow's eager kernel cache, which destroys the
        SentencePiece resource of tf-text tokenizers that existing datasets
        use ("Resource ... SentencepieceResource does not exist"). Seed
        before building the preprocessor, or build the dataset again after
        seeding.
        """
        examples = list(examples)
        if not examples:
            raise ValueError("DistillationPreprocessor: no examples given.")
        columns = {key: [] for key in ("prompt", "response") + SPAN_KEYS}
        for index, example in enumerate(examples):
            fields = _record_fields(example, index)
            for key in columns:
                columns[key].append(fields[key])
        prompts, _ = _python_strings(columns["prompt"], "prompt")
        responses, _ = _python_strings(columns["response"], "response")
        features = self._features(
            prompts, responses, {key: columns[key] for key in SPAN_KEYS}
        )
        dataset = tf.data.Dataset.from_tensor_slices(features)
        if statistics:
            self.compute_statistics(dataset, name=name)
        if shuffle:
            dataset = dataset.shuffle(
                len(prompts), seed=seed, reshuffle_each_iteration=True
            )
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
        dataset = dataset.map(self, num_parallel_calls=tf.data.AUTOTUNE)
        return dataset.prefetch(tf.data.AUTOTUNE)

    def compute_statistics(self, dataset, batch_size=64, name=None):
        """Counts truncation and dropped units over a dataset of examples.

        Args:
            dataset: a `tf.data.Dataset` of example dicts (batched or not)
                with `prompt`, `response`, `word_spans` and `phrase_spans`.
            batch_size: batch size of the counting pass over unbatched
                examples.
            name: optional name of the dataset, for the warning.

        Returns:
            The `PreprocessingStatistics`, also kept in `self.statistics`.
            Emits a `TruncationWarning` with the fractions when examples
            were truncated or units dropped, and logs the summary.
        """
        spec = dataset.element_spec
        if not isinstance(spec, dict) or "prompt" not in spec:
            raise TypeError(
                "compute_statistics expects a dataset of example dicts with "
                f"'prompt', 'response' and spans. Received: {spec}."
            )
        if spec["prompt"].shape.rank == 0:
            dataset = dataset.batch(batch_size)
        statistics = PreprocessingStatistics(
            sequence_length=self._sides[0].sequence_length,
            max_word_units=self._sides[0].max_word_units,
            max_phrase_units=self._sides[0].max_phrase_units,
            teacher_sequence_length=(
                self._sides[1].sequence_length if len(self._sides) > 1 else None
            ),
        )
        # Eagerly, through the same traced function as eager calls.
        for batch in dataset:
            _, counts = self._run(*_tensor_features(batch))
            statistics.update({k: v.numpy() for k, v in counts.items()})
        self.statistics = statistics
        statistics.report(name)
        return statistics

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "student_preprocessor": keras.layers.serialize(
                    self.student_preprocessor
                ),
                "teacher_preprocessor": (
                    None
                    if self.teacher_preprocessor is None
                    else keras.layers.serialize(self.teacher_preprocessor)
                ),
                "max_word_units": self.max_word_units,
                "max_phrase_units": self.max_phrase_units,
                "sequence_length": self.sequence_length,
                "teacher_sequence_length": self.teacher_sequence_length,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("student_preprocessor", "teacher_preprocessor"):
            if isinstance(config.get(key), dict):
                config[key] = keras.layers.deserialize(config[key])
        return cls(**config)


class _Side:
    """Tokens, packing and units of one model (student or teacher)."""

    def __init__(
        self,
        preprocessor,
        sequence_length,
        max_word_units,
        max_phrase_units,
        prefix,
    ):
        self.preprocessor = preprocessor
        self.tokenizer = preprocessor.tokenizer
        self.sequence_length = int(sequence_length)
        self.max_word_units = max_word_units or self.sequence_length
        self.max_phrase_units = max_phrase_units or self.sequence_length
        self.prefix = prefix
        self.start = int(bool(preprocessor.add_start_token))
        self.end = int(bool(preprocessor.add_end_token))
        self.response_packer = keras_hub.layers.StartEndPacker(
            start_value=0,
            end_value=1,
            pad_value=0,
            sequence_length=self.sequence_length + 1,
            return_padding_mask=False,
        )
        self.maskers = {
            kind: SpanMasker(
                max_units=max_units,
                sequence_length=self.sequence_length,
                position_offset=self.start,
                return_counts=True,
            )
            for kind, max_units in (
                ("word_units", self.max_word_units),
                ("phrase_units", self.max_phrase_units),
            )
        }

    def __call__(self, text, prompt_length):
        """`(x, y, weight, counts, offsets)` of a batch of texts: the
        tokens, targets and counts of this model, and the character offsets
        of its tokens (for its units)."""
        preprocessor = self.preprocessor
        if not preprocessor.built:
            preprocessor.build(None)
        length = self.sequence_length
        ids, offsets = tokenize_with_offsets(
            self.tokenizer, text, skip_leading_whitespace=True
        )
        starts = offsets.values[:, 0]
        ends = offsets.values[:, 1]
        in_response = (starts >= 0) & (
            ends > tf.repeat(prompt_length, ids.row_lengths())
        )
        # Every token after the first response token is a response token.
        in_response = ids.with_values(tf.cast(in_response, "int32"))
        in_response = tf.RaggedTensor.from_tensor(
            tf.minimum(tf.cumsum(in_response.to_tensor(), axis=1), 1),
            lengths=ids.row_lengths(),
        )
        token_ids, padding_mask = preprocessor.packer(
            ids,
            sequence_length=length + 1,
            add_start_value=bool(self.start),
            add_end_value=bool(self.end),
        )
        response = self.response_packer(
            in_response,
            add_start_value=bool(self.start),
            add_end_value=bool(self.end),
        )
        token_ids = tf.ensure_shape(token_ids, [None, length + 1])
        padding_mask = tf.ensure_shape(padding_mask, [None, length + 1])
        weight = tf.cast(padding_mask[:, 1:], "float32") * tf.cast(
            response[:, 1:], "float32"
        )
        tokens = tf.cast(ids.row_lengths(), "int32")
        capacity = length - self.start
        truncated = tokens > capacity
        if self.end:
            # After a truncated text the packer still ends with the end
            # token: never train the model to stop mid-text.
            last = tf.one_hot(length - 1, length, dtype="float32")
            weight = weight * (
                1.0 - last[None, :] * tf.cast(truncated, "float32")[:, None]
            )
        x = {
            self.prefix + "token_ids": tf.cast(token_ids[:, :-1], "int32"),
            self.prefix + "padding_mask": padding_mask[:, :-1],
            # Popped by `_process` (cross-tokenizer position pairing).
            self.prefix + "context_ends": context_ends(
                offsets, length, self.start
            ),
        }
        # A text none of whose tokens could be located in it: keras-hub
        # altered it (e.g. its byte-pair placeholder "ĴA" becomes a special
        # token), so its response keeps no target but the end token and no
        # unit. Counted, and reported by the warning.
        located = tf.reduce_sum(
            ids.with_values(tf.cast(starts >= 0, "int32")), axis=1
        )
        counts = {
            self.prefix + "tokens": tokens,
            self.prefix + "truncated": tf.cast(truncated, "int32"),
            self.prefix + "truncated_tokens": tf.maximum(tokens - capacity, 0),
            self.prefix + "unaligned": tf.cast(
                (tokens > 0) & (located == 0), "int32"
            ),
        }
        if not self.prefix:
            targets = tf.reduce_sum(weight, axis=1)
            counts["response_tokens"] = tf.cast(targets, "int32")
            counts["no_response"] = tf.cast(targets == 0, "int32")
        y = tf.cast(token_ids[:, 1:], "int32")
        return x, y, weight, counts, offsets


def paired_units(sides, kind, spans, offsets):
    """The units of one kind on the student's and the teacher's tokens,
    paired: row `u` of both is the same character span.

    A span is kept only where it holds a token inside the window on both
    sides; the kept spans are sorted by their student token range (as
    `SpanMasker` sorts them) and the first `max_units` of the student's
    setting are kept on both sides. Each side counts its own losses
    (`dropped_empty`, `dropped_truncation`, as `SpanMasker`) and
    `dropped_unpaired`: spans it could keep that the other side lost.

    Args:
        sides: the two `_Side`s, student first.
        kind: `"word_units"` or `"phrase_units"`.
        spans: int32 ragged `(batch, None, 2)` character spans.
        offsets: the ragged token offsets of each side.

    Returns:
        A list of `(units, counts)` per side, as `SpanMasker` returns them.
    """
    spans = tf.cast(spans, "int64")
    max_units = getattr(sides[0], f"max_{kind.split('_')[0]}_units")
    ranges = [
        span_token_ranges(
            spans,
            tf.cast(side_offsets, "int64"),
            side.sequence_length,
            position_offset=side.start,
        )
        for side, side_offsets in zip(sides, offsets)
    ]
    paired = ranges[0]["candidate"] & ranges[1]["candidate"]
    units, kept = select_units(
        spans, paired, ranges, max_units, sides[0].sequence_length
    )
    overflow = count_per_row(spans, paired) - kept
    results = []
    for side_units, side in zip(units, ranges):
        counts = {
            "units": tf.cast(spans.row_lengths(), "int32"),
            "kept": kept,
            "dropped_overflow": overflow,
            "dropped_truncation": count_per_row(
                spans, side["has_token"] & ~side["inside"]
            ),
            "dropped_empty": count_per_row(spans, ~side["has_token"]),
            "dropped_unpaired": count_per_row(
                spans, side["candidate"] & ~paired
            ),
            "clipped": count_per_row(spans, side["clipped"] & paired),
        }
        results.append((side_units, counts))
    return results


def same_tokenization(first, second):
    """Whether two `CausalLMPreprocessor`s produce the same token ids."""
    a, b = first.tokenizer, second.tokenizer
    if type(a) is not type(b):
        return False
    for attribute in ("add_start_token", "add_end_token"):
        if getattr(first, attribute) != getattr(second, attribute):
            return False

    def config(tokenizer):
        config = dict(tokenizer.get_config())
        for key in ("name", "trainable", "dtype"):
            config.pop(key, None)
        return config

    if config(a) != config(b):
        return False
    for attribute in ("start_token_id", "end_token_id", "pad_token_id"):
        if getattr(a, attribute, None) != getattr(b, attribute, None):
            return False
    family = tokenizer_family(a)
    if family == "byte_pair":
        return a.vocabulary == b.vocabulary and list(a.merges) == list(b.merges)
    if family == "sentence_piece":
        return a.proto == b.proto
    return list(a.vocabulary) == list(b.vocabulary)


def _check_example_dict(x):
    if not isinstance(x, dict):
        raise TypeError(
            "DistillationPreprocessor expects a dict with 'prompt' and "
            "'response' (and 'word_spans', 'phrase_spans'). Received: "
            f"{type(x).__name__}."
        )
    for key in ("prompt", "response"):
        if key not in x:
            raise KeyError(
                f"DistillationPreprocessor: the examples have no {key!r} "
                f"field (found {sorted(x)})."
            )
    present = [key for key in SPAN_KEYS if key in x]
    if len(present) == 1:
        raise ValueError(
            f"DistillationPreprocessor: the examples have {present[0]!r} "
            "but not the other of 'word_spans' and 'phrase_spans'."
        )


def _tensor_features(x):
    """Tensors (a `tf.data` element, batched or not, in graph or eagerly)
    to `(features, unbatched)`."""
    _check_example_dict(x)
    if SPAN_KEYS[0] not in x:
        raise ValueError(
            f"DistillationPreprocessor: the examples have no {list(SPAN_KEYS)} "
            "(character spans of prompt + response). Inside tf.data the "
            "spans must come with the examples: build the dataset with "
            "`prepare_dataset`, or add the spans of a `SpanCache` / "
            "`PhraseChunker` (`chunk(texts)`) to each example."
        )
    features = {}
    for key in ("prompt", "response"):
        value = tf.convert_to_tensor(x[key])
        if value.dtype != tf.string:
            raise TypeError(
                f"DistillationPreprocessor: {key!r} must be strings. "
                f"Received a tensor of {value.dtype}."
            )
        features[key] = value
    unbatched = features["prompt"].shape.rank == 0
    if unbatched:
        features = {key: value[None] for key, value in features.items()}
    features.update(_span_features(x, unbatched))
    return features, unbatched


def _span_features(x, unbatched):
    """The spans of `x` as int32 ragged tensors, batched like the
    strings."""
    spans = {}
    for key in SPAN_KEYS:
        pairs, unbatched_spans = ragged_pairs(x[key], key)
        if unbatched_spans != unbatched:
            raise ValueError(
                f"DistillationPreprocessor: {key!r} must be batched like "
                "'prompt' and 'response' (rank 3 for a batch, 2 for one "
                f"example). Received shape {getattr(x[key], 'shape', None)}."
            )
        spans[key] = pairs
    return spans


def _record_fields(example, index):
    """`prompt`, `response` and the spans (`None` when absent) of one
    example of `prepare_dataset`: a dict or an object with attributes."""
    keys = ("prompt", "response") + SPAN_KEYS
    if isinstance(example, dict):
        present = {key: example[key] for key in keys if key in example}
    else:
        present = {
            key: getattr(example, key) for key in keys if hasattr(example, key)
        }
    for key in ("prompt", "response"):
        if key not in present:
            raise KeyError(
                f"DistillationPreprocessor: example {index} has no {key!r}."
            )
    fields = {key: present.get(key) for key in keys}
    has = [key for key in SPAN_KEYS if fields[key] is not None]
    if len(has) == 1:
        raise ValueError(
            f"DistillationPreprocessor: example {index} has {has[0]!r} but "
            "not the other span field."
        )
    for key in SPAN_KEYS:
        if has:
            fields[key] = [tuple(pair) for pair in fields[key]]
    return fields


def _check_preprocessor(preprocessor, name):
    if not isinstance(preprocessor, keras_hub.models.CausalLMPreprocessor):
        raise TypeError(
            f"`{name}` must be a keras_hub.models.CausalLMPreprocessor (e.g. "
            "GPT2CausalLMPreprocessor). Received: "
            f"{type(preprocessor).__name__}."
        )
    tokenizer = getattr(preprocessor, "tokenizer", None)
    if tokenizer is None:
        raise ValueError(f"`{name}` has no tokenizer.")
    tokenizer_family(tokenizer)
    if not preprocessor.sequence_length:
        raise ValueError(
            f"`{name}` has no `sequence_length`; set one (static shapes)."
        )


def _check_optional_positive_int(name, value):
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"`{name}` must be a positive int or None. Received {value!r}."
        )
    if value < 1:
        raise ValueError(f"`{name}` must be >= 1. Received {value}.")


def _python_strings(value, key):
    """A string or batch of strings as a list of `str`; unbatched?

    Bytes are decoded as UTF-8 (strictly); a string UTF-8 cannot hold (a
    lone surrogate) is refused here, with its example index, rather than
    by TensorFlow later without one."""
    if isinstance(value, tf.Tensor):
        if value.dtype != tf.string:
            raise TypeError(
                f"DistillationPreprocessor: {key!r} must be strings. "
                f"Received a tensor of {value.dtype}."
            )
        value = value.numpy()
        if isinstance(value, bytes):
            return [_checked_text(value, key, 0)], True
        value = value.tolist()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (str, bytes)):
        return [_checked_text(value, key, 0)], True
    if not isinstance(value, (list, tuple)):
        raise TypeError(
            f"DistillationPreprocessor: {key!r} must be a string or a list "
            f"of strings. Received {type(value).__name__}: {value!r:.80}."
        )
    strings = []
    for index, item in enumerate(value):
        if not isinstance(item, (str, bytes)):
            raise TypeError(
                f"DistillationPreprocessor: {key!r} of example {index} must "
                f"be a string. Received {type(item).__name__}: {item!r:.80}."
            )
        strings.append(_checked_text(item, key, index))
    return strings, False


def _checked_text(item, key, index):
    """`item` (`str` or UTF-8 `bytes`) as a `str` that UTF-8 can hold."""
    if isinstance(item, bytes):
        try:
            return item.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(
                f"DistillationPreprocessor: {key!r} of example {index} is "
                f"not valid UTF-8 (byte {e.start}: {e.reason}). Decode the "
                "text with its real encoding first."
            ) from None
    surrogate = lone_surrogate(item)
    if surrogate is not None:
        raise ValueError(
            f"DistillationPreprocessor: {key!r} of example {index} holds a "
            f"lone surrogate ({item[surrogate]!r} at character "
            f"{surrogate}), which UTF-8 cannot encode (a broken escape such "
            'as "\\ud800" in the source data). Replace it with the '
            "character it stands for, or drop the example."
        )
    return item


def _check_responses(responses):
    for index, response in enumerate(responses):
        if not response.strip():
            raise ValueError(
                f"DistillationPreprocessor: the response of example {index} "
                f"is empty or whitespace only ({response!r}); "
                f"{_NEEDS_RESPONSE}."
            )


def _ragged_spans(rows):
    """Lists of `(start, end)` per example as an int32 ragged tensor."""
    flat = [pair for row in rows for pair in row]
    values = np.asarray(flat, dtype=np.int32).reshape((-1, 2))
    lengths = np.asarray([len(row) for row in rows], dtype=np.int64)
    return tf.RaggedTensor.from_row_lengths(values, lengths)
