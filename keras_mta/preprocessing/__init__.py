"""keras_mta.preprocessing: text to the inputs of MTA distillation.

Names load on first use. The tf.data pipeline (`DistillationPreprocessor`,
`SpanMasker`, `tokenize_with_offsets`) imports TensorFlow and
tensorflow-text, `PhraseChunker` imports spaCy, when used; each says what
to install when it is missing (see `keras_mta.imports`).
"""

from keras_mta.imports import lazy_exports as _lazy_exports

_EXPORTS = {
    "SpanCache": "keras_mta.preprocessing.cache",
    "SpanCacheWarning": "keras_mta.preprocessing.cache",
    "build_span_cache": "keras_mta.preprocessing.cache",
    "default_cache_dir": "keras_mta.preprocessing.cache",
    "PhraseChunker": "keras_mta.preprocessing.chunking",
    "DistillationPreprocessor": (
        "keras_mta.preprocessing.distillation_preprocessor"
    ),
    "PreprocessingStatistics": (
        "keras_mta.preprocessing.preprocessing_statistics"
    ),
    "TruncationWarning": "keras_mta.preprocessing.preprocessing_statistics",
    "tokenize_with_offsets": "keras_mta.preprocessing.offsets",
    "tokenizer_family": "keras_mta.preprocessing.offsets",
    "SpanMasker": "keras_mta.preprocessing.span_masker",
    "SpanStatistics": "keras_mta.preprocessing.statistics",
    "span_statistics": "keras_mta.preprocessing.statistics",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = _lazy_exports(globals(), _EXPORTS)
