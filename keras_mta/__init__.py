"""keras-mta: Multi-Granular Trajectory Alignment distillation for Keras 3."""

from keras_mta import layers
from keras_mta import losses

__version__ = "0.1.0.dev0"
