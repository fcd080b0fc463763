"""Fixed-batch cases whose losses and metrics must not change in refactors.

`tests/models/parity_values.json` holds, per backend, the metrics that
`DistillationModel.test_on_batch` reported for each case at commit 13bec01
(before the model was reshaped), and those after two SGD steps with
`train_on_batch` (so gradients are covered too). `test_parity.py` checks
that today's code gives the same numbers (float32 round-off).

Regenerate (only when a change of numbers is intended, and say so in the
commit):

    for b in jax torch tensorflow; do
      KERAS_BACKEND=$b python -m tests.models.parity_cases --write
    done

Only the public API is used (constructor, compile, test_on_batch,
train_on_batch), so the cases survive changes of the model's internals.
Weights are set from NumPy (teacher, student, and every other weight of the
model keyed by its shape), so they do not depend on the backend's
initializers or on variable names.
"""

import json
import os
import sys
import tempfile

import keras
import numpy as np
from keras import ops

from tests.models import fixtures as F

VALUES_PATH = os.path.join(os.path.dirname(__file__), "parity_values.json")
TRAIN_STEPS = 2


@keras.saving.register_keras_serializable(package="keras_mta_parity")
class MeanCosine(__import__("keras_mta").layers.AlignmentLoss):
    """A weightless custom alignment loss: 1 - cos of the last states
    (the teacher's first `d_s` features), mean over real tokens."""

    def call(
        self, student_hidden, teacher_hidden, word_units, phrase_units, mask
    ):
        s = student_hidden[-1]
        t = teacher_hidden[-1][..., : s.shape[-1]]
        s = ops.normalize(s, axis=-1)
        t = ops.normalize(t, axis=-1)
        distance = 1.0 - ops.sum(s * t, axis=-1)
        return ops.sum(distance * mask) / ops.maximum(ops.sum(mask), 1.0)


# name -> DistillationModel keyword arguments (the plan is added below).
CASES = {
    "full": {"pair_metrics": True},
    "full_skew_rkl": {
        "divergence": "skew_reverse_kl",
        "kd_ratio": 1.0,
        "mta_weight": 3.0,
    },
    "kd_only": {"ablation": "kd_only"},
    "sft_only": {"ablation": "sft_only"},
    "dsa_only": {"ablation": "dsa_only"},
    "hra_only": {"ablation": "hra_only"},
    "word_units_only": {"ablation": "word_units_only"},
    "phrase_units_only": {"ablation": "phrase_units_only"},
    "no_kd": {"use_kd": False},
    "temperature_2_js": {"divergence": "jensen_shannon", "temperature": 2.0},
    "entropy_weighting": {"entropy_weighting": True},
    "custom_alignment": {"alignment_losses": "mean_cos"},
    "cached_teacher": {"cached": True, "pair_metrics": True},
    "cached_teacher_top8": {"cached": True, "top_k": 8},
}


def _plan(entropy_weighting=False):
    from keras_mta import AlignmentPlan

    return AlignmentPlan(
        [1, 3], [1, 2], word_pairs=1, entropy_weighting=entropy_weighting
    )


def _set_other_weights(model, skip):
    """NumPy values for weights that are not the teacher's or student's,
    keyed by shape (not by name or order, which refactors may change)."""
    skip_ids = {id(w) for w in skip}
    for weight in model.weights:
        if id(weight) in skip_ids:
            continue
        shape = tuple(int(d) for d in weight.shape)
        if "float" not in str(weight.dtype):
            continue
        rng = np.random.default_rng([7, *shape])
        weight.assign(rng.normal(scale=0.3, size=shape).astype(weight.dtype))


def build(case):
    """`(model, batch)` of a case, with NumPy-set weights."""
    from keras_mta import CachedTeacher
    from keras_mta import DistillationModel

    kwargs = dict(CASES[case])
    cached = kwargs.pop("cached", False)
    top_k = kwargs.pop("top_k", F.VOCAB)
    plan = _plan(kwargs.pop("entropy_weighting", False))
    if kwargs.get("alignment_losses") == "mean_cos":
        kwargs["alignment_losses"] = [
            MeanCosine(loss_weight=0.7, name="mean_cos")
        ]
    # Built once per backend; every weight is set from NumPy below.
    teacher, student = F.shared_teacher_student()
    F.set_numpy_weights(teacher, 0)
    F.set_numpy_weights(student, 1)
    x, y, sample_weight = F.make_batch()
    frozen = list(teacher.weights) + list(student.weights)
    if cached:
        from keras_mta import build_teacher_cache

        directory = tempfile.mkdtemp(prefix="parity-cache-")
        cache = build_teacher_cache(
            teacher,
            plan,
            x,
            os.path.join(directory, "cache"),
            top_k=top_k,
            batch_size=4,
            chunk_size=4,
            dtype="float32",
            verbose=False,
        )
        x = dict(x)
        x.update(cache.read())
        teacher = CachedTeacher.from_cache(cache)
    model = DistillationModel(teacher, student, plan=plan, **kwargs)
    _set_other_weights(model, frozen)
    return model, (x, y, sample_weight)


def _floats(metrics):
    return {k: float(np.asarray(v)) for k, v in metrics.items()}


def compute(case):
    """`{"eval": metrics, "trained": metrics after TRAIN_STEPS SGD steps}`."""
    model, (x, y, sample_weight) = build(case)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    before = model.test_on_batch(x, y, sample_weight, return_dict=True)
    for _ in range(TRAIN_STEPS):
        model.train_on_batch(x, y, sample_weight)
    after = model.test_on_batch(x, y, sample_weight, return_dict=True)
    return {"eval": _floats(before), "trained": _floats(after)}


def main(argv):
    backend = keras.backend.backend()
    values = {}
    if os.path.exists(VALUES_PATH):
        with open(VALUES_PATH) as f:
            values = json.load(f)
    values[backend] = {case: compute(case) for case in CASES}
    if "--write" in argv:
        with open(VALUES_PATH, "w") as f:
            json.dump(values, f, indent=1, sort_keys=True)
            f.write("\n")
        print(f"wrote {len(CASES)} cases for {backend} to {VALUES_PATH}")
    else:
        print(json.dumps(values[backend], indent=1, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1:])
