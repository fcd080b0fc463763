"""Backend-specific test helpers, kept in one place.

Keras has no backend-agnostic `grad`; tests that check gradients call
`gradients(fn, *args)` here, which dispatches to jax, torch or tensorflow.

Under jax the gradients are taken inside `jax.jit`, and `compiled(fn)` runs
a function the same way: run op by op, JAX compiles every operation of
every new shape on its own (about 0.1 s each on this 2-core machine, and a
loss has a few hundred), where one compiled call costs one compilation.
That is also how the losses run in training (`fit` compiles the step).
Torch and TensorFlow run eagerly, as before.
"""

import functools

import keras
import numpy as np


def compiled(fn):
    """`fn`, compiled per call signature under jax; `fn` itself otherwise.

    Array arguments (NumPy or backend tensors) are traced; every other
    argument (Python numbers, strings, None) is part of the signature, so
    the results are those of `fn` with the same arguments. Functions that
    branch in Python on the values of their array arguments cannot be
    compiled: call those directly.

    Examples:

    ```python
    structural_alignment = compiled(losses.structural_alignment)
    value = structural_alignment(student, teacher, units, mask)
    ```
    """
    if keras.backend.backend() != "jax":
        return fn
    import jax

    cache = {}

    def is_array(leaf):
        return hasattr(leaf, "shape") and hasattr(leaf, "dtype")

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
        arrays = [leaf for leaf in leaves if is_array(leaf)]
        static = tuple(None if is_array(leaf) else leaf for leaf in leaves)
        try:
            key = (treedef, static)
            hash(key)
        except TypeError:  # an unhashable argument: run op by op
            return fn(*args, **kwargs)
        if key not in cache:

            def call(*traced):
                it = iter(traced)
                full = [next(it) if s is None else s for s in static]
                a, k = jax.tree_util.tree_unflatten(treedef, full)
                return fn(*a, **k)

            cache[key] = jax.jit(call)
        return cache[key](*arrays)

    return wrapper


def gradients(fn, *args):
    """Value of `fn(*args)` (a scalar) and its gradients w.r.t. every arg.

    Args are NumPy arrays (float32 unless given otherwise); returns
    `(value, [grad_arg_0, ...])` as NumPy arrays.
    """
    backend = keras.backend.backend()
    args = [np.asarray(a) for a in args]
    if backend == "jax":
        import jax

        value, grads = jax.jit(
            jax.value_and_grad(
                lambda *xs: fn(*xs), argnums=tuple(range(len(args)))
            )
        )(*args)
        return np.asarray(value), [np.asarray(g) for g in grads]
    if backend == "torch":
        import torch

        tensors = [
            torch.tensor(a, requires_grad=True, device="cpu") for a in args
        ]
        value = fn(*tensors)
        if not value.requires_grad:  # nothing in the graph: all zeros
            grads = [None] * len(tensors)
        else:
            grads = torch.autograd.grad(value, tensors, allow_unused=True)
        grads = [
            np.zeros_like(a) if g is None else g.detach().cpu().numpy()
            for a, g in zip(args, grads)
        ]
        return value.detach().cpu().numpy(), grads
    if backend == "tensorflow":
        import tensorflow as tf

        variables = [tf.Variable(a) for a in args]
        with tf.GradientTape() as tape:
            value = fn(*variables)
        grads = tape.gradient(value, variables)
        grads = [
            np.zeros_like(a) if g is None else np.asarray(g)
            for a, g in zip(args, grads)
        ]
        return np.asarray(value), grads
    raise NotImplementedError(f"No gradient helper for backend {backend}.")


def variable_gradients(fn, variables):
    """Gradients of the scalar `fn()` w.r.t. Keras variables (NumPy list)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        values = [v.value for v in variables]

        def wrapped(vals):
            mapping = list(zip(variables, vals))
            with keras.StatelessScope(state_mapping=mapping):
                return fn()

        grads = jax.jit(jax.grad(wrapped))(values)
        return [np.asarray(g) for g in grads]
    if backend == "torch":
        import torch

        value = fn()
        if not value.requires_grad:  # nothing in the graph: all zeros
            grads = [None] * len(variables)
        else:
            grads = torch.autograd.grad(
                value, [v.value for v in variables], allow_unused=True
            )
        return [
            np.zeros(v.shape) if g is None else g.detach().cpu().numpy()
            for v, g in zip(variables, grads)
        ]
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            value = fn()
        grads = tape.gradient(value, [v.value for v in variables])
        return [
            np.zeros(v.shape) if g is None else np.asarray(g)
            for v, g in zip(variables, grads)
        ]
    raise NotImplementedError(f"No gradient helper for backend {backend}.")
