"""A teacher cache checks its files: chunk sizes and checksums, shapes,
the manifest, stale temporary files (issue 18, item 2)."""

import json
import os

import numpy as np
import pytest

from keras_mta.teacher_cache import integrity
from keras_mta.teacher_cache import store
from keras_mta.teacher_cache.store import TeacherCache
from tests.teacher_cache import fixtures as F
from tests.utils.test_files import dead_pid

pytestmark = pytest.mark.once


def _chunk(cache, index=1):
    return os.path.join(cache.directory, f"chunk-{index:05d}.npz")


def _truncate(path, keep=100):
    with open(path, "r+b") as f:
        f.truncate(keep)


def _zero(path):
    size = os.path.getsize(path)
    with open(path, "wb") as f:
        f.write(bytes(size))


def _edit_manifest(cache, edit):
    path = os.path.join(cache.directory, store.MANIFEST)
    with open(path) as f:
        manifest = json.load(f)
    edit(manifest)
    with open(path, "w") as f:
        json.dump(manifest, f)


def _make_legacy(cache):
    """The manifest as keras-mta wrote it before chunk records."""
    _edit_manifest(cache, lambda m: m.pop("chunk_files", None))


def _damage(cache, read):
    """The message of the `DamagedChunkError` of `read()`, which names chunk
    1 and the fix."""
    with pytest.raises(integrity.DamagedChunkError) as info:
        read()
    message = str(info.value)
    assert _chunk(cache) in message and "keras-mta teacher-cache" in message
    return message


def test_the_manifest_records_each_chunk_size_and_checksum(tmp_path):
    cache = F.complete(tmp_path)
    path = _chunk(cache)
    with open(path, "rb") as f:
        data = f.read()
    record = cache._manifest["chunk_files"]["1"]
    assert record == {"bytes": len(data), "crc32": integrity.checksum(data)}
    assert record == TeacherCache(cache.directory)._manifest["chunk_files"]["1"]


def test_a_truncated_chunk_is_refused_at_open_and_rewritten_on_resume(
    tmp_path,
):
    cache = F.complete(tmp_path)
    _truncate(_chunk(cache))
    with pytest.raises(integrity.DamagedCacheError) as info:
        TeacherCache(cache.directory)
    message = str(info.value)
    assert _chunk(cache) in message
    assert "truncated: 100 of" in message
    assert "keras-mta teacher-cache" in message and "delete" in message
    # Resuming the build (same key) rewrites that chunk only.
    again = F.create(tmp_path / "c")
    assert again.missing_chunks() == [1]
    assert list(again.dropped_chunks) == [_chunk(cache)]
    assert F.write_missing(again) == [1]
    data = TeacherCache(cache.directory).read(["row"])
    np.testing.assert_array_equal(data["row"], np.arange(10))


def test_a_deleted_chunk_is_rewritten_on_resume(tmp_path):
    cache = F.complete(tmp_path)
    os.remove(_chunk(cache, 2))
    with pytest.raises(integrity.DamagedCacheError, match="missing"):
        TeacherCache(cache.directory)
    assert F.create(tmp_path / "c").missing_chunks() == [2]


def test_a_longer_chunk_is_refused(tmp_path):
    cache = F.complete(tmp_path)
    with open(_chunk(cache), "ab") as f:
        f.write(b"more")
    with pytest.raises(integrity.DamagedCacheError, match="wrong size"):
        TeacherCache(cache.directory)


def test_a_chunk_overwritten_with_zeros_fails_its_checksum_on_read(
    tmp_path,
):
    cache = F.complete(tmp_path)
    _zero(_chunk(cache))
    # Same size: opening (sizes only) passes; reading the chunk checks it.
    opened = TeacherCache(cache.directory)
    assert "checksum mismatch" in _damage(cache, opened.read)
    # The fix the message gives: delete it, run the same build again.
    os.remove(_chunk(cache))
    again = F.create(tmp_path / "c")
    assert F.write_missing(again) == [1]
    assert TeacherCache(cache.directory).read(["row"])["row"].shape == (10,)


def _open_legacy_with_chunk_1(cache, arrays):
    """Open `cache` as an older one (no chunk records) whose chunk 1 holds
    `arrays`."""
    _make_legacy(cache)
    with open(_chunk(cache), "wb") as f:
        np.savez(f, **arrays)
    with pytest.warns(UserWarning, match="before chunk checksums"):
        return TeacherCache(cache.directory)


def test_wrong_shapes_are_refused_on_read(tmp_path):
    cache = F.complete(tmp_path)
    # Chunk 1 holds examples 4..7; a file with 2 rows would be read as
    # 8 of 10 examples. Without the chunk records (an older cache) only the
    # shapes can tell.
    wrong = {
        k: store._encode(v, F.SPECS[k][1]) for k, v in F.arrays([4, 5]).items()
    }
    opened = _open_legacy_with_chunk_1(cache, wrong)
    message = _damage(cache, opened.read)
    assert "wrong shapes" in message
    assert "'row' has shape (2,), expected (4,)" in message


def test_wrong_arrays_and_dtypes_are_refused_on_read(tmp_path):
    cache = F.complete(tmp_path)
    rows = F.arrays(range(4, 8))
    encoded = {k: store._encode(v, F.SPECS[k][1]) for k, v in rows.items()}
    encoded["hidden"] = rows["hidden"]  # float32, not bfloat16's uint16
    del encoded["ids"]
    opened = _open_legacy_with_chunk_1(cache, encoded)
    message = _damage(cache, lambda: opened.read_chunk(1))
    assert "lacks ['ids']" in message
    assert "'hidden' has dtype float32, expected uint16" in message


def test_a_chunk_that_is_no_npz_file_is_named(tmp_path):
    cache = F.complete(tmp_path)
    _make_legacy(cache)
    _zero(_chunk(cache))
    with pytest.warns(UserWarning):
        opened = TeacherCache(cache.directory)
    message = _damage(cache, lambda: opened.read_chunk(1))
    assert "not a readable .npz file" in message


def test_an_older_cache_opens_and_its_build_records_the_chunks(tmp_path):
    cache = F.complete(tmp_path)
    records = dict(cache._manifest["chunk_files"])
    _make_legacy(cache)
    _truncate(_chunk(cache, 2))
    with pytest.warns(UserWarning, match="keras-mta teacher-cache"):
        opened = TeacherCache(cache.directory)
    assert opened.complete
    # Resuming reads each chunk once: good ones are recorded, the damaged
    # one is rewritten.
    again = F.create(tmp_path / "c")
    assert again.missing_chunks() == [2]
    assert again.recorded_chunks == [_chunk(cache, 0), _chunk(cache, 1)]
    F.write_missing(again)
    assert TeacherCache(cache.directory)._manifest["chunk_files"] == records


def test_a_garbage_manifest_names_its_path(tmp_path):
    cache = F.complete(tmp_path)
    path = os.path.join(cache.directory, store.MANIFEST)
    with open(path, "w") as f:
        f.write("{not json")
    for open_cache in (
        lambda: TeacherCache(cache.directory),
        lambda: F.create(tmp_path / "c"),
    ):
        with pytest.raises(ValueError) as info:
            open_cache()
        message = str(info.value)
        assert path in message and "not valid JSON" in message
        assert "delete" in message.lower()


def test_a_manifest_of_wrong_structure_names_its_path(tmp_path):
    cache = F.complete(tmp_path)
    _edit_manifest(cache, lambda m: m.pop("chunks_done"))
    with pytest.raises(ValueError, match="lacks 'chunks_done'"):
        TeacherCache(cache.directory)
    with open(os.path.join(cache.directory, store.MANIFEST), "w") as f:
        f.write("[1, 2]")
    with pytest.raises(ValueError, match="not a JSON object"):
        TeacherCache(cache.directory)


def test_a_build_removes_temporary_files_of_dead_writers(tmp_path):
    cache = F.create(tmp_path / "c")
    F.write_missing(cache)
    dead = dead_pid()
    stale = f".chunk-00001.npz.tmp-{dead}-0123abcd.npz"
    live = f".chunk-00000.npz.tmp-{os.getpid()}-0123abcd.npz"
    for name in (stale, live):
        with open(os.path.join(cache.directory, name), "wb") as f:
            f.write(b"half")
    F.create(tmp_path / "c")
    left = os.listdir(cache.directory)
    assert stale not in left and live in left


def test_resuming_a_sound_cache_writes_nothing(tmp_path, monkeypatch):
    # A finished cache may sit on read-only storage.
    F.complete(tmp_path)

    def refuse(content):
        raise PermissionError("read-only")

    monkeypatch.setattr(TeacherCache, "_write_manifest", refuse)
    again = F.create(tmp_path / "c")
    assert again.complete and again.dropped_chunks == {}


@pytest.mark.once
@pytest.mark.parametrize("temperature", [0.0, -1.0, float("inf"), float("nan")])
def test_build_refuses_a_temperature_that_is_not_positive_and_finite(
    tmp_path, temperature
):
    from keras_mta.teacher_cache.builder import build_teacher_cache

    # Refused before the teacher or the inputs are looked at.
    with pytest.raises(ValueError, match="`temperature` must be > 0 and fin"):
        build_teacher_cache(
            None, None, {}, str(tmp_path), temperature=temperature
        )
