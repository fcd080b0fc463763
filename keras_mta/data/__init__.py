"""Instruction data: loaders for JSONL schemas and the prompt template.

Names load on first use; `train_sentencepiece_tokenizer` imports
TensorFlow when it is called.
"""

from keras_mta.imports import lazy_exports as _lazy_exports

_EXPORTS = {
    "SCHEMAS": "keras_mta.data.loaders",
    "DataError": "keras_mta.data.loaders",
    "Example": "keras_mta.data.loaders",
    "LoadReport": "keras_mta.data.loaders",
    "detect_schema": "keras_mta.data.loaders",
    "load_examples": "keras_mta.data.loaders",
    "format_prompt": "keras_mta.data.template",
    "holdout_split": "keras_mta.data.holdout",
    "load_holdout_split": "keras_mta.data.holdout",
    "train_sentencepiece_tokenizer": "keras_mta.data.tokenizers",
    "write_toy_dataset": "keras_mta.data.toy_world",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = _lazy_exports(globals(), _EXPORTS)
