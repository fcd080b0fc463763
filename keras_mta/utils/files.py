"""Atomic file writes: a reader sees the old file or the new, never half."""

import os
import uuid


def atomic_write(path, content):
    """Write `content` to `path` atomically (temporary file, then rename).

    The temporary file sits beside `path` (same file system, so the rename
    is atomic) and ends with the same extension, so writers that infer a
    format from the name (`savefig`, `np.save`) write the right one. On an
    error the temporary file is removed and `path` is left as it was.

    Args:
        path: the file to write.
        content: `str` (written as UTF-8), `bytes`, or a callable that
            writes the file whose path it is given (e.g.
            `lambda tmp: fig.savefig(tmp)`).

    Returns:
        `path`.

    Examples:

    >>> atomic_write("/tmp/results.md", "# results\\n")
    '/tmp/results.md'
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    extension = os.path.splitext(path)[1]
    temp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{extension}"
    try:
        if callable(content):
            content(temp)
        else:
            data = (
                content.encode("utf-8") if isinstance(content, str) else content
            )
            with open(temp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)
    return path
