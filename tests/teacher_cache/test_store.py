"""The on-disk teacher cache: chunks, atomic writes, resuming, streaming."""

import collections
import os

import ml_dtypes
import numpy as np
import pytest

from keras_mta.teacher_cache import store
from keras_mta.teacher_cache.store import TeacherCache
from tests.teacher_cache.fixtures import SPECS
from tests.teacher_cache.fixtures import arrays as _arrays
from tests.teacher_cache.fixtures import complete as _complete
from tests.teacher_cache.fixtures import create as _create

# Backend-independent (cache files, NumPy and tf.data only):
# scripts/test.sh runs it under one backend.
pytestmark = pytest.mark.once


def test_write_read_round_trip_and_sizes(tmp_path):
    cache = _complete(tmp_path)
    assert cache.num_chunks == 3 and cache.complete
    # Per example: 4 + 3*4*2 + 3*2*2 + 3*4 bytes.
    assert cache.example_nbytes == 4 + 24 + 12 + 12
    assert cache.nbytes == 10 * cache.example_nbytes
    data = TeacherCache(cache.directory).read()
    expected = _arrays(range(10))
    np.testing.assert_array_equal(data["row"], np.arange(10))
    assert data["hidden"].dtype == np.float32
    np.testing.assert_array_equal(
        data["hidden"],
        expected["hidden"].astype(ml_dtypes.bfloat16).astype(np.float32),
    )
    assert data["ids"].dtype == np.int32
    np.testing.assert_array_equal(data["ids"], expected["ids"])
    np.testing.assert_array_equal(data["log_rest"], expected["log_rest"])
    assert not [f for f in os.listdir(cache.directory) if ".tmp" in f]
    assert "3/3 chunks" in repr(cache)


def test_an_interrupted_build_resumes(tmp_path):
    cache = _create(tmp_path / "c", num_examples=10, key="k1")
    cache.write_chunk(1, _arrays(range(4, 8)))
    # A new process opens the same key: only the missing chunks are left.
    again = _create(tmp_path / "c", num_examples=10, key="k1")
    assert again.missing_chunks() == [0, 2]
    with pytest.raises(ValueError, match="incomplete"):
        again.read()
    with pytest.raises(ValueError, match="incomplete"):
        again.dataset(({"x": np.zeros(10)},), batch_size=2)
    for index in again.missing_chunks():
        rows = again.chunk_rows(index)
        again.write_chunk(index, _arrays(range(rows.start, rows.stop)))
    np.testing.assert_array_equal(again.read(["row"])["row"], np.arange(10))


def test_a_failed_write_leaves_no_partial_chunk(tmp_path, monkeypatch):
    cache = _create(tmp_path / "c", num_examples=4, key="k1")

    def boom(file, **arrays):
        file.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(store.np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        cache.write_chunk(0, _arrays(range(4)))
    assert os.listdir(cache.directory) == [store.MANIFEST]
    assert TeacherCache(cache.directory).missing_chunks() == [0]


def test_errors(tmp_path, monkeypatch):
    cache = _complete(tmp_path)
    with pytest.raises(ValueError, match="other settings"):
        TeacherCache.create(
            cache.directory, key="k2", num_examples=10, specs=SPECS
        )
    with pytest.raises(FileNotFoundError, match="teacher-cache"):
        TeacherCache(str(tmp_path / "nothing"))
    fresh = _create(tmp_path / "d", num_examples=4, key="k")
    bad = _arrays(range(4))
    bad["hidden"] = bad["hidden"][:, :2]
    with pytest.raises(ValueError, match="'hidden' has shape"):
        fresh.write_chunk(0, bad)
    missing = _arrays(range(4))
    del missing["ids"]
    with pytest.raises(ValueError, match="missing \\['ids'\\]"):
        fresh.write_chunk(0, missing)
    with pytest.raises(ValueError, match="at least one example"):
        TeacherCache.create(
            str(tmp_path / "e"), key="k", num_examples=0, specs=SPECS
        )
    with pytest.raises(ValueError, match="rows but the teacher cache"):
        cache.dataset(({"x": np.zeros(9)},), batch_size=2)
    with pytest.raises(ValueError, match="already hold"):
        cache.dataset(({"row": np.zeros(10)},), batch_size=2)
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(
        store.shutil, "disk_usage", lambda path: usage(10, 10, 100)
    )
    with pytest.raises(OSError, match="only 100 B is free"):
        fresh.check_disk_space()


def test_stream_pairs_every_example_with_its_inputs(tmp_path):
    cache = _complete(tmp_path, num_examples=10, chunk_size=4)
    x = {"token_ids": np.arange(10)[:, None] * np.ones((1, 3), "int32")}
    y = np.arange(10, dtype="int32") + 100
    dataset = cache.dataset((x, y), batch_size=3, seed=7)
    epochs = []
    for _ in range(2):
        seen = []
        for features, targets in dataset:
            rows = features["row"].numpy()
            np.testing.assert_array_equal(
                features["token_ids"].numpy()[:, 0], rows
            )
            np.testing.assert_array_equal(targets.numpy(), rows + 100)
            np.testing.assert_array_equal(
                features["log_rest"].numpy()[:, 0], -rows.astype("float32")
            )
            assert features["hidden"].dtype.name == "float32"
            seen.extend(rows.tolist())
        assert sorted(seen) == list(range(10))
        epochs.append(seen)
    # Shuffled, and reshuffled every epoch.
    assert epochs[0] != list(range(10)) or epochs[1] != list(range(10))
    assert epochs[0] != epochs[1]
    # The same seed gives the same order in a new pipeline.
    again = cache.dataset((x, y), batch_size=3, seed=7)
    first = [r for f, _ in again for r in f["row"].numpy().tolist()]
    assert first == epochs[0]


def test_stream_in_order_with_static_batches(tmp_path):
    cache = _complete(tmp_path, num_examples=10, chunk_size=4)
    x = {"token_ids": np.zeros((10, 3), "int32")}
    dataset = cache.dataset(
        (x, np.zeros(10), np.ones(10)),
        batch_size=4,
        shuffle=False,
        drop_remainder=True,
    )
    batches = list(dataset)
    assert len(batches) == 2
    assert dataset.element_spec[0]["hidden"].shape.as_list() == [4, 3, 4]
    rows = [r for f, _, _ in batches for r in f["row"].numpy().tolist()]
    assert rows == list(range(8))


@pytest.mark.parametrize("drop_remainder, batches", [(True, 2), (False, 3)])
def test_the_stream_tells_keras_its_number_of_batches(
    tmp_path, drop_remainder, batches
):
    # Chunks come through generators, which tf.data cannot count: without
    # a stated count, `fit(..., steps_per_epoch=N)` ran out of data in the
    # second epoch (a warning, and an epoch trained on nothing).
    cache = _complete(tmp_path, num_examples=10, chunk_size=4)
    x = {"token_ids": np.zeros((10, 3), "int32")}
    dataset = cache.dataset(
        (x, np.zeros(10)), batch_size=4, drop_remainder=drop_remainder
    )
    assert int(dataset.cardinality()) == batches
    for _ in range(2):  # every pass holds that many
        assert len(list(dataset)) == batches


def test_format_bytes():
    assert store.format_bytes(512) == "512 B"
    assert store.format_bytes(3 * 2**20) == "3.00 MiB"
