"""Checks of a teacher cache's files: the manifest, chunk sizes and
checksums, the arrays a chunk holds.

When a chunk is written, its byte size and a CRC-32 of its bytes go into
the manifest (`chunk_files`). Opening a cache compares every finished
chunk's size with the record (one `stat` per chunk); reading a chunk
compares the checksum of the bytes it reads, then the names, shapes and
dtypes of its arrays with the cache's specs. A damaged chunk raises
`DamagedChunkError`, which names the file, what is wrong and how to
rebuild just that chunk. NumPy only: no TensorFlow, no models.
"""

import json
import zlib

MANIFEST_FIELDS = (
    "format_version",
    "key",
    "num_examples",
    "chunk_size",
    "specs",
    "chunks_done",
)

# CRC-32 (zlib) of the file bytes: measured at 0.5 ms per MiB (~2 GiB/s)
# on one idle CPU core of the development machine (0.8 under load), against
# 1.4 ms per MiB for hashlib.blake2b and 1.0 for sha256. A chunk is read
# from disk anyway, so the check is one more pass over bytes already in
# memory: `read_chunk` of a 22 MiB chunk took 37 ms before it and 66 ms
# with it (all checks, on a loaded 2-core machine), against seconds of
# training on the 64 examples it holds. It catches truncation, zeroed or
# overwritten blocks and swapped files (it is no defence against a
# deliberate forgery, which is not its purpose).
CHECKSUM = "crc32"

REBUILD = (
    "Delete it and run the same build again (`keras-mta teacher-cache "
    "RECIPE` with the same recipe and settings, or "
    "`keras_mta.build_teacher_cache` with the same arguments): only "
    "missing chunks are written."
)


def checksum(data):
    """The CRC-32 of `data` (bytes) as 8 hex digits."""
    return f"{zlib.crc32(data) & 0xFFFFFFFF:08x}"


def chunk_record(data):
    """What the manifest records of a chunk file of bytes `data`."""
    return {"bytes": len(data), CHECKSUM: checksum(data)}


class DamagedChunkError(ValueError):
    """A teacher-cache chunk file is missing, truncated or altered.

    Args:
        path: the chunk file.
        problem: what is wrong with it (one phrase).
    """

    def __init__(self, path, problem):
        self.path = path
        self.problem = problem
        super().__init__(
            f"Teacher-cache chunk {path} is damaged: {problem}. {REBUILD}"
        )


class DamagedCacheError(ValueError):
    """Some finished chunks of a teacher cache are missing or of the wrong
    size (found when the cache is opened).

    Args:
        directory: the cache directory.
        problems: dict `chunk path -> problem`.
    """

    def __init__(self, directory, problems):
        self.directory = directory
        self.problems = dict(problems)
        listed = "; ".join(f"{p}: {why}" for p, why in problems.items())
        super().__init__(
            f"The teacher cache at {directory!r} has {len(problems)} "
            f"damaged chunk(s): {listed}. Run the same build again "
            "(`keras-mta teacher-cache RECIPE` with the same recipe and "
            "settings, or `keras_mta.build_teacher_cache` with the same "
            "arguments): it rewrites just these chunks (you may also "
            "delete them first)."
        )


def size_problem(size, record):
    """What is wrong with a chunk of `size` bytes (None when missing) given
    its manifest `record` (None for a cache written before records)."""
    if size is None:
        return "missing (the manifest lists it as written)"
    if record is None:
        return None
    expected = record["bytes"]
    if size < expected:
        return f"truncated: {size} of {expected} bytes"
    if size > expected:
        return f"wrong size: {size} bytes, the manifest records {expected}"
    return None


def content_problem(data, record):
    """What is wrong with the bytes `data` of a chunk given its record."""
    problem = size_problem(len(data), record)
    if problem or record is None or CHECKSUM not in record:
        return problem
    found = checksum(data)
    if found != record[CHECKSUM]:
        return (
            f"checksum mismatch: {CHECKSUM} {found}, the manifest records "
            f"{record[CHECKSUM]} (the file changed after it was written)"
        )
    return None


def arrays_problem(arrays, expected):
    """What is wrong with the stored arrays of a chunk.

    Args:
        arrays: dict `name -> np.ndarray` as read from the file.
        expected: dict `name -> (shape, NumPy dtype)` of the chunk.
    """
    problems = []
    missing = sorted(set(expected) - set(arrays))
    extra = sorted(set(arrays) - set(expected))
    if missing:
        problems.append(f"it lacks {missing}")
    if extra:
        problems.append(f"it holds unexpected {extra}")
    for name, (shape, dtype) in expected.items():
        if name not in arrays:
            continue
        array = arrays[name]
        if tuple(array.shape) != tuple(shape):
            problems.append(
                f"{name!r} has shape {tuple(array.shape)}, expected "
                f"{tuple(shape)}"
            )
        if array.dtype != dtype:
            problems.append(
                f"{name!r} has dtype {array.dtype}, expected {dtype}"
            )
    if problems:
        return "wrong shapes or arrays: " + "; ".join(problems)
    return None


def load_manifest(path, format_version):
    """The manifest at `path` as a dict; errors name the file.

    Args:
        path: the `manifest.json` file.
        format_version: the version this keras-mta reads.
    """
    fix = (
        "Delete the cache directory (or this manifest, and every chunk is "
        "written again) and run the same build again (`keras-mta "
        "teacher-cache RECIPE`)."
    )
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"The teacher-cache manifest {path} is not valid JSON "
            f"({error}). {fix}"
        ) from error
    if not isinstance(manifest, dict):
        raise ValueError(
            f"The teacher-cache manifest {path} is not a JSON object. {fix}"
        )
    if manifest.get("format_version") != format_version:
        raise ValueError(
            f"The teacher cache of {path} has format version "
            f"{manifest.get('format_version')}, this keras-mta reads "
            f"version {format_version}. Delete the directory and build "
            "the cache again."
        )
    for field in MANIFEST_FIELDS:
        if field not in manifest:
            raise ValueError(
                f"The teacher-cache manifest {path} lacks {field!r}. {fix}"
            )
    return manifest
