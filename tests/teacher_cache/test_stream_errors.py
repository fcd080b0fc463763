"""A damaged chunk read inside `TeacherCache.dataset` (a tf.data pipeline)
is named in the error that reaches the training loop, on every backend."""

import os

import keras
import numpy as np
import pytest

from tests.teacher_cache import fixtures as F


def test_a_damaged_chunk_is_named_through_the_dataset(tmp_path):
    # Keras feeds a tf.data dataset to each backend's fit loop through a data
    # adapter; the chunk read runs inside the pipeline (`from_generator`),
    # which re-raises its error as a TensorFlow error. Its message must
    # still name the file and the fix under the backend of this process.
    from keras.src.trainers.data_adapters import get_data_adapter

    cache = F.complete(tmp_path)
    path = os.path.join(cache.directory, "chunk-00001.npz")
    size = os.path.getsize(path)
    with open(path, "wb") as f:
        f.write(bytes(size))
    x = {"token_ids": np.zeros((10, 3), "int32")}
    dataset = cache.dataset((x, np.zeros(10)), batch_size=4, shuffle=False)
    adapter = get_data_adapter(dataset)
    iterator = {
        "jax": adapter.get_jax_iterator,
        "torch": adapter.get_torch_dataloader,
        "tensorflow": adapter.get_tf_dataset,
    }.get(keras.backend.backend(), adapter.get_numpy_iterator)
    with pytest.raises(Exception) as info:
        for _ in iterator():
            pass
    message = str(info.value)
    assert "DamagedChunkError" in message
    assert f"{path} is damaged: checksum mismatch" in message
    assert "keras-mta teacher-cache" in message
