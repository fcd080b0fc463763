"""Atomic file writes: a reader sees the old file or the new, never half."""

import os
import re
import uuid

# `.NAME.tmp-<pid>-<8 hex>EXT` (`atomic_write`), and `NAME.tmp-<pid>` of
# older keras-mta versions.
_TEMP = re.compile(r"^\.?.+\.tmp-(?P<pid>\d+)(?:-[0-9a-f]{8}(?:\.\w+)?)?$")


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


def _process_alive(pid):
    """Whether process `pid` runs on this machine (True when unsure)."""
    if pid == os.getpid():
        return True
    if os.name == "nt":
        # `os.kill` ends the process on Windows: never probe there.
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def remove_stale_temporaries(directory):
    """Remove the temporary files of `atomic_write` calls that died.

    A writer that was killed (an interrupted build) leaves its temporary
    file behind. Those whose process id no longer runs on this machine are
    removed; those of a live process (a concurrent writer, this process)
    are kept. Writers on another machine sharing the directory cannot be
    told apart from dead ones: do not run two of them on one directory.

    Args:
        directory: the directory to clean (not its subdirectories).

    Returns:
        The list of removed paths.
    """
    removed = []
    if not os.path.isdir(directory):
        return removed
    for name in sorted(os.listdir(directory)):
        match = _TEMP.match(name)
        if not match or _process_alive(int(match["pid"])):
            continue
        path = os.path.join(directory, name)
        try:
            if os.path.isfile(path):
                os.remove(path)
                removed.append(path)
        except FileNotFoundError:
            pass  # removed meanwhile
    return removed
