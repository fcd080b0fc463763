"""The teacher caches of a run: the teacher run once over its data."""

import os

from keras_mta.models import CrossTokenizerTeacher
from keras_mta.models import get_backbone
from keras_mta.teacher_cache import build_teacher_cache
from keras_mta.utils import say


def teacher_cache_dir(recipe, output_dir):
    """Where a recipe's teacher caches live (`distillation.teacher_cache`,
    relative paths under the output directory)."""
    directory = recipe.distillation.teacher_cache or "teacher_cache"
    if os.path.isabs(directory):
        return directory
    return os.path.join(output_dir, directory)


def build_teacher_caches(recipe, teacher, plan, datasets, output_dir):
    """Run the teacher once over the training and validation arrays and
    store its signals (`keras_mta.build_teacher_cache`); an existing cache
    of the same teacher, data, plan and settings is reused as it is.

    A teacher that tokenizes differently from the student
    (`datasets.cross_tokenizer`, issue 21) is cached on its own tokens: its
    signals at its own positions, keyed by its tokenizer's identity; the
    paired units and KD positions stay in the arrays
    (`keras_mta.teacher_cache.CachedCrossTokenizerTeacher`).

    Returns `{"train": TeacherCache, "valid": TeacherCache}`.
    """
    dist = recipe.distillation
    top_k = min(dist.top_k, get_backbone(teacher).vocabulary_size)
    extra = {}
    if getattr(datasets, "cross_tokenizer", False):
        teacher = CrossTokenizerTeacher(teacher)
        extra["preprocessor"] = datasets.preprocessor
    directory = teacher_cache_dir(recipe, output_dir)
    caches = {}
    for split, arrays in (
        ("train", datasets.train_arrays),
        ("valid", datasets.valid_arrays),
    ):
        say(f"teacher cache of the {split} data")
        caches[split] = build_teacher_cache(
            teacher,
            plan,
            arrays[0],
            directory,
            top_k=top_k,
            dtype=dist.teacher_cache_dtype,
            temperature=dist.temperature,
            batch_size=recipe.training.batch_size,
            **extra,
        )
    return caches
