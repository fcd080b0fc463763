"""Learning-rate groups inside one Keras optimizer.

Keras optimizers have one learning rate. MTA's reference trains the
alignment projectors as a second AdamW parameter group with its own peak
learning rate on the same schedule (the scheduler scales every group's base
rate by the same factor), with one gradient-norm clip over all parameters
and decoupled weight decay at each group's own rate. This module gives
chosen variables a learning-rate multiplier `m` inside a standard Keras
optimizer (`Adam`, `AdamW`, `SGD`, ...) so that exactly this happens:

- the update of a variable of the group is the optimizer's update with
  learning rate `m * lr(step)`, where `lr(step)` is the optimizer's own
  learning rate or schedule (one schedule, one `iterations` counter, one
  Adam bias correction for every group);
- decoupled weight decay (`AdamW`'s `weight_decay`) is applied at the
  group's rate: `w -= weight_decay * m * lr(step) * w`;
- gradient clipping (`global_clipnorm`), gradient accumulation
  (`gradient_accumulation_steps`), loss scaling (`LossScaleOptimizer`),
  EMA and the optimizer's variables are those of the optimizer, untouched:
  the global norm is taken over every group's gradients together.

How: a Keras optimizer applies one step in `_backend_apply_gradients`,
which clips all gradients, then calls `_apply_weight_decay(variables)` and
`_backend_update_step(grads, variables, learning_rate)` (the collective
update step that the torch and tensorflow optimizers override for speed
and `tf.distribute`; the jax optimizer calls the same two). Both are
replaced on the optimizer instance (not its class) by versions that split
their variables by group and call the backend's own method once per group,
with `m * learning_rate` (update) or `m * weight_decay` (decay). The
update rules of Adam, AdamW and SGD are linear in the learning rate they
are passed, so this is the reference's per-group rate. With every
multiplier 1 nothing is replaced: the numbers are bit for bit those of the
plain optimizer.

The groups are not part of the optimizer's config and add no optimizer
variables: saving and loading a model saves the optimizer as usual, and the
groups must be set again after loading (`DistillationModel` does it in
`compile`, which also runs when a saved model is loaded, from its own
`alignment_learning_rate_multiplier`).
"""

import keras

from keras_mta.utils.checks import check_non_negative

# The two methods of a Keras optimizer that are replaced on the instance.
_METHODS = ("_backend_update_step", "_apply_weight_decay")


def _inner(optimizer):
    """The optimizer that updates the variables (a `LossScaleOptimizer`
    delegates to its `inner_optimizer`)."""
    while isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = optimizer.inner_optimizer
    return optimizer


def set_learning_rate_multipliers(optimizer, groups):
    """Give groups of variables their own learning rate in `optimizer`.

    Each group's variables are updated at `multiplier` times the
    optimizer's learning rate (or schedule), and decayed (`weight_decay`)
    at that rate too; every other variable keeps the optimizer's rate.
    Clipping, gradient accumulation, the schedule, `iterations` and Adam's
    bias correction stay the optimizer's own. Calling it again replaces
    the groups; `groups=[]` (or only multipliers of 1) restores the plain
    optimizer.

    Args:
        optimizer: a `keras.optimizers.Optimizer` (built or not), or a
            `keras.optimizers.LossScaleOptimizer` (its inner optimizer gets
            the groups).
        groups: list of `(multiplier, variables)` pairs: `multiplier` a
            finite float >= 0, `variables` the `keras.Variable`s of the
            group. A variable in several groups takes the last one's.

    Returns:
        The optimizer that holds the groups (the inner one of a
        `LossScaleOptimizer`).

    Examples:

    ```python
    import keras
    from keras_mta.models.learning_rate_groups import (
        set_learning_rate_multipliers,
    )

    model = keras.Sequential([keras.layers.Dense(4), keras.layers.Dense(2)])
    model.build((None, 3))
    optimizer = keras.optimizers.AdamW(1e-4, global_clipnorm=1.0)
    # The head trains at 5e-4 on the same schedule; clipping stays global.
    set_learning_rate_multipliers(
        optimizer, [(5.0, model.layers[1].trainable_variables)]
    )
    model.compile(optimizer=optimizer, loss="mse")
    ```
    """
    optimizer = _inner(optimizer)
    multipliers = {}
    for multiplier, variables in groups:
        check_non_negative(
            "multiplier",
            multiplier,
            hint="Pass the ratio of the group's peak learning rate to the "
            "optimizer's (e.g. 5e-4 / 1e-4 = 5.0).",
        )
        multiplier = float(multiplier)
        for variable in variables:
            multipliers[optimizer._var_key(variable)] = multiplier
    for name in _METHODS:
        if name in vars(optimizer):
            delattr(optimizer, name)
    if all(m == 1.0 for m in multipliers.values()):
        return optimizer
    optimizer._backend_update_step = _grouped_update_step(
        optimizer, multipliers
    )
    optimizer._apply_weight_decay = _grouped_weight_decay(
        optimizer, multipliers
    )
    return optimizer


def learning_rate_multiplier(optimizer, variable):
    """The learning-rate multiplier of `variable` in `optimizer` (1.0 when
    it is in no group)."""
    optimizer = _inner(optimizer)
    update = vars(optimizer).get("_backend_update_step")
    multipliers = getattr(update, "multipliers", {})
    return multipliers.get(optimizer._var_key(variable), 1.0)


def _split(optimizer, multipliers, variables, *others):
    """`{multiplier: (variables, *others)}` in first-seen order."""
    groups = {}
    for i, variable in enumerate(variables):
        m = multipliers.get(optimizer._var_key(variable), 1.0)
        entry = groups.setdefault(m, tuple([] for _ in range(1 + len(others))))
        entry[0].append(variable)
        for j, other in enumerate(others):
            entry[j + 1].append(other[i])
    return groups


def _grouped_update_step(optimizer, multipliers):
    update_step = type(optimizer)._backend_update_step

    def grouped_update_step(grads, trainable_variables, learning_rate):
        groups = _split(optimizer, multipliers, trainable_variables, grads)
        for m, (variables, group_grads) in groups.items():
            rate = learning_rate if m == 1.0 else learning_rate * m
            update_step(optimizer, group_grads, variables, rate)

    grouped_update_step.multipliers = multipliers
    return grouped_update_step


def _grouped_weight_decay(optimizer, multipliers):
    apply_weight_decay = type(optimizer)._apply_weight_decay

    def grouped_weight_decay(variables):
        weight_decay = optimizer.weight_decay
        if weight_decay is None:
            return
        groups = _split(optimizer, multipliers, variables)
        for m, (group,) in groups.items():
            # The backend's own decay (torch `_foreach_mul_`, tensorflow's
            # distribution-aware update) at the group's rate:
            # `weight_decay * m * lr`.
            optimizer.weight_decay = weight_decay * m
            try:
                apply_weight_decay(optimizer, group)
            finally:
                optimizer.weight_decay = weight_decay

    return grouped_weight_decay
