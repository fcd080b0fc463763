"""Student-generated text needs a live teacher: the check."""

from keras_mta.models import CachedTeacher

# How to fix a configuration that generates without a live teacher.
LIVE_TEACHER_FIX = (
    "Fix: distill from the live teacher (pass the keras-hub teacher "
    "CausalLM to DistillationModel; in a recipe, leave "
    "distillation.teacher_cache empty), or train on the data's own "
    'responses only (training.student_generation.mode = "off").'
)


def require_live_teacher(teacher):
    """Raise a `ValueError` unless `teacher` can score new text.

    A teacher cache (`keras_mta.CachedTeacher`) holds the teacher's
    signals for the training data's own texts only; the student's freshly
    generated responses need a teacher that runs on them at every step.

    Args:
        teacher: a `DistillationModel` (its teacher source is checked), a
            `keras_mta.models.TeacherSource`, a keras-hub `CausalLM`, or
            None.
    """
    if hasattr(teacher, "teacher_source"):
        teacher = teacher.teacher_source
    if isinstance(teacher, CachedTeacher):
        raise ValueError(
            "Training on student-generated responses needs a live teacher, "
            f"but the teacher is a cached one ({teacher!r}): a teacher "
            "cache holds the teacher's signals for the training data's own "
            "responses only and cannot score the student's new text. "
            + LIVE_TEACHER_FIX
        )
    if teacher is None:
        raise ValueError(
            "Training on student-generated responses needs a live teacher "
            "to score them, but the model has none (supervised "
            "fine-tuning). Give DistillationModel a teacher, or train "
            "without student generation."
        )
