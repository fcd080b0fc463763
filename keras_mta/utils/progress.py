"""The one channel for progress messages (`[keras-mta] ...` lines).

Every stage of a run reports through `say`. Set `KERAS_MTA_QUIET=1` (or
pass `verbose=False`) to silence them; Keras's own progress bars follow
the same switch through `fit_verbosity`.
"""

import os
import sys

QUIET_ENV = "KERAS_MTA_QUIET"


def is_quiet():
    """Whether `KERAS_MTA_QUIET` asks for no progress output."""
    value = os.environ.get(QUIET_ENV, "").strip().lower()
    return value not in ("", "0", "false", "no")


def say(message, verbose=True):
    """Print one progress line, `[keras-mta] message`, unless quiet.

    Args:
        message: the text.
        verbose: `False` silences this message (as `KERAS_MTA_QUIET=1`
            silences all of them).

    Examples:

    >>> say("training the student: mta")
    [keras-mta] training the student: mta
    """
    if verbose and not is_quiet():
        print(f"[keras-mta] {message}", file=sys.stdout, flush=True)


def fit_verbosity():
    """The `verbose` of Keras `fit`: 0 when quiet, a progress bar on a
    terminal, one line per epoch in a log file."""
    if is_quiet():
        return 0
    return 1 if sys.stdout.isatty() else 2
