import os
import shutil
import subprocess
import sys

import pytest

from keras_mta.utils.native_logs import filtered_native_stderr
from keras_mta.utils.native_logs import is_startup_line

# Lines as TensorFlow 2.21 writes them on a CPU-only machine.
STARTUP = [
    "WARNING: All log messages before absl::InitializeLog() is called are "
    "written to STDERR",
    "I0000 00:00:1796037893.782621     344 port.cc:153] oneDNN custom "
    "operations are on.",
    "I0000 00:00:1796037893.787128     344 cudart_stub.cc:31] Could not find "
    "cuda drivers on your machine, GPU will not be used.",
    "To enable the following instructions: AVX2 FMA, in other operations, "
    "rebuild TensorFlow with the appropriate compiler flags.",
    "E0000 00:00:1796038004.461189     943 cuda_platform.cc:52] failed call "
    "to cuInit: INTERNAL: CUDA error",
    "E0000 00:00:1796058301.494404   14291 util.cc:131] oneDNN supports "
    "DT_INT64 only on platforms with AVX-512. Falling back to the default "
    "Eigen-based implementation if present.",
]
OTHER = [
    "E0000 00:00:1796038004.461189     943 some_op.cc:52] Out of memory",
    "Traceback (most recent call last):",
    "I0000 is how a user's own line might start",
    "",
]


@pytest.mark.once
def test_only_the_known_startup_lines_are_recognised():
    assert all(is_startup_line(line) for line in STARTUP)
    assert not any(is_startup_line(line) for line in OTHER)


@pytest.mark.once
def test_native_writes_are_filtered_and_other_lines_kept(capfd):
    with filtered_native_stderr():
        # What native code does: write straight to file descriptor 2.
        os.write(2, ("\n".join(STARTUP + ["a real error"]) + "\n").encode())
    out, err = capfd.readouterr()
    assert err == "a real error\n"


@pytest.mark.once
def test_the_command_prints_no_tensorflow_startup_line():
    script = shutil.which("keras-mta") or os.path.join(
        os.path.dirname(sys.executable), "keras-mta"
    )
    if not os.path.exists(script):
        pytest.skip("the keras-mta console script is not installed")
    proc = subprocess.run(
        [script, "chunk", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


@pytest.mark.large
def test_the_command_prints_no_line_of_a_later_int64_op():
    # What `keras-mta distill` does: start as the command, then the input
    # pipeline transposes int64 tokens (TensorFlow's oneDNN notice comes
    # at the first such op in a process).
    code = (
        "import sys; sys.argv[0] = 'keras-mta'; import keras_mta; "
        "import tensorflow as tf; "
        "tf.transpose(tf.constant([[1, 2]], tf.int64)); print('ran')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ran\n"
    assert proc.stderr == ""
