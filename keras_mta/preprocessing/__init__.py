"""keras_mta.preprocessing (see ../ARCHITECTURE sketch in CONTRIBUTING.md)."""

from keras_mta.preprocessing.cache import SpanCache
from keras_mta.preprocessing.cache import SpanCacheWarning
from keras_mta.preprocessing.cache import build_span_cache
from keras_mta.preprocessing.cache import default_cache_dir
from keras_mta.preprocessing.chunking import PhraseChunker
from keras_mta.preprocessing.distillation_preprocessor import (
    DistillationPreprocessor,
)
from keras_mta.preprocessing.distillation_preprocessor import (
    PreprocessingStatistics,
)
from keras_mta.preprocessing.distillation_preprocessor import TruncationWarning
from keras_mta.preprocessing.offsets import tokenize_with_offsets
from keras_mta.preprocessing.offsets import tokenizer_family
from keras_mta.preprocessing.statistics import SpanStatistics
from keras_mta.preprocessing.statistics import span_statistics
