"""Instruction data: loaders for JSONL schemas and the prompt template."""

from keras_mta.data.loaders import SCHEMAS
from keras_mta.data.loaders import DataError
from keras_mta.data.loaders import Example
from keras_mta.data.loaders import LoadReport
from keras_mta.data.loaders import detect_schema
from keras_mta.data.loaders import load_examples
from keras_mta.data.template import format_prompt
from keras_mta.data.tokenizers import train_sentencepiece_tokenizer
from keras_mta.data.toy_world import write_toy_dataset
