"""The compiled models of a run's variants, built once and reused by every
training seed (issue 22)."""

import keras

from keras_mta.models.validation_loss import validation_model


class CompiledVariants:
    """One compiled `DistillationModel` per compared variant, and one
    validation model of the student, shared by all training seeds.

    Building a variant's model costs little; tracing and compiling its
    training and validation steps costs seconds (tens of seconds for MTA
    under TensorFlow on a CPU), once per model. Every training seed of a
    variant has the same shapes, so the model built for the first seed
    serves the others: `model` hands it back with its own state (the
    loss terms' weights, such as the HRA projectors, and every optimizer
    variable: step count, moments, accumulated gradients, loss scale) put
    back to what it was right after it was built, so that a later seed
    trains as a freshly built model would, from the same start of the
    terms' weights. The student's weights are the caller's to set
    (`SeedStarts`); the teacher's do not train.

    A variant trained on the student's own outputs (`kd+adaptive`,
    `mta+on_policy`) is the model of its plain variant with other data:
    the runner asks for it by the plain name, so it shares that compiled
    model and starts from the same terms' weights (issue 20).

    Args:
        student: the run's student CausalLM (shared by every variant).

    Examples:

    ```python
    compiled = CompiledVariants(student)
    for index, seed in enumerate(seeds):
        for variant in ("sft", "kd", "mta"):
            student.set_weights(starts.weights(index))
            model = compiled.model(variant, lambda: build_variant_model(
                recipe, variant, teacher, student, plan, steps))
            model.fit(...)
    ```
    """

    def __init__(self, student):
        self.student = student
        self._models = {}
        self._validation = None

    def model(self, variant, build):
        """The compiled model of `variant`: `build()` (a compiled
        `DistillationModel`) the first time, then the same model with its
        terms' weights and optimizer state as built."""
        if variant not in self._models:
            model = build()
            # What `fit` would build on its first step; built here so that
            # the optimizer's fresh state can be kept.
            model.optimizer.build(model.trainable_variables)
            self._models[variant] = (model, self._own_state(model))
            return model
        model, fresh = self._models[variant]
        for variable, value in zip(self._own_variables(model), fresh):
            variable.assign(value)
        return model

    def validation(self):
        """The student's `validation_model`, compiled once for the run."""
        if self._validation is None:
            self._validation = validation_model(self.student)
        return self._validation

    def _own_variables(self, model):
        student = {id(v) for v in self.student.weights}
        own = [v for v in model.weights if id(v) not in student]
        return own + list(model.optimizer.variables)

    def _own_state(self, model):
        return [
            keras.ops.convert_to_numpy(v.value)
            for v in self._own_variables(model)
        ]
