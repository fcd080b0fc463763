"""Tiny teacher caches built from NumPy arrays (no model), for the store's
tests."""

import numpy as np

from keras_mta.teacher_cache.store import TeacherCache

SPECS = {
    "row": ((), "int32"),
    "hidden": ((3, 4), "bfloat16"),
    "ids": ((3, 2), "uint16"),
    "log_rest": ((3,), "float32"),
}


def arrays(rows):
    """The arrays of examples `rows` (each value tells its row)."""
    rows = np.asarray(rows)
    pattern = np.sin(np.arange(12, dtype="float32")).reshape(3, 4)
    return {
        "row": rows.astype("int32"),
        # Values that bfloat16 rounds (8 bits of mantissa).
        "hidden": (pattern[None] / 3 + rows[:, None, None]).astype("float32"),
        "ids": (rows[:, None, None] * 1000 + np.arange(6).reshape(3, 2)),
        "log_rest": -np.ones((len(rows), 3), "float32") * rows[:, None],
    }


def create(path, num_examples=10, chunk_size=4, key="k1"):
    """A new (or resumed) cache of `SPECS` at `path`."""
    return TeacherCache.create(
        str(path),
        key=key,
        num_examples=num_examples,
        specs=SPECS,
        chunk_size=chunk_size,
    )


def write_missing(cache):
    """Write every missing chunk of `cache`; returns the indices written."""
    missing = cache.missing_chunks()
    for index in missing:
        rows = cache.chunk_rows(index)
        cache.write_chunk(index, arrays(range(rows.start, rows.stop)))
    return missing


def complete(tmp_path, num_examples=10, chunk_size=4):
    """A finished cache at `tmp_path / "c"`."""
    cache = TeacherCache.create(
        str(tmp_path / "c"),
        key="k1",
        num_examples=num_examples,
        specs=SPECS,
        chunk_size=chunk_size,
        metadata={"teacher": {"name": "t"}},
    )
    write_missing(cache)
    return cache
