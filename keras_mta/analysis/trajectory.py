"""The trajectory: how a student's layers agree with a teacher's, by depth.

For every student layer `i` and every teacher layer `j` (all hidden-state
indices, not only a plan's pairs) and each granularity (word, phrase units),
`trajectory` measures the structural agreement of their unit geometry,

```
agreement(i, j) = max(0, 1 - L_DSA(student layer i, teacher layer j))
```

(1 when the unit cosine matrices match exactly, lower as they differ), and
the linear CKA of their token states (real tokens only):

```
CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F), X, Y centered
```

The DSA values are computed from the building blocks of
`keras_mta.losses.structural_alignment` (the training loss): each layer's
unit cosine matrix and the teacher's unit-pair weights are computed once per
layer, then every (student, teacher) combination is a weighted squared
difference of two matrices, which is the loss's value for that pair (a test
checks it). Batches are averaged weighted by their unit-pair weight.
"""

import dataclasses
import json

import keras
import numpy as np
from tqdm.auto import tqdm

from keras_mta.losses import token_importance
from keras_mta.losses.alignment import COSINE_EPS
from keras_mta.losses.units import WEIGHT_EPS
from keras_mta.losses.units import normalized_token_weights
from keras_mta.losses.units import pool_units
from keras_mta.losses.units import safe_l2_normalize
from keras_mta.losses.units import unit_membership
from keras_mta.losses.units import unit_weights
from keras_mta.models.hidden_states import hidden_states_model
from keras_mta.models.hidden_states import num_hidden_layers
from keras_mta.utils import atomic_write

GRANULARITIES = ("word", "phrase")


@dataclasses.dataclass
class TrajectoryTable:
    """Agreement of every (student layer, teacher layer) pair.

    Attributes:
        agreement: dict granularity (`"word"`, `"phrase"`) -> array
            `(student_layers + 1, teacher_layers + 1)` of `1 - DSA`
            clipped to `[0, 1]`; NaN where the data had no unit pair.
        cka: array of the same shape, linear CKA of token states.
        teacher_layers: list of teacher hidden-state indices (rows' columns).
        student_layers: list of student hidden-state indices (rows).
        plan_pairs: list of `(student_index, teacher_index)` of the plan,
            for marking in plots (may be empty).
        label: a name for this checkpoint (e.g. `"before"`, `"epoch 3"`).
        num_examples: examples measured.
    """

    agreement: dict
    cka: np.ndarray
    teacher_layers: list
    student_layers: list
    plan_pairs: list = dataclasses.field(default_factory=list)
    label: str = ""
    num_examples: int = 0

    def pair_agreement(self, granularity, pairs=None):
        """Agreement along a list of `(student, teacher)` pairs."""
        pairs = self.plan_pairs if pairs is None else pairs
        table = self.agreement[granularity]
        return [float(table[s, t]) for s, t in pairs]

    def to_dict(self):
        return {
            "agreement": {
                k: _nan_to_none(v.tolist()) for k, v in self.agreement.items()
            },
            "cka": _nan_to_none(self.cka.tolist()),
            "teacher_layers": list(self.teacher_layers),
            "student_layers": list(self.student_layers),
            "plan_pairs": [list(p) for p in self.plan_pairs],
            "label": self.label,
            "num_examples": self.num_examples,
        }

    @classmethod
    def from_dict(cls, data):
        def array(x):
            return np.array(
                [[np.nan if v is None else v for v in row] for row in x],
                dtype=np.float64,
            )

        return cls(
            agreement={k: array(v) for k, v in data["agreement"].items()},
            cka=array(data["cka"]),
            teacher_layers=list(data["teacher_layers"]),
            student_layers=list(data["student_layers"]),
            plan_pairs=[tuple(p) for p in data.get("plan_pairs", [])],
            label=data.get("label", ""),
            num_examples=int(data.get("num_examples", 0)),
        )

    def save(self, path):
        """Write the table as JSON (atomically)."""
        return atomic_write(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path):
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))


def _nan_to_none(rows):
    return [[None if v != v else v for v in row] for row in rows]


def linear_cka(x, y):
    """Linear CKA of two token-state matrices `(n, d_x)`, `(n, d_y)`."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    x = x - x.mean(0, keepdims=True)
    y = y - y.mean(0, keepdims=True)
    cross = np.linalg.norm(y.T @ x) ** 2
    norm = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(cross / norm) if norm > 0 else float("nan")


def unit_geometry(hidden, importance, membership):
    """`(cosine matrix, pair weights)` of one layer's units, as NumPy.

    The two halves of DSA (see `keras_mta.losses.structural_alignment`):
    the `(batch, units, units)` cosine similarities of the units pooled
    with the layer's own normalized importance, and the off-diagonal
    products `W_u W_v` of the unit weights (used from the teacher side).
    """
    weights = normalized_token_weights(importance, membership)
    pooled = safe_l2_normalize(
        pool_units(keras.ops.cast(hidden, "float32"), weights, membership),
        eps=COSINE_EPS,
    )
    cosine = keras.ops.einsum("bud,bvd->buv", pooled, pooled)
    valid = keras.ops.cast(keras.ops.sum(membership, axis=-1) > 0, "float32")
    unit_weight = unit_weights(weights, membership) * valid
    pair = unit_weight[:, :, None] * unit_weight[:, None, :]
    num_units = keras.ops.shape(membership)[1]
    pair = pair * (1.0 - keras.ops.eye(num_units, dtype="float32"))[None]
    return (
        keras.ops.convert_to_numpy(cosine).astype(np.float64),
        keras.ops.convert_to_numpy(pair).astype(np.float64),
    )


def _batches(dataset, max_batches):
    for k, element in enumerate(dataset):
        if max_batches is not None and k >= max_batches:
            return
        x = keras.utils.unpack_x_y_sample_weight(element)[0]
        yield {key: keras.ops.convert_to_numpy(v) for key, v in x.items()}


def trajectory(
    teacher,
    student,
    dataset,
    plan=None,
    max_batches=None,
    max_cka_tokens=4096,
    label="",
    progress=True,
):
    """Measure teacher/student agreement for every pair of layers.

    Args:
        teacher: a keras-hub `CausalLM` (or backbone).
        student: a keras-hub `CausalLM` (or backbone); may be the teacher
            itself (agreement 1 on the diagonal).
        dataset: an iterable of batches `x` or `(x, y, sample_weight)`, `x`
            a dict with `token_ids`, `padding_mask`, `word_units` and
            `phrase_units` (as made by `keras_mta.DistillationPreprocessor`).
        plan: optional `keras_mta.AlignmentPlan` whose pairs are recorded for
            plots.
        max_batches: optional cap on the batches read.
        max_cka_tokens: at most this many real tokens enter the CKA.
        label: a name for this checkpoint.
        progress: show a progress bar over batches.

    Returns:
        A `TrajectoryTable`.
    """
    t_layers = list(range(num_hidden_layers(teacher) + 1))
    s_layers = list(range(num_hidden_layers(student) + 1))
    t_view = hidden_states_model(teacher, t_layers)
    s_view = hidden_states_model(student, s_layers)
    shape = (len(s_layers), len(t_layers))
    sums = {g: np.zeros(shape) for g in GRANULARITIES}
    weights = {g: np.zeros(shape) for g in GRANULARITIES}
    t_tokens = [[] for _ in t_layers]
    s_tokens = [[] for _ in s_layers]
    num_tokens = 0
    num_examples = 0
    bar = tqdm(desc="trajectory", unit="batch", disable=not progress)
    for x in _batches(dataset, max_batches):
        inputs = {
            "token_ids": x["token_ids"],
            "padding_mask": x["padding_mask"],
        }
        mask = x["padding_mask"]
        t_hidden = t_view(inputs, training=False)["hidden_states"]
        s_hidden = s_view(inputs, training=False)["hidden_states"]
        t_importance = [token_importance(h, mask) for h in t_hidden]
        s_importance = [token_importance(h, mask) for h in s_hidden]
        for granularity in GRANULARITIES:
            units = x[f"{granularity}_units"]
            membership = unit_membership(units, mask)
            # The batch's weight: its number of valid unit pairs.
            counts = np.sum(
                keras.ops.convert_to_numpy(keras.ops.sum(membership, -1)) > 0,
                axis=-1,
            )
            batch_weight = float(np.sum(counts * (counts - 1)))
            if batch_weight == 0:
                continue
            s_geometry = [
                unit_geometry(h, a, membership)[0]
                for h, a in zip(s_hidden, s_importance)
            ]
            t_geometry = [
                unit_geometry(h, a, membership)
                for h, a in zip(t_hidden, t_importance)
            ]
            for j, (t_cosine, pair) in enumerate(t_geometry):
                total_weight = max(pair.sum(), WEIGHT_EPS)
                for i, s_cosine in enumerate(s_geometry):
                    dsa = np.sum(pair * (s_cosine - t_cosine) ** 2)
                    sums[granularity][i, j] += batch_weight * (
                        dsa / total_weight
                    )
                    weights[granularity][i, j] += batch_weight
        real = np.asarray(mask).astype(bool)
        take = max(0, max_cka_tokens - num_tokens)
        if take:
            for store, hidden in ((t_tokens, t_hidden), (s_tokens, s_hidden)):
                for k, h in enumerate(hidden):
                    store[k].append(keras.ops.convert_to_numpy(h)[real][:take])
            num_tokens += min(take, int(real.sum()))
        num_examples += len(mask)
        bar.update(1)
    bar.close()
    if num_examples == 0:
        raise ValueError("trajectory() read no batch from the dataset.")
    agreement = {}
    for granularity in GRANULARITIES:
        with np.errstate(invalid="ignore", divide="ignore"):
            dsa = sums[granularity] / weights[granularity]
        agreement[granularity] = np.clip(1.0 - dsa, 0.0, 1.0)
    cka = np.full(shape, np.nan)
    t_tokens = [np.concatenate(t) for t in t_tokens]
    s_tokens = [np.concatenate(s) for s in s_tokens]
    for i in range(len(s_layers)):
        for j in range(len(t_layers)):
            cka[i, j] = linear_cka(s_tokens[i], t_tokens[j])
    pairs = []
    if plan is not None:
        pairs = list(zip(plan.student_layers, plan.teacher_layers))
    return TrajectoryTable(
        agreement=agreement,
        cka=cka,
        teacher_layers=t_layers,
        student_layers=s_layers,
        plan_pairs=pairs,
        label=label,
        num_examples=num_examples,
    )
