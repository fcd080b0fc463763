import os

import pytest

from keras_mta.utils import atomic_write
from keras_mta.utils.files import remove_stale_temporaries


def test_writes_text_bytes_and_through_a_callable(tmp_path):
    atomic_write(tmp_path / "a.md", "é\n")
    assert (tmp_path / "a.md").read_text(encoding="utf-8") == "é\n"
    atomic_write(tmp_path / "sub" / "b.bin", b"\x00\x01")
    assert (tmp_path / "sub" / "b.bin").read_bytes() == b"\x00\x01"
    names = []

    def write(temp):
        names.append(temp)
        with open(temp, "w") as f:
            f.write("x")

    atomic_write(tmp_path / "c.png", write)
    assert names[0].endswith(".png")
    assert (tmp_path / "c.png").read_text() == "x"
    assert sorted(os.listdir(tmp_path)) == ["a.md", "c.png", "sub"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("old")

    def fail(temp):
        with open(temp, "w") as f:
            f.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, fail)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["r.json"]


def dead_pid():
    """A process id that no process has now."""
    pid = 2**22 - 7
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1


@pytest.mark.once
def test_temporary_files_of_dead_writers_are_removed(tmp_path):
    dead, live = dead_pid(), os.getpid()
    stale = [
        f".chunk-00001.npz.tmp-{dead}-0123abcd.npz",
        f".manifest.json.tmp-{dead}-89abcdef.json",
        f".notes.tmp-{dead}-89abcdef",
        f"chunk-00002.npz.tmp-{dead}",  # the naming of older versions
    ]
    kept = [
        f".chunk-00000.npz.tmp-{live}-0123abcd.npz",  # a live writer's
        "notes.txt",
        f"chunk-00003.npz.tmp-{dead}-xyz",  # not a name atomic_write gives
    ]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"half")
    (tmp_path / f".dir.tmp-{dead}-0123abcd").mkdir()
    removed = remove_stale_temporaries(str(tmp_path))
    assert sorted(removed) == sorted(str(tmp_path / n) for n in stale)
    assert sorted(os.listdir(tmp_path)) == sorted(
        [*kept, f".dir.tmp-{dead}-0123abcd"]
    )
    assert remove_stale_temporaries(str(tmp_path / "missing")) == []
