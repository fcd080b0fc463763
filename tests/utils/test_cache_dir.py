import os

from keras_mta.utils import cache_dir


def test_env_root_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_MTA_CACHE_DIR", str(tmp_path / "root"))
    assert cache_dir("spans") == str(tmp_path / "root" / "spans")
    monkeypatch.delenv("KERAS_MTA_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("gguf") == str(tmp_path / "xdg" / "keras-mta" / "gguf")
    monkeypatch.delenv("XDG_CACHE_HOME")
    expected = os.path.join(
        os.path.expanduser("~"), ".cache", "keras-mta", "gguf"
    )
    assert cache_dir("gguf") == expected
