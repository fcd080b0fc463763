"""Atomic file writes: a reader sees the old file or the new, never half."""

import os
import uuid


def atomic_write(path, content):
    """Write `content` to `path` atomically (temporary file, then rename).

    The temporary file sits beside `path` (same file system, so the rename
    is atomic), hidden (its name starts with a dot), and ends with the same
    extension, so writers that infer a
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
    name = os.path.basename(path)
    extension = os.path.splitext(name)[1]
    # Hidden (a leading dot), so that readers listing the directory for
    # files of a prefix (span-cache shards, teacher-cache chunks) never see
    # a half-written one.
    temp = os.path.join(
        directory,
        f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{extension}",
    )
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
