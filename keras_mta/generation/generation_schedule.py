"""`GenerationSchedule`: which batch the student trains on at each step.

DistiLLM's adaptive off-policy schedule (the reference of the MTA paper's
scripts) and GKD's on-policy mixture, as pure Python: seeded, reproducible
draws (one generator per `(seed, step)`, so that a resumed run draws the
same numbers), and a state of two numbers (the threshold and the last
recorded validation loss) to save and restore.
"""

import numpy as np

# Where a step's batch comes from.
GENERATE = "generate"
REPLAY = "replay"
GROUND_TRUTH = "ground_truth"
SOURCES = (GENERATE, REPLAY, GROUND_TRUTH)
MODES = ("adaptive", "on_policy")
REPLAY_RATIOS = ("decreasing", "constant", "increasing")
# A rise of the validation loss counts as `loss_eps` within this much (the
# difference of two floats that differ by 0.1 can be 0.09999999999999987).
LOSS_TOLERANCE = 1e-9
# Draws of a step are made by `np.random.default_rng([seed, step, STREAM])`:
# the decision and the replay buffer's sample use different streams.
DECISION_STREAM = 0
REPLAY_STREAM = 1


def step_generator(seed, step, stream):
    """The NumPy generator of one step's draws (the same for the same
    `(seed, step, stream)`, in any run and after any resume)."""
    return np.random.default_rng([int(seed), int(step), int(stream)])


class GenerationSchedule:
    """Decides, step by step, whether the student trains on its own fresh
    samples, on a replayed earlier sample, or on the ground-truth batch.

    `mode="adaptive"` is DistiLLM's schedule. The threshold starts at
    `init_threshold`; each validation loss given to
    `record_validation_loss` that is at least `loss_eps` above the last
    recorded one raises it by `threshold_step` (capped at 1.0), and that
    loss becomes the new reference (the first loss only becomes the
    reference). At step `t` of `total_steps`, with `r ~ U(0, 1)` and the
    replay ratio `s` (`"decreasing"`: `threshold * (1 - t / total_steps)`,
    `"constant"`: `threshold * 0.5`, `"increasing"`: `threshold * t /
    total_steps`):

    - `r < s`, or `r < threshold` while the replay buffer holds fewer than
      `capacity` batches: `"generate"` (fresh student samples for the
      batch's prompts, then pushed into the buffer);
    - else `r < threshold`: `"replay"` (a batch drawn from the buffer);
    - else `"ground_truth"`.

    `mode="on_policy"` is GKD's mixture: `r < on_policy_fraction` gives
    `"generate"`, otherwise `"ground_truth"`; no buffer, no threshold.

    Args:
        mode: `"adaptive"` or `"on_policy"`.
        total_steps: int, the training's steps (for the `"decreasing"` and
            `"increasing"` replay ratios; steps past it count as
            `total_steps`).
        init_threshold: float in [0, 1], the starting threshold.
        loss_eps: float >= 0, the rise of validation loss that raises the
            threshold.
        threshold_step: float, how much one rise adds (reference 0.1).
        capacity: int >= 1, the replay buffer's capacity in batches.
        replay_ratio: `"decreasing"`, `"constant"` or `"increasing"`.
        on_policy_fraction: float in [0, 1], the fraction of freshly
            generated batches in `"on_policy"` mode.
        seed: int, the seed of the draws.

    Examples:

    >>> schedule = GenerationSchedule(total_steps=100, seed=1)
    >>> schedule.decide(0, buffer_size=0)
    'ground_truth'
    >>> schedule.record_validation_loss(2.0)
    False
    >>> schedule.record_validation_loss(2.1)
    True
    >>> schedule.threshold
    0.1
    """

    def __init__(
        self,
        mode="adaptive",
        total_steps=None,
        init_threshold=0.0,
        loss_eps=0.1,
        threshold_step=0.1,
        capacity=1000,
        replay_ratio="decreasing",
        on_policy_fraction=0.5,
        seed=0,
    ):
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}, got {mode!r}.")
        if replay_ratio not in REPLAY_RATIOS:
            raise ValueError(
                f"`replay_ratio` must be one of {REPLAY_RATIOS}, got "
                f"{replay_ratio!r}."
            )
        if not 0.0 <= init_threshold <= 1.0:
            raise ValueError(
                f"`init_threshold` must lie in [0, 1], got {init_threshold}."
            )
        if not 0.0 <= on_policy_fraction <= 1.0:
            raise ValueError(
                "`on_policy_fraction` must lie in [0, 1], got "
                f"{on_policy_fraction}."
            )
        if int(capacity) < 1:
            raise ValueError(f"`capacity` must be >= 1, got {capacity}.")
        if loss_eps < 0:
            raise ValueError(f"`loss_eps` must be >= 0, got {loss_eps}.")
        needs_total = mode == "adaptive" and replay_ratio != "constant"
        if needs_total and (total_steps is None or int(total_steps) < 1):
            raise ValueError(
                f'replay_ratio="{replay_ratio}" needs `total_steps` (the '
                f"training's steps, >= 1), got {total_steps!r}. Pass "
                "total_steps=epochs * steps_per_epoch."
            )
        self.mode = mode
        self.total_steps = None if total_steps is None else int(total_steps)
        self.init_threshold = float(init_threshold)
        self.loss_eps = float(loss_eps)
        self.threshold_step = float(threshold_step)
        self.capacity = int(capacity)
        self.replay_ratio = replay_ratio
        self.on_policy_fraction = float(on_policy_fraction)
        self.seed = int(seed)
        self.threshold = self.init_threshold
        self.last_loss = None

    @property
    def uses_buffer(self):
        """Whether the schedule replays (the adaptive mode)."""
        return self.mode == "adaptive"

    @property
    def measures_validation_loss(self):
        """Whether validation losses drive the schedule."""
        return self.mode == "adaptive"

    def record_validation_loss(self, loss):
        """Record a validation loss; returns True when the threshold rose.

        The first loss becomes the reference. A later loss at least
        `loss_eps` above the reference raises the threshold by
        `threshold_step` (capped at 1.0) and becomes the new reference;
        any other loss leaves both as they are.
        """
        loss = float(loss)
        if not np.isfinite(loss):
            raise ValueError(
                f"The validation loss given to the generation schedule is "
                f"{loss}: the student's validation loss is not finite."
            )
        if self.last_loss is None:
            self.last_loss = loss
            return False
        if loss - self.last_loss >= self.loss_eps - LOSS_TOLERANCE:
            self.threshold = round(
                min(self.threshold + self.threshold_step, 1.0), 12
            )
            self.last_loss = loss
            return True
        return False

    def replay_ratio_at(self, step):
        """`s` at `step`: the probability of fresh samples once the buffer
        is full."""
        if self.replay_ratio == "constant":
            return self.threshold * 0.5
        progress = min(max(step, 0), self.total_steps) / self.total_steps
        if self.replay_ratio == "decreasing":
            return self.threshold * (1.0 - progress)
        return self.threshold * progress

    def draw(self, step):
        """`r ~ U(0, 1)` of `step` (the same in every run)."""
        return float(step_generator(self.seed, step, DECISION_STREAM).random())

    def decide(self, step, buffer_size=0):
        """`"generate"`, `"replay"` or `"ground_truth"` for `step`.

        Args:
            step: int, the global training step (0-based, counted over
                the whole training, resumes included).
            buffer_size: int, batches in the replay buffer now.
        """
        r = self.draw(step)
        if self.mode == "on_policy":
            return GENERATE if r < self.on_policy_fraction else GROUND_TRUTH
        if r < self.replay_ratio_at(step) or (
            r < self.threshold and buffer_size < self.capacity
        ):
            return GENERATE
        if r < self.threshold:
            return REPLAY
        return GROUND_TRUTH

    def get_state(self):
        """What changes during training (JSON-serializable)."""
        return {"threshold": self.threshold, "last_loss": self.last_loss}

    def set_state(self, state):
        """Restore `get_state()` (a resumed run)."""
        self.threshold = float(state["threshold"])
        last = state["last_loss"]
        self.last_loss = None if last is None else float(last)

    def get_config(self):
        return {
            "mode": self.mode,
            "total_steps": self.total_steps,
            "init_threshold": self.init_threshold,
            "loss_eps": self.loss_eps,
            "threshold_step": self.threshold_step,
            "capacity": self.capacity,
            "replay_ratio": self.replay_ratio,
            "on_policy_fraction": self.on_policy_fraction,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return (
            f"GenerationSchedule(mode={self.mode!r}, "
            f"threshold={self.threshold}, last_loss={self.last_loss})"
        )
