"""Evaluation: the generation + ROUGE-L protocol of the distillation field."""

from keras_mta.evaluation.datasets import EVALUATION_DATASETS
from keras_mta.evaluation.datasets import evaluation_sets
from keras_mta.evaluation.datasets import resolve_evaluation_dataset
from keras_mta.evaluation.datasets import rouge_scores
from keras_mta.evaluation.protocol import DEFAULT_SEEDS
from keras_mta.evaluation.protocol import EvaluationResult
from keras_mta.evaluation.protocol import evaluate_rouge
from keras_mta.evaluation.protocol import generate_responses
from keras_mta.evaluation.rouge import mean_rouge_l
from keras_mta.evaluation.rouge import rouge_l
