"""DistillationModel across devices: JAX on two virtual CPU devices.

The device count of XLA is fixed when JAX starts, so the checks run in a
subprocess started with `XLA_FLAGS=--xla_force_host_platform_device_count=2`
and report back as JSON. Other backends are skipped (their multi-device
distribution API is not what `keras.distribution` drives).
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import keras
import pytest

pytestmark = [
    pytest.mark.skipif(
        keras.backend.backend() != "jax",
        reason="keras.distribution on virtual CPU devices is tested on JAX",
    ),
    pytest.mark.large,
]

REPO = pathlib.Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import json
    import sys

    import jax
    import keras
    import numpy as np

    from keras_mta import AlignmentPlan
    from keras_mta import DistillationModel
    from tests.models import fixtures as F

    assert len(jax.devices()) == 2, jax.devices()
    PLAN = AlignmentPlan(teacher_layers=[2, 3], student_layers=[1, 2])
    x, y, sw = F.make_batch()  # batch 4: 2 samples per device


    def build(scoped=False):
        if scoped:
            with keras.name_scope("teacher"):
                teacher = F.gpt2(F.TEACHER_LAYERS, F.TEACHER_DIM)
            with keras.name_scope("student"):
                student = F.gpt2(F.STUDENT_LAYERS, F.STUDENT_DIM)
        else:
            teacher, student = F.teacher_student()
        F.set_numpy_weights(teacher, 1)
        F.set_numpy_weights(student, 2)
        model = DistillationModel(teacher, student, plan=PLAN)
        F.set_numpy_weights(model.alignment, 3)
        model.compile(optimizer=keras.optimizers.SGD(0.1))
        return model


    def run(model):
        step = model.train_on_batch(x, y, sample_weight=sw, return_dict=True)
        after = model.evaluate(
            x, y, sample_weight=sw, batch_size=4, verbose=0,
            return_dict=True,
        )
        return {"step": step, "after": after}


    results = {"single": run(build())}

    devices = keras.distribution.list_devices()
    data_parallel = keras.distribution.DataParallel(devices=devices)
    with data_parallel.scope():
        model = build()
        results["data_parallel"] = run(model)
        kernel = model.student.backbone.transformer_layers[0]
        kernel = kernel._feedforward_intermediate_dense.kernel
        results["dp_student_replicated"] = bool(
            kernel.value.sharding.is_fully_replicated
        )
        results["dp_devices"] = len(kernel.value.sharding.device_set)

    mesh = keras.distribution.DeviceMesh(
        (1, 2), ["batch", "model"], devices=devices
    )
    layout_map = keras.distribution.LayoutMap(mesh)
    layout_map["teacher/.*(query|key|value)/kernel"] = (None, "model", None)
    layout_map["teacher/.*attention_output/kernel"] = ("model", None, None)
    layout_map["teacher/.*feedforward_intermediate_dense/kernel"] = (
        None, "model",
    )
    layout_map["teacher/.*feedforward_output_dense/kernel"] = ("model", None)
    model_parallel = keras.distribution.ModelParallel(
        layout_map=layout_map, batch_dim_name="batch"
    )
    with model_parallel.scope():
        model = build(scoped=True)
        results["model_parallel"] = run(model)
        teacher_kernels = [
            w for w in model.teacher.weights if w.path.endswith("kernel")
        ]
        results["mp_teacher_kernels"] = len(teacher_kernels)
        results["mp_teacher_sharded"] = sum(
            not w.value.sharding.is_fully_replicated for w in teacher_kernels
        )
        results["mp_student_sharded"] = sum(
            not w.value.sharding.is_fully_replicated
            for w in model.student.weights
        )
        query = [w for w in teacher_kernels if "query" in w.path][0]
        results["mp_query_shard_shape"] = list(
            query.value.addressable_shards[0].data.shape
        )
        results["mp_query_shape"] = list(query.shape)

    print("RESULTS" + json.dumps(results, default=float))
    """
)


@pytest.fixture(scope="module")
def results():
    env = dict(os.environ)
    env["KERAS_BACKEND"] = "jax"
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [
        line for line in proc.stdout.splitlines() if line.startswith("RESULTS")
    ]
    if proc.returncode != 0 or not lines:
        pytest.fail(
            f"subprocess failed ({proc.returncode}):\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        )
    return json.loads(lines[-1][len("RESULTS") :])


def _assert_same_logs(got, want):
    for key in ("loss", "ce", "kd", "dsa", "hra"):
        assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-6), key


def test_data_parallel_matches_single_device(results):
    single, dist = results["single"], results["data_parallel"]
    # The loss of the step (before the update) and after one SGD step.
    _assert_same_logs(dist["step"], single["step"])
    _assert_same_logs(dist["after"], single["after"])
    assert results["dp_devices"] == 2
    assert results["dp_student_replicated"]


def test_model_parallel_shards_teacher_kernels_and_runs(results):
    assert results["mp_teacher_sharded"] == results["mp_teacher_kernels"] > 0
    assert results["mp_student_sharded"] == 0
    shape = results["mp_query_shape"]
    assert results["mp_query_shard_shape"] == [
        shape[0],
        shape[1] // 2,
        shape[2],
    ]
    # Sharding the teacher changes nothing in the numbers.
    _assert_same_logs(
        results["model_parallel"]["step"], results["single"]["step"]
    )
    _assert_same_logs(
        results["model_parallel"]["after"], results["single"]["after"]
    )
