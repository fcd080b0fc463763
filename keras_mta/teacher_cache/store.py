"""On-disk store of per-example teacher signals, streamed with tf.data.

`TeacherCache` holds named arrays per example (the cached teacher's
hidden states, token importance, top-k log-probabilities, ...; see
`keras_mta.build_teacher_cache`, which computes and writes them) in chunks
of `chunk_size` examples:

```
DIRECTORY/manifest.json     key, metadata, array specs, finished chunks
DIRECTORY/chunk-00000.npz   one .npz per chunk, examples 0 .. chunk_size-1
```

Every file is written to a temporary name and moved into place
(`os.replace`), and the manifest lists a chunk only once its file is
complete, so an interrupted run leaves a readable cache that a second run
with the same key completes (`missing_chunks`); that run also removes the
temporary files of writers that died. bfloat16 arrays (which NumPy has no
native type for) are stored as their raw 16-bit patterns and read back as
float32.

The manifest records each chunk's byte size and checksum
(`keras_mta.teacher_cache.integrity`). Opening a cache checks the sizes;
reading a chunk checks its checksum, array names, shapes and dtypes; a
damaged chunk raises an error naming its file. Resuming a build (`create`
with the same key) rewrites the chunks that are missing or of the wrong
size, so deleting a damaged chunk and running the build again repairs it.
"""

import io
import json
import os
import shutil
import warnings
import zipfile

import numpy as np

from keras_mta.teacher_cache.integrity import DamagedCacheError
from keras_mta.teacher_cache.integrity import DamagedChunkError
from keras_mta.teacher_cache.integrity import arrays_problem
from keras_mta.teacher_cache.integrity import chunk_record
from keras_mta.teacher_cache.integrity import content_problem
from keras_mta.teacher_cache.integrity import load_manifest
from keras_mta.teacher_cache.integrity import size_problem
from keras_mta.utils.files import atomic_write
from keras_mta.utils.files import remove_stale_temporaries

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
STORAGE_DTYPES = ("bfloat16", "float16", "float32")


def _itemsize(dtype):
    return 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize


def _encode(array, dtype):
    """A NumPy array as stored (bfloat16 as uint16 bit patterns)."""
    if dtype == "bfloat16":
        import ml_dtypes

        return (
            np.asarray(array, dtype=np.float32)
            .astype(ml_dtypes.bfloat16)
            .view(np.uint16)
        )
    return np.asarray(array, dtype=dtype)


def _decode(array, dtype):
    """A stored array as read: bfloat16 becomes float32 and uint16 (token
    ids of vocabularies up to 65,536) int32, types every backend handles."""
    if dtype == "bfloat16":
        import ml_dtypes

        return array.view(ml_dtypes.bfloat16).astype(np.float32)
    if dtype == "uint16":
        return array.astype(np.int32)
    return array


def _stored_dtype(dtype):
    """The NumPy dtype of an array of `dtype` inside a chunk file."""
    return np.dtype("uint16" if dtype == "bfloat16" else dtype)


def _read_dtype(dtype):
    return {"bfloat16": "float32", "uint16": "int32"}.get(dtype, dtype)


def format_bytes(num_bytes):
    """`1.23 GiB`-style text for a byte count."""
    value = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return (
                f"{value:.0f} {unit}"
                if unit == "B"
                else (f"{value:.2f} {unit}")
            )
        value /= 1024
    return f"{value:.2f} TiB"


class TeacherCache:
    """Chunked, atomic, resumable store of per-example arrays.

    Open an existing cache with `TeacherCache(directory)`; create or resume
    one with `TeacherCache.create(...)`. Arrays have a fixed per-example
    shape (the sequences are already padded to a static length), so every
    batch read has a static shape.

    Args:
        directory: the cache directory (holding `manifest.json`).

    Examples:

    ```python
    cache = TeacherCache.create(
        "runs/cache/abc", key="abc", num_examples=100, chunk_size=32,
        specs={"teacher_log_rest": ((128,), "float32")})
    for index in cache.missing_chunks():
        rows = cache.chunk_rows(index)
        cache.write_chunk(index, {"teacher_log_rest": values[rows]})
    ds = cache.dataset((x, y, sample_weight), batch_size=8)
    ```
    """

    def __init__(self, directory):
        self._load(directory)
        problems = self._size_problems()
        if problems:
            raise DamagedCacheError(
                directory,
                {self._chunk_path(i): why for i, why in problems.items()},
            )
        if self._legacy_chunks():
            warnings.warn(
                f"The teacher cache at {directory!r} was written by a "
                "keras-mta from before chunk checksums: its chunks are "
                "checked for presence and shapes only. Run its build again "
                "(`keras-mta teacher-cache RECIPE`) to record them (one "
                "read of every chunk, nothing recomputed).",
                stacklevel=2,
            )

    def _load(self, directory):
        path = os.path.join(directory, MANIFEST)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"No teacher cache at {directory!r} (no {MANIFEST}). Build "
                "one with `keras-mta teacher-cache RECIPE` or "
                "`keras_mta.build_teacher_cache`."
            )
        self.directory = directory
        self._manifest = load_manifest(path, FORMAT_VERSION)
        # A cache written before chunk records has none.
        self._manifest.setdefault("chunk_files", {})
        # When a build resumed: the chunks found damaged (to rewrite), and
        # those of an older keras-mta whose size and checksum were recorded.
        self.dropped_chunks = {}
        self.recorded_chunks = []

    # === Creation ===

    @classmethod
    def create(
        cls,
        directory,
        key,
        num_examples,
        specs,
        chunk_size=64,
        metadata=None,
    ):
        """Create a cache, or reopen the one with the same `key` to resume.

        Args:
            directory: where the cache lives.
            key: str identifying what is cached (teacher, data, settings);
                a directory holding a cache of another key is an error.
            num_examples: int > 0.
            specs: dict `name -> (per-example shape, storage dtype)`, dtype
                a NumPy dtype name or `"bfloat16"`.
            chunk_size: examples per chunk file.
            metadata: JSON-serializable dict kept in the manifest.

        Returns:
            A `TeacherCache`; `missing_chunks()` says what is left to write.
        """
        if int(num_examples) <= 0:
            raise ValueError(
                f"A teacher cache needs at least one example, got "
                f"num_examples={num_examples}."
            )
        if int(chunk_size) <= 0:
            raise ValueError(f"`chunk_size` must be > 0, got {chunk_size}.")
        path = os.path.join(directory, MANIFEST)
        remove_stale_temporaries(directory)
        if os.path.exists(path):
            cache = cls.__new__(cls)
            cache._load(directory)
            if cache.key != key:
                raise ValueError(
                    f"{directory!r} holds a teacher cache of other settings "
                    f"(key {cache.key[:12]}..., wanted {key[:12]}...). Use "
                    "another directory, or delete this one to rebuild it."
                )
            cache._check_for_resume()
            return cache
        os.makedirs(directory, exist_ok=True)
        manifest = {
            "format_version": FORMAT_VERSION,
            "key": key,
            "num_examples": int(num_examples),
            "chunk_size": int(chunk_size),
            "specs": {
                name: {"shape": [int(d) for d in shape], "dtype": str(dtype)}
                for name, (shape, dtype) in specs.items()
            },
            "chunks_done": [],
            "chunk_files": {},
            "metadata": metadata or {},
        }
        for name, spec in manifest["specs"].items():
            dtype = spec["dtype"]
            if dtype != "bfloat16":
                np.dtype(dtype)  # raises on an unknown dtype name
        cache = cls.__new__(cls)
        cache.directory = directory
        cache._manifest = manifest
        cache.dropped_chunks = {}
        cache.recorded_chunks = []
        cache._write_manifest()
        return cache

    # === Checks ===

    def _record(self, index):
        """The manifest's record of chunk `index` (None before records)."""
        return self._manifest["chunk_files"].get(str(index))

    def _legacy_chunks(self):
        """Finished chunks without a size and checksum record."""
        return [
            i for i in self._manifest["chunks_done"] if self._record(i) is None
        ]

    def _size_problems(self):
        """`{index: problem}` of the finished chunks that are missing or
        whose size is not the recorded one (one `stat` per chunk)."""
        problems = {}
        for index in self._manifest["chunks_done"]:
            try:
                size = os.path.getsize(self._chunk_path(index))
            except FileNotFoundError:
                size = None
            problem = size_problem(size, self._record(index))
            if problem:
                problems[index] = problem
        return problems

    def _check_for_resume(self):
        """Before a build resumes: forget the finished chunks that are
        missing or of the wrong size (they are written again), and record
        the size and checksum of chunks written before records (read
        once, checked for shapes)."""
        problems = self._size_problems()
        legacy = self._legacy_chunks()
        for index in legacy:
            if index in problems:
                continue
            try:
                with open(self._chunk_path(index), "rb") as f:
                    data = f.read()
                self._parse_chunk(index, data)
            except DamagedChunkError as error:
                problems[index] = error.problem
                continue
            self._manifest["chunk_files"][str(index)] = chunk_record(data)
            self.recorded_chunks.append(self._chunk_path(index))
        for index in problems:
            self._manifest["chunks_done"].remove(index)
            self._manifest["chunk_files"].pop(str(index), None)
        self.dropped_chunks = {
            self._chunk_path(i): why for i, why in sorted(problems.items())
        }
        if problems or legacy:
            # Nothing is written to a sound cache (it may be read-only).
            self._write_manifest()

    def _write_manifest(self):
        def write(tmp):
            with open(tmp, "w") as f:
                json.dump(self._manifest, f, indent=1)

        atomic_write(os.path.join(self.directory, MANIFEST), write)

    # === Properties ===

    @property
    def key(self):
        return self._manifest["key"]

    @property
    def metadata(self):
        return self._manifest["metadata"]

    @property
    def num_examples(self):
        return self._manifest["num_examples"]

    @property
    def chunk_size(self):
        return self._manifest["chunk_size"]

    @property
    def num_chunks(self):
        return -(-self.num_examples // self.chunk_size)

    @property
    def specs(self):
        """`{name: (per-example shape, storage dtype)}`."""
        return {
            name: (tuple(spec["shape"]), spec["dtype"])
            for name, spec in self._manifest["specs"].items()
        }

    @property
    def example_nbytes(self):
        """Bytes one example takes on disk."""
        return sum(
            int(np.prod(shape, dtype=np.int64)) * _itemsize(dtype)
            for shape, dtype in self.specs.values()
        )

    @property
    def nbytes(self):
        """Bytes of the whole cache once complete (headers aside)."""
        return self.example_nbytes * self.num_examples

    @property
    def complete(self):
        return not self.missing_chunks()

    def missing_chunks(self):
        done = set(self._manifest["chunks_done"])
        return [i for i in range(self.num_chunks) if i not in done]

    def chunk_rows(self, index):
        """The example indices of chunk `index`, a `slice`."""
        start = index * self.chunk_size
        return slice(start, min(start + self.chunk_size, self.num_examples))

    def _chunk_path(self, index):
        return os.path.join(self.directory, f"chunk-{index:05d}.npz")

    def check_disk_space(self):
        """Raise `OSError` when the free space cannot hold what is left."""
        left = self.example_nbytes * sum(
            self.chunk_rows(i).stop - self.chunk_rows(i).start
            for i in self.missing_chunks()
        )
        free = shutil.disk_usage(self.directory).free
        if left > free:
            raise OSError(
                f"The teacher cache needs {format_bytes(left)} more at "
                f"{self.directory!r}, but only {format_bytes(free)} is free. "
                "Free space, cache fewer examples, use a smaller `top_k`, "
                "or store hidden states in bfloat16."
            )
        return left

    # === Writing ===

    def write_chunk(self, index, arrays):
        """Write chunk `index` atomically and mark it done.

        Args:
            index: int in `0 .. num_chunks - 1`.
            arrays: dict `name -> array (rows of the chunk, *shape)` with
                every name of `specs`.
        """
        if not 0 <= index < self.num_chunks:
            raise IndexError(
                f"Chunk {index} is out of range (0 .. {self.num_chunks - 1})."
            )
        rows = self.chunk_rows(index)
        num_rows = rows.stop - rows.start
        specs = self.specs
        missing = sorted(set(specs) - set(arrays))
        extra = sorted(set(arrays) - set(specs))
        if missing or extra:
            raise ValueError(
                f"Chunk {index} has arrays {sorted(arrays)}; the cache "
                f"stores {sorted(specs)} (missing {missing}, unexpected "
                f"{extra})."
            )
        encoded = {}
        for name, (shape, dtype) in specs.items():
            array = np.asarray(arrays[name])
            if array.shape != (num_rows, *shape):
                raise ValueError(
                    f"Chunk {index}: {name!r} has shape {array.shape}, "
                    f"expected {(num_rows, *shape)}."
                )
            encoded[name] = _encode(array, dtype)

        # Serialised in memory, so that the checksum is taken over the very
        # bytes written (no second read of the file).
        buffer = io.BytesIO()
        np.savez(buffer, **encoded)
        data = buffer.getvalue()
        atomic_write(self._chunk_path(index), data)
        done = set(self._manifest["chunks_done"])
        done.add(int(index))
        self._manifest["chunks_done"] = sorted(done)
        self._manifest["chunk_files"][str(int(index))] = chunk_record(data)
        self._write_manifest()

    # === Reading ===

    def _require_complete(self):
        missing = self.missing_chunks()
        if missing:
            raise ValueError(
                f"The teacher cache at {self.directory!r} is incomplete: "
                f"{len(missing)} of {self.num_chunks} chunks are missing "
                "(an interrupted build). Run the same build again to "
                "resume it."
            )

    def _parse_chunk(self, index, data):
        """The stored arrays of chunk `index` from its file's bytes `data`,
        checked against the manifest (size, checksum) and the specs
        (names, shapes, dtypes); `DamagedChunkError` names what is
        wrong."""
        path = self._chunk_path(index)
        problem = content_problem(data, self._record(index))
        if problem:
            raise DamagedChunkError(path, problem)
        try:
            with np.load(io.BytesIO(data)) as npz:
                arrays = {name: npz[name] for name in npz.files}
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
            raise DamagedChunkError(
                path,
                f"not a readable .npz file ({type(error).__name__}: {error})",
            ) from error
        rows = self.chunk_rows(index)
        expected = {
            name: ((rows.stop - rows.start, *shape), _stored_dtype(dtype))
            for name, (shape, dtype) in self.specs.items()
        }
        problem = arrays_problem(arrays, expected)
        if problem:
            raise DamagedChunkError(path, problem)
        return arrays

    def read_chunk(self, index):
        """Chunk `index` as a dict of arrays (bfloat16 read as float32,
        uint16 as int32), checked (checksum, names, shapes, dtypes)."""
        path = self._chunk_path(index)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError as error:
            raise DamagedChunkError(
                path, "missing (the manifest lists it as written)"
            ) from error
        arrays = self._parse_chunk(index, data)
        return {
            name: _decode(arrays[name], dtype)
            for name, (_, dtype) in self.specs.items()
        }

    def read(self, names=None):
        """Every example of the named arrays (all by default), in memory."""
        self._require_complete()
        names = list(self.specs) if names is None else list(names)
        chunks = [self.read_chunk(i) for i in range(self.num_chunks)]
        return {
            name: np.concatenate([c[name] for c in chunks], axis=0)
            for name in names
        }

    def dataset(
        self,
        inputs,
        batch_size,
        shuffle=True,
        seed=None,
        drop_remainder=False,
        shuffle_buffer=None,
        num_parallel_reads=2,
    ):
        """Stream the cache beside the student's inputs through tf.data.

        Chunks are read from disk in parallel (in a shuffled order per
        epoch when `shuffle`), their examples are merged into the input
        dict `x` row by row and shuffled in a buffer, then batched. Only a
        few chunks are in memory at once.

        Args:
            inputs: `(x, y, sample_weight)` (or `(x, y)`), NumPy arrays with
                one row per cached example in the same order (`x` a dict).
            batch_size: int.
            shuffle: bool, shuffle chunks and examples (reshuffled every
                epoch).
            seed: optional int seed of the shuffles.
            drop_remainder: bool, drop a last partial batch.
            shuffle_buffer: examples in the shuffle buffer (default two
                chunks).
            num_parallel_reads: chunks read at once.

        Returns:
            A `tf.data.Dataset` of `(x, y[, sample_weight])` batches where
            `x` also holds every cached array under its name.
        """
        # TensorFlow only for the input pipeline: the rest of the store (and
        # the model that reads the cache) works without it.
        import tensorflow as tf

        self._require_complete()
        inputs = tuple(inputs)
        x = dict(inputs[0])
        rest = inputs[1:]
        for name, value in [*x.items(), *enumerate(rest)]:
            if len(value) != self.num_examples:
                raise ValueError(
                    f"Input {name!r} has {len(value)} rows but the teacher "
                    f"cache holds {self.num_examples} examples; stream the "
                    "same examples (in the same order) that the cache was "
                    "built from."
                )
        clash = sorted(set(x) & set(self.specs))
        if clash:
            raise ValueError(
                f"The inputs already hold {clash}, names of cached arrays."
            )
        specs = self.specs
        names = list(specs)

        def load(index):
            index = int(index)
            rows = self.chunk_rows(index)
            chunk = self.read_chunk(index)
            cached = tuple(chunk[name] for name in names)
            own_x = tuple(np.asarray(x[k][rows]) for k in x)
            own_rest = tuple(np.asarray(r[rows]) for r in rest)
            # One element: the whole chunk (unbatched below).
            yield cached + own_x + own_rest

        def tensor_spec(shape, dtype):
            return tf.TensorSpec((None, *shape), dtype)

        signature = tuple(
            tensor_spec(shape, _read_dtype(dtype))
            for shape, dtype in specs.values()
        )
        signature += tuple(
            tensor_spec(np.shape(v)[1:], np.asarray(v[:1]).dtype)
            for v in [*x.values(), *rest]
        )
        x_keys = list(x)

        def chunk_dataset(index):
            return tf.data.Dataset.from_generator(
                load, args=(index,), output_signature=signature
            )

        def pack(*parts):
            cached = dict(zip(names, parts[: len(names)]))
            own = parts[len(names) :]
            features = dict(zip(x_keys, own[: len(x_keys)]))
            features.update(cached)
            return (features, *own[len(x_keys) :])

        chunks = tf.data.Dataset.range(self.num_chunks)
        if shuffle:
            chunks = chunks.shuffle(
                self.num_chunks, seed=seed, reshuffle_each_iteration=True
            )
        dataset = chunks.interleave(
            chunk_dataset,
            cycle_length=max(1, int(num_parallel_reads)),
            num_parallel_calls=max(1, int(num_parallel_reads)),
            deterministic=True,
        ).unbatch()
        if shuffle:
            dataset = dataset.shuffle(
                shuffle_buffer or 2 * self.chunk_size,
                seed=seed,
                reshuffle_each_iteration=True,
            )
        dataset = dataset.map(pack).batch(
            batch_size, drop_remainder=drop_remainder
        )
        # The chunks come through generators, so tf.data cannot count the
        # batches; Keras needs the count to start every epoch on a fresh
        # pass (with an unknown count and `steps_per_epoch`, it runs out of
        # data in the second epoch, warns and trains that epoch on nothing).
        full, partial = divmod(self.num_examples, int(batch_size))
        batches = full + (1 if partial and not drop_remainder else 0)
        dataset = dataset.apply(
            tf.data.experimental.assert_cardinality(batches)
        )
        return dataset.prefetch(tf.data.AUTOTUNE)

    def __repr__(self):
        return (
            f"TeacherCache({self.directory!r}, {self.num_examples} examples, "
            f"{self.num_chunks - len(self.missing_chunks())}/"
            f"{self.num_chunks} chunks, {format_bytes(self.nbytes)})"
        )
