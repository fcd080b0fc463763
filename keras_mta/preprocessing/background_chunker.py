"""Chunking off the calling thread: a thread, or a pool of processes kept
open between calls."""

import concurrent.futures
import multiprocessing
import os

DEFAULT_START_METHOD = "spawn"


class BackgroundChunker:
    """Chunks texts off the calling thread; `submit` returns a future.

    The training loop hands each batch of new text (e.g. the student's
    generated responses) to `submit` and keeps training; the spans are
    ready when it asks for them. spaCy holds Python's global lock while it
    parses, so only worker processes truly run beside the training step:

    - `n_process=1`: one background thread of this process chunks with
      `chunker` (overlaps the parts of the step that release the lock,
      such as compiled device code; no start-up cost).
    - `n_process>1`: a pool of `n_process` worker processes, started on
      first use and kept until `close()`; each batch of texts is split in
      `n_process` contiguous parts, chunked in parallel and put back in
      order. Each worker loads the spaCy pipeline once (a `PhraseChunker`
      loaded by name is pickled by name).

    The spans are the chunker's own: the same texts give the same spans
    whatever `n_process` is.

    Args:
        chunker: a `PhraseChunker` (or anything with `chunk(texts)`
            returning one span dict per text), picklable when
            `n_process>1`.
        n_process: int, worker processes (`1`: a thread of this process;
            `-1`: one per CPU).
        start_method: multiprocessing start method of the workers. Defaults
            to `"spawn"`: the training process runs multithreaded
            runtimes (JAX, TensorFlow, PyTorch) that `fork` can deadlock.
            A script that starts workers with `"spawn"` must guard its
            entry point with `if __name__ == "__main__":`.

    Call arguments (of `submit`):
        texts: a list of strings.

    Returns (of `submit`):
        A `concurrent.futures.Future` whose `result()` is the list of span
        dicts (`{"phrases": [...], "words": [...]}`), one per text.

    Examples:

    ```python
    chunker = BackgroundChunker(PhraseChunker(), n_process=2)
    future = chunker.submit(["The quick brown fox jumps."])
    ...  # a training step
    spans = future.result()
    chunker.close()
    ```
    """

    def __init__(self, chunker, n_process=1, start_method=None):
        if not hasattr(chunker, "chunk"):
            raise TypeError(
                "`chunker` must have a `chunk(texts)` method (a "
                f"PhraseChunker). Received: {type(chunker).__name__}."
            )
        if (
            isinstance(n_process, bool)
            or not isinstance(n_process, int)
            or n_process == 0
            or n_process < -1
        ):
            raise ValueError(
                "`n_process` must be a positive int (or -1 for all CPUs). "
                f"Received: {n_process!r}."
            )
        self.chunker = chunker
        self.n_process = n_process
        self.start_method = start_method
        self._thread = None
        self._pool = None

    @property
    def processes(self):
        """The number of worker processes (0: a thread of this process)."""
        n_process = self.n_process
        if n_process == -1:
            n_process = os.cpu_count() or 1
        return 0 if n_process == 1 else n_process

    def chunk(self, texts):
        """The span dicts of `texts`, chunked in this thread."""
        local = getattr(self.chunker, "_local_spans", None)
        texts = list(texts)
        return local(texts) if local is not None else self.chunker.chunk(texts)

    def submit(self, texts):
        texts = list(texts)
        if not self.processes:
            if self._thread is None:
                self._thread = concurrent.futures.ThreadPoolExecutor(
                    1, thread_name_prefix="keras_mta_chunking"
                )
            return self._thread.submit(self.chunk, texts)
        pool = self._start_pool()
        parts = _split(texts, self.processes)
        futures = [pool.submit(_worker_chunk, part) for part in parts]
        return _Joined(futures)

    def _start_pool(self):
        if self._pool is None:
            context = multiprocessing.get_context(
                self.start_method or DEFAULT_START_METHOD
            )
            self._pool = concurrent.futures.ProcessPoolExecutor(
                self.processes,
                mp_context=context,
                initializer=_init_worker,
                initargs=(self.chunker,),
            )
        return self._pool

    def close(self):
        """Stops the thread and the worker processes (waits for them)."""
        for executor in (self._thread, self._pool):
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)
        self._thread = None
        self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False

    def get_config(self):
        return {"n_process": self.n_process, "start_method": self.start_method}

    def __repr__(self):
        return (
            f"BackgroundChunker({self.chunker!r}, n_process={self.n_process}, "
            f"start_method={self.start_method!r})"
        )


class _Joined:
    """The futures of the parts of one batch, as one future of the whole
    (only `result()` and `done()`)."""

    def __init__(self, futures):
        self._futures = futures

    def done(self):
        return all(future.done() for future in self._futures)

    def result(self, timeout=None):
        spans = []
        for future in self._futures:
            spans.extend(future.result(timeout))
        return spans


def _split(texts, parts):
    """`texts` in at most `parts` contiguous, non-empty, even parts."""
    parts = max(1, min(parts, len(texts)))
    size, extra = divmod(len(texts), parts)
    out, start = [], 0
    for k in range(parts):
        end = start + size + (1 if k < extra else 0)
        out.append(texts[start:end])
        start = end
    return out


# The chunker of a worker process of `BackgroundChunker`.
_worker_chunker = None


def _init_worker(chunker):
    global _worker_chunker
    _worker_chunker = BackgroundChunker(chunker)


def _worker_chunk(texts):
    return _worker_chunker.chunk(texts)
