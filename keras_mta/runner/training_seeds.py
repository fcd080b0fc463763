"""Training seeds of a run: the seeds, and the student's start per seed.

Every variant of one training seed starts from the same student weights
and sees the same data order (`Datasets.training_dataset(seed=)`), so
that the per-seed differences between two variants are paired
(`keras_mta.analysis.paired_differences`).
"""

from keras_mta.models.lora import lora_summary


def training_seeds(training):
    """The training seeds of a recipe's students: `training.seeds`, or
    `[training.seed]` when that list is empty.

    Raises:
        ValueError: a seed is listed twice (two identical pairs would
            shrink the interval of a paired difference for nothing).
    """
    seeds = [int(s) for s in training.seeds] or [int(training.seed)]
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ValueError(
            f"training.seeds lists {repeated} more than once: each seed is "
            "one pair of every compared variant. List each seed once."
        )
    return seeds


def redraws_student(spec, student):
    """Whether each training seed draws its own student start: a student
    built from its `architecture` with random weights does; one loaded
    from a preset or initialised from the teacher (`student_init`), or
    training through LoRA adapters, starts from those same weights at
    every seed (the seeds then differ in data order)."""
    return bool(
        spec.architecture
        and not spec.preset
        and spec.student_init == "random"
        and not lora_summary(student)
    )


class SeedStarts:
    """The student's initial weights for each training seed.

    The first seed starts from the student as built; each later seed of a
    randomly initialised student (`redraws_student`) from weights drawn
    anew by a fresh backbone of the same configuration, from Keras' global
    generator (seeded with `training.seed` when the run starts, so a run
    reproduces). A seed's weights are drawn once and handed out to every
    variant of that seed.

    Args:
        spec: the recipe's student `ModelSpec`.
        student: the student CausalLM, as built (before any training).

    Examples:

    ```python
    starts = SeedStarts(recipe.student, student)
    for index, seed in enumerate(training_seeds(recipe.training)):
        weights = starts.weights(index)
        for variant in recipe.distillation.compare:
            student.set_weights(weights)
            ...
    ```
    """

    def __init__(self, spec, student):
        self.spec = spec
        self.student = student
        self.built = student.get_weights()
        self.redraw = redraws_student(spec, student)
        self._drawn = {0: self.built}

    def weights(self, index):
        """The start of the `index`-th training seed (a list of arrays,
        as `get_weights`)."""
        if index not in self._drawn:
            if self.redraw:
                backbone = self.student.backbone
                fresh = backbone.__class__.from_config(backbone.get_config())
                backbone_weights = fresh.get_weights()
                current = self.student.get_weights()
                self.student.backbone.set_weights(backbone_weights)
                self._drawn[index] = self.student.get_weights()
                self.student.set_weights(current)
            else:
                self._drawn[index] = self.built
        return self._drawn[index]
