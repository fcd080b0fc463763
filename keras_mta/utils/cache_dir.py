"""Where keras-mta keeps its caches (spans, converted GGUF files, ...)."""

import os


def cache_dir(kind):
    """The default cache directory of one kind of cache.

    `$KERAS_MTA_CACHE_DIR/<kind>` when that variable is set, otherwise
    `$XDG_CACHE_HOME/keras-mta/<kind>` (`~/.cache/keras-mta/<kind>`).

    Args:
        kind: the cache's subdirectory, e.g. `"spans"` or `"gguf"`.

    Examples:

    >>> cache_dir("spans")  # doctest: +SKIP
    '/home/me/.cache/keras-mta/spans'
    """
    root = os.environ.get("KERAS_MTA_CACHE_DIR")
    if root:
        return os.path.join(root, kind)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache"
    )
    return os.path.join(xdg, "keras-mta", kind)
