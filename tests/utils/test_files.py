import os

import pytest

from keras_mta.utils import atomic_write


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
