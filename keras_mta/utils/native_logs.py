"""TensorFlow's start-up lines, filtered out of the command line's output.

TensorFlow's C++ runtime writes a handful of lines to the process's
standard error when it is imported and when it first looks for devices
(`oneDNN custom operations are on`, `Could not find cuda drivers`, `failed
call to cuInit`, `All log messages before absl::InitializeLog() ...`). They
come from native code, so Python's `warnings` and `logging` cannot catch
them, and this TensorFlow prints them whatever `TF_CPP_MIN_LOG_LEVEL` says.
A user of `keras-mta distill` can do nothing about them, so the command
line starts TensorFlow inside `filtered_native_stderr`, which sends file
descriptor 2 to a temporary file for that moment and writes back every line
except the known start-up ones (any other line, an error included, still
reaches the terminal).

This is the only place keras-mta touches file descriptors; the library
itself never does (only `keras_mta.cli` calls `start_tensorflow_quietly`).
"""

import contextlib
import os
import re
import sys
import tempfile

# The start-up lines of TensorFlow's native runtime on a machine without a
# GPU (absl's `I...`/`W...` lines, the absl preamble, the CPU-feature notice
# and its continuation, the CUDA probe's error line).
STARTUP_LINES = (
    re.compile(
        r"^WARNING: All log messages before absl::InitializeLog\(\) is "
        r"called are written to STDERR"
    ),
    re.compile(r"^[IW]\d{4} [\d:. ]+\d+ [\w.]+:\d+\] "),
    re.compile(r"^E\d{4} [\d:. ]+\d+ cuda_\w+\.cc:\d+\] failed call to cuInit"),
    re.compile(r"^To enable the following instructions: .* rebuild TensorFlow"),
    # Said once per process, at the first int64 op oneDNN does not cover
    # (e.g. a transpose in the input pipeline); `start_tensorflow_quietly`
    # makes it come at start-up.
    re.compile(
        r"^E\d{4} [\d:. ]+\d+ util\.cc:\d+\] oneDNN supports DT_INT64 only"
    ),
)


def is_startup_line(line):
    """Whether `line` is one of TensorFlow's known start-up lines."""
    return any(pattern.search(line) for pattern in STARTUP_LINES)


@contextlib.contextmanager
def filtered_native_stderr(keep=lambda line: not is_startup_line(line)):
    """Capture what native code writes to file descriptor 2 inside the
    block, then write back the lines `keep` accepts.

    Args:
        keep: a predicate on each captured line (its newline included);
            by default every line but TensorFlow's start-up lines.

    Native code writes to file descriptor 2 whatever `sys.stderr` is, so
    the descriptor is redirected, and the kept lines go back to it. Where
    the process has no descriptor 2 (some embedding hosts), the block runs
    unfiltered.
    """
    fd = 2
    try:
        os.fstat(fd)
    except OSError:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            kept = [
                line for line in text.splitlines(keepends=True) if keep(line)
            ]
            if kept:
                os.write(fd, "".join(kept).encode("utf-8"))


def start_tensorflow_quietly():
    """Import TensorFlow and let it look for devices with its start-up
    lines filtered out (see the module docstring). Does nothing when
    TensorFlow is not installed or was imported before.

    TensorFlow's oneDNN build also says once per process, at the first
    int64 transpose, that oneDNN falls back to Eigen for int64 on this CPU
    (an `E...util.cc] oneDNN supports DT_INT64 only...` line, which would
    otherwise come in the middle of a run when the input pipeline first
    transposes int64 tokens); one such transpose runs here, filtered.
    """
    if "tensorflow" in sys.modules:
        return
    with filtered_native_stderr():
        try:
            import tensorflow as tf
        except ImportError:
            return
        tf.config.list_physical_devices()
        tf.transpose(tf.zeros((1, 1), tf.int64))
