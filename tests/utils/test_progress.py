from keras_mta.utils import fit_verbosity
from keras_mta.utils import say


def test_say_prints_one_tagged_line(capsys, monkeypatch):
    monkeypatch.delenv("KERAS_MTA_QUIET", raising=False)
    say("hello")
    assert capsys.readouterr().out == "[keras-mta] hello\n"


def test_quiet_switch_and_verbose_argument_silence_it(capsys, monkeypatch):
    monkeypatch.delenv("KERAS_MTA_QUIET", raising=False)
    say("hidden", verbose=False)
    monkeypatch.setenv("KERAS_MTA_QUIET", "1")
    say("hidden too")
    assert capsys.readouterr().out == ""
    assert fit_verbosity() == 0
    monkeypatch.setenv("KERAS_MTA_QUIET", "0")
    say("shown")
    assert "shown" in capsys.readouterr().out
