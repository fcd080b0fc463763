"""keras-mta: Multi-Granular Trajectory Alignment distillation for Keras 3."""

from keras_mta import data
from keras_mta import evaluation
from keras_mta import layers
from keras_mta import losses
from keras_mta import models
from keras_mta import preprocessing
from keras_mta.layers import SpanMasker
from keras_mta.models import AlignmentPlan
from keras_mta.models import CachedTeacher
from keras_mta.models import DistillationModel
from keras_mta.preprocessing import DistillationPreprocessor
from keras_mta.preprocessing import PhraseChunker
from keras_mta.preprocessing import PreprocessingStatistics
from keras_mta.preprocessing import SpanCache
from keras_mta.preprocessing import SpanStatistics
from keras_mta.preprocessing import build_span_cache
from keras_mta.recipe import Recipe
from keras_mta.recipe import load_recipe
from keras_mta.teacher_cache import TeacherCache
from keras_mta.teacher_cache import build_teacher_cache

__version__ = "0.1.0.dev0"
