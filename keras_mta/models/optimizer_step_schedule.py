"""A learning-rate schedule counted in optimizer steps under gradient
accumulation."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_mta")
class OptimizerStepSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """`schedule`, evaluated at the optimizer step rather than the batch.

    With `gradient_accumulation_steps=n`, a Keras optimizer (3.15) applies
    one update every `n` batches, and `optimizer.iterations` counts those
    updates, but it evaluates its learning-rate schedule at the number of
    batches seen (its internal counter). A schedule written in optimizer
    steps (a cosine decay over the run's updates, a warm-up of so many
    updates, as the reference's scheduler counts them) would then run `n`
    times too fast. This wrapper evaluates `schedule(batches // n)`: the
    update that ends the window of batches `[k n, (k + 1) n)` uses
    `schedule(k)`, the same rate as update `k` without accumulation. With
    `n = 1` it is `schedule` itself.

    Args:
        schedule: a `keras.optimizers.schedules.LearningRateSchedule` (or a
            float: a constant rate), written in optimizer steps.
        gradient_accumulation_steps: int >= 1, the optimizer's
            `gradient_accumulation_steps` (1: none).

    Examples:

    ```python
    import keras
    from keras_mta.models.optimizer_step_schedule import (
        OptimizerStepSchedule,
    )

    cosine = keras.optimizers.schedules.CosineDecay(1e-4, decay_steps=100)
    optimizer = keras.optimizers.AdamW(
        OptimizerStepSchedule(cosine, gradient_accumulation_steps=2),
        gradient_accumulation_steps=2,
    )
    ```
    """

    def __init__(self, schedule, gradient_accumulation_steps):
        steps = int(gradient_accumulation_steps)
        if steps < 1 or steps != gradient_accumulation_steps:
            raise ValueError(
                "`gradient_accumulation_steps` must be an integer >= 1 (1: "
                f"no accumulation), got {gradient_accumulation_steps}."
            )
        self.schedule = schedule
        self.gradient_accumulation_steps = steps

    def __call__(self, step):
        if not callable(self.schedule):
            return ops.convert_to_tensor(self.schedule, "float32")
        return self.schedule(
            ops.floor_divide(step, self.gradient_accumulation_steps)
        )

    def get_config(self):
        schedule = self.schedule
        if callable(schedule):
            schedule = keras.saving.serialize_keras_object(schedule)
        return {
            "schedule": schedule,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config["schedule"], dict):
            config["schedule"] = keras.saving.deserialize_keras_object(
                config["schedule"]
            )
        return cls(**config)
