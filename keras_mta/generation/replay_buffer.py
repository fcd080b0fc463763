"""`ReplayBuffer`: student-generated batches kept for replay."""

import numpy as np

from keras_mta.generation.generation_schedule import REPLAY_STREAM
from keras_mta.generation.generation_schedule import step_generator


def _flatten(batch):
    """`{"x/<key>": array, "y": array, "sample_weight": array}` of an
    `(x, y, sample_weight)` batch whose `x` is a dict."""
    x, y, sample_weight = batch
    flat = {f"x/{key}": np.asarray(value) for key, value in x.items()}
    flat["y"] = np.asarray(y)
    flat["sample_weight"] = np.asarray(sample_weight)
    return flat


def _unflatten(flat):
    x = {k[2:]: v for k, v in flat.items() if k.startswith("x/")}
    return x, flat["y"], flat["sample_weight"]


class ReplayBuffer:
    """Student-generated batches, kept (oldest out first) for replay.

    Holds up to `capacity` batches, each an `(x, y, sample_weight)` tuple
    of NumPy arrays (`x` a dict), as `DistillationPreprocessor` makes
    them. `sample(step)` draws one uniformly with the generator of
    `(seed, step)`, so that a resumed run with the same buffer draws the
    same batches. `get_state()` returns the buffer as stacked arrays (one
    per key, plus the step each batch was generated at) and
    `set_state()` restores them.

    Args:
        capacity: int >= 1, batches kept (DistiLLM's reference: 1000).
            Pushing into a full buffer drops its oldest batch.
        seed: int, the seed of the draws.

    Examples:

    >>> buffer = ReplayBuffer(capacity=2, seed=0)
    >>> batch = ({"token_ids": np.zeros((1, 3), "int32")},
    ...          np.zeros((1, 3), "int32"), np.ones((1, 3), "float32"))
    >>> buffer.push(batch, step=0)
    >>> len(buffer)
    1
    >>> x, y, sample_weight = buffer.sample(step=5)
    """

    def __init__(self, capacity=1000, seed=0):
        if int(capacity) < 1:
            raise ValueError(
                f"A ReplayBuffer needs `capacity` >= 1 batches, got {capacity}."
            )
        self.capacity = int(capacity)
        self.seed = int(seed)
        self._batches = []
        self._steps = []

    def __len__(self):
        return len(self._batches)

    @property
    def steps(self):
        """The steps the kept batches were generated at, oldest first."""
        return list(self._steps)

    def push(self, batch, step):
        """Keep a copy of `batch` (generated at `step`); a full buffer
        drops its oldest batch first."""
        flat = {k: v.copy() for k, v in _flatten(batch).items()}
        if self._batches and set(flat) != set(self._batches[0]):
            raise ValueError(
                "A batch pushed into the ReplayBuffer has the keys "
                f"{sorted(flat)}, the batches already kept "
                f"{sorted(self._batches[0])}: every batch of one training "
                "must have the same structure."
            )
        if len(self._batches) >= self.capacity:
            del self._batches[0]
            del self._steps[0]
        self._batches.append(flat)
        self._steps.append(int(step))

    def discard_from(self, step):
        """Drop the batches generated at `step` or later (made ahead of
        the training, e.g. by TensorFlow's prefetching, before a new `fit`
        starts again at `step`)."""
        keep = [i for i, s in enumerate(self._steps) if s < step]
        self._batches = [self._batches[i] for i in keep]
        self._steps = [self._steps[i] for i in keep]

    def sample(self, step):
        """A kept batch, drawn uniformly with the generator of
        `(seed, step)`; returns `(x, y, sample_weight)`."""
        if not self._batches:
            raise ValueError(
                f"Step {step} asked to replay a batch, but the ReplayBuffer "
                "is empty: a batch must be generated and pushed first."
            )
        rng = step_generator(self.seed, step, REPLAY_STREAM)
        index = int(rng.integers(len(self._batches)))
        return _unflatten(dict(self._batches[index]))

    def get_state(self, before_step=None):
        """The kept batches as a dict of stacked NumPy arrays: one per key
        (`"x/token_ids"`, ..., `"y"`, `"sample_weight"`, first axis the
        batches) and `"steps"`. With `before_step`, only the batches
        generated before that step (batches made ahead of the training,
        e.g. by TensorFlow's prefetching, are left out)."""
        keep = [
            i
            for i, s in enumerate(self._steps)
            if before_step is None or s < before_step
        ]
        state = {"steps": np.asarray([self._steps[i] for i in keep], "int64")}
        if keep:
            for key in self._batches[0]:
                state[key] = np.stack([self._batches[i][key] for i in keep])
        return state

    def set_state(self, state):
        """Replace the kept batches with `get_state()`'s."""
        steps = [int(s) for s in np.asarray(state["steps"])]
        keys = [k for k in state if k != "steps"]
        if len(steps) > self.capacity:
            raise ValueError(
                f"The saved replay buffer holds {len(steps)} batches, more "
                f"than this buffer's capacity {self.capacity}: restore it "
                "into a ReplayBuffer of the same capacity."
            )
        self._batches = [
            {k: np.asarray(state[k][i]) for k in keys}
            for i in range(len(steps))
        ]
        self._steps = steps

    def get_config(self):
        return {"capacity": self.capacity, "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"ReplayBuffer({len(self)}/{self.capacity} batches)"
