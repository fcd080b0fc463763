"""Models of keras-mta: the distillation model, its teacher sources
(`TeacherSource`, `LiveTeacher`, `CrossTokenizerTeacher`;
`keras_mta.CachedTeacher`), its loss terms
(`keras_mta.models.terms`), its alignment plan, the hidden-state view over
keras-hub backbones, GGUF checkpoints, student initialisation and LoRA
students."""

from keras_mta.models import terms
from keras_mta.models.alignment_plan import PAPER_PLANS
from keras_mta.models.alignment_plan import AlignmentPlan
from keras_mta.models.cross_tokenizer_teacher import CrossTokenizerTeacher
from keras_mta.models.distillation_model import DistillationModel
from keras_mta.models.gguf import GGUFError
from keras_mta.models.gguf import from_gguf
from keras_mta.models.gguf import smollm2_gguf_path
from keras_mta.models.hidden_states import get_backbone
from keras_mta.models.hidden_states import hidden_state_tensor
from keras_mta.models.hidden_states import hidden_states_model
from keras_mta.models.hidden_states import num_hidden_layers
from keras_mta.models.learning_rate_groups import learning_rate_multiplier
from keras_mta.models.learning_rate_groups import set_learning_rate_multipliers
from keras_mta.models.live_teacher import LiveTeacher
from keras_mta.models.loading import build_causal_lm
from keras_mta.models.loading import tiny_architecture
from keras_mta.models.lora import enable_student_lora
from keras_mta.models.lora import lora_layers
from keras_mta.models.lora import lora_summary
from keras_mta.models.lora import lora_variables
from keras_mta.models.lora import merged_lora
from keras_mta.models.nonfinite_guard import NonFiniteError
from keras_mta.models.nonfinite_guard import NonFiniteGuard
from keras_mta.models.optimizer_step_schedule import OptimizerStepSchedule
from keras_mta.models.student_init import evenly_spaced_layers
from keras_mta.models.student_init import init_student_from_teacher
from keras_mta.models.teacher_source import TeacherSource
from keras_mta.models.variants import ABLATIONS


def __getattr__(name):
    # Older spellings: the cached teacher lives in `keras_mta.teacher_cache`
    # (a package above `models`, so it is imported only when asked for).
    if name in ("CachedTeacher", "TeacherSignals"):
        from keras_mta import teacher_cache

        return getattr(teacher_cache, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
