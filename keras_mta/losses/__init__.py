"""Loss functions of keras-mta: divergences, token importance, DSA and HRA.

Everything here is written with `keras.ops` only and runs under the jax,
torch and tensorflow backends.
"""

from keras_mta.losses.alignment import hidden_alignment
from keras_mta.losses.alignment import structural_alignment
from keras_mta.losses.alignment import unit_hidden_alignment
from keras_mta.losses.cross_vocabulary import UniversalLogitDistillation
from keras_mta.losses.cross_vocabulary import universal_logit_distillation
from keras_mta.losses.divergences import DIVERGENCES
from keras_mta.losses.divergences import ForwardKL
from keras_mta.losses.divergences import JensenShannon
from keras_mta.losses.divergences import ReverseKL
from keras_mta.losses.divergences import SkewForwardKL
from keras_mta.losses.divergences import SkewReverseKL
from keras_mta.losses.divergences import TotalVariation
from keras_mta.losses.divergences import check_top_k_indices
from keras_mta.losses.divergences import coarse_student_log_probs
from keras_mta.losses.divergences import coarse_teacher_log_probs
from keras_mta.losses.divergences import forward_kl
from keras_mta.losses.divergences import get_divergence
from keras_mta.losses.divergences import jensen_shannon
from keras_mta.losses.divergences import reverse_kl
from keras_mta.losses.divergences import skew_forward_kl
from keras_mta.losses.divergences import skew_reverse_kl
from keras_mta.losses.divergences import top_k_log_probs
from keras_mta.losses.divergences import total_variation
from keras_mta.losses.token_importance import entropy_weights
from keras_mta.losses.token_importance import token_importance
from keras_mta.losses.units import normalized_token_weights
from keras_mta.losses.units import pool_units
from keras_mta.losses.units import unit_membership
