"""Backend-specific test helpers, kept in one place.

Keras has no backend-agnostic `grad`; tests that check gradients call
`gradients(fn, *args)` here, which dispatches to jax, torch or tensorflow.
"""

import keras
import numpy as np


def gradients(fn, *args):
    """Value of `fn(*args)` (a scalar) and its gradients w.r.t. every arg.

    Args are NumPy arrays (float32 unless given otherwise); returns
    `(value, [grad_arg_0, ...])` as NumPy arrays.
    """
    backend = keras.backend.backend()
    args = [np.asarray(a) for a in args]
    if backend == "jax":
        import jax

        value, grads = jax.value_and_grad(
            lambda *xs: fn(*xs), argnums=tuple(range(len(args)))
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

        grads = jax.grad(wrapped)(values)
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
