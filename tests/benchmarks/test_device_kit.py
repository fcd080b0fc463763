"""The GPU kit (benchmarks/device/): its pieces, and the whole kit at tiny
size on this CPU with TensorFlow and spaCy blocked, as on the lent GPU
machine (which has neither, nor keras until the kit installs it)."""

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_mta.analysis.paired_differences import DISTINGUISHABLE
from keras_mta.analysis.paired_differences import NOT_DISTINGUISHABLE
from keras_mta.analysis.paired_differences import paired_difference
from keras_mta.analysis.paired_differences import student_t_quantile
from tests.benchmarks.test_gpu_script_in_process import _script
from tests.test_imports import BLOCKER

REPO = Path(__file__).resolve().parents[2]
DEVICE = REPO / "benchmarks" / "device"
sys.path.insert(0, str(DEVICE))

import fetch_wheels  # noqa: E402
import kit  # noqa: E402
import score  # noqa: E402


@pytest.mark.once
def test_device_command_fits_and_is_documented():
    # The device takes a command of at most 2,000 characters and 8 carried
    # paths; the README gives the call a later session makes, verbatim.
    assert len(kit.COMMAND) < 2000
    assert len(kit.CARRY) <= 8
    assert kit.TIMEOUT_S <= 600 and kit.KIT_DEADLINE_S <= 540
    assert kit.KIT_DEADLINE_S < kit.TIMEOUT_S
    readme = (DEVICE / "README.md").read_text()
    assert kit.COMMAND in readme
    assert json.dumps(list(kit.CARRY)) in readme
    assert f'"timeout_s": {kit.TIMEOUT_S}' in readme
    for name in kit.CARRY:
        assert (
            (REPO / ".gitignore")
            .read_text()
            .count("/" + name.split("/")[0] + "/")
        ), f"{name} must be ignored by git (it is carried, not committed)"


@pytest.mark.once
def test_budget_check():
    line = kit.check_budget("wheels", 5 * kit.MIB, kit.WHEEL_BUDGET)
    assert line == "wheels: 5.00 MiB of a 16 MiB budget"
    with pytest.raises(ValueError, match="over budget by 1.00 MiB"):
        kit.check_budget("wheels", 17 * kit.MIB, kit.WHEEL_BUDGET)


def _fake_wheels(folder, names, size=1000):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        wheel = folder / f"{name.replace('-', '_')}-1.{i}-py3-none-any.whl"
        wheel.write_bytes(b"0" * size)


@pytest.mark.once
def test_fetcher_check(tmp_path, capsys, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    _fake_wheels(tmp_path / "ok", kit.WHEELS)
    size = fetch_wheels.check(tmp_path / "ok", data, tracked_bytes=0)
    assert size == 1000 * len(kit.WHEELS)
    assert "all that travels" in capsys.readouterr().out
    _fake_wheels(tmp_path / "missing", kit.WHEELS[1:])
    with pytest.raises(ValueError, match=r"missing \['keras'\]"):
        fetch_wheels.check(tmp_path / "missing", data, tracked_bytes=0)
    _fake_wheels(tmp_path / "two", kit.WHEELS + ("optree",))
    with pytest.raises(ValueError, match=r"doubled \['optree'\]"):
        fetch_wheels.check(tmp_path / "two", data, tracked_bytes=0)
    monkeypatch.setattr(kit, "TRAVEL_BUDGET", 10 * 1000)
    (data / "train.npz").write_bytes(b"0" * (10 * 1000 - 6 * 1000 + 1))
    with pytest.raises(ValueError, match="all that travels.*over budget"):
        fetch_wheels.check(tmp_path / "ok", data, tracked_bytes=0)


@pytest.mark.once
def test_fetcher_downloads_cp312_manylinux_without_deps():
    command = fetch_wheels.download_command(["keras==3.15.1"], "/x")
    assert command[command.index("--python-version") + 1] == "3.12"
    assert "--no-deps" in command and "--only-binary=:all:" in command
    assert "manylinux_2_17_x86_64" in command
    install = kit.pip_install_command(["a.whl"], "/tmp/site")
    assert install[-3:] == ["--target", "/tmp/site", "a.whl"]
    assert "--no-index" in install and "--no-deps" in install


@pytest.mark.once
def test_scoring_pieces():
    # Generated ids: after the prompt, up to the first end or pad token.
    assert score.response_ids([2, 7, 8, 9, 3, 9], 2, 3) == [8, 9]
    assert score.response_ids([2, 7, 8, 0, 0], 2, 3) == [8]
    # The library's paired differences (the default run's table): the
    # Student-t quantile of 2 degrees of freedom, the verdict in words.
    difference = score.paired_interval([1.0, 1.5, 2.0])
    assert difference == paired_difference([1.0, 1.5, 2.0], [0.0] * 3)
    assert difference.mean == 1.5
    half = student_t_quantile(0.975, 2) * 0.5 / math.sqrt(3)
    assert math.isclose(difference.high - 1.5, half, rel_tol=1e-9)
    assert difference.verdict == DISTINGUISHABLE
    difference = score.paired_interval([1.0, 2.0, 3.0])
    assert difference.verdict == NOT_DISTINGUISHABLE
    one = score.paired_interval([0.5])
    assert one.mean == 0.5 and one.low is None
    with pytest.raises(ValueError, match="No paired differences"):
        score.paired_interval([])


# Builds and steps two tiny models (about 30 s here, alone): full tier.
@pytest.mark.large
@pytest.mark.once(backend="torch")
def test_step_time_worker_tries_mta_past_its_budget(tmp_path):
    # The kit passes `--try-all`: with no budget left after KD (its
    # compile can take long at the paper's shape), MTA is still started.
    args = argparse.Namespace(
        tiny=True,
        budget_s=0.0,
        variants="kd,mta",
        steps=1,
        warmup=1,
        result=str(tmp_path / "result.json"),
        try_all=True,
    )
    _script().worker(args)
    result = json.loads((tmp_path / "result.json").read_text())
    assert set(result["variants"]) == {"kd", "mta"}
    assert result["skipped"] == []


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """The kit's arrays at tiny size, prepared here (spaCy, TensorFlow)."""
    out = tmp_path_factory.mktemp("device_kit_data")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, str(DEVICE / "prepare.py"), "--tiny", "--out", out],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.skipif(
    keras.backend.backend() == "tensorflow",
    reason="the kit runs jax and torch (the GPU machine has no tensorflow)",
)
@pytest.mark.large
def test_kit_runs_tiny_without_tensorflow_or_spacy(tiny_data, tmp_path):
    backend = keras.backend.backend()
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    out = tmp_path / "out"
    env = dict(
        os.environ,
        KERAS_BACKEND=backend,
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONPATH=os.pathsep.join([str(blocker), str(REPO)]),
    )
    proc = subprocess.run(
        [
            sys.executable,
            str(DEVICE / "run_kit.py"),
            "--tiny",
            "--backends",
            backend,
            "--distill-backend",
            backend,
            "--data",
            str(tiny_data),
            "--out",
            str(out),
            "--deadline-s",
            "1500",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=str(REPO),
    )
    log = proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, log
    assert "(blocked)" not in proc.stderr, log
    summary = json.loads((out / "kit.json").read_text())
    assert summary["parts"]["step_time"]["status"] == "ok"
    assert summary["parts"]["distill"]["status"] == "ok"
    assert summary["ratios"][backend]["ratio"] > 0
    assert f"[{backend}] MTA / KD step time:" in proc.stdout
    step = json.loads((out / "step_time.json").read_text())
    assert set(step["results"][0]["variants"]) == {"kd", "mta"}

    report = json.loads((out / "distill.json").read_text())
    assert report["backend"] == backend
    assert report["teacher"]["steps"] == 4
    assert report["skipped"] == []
    runs = {(r["variant"], r["seed"]) for r in report["runs"]}
    assert runs == {(v, s) for v in ("sft", "kd", "mta") for s in (0, 1)}
    for run in report["runs"]:
        assert run["steps"] == 3
        assert [s for s, _ in run["valid_loss"]] == [2, 3]
        assert np.isfinite(run["final_valid_loss"])
    valid = np.load(tiny_data / "valid.npz")
    with np.load(out / "generations.npz") as f:
        assert sorted(f.files) == sorted(
            ["teacher"] + [f"{v}_s{s}" for v, s in runs]
        )
        for key in f.files:
            ids = f[key]
            assert ids.shape == valid["prompt_ids"].shape, key
            # Generation keeps the prompt and writes after it.
            mask = valid["prompt_mask"].astype(bool)
            np.testing.assert_array_equal(ids[mask], valid["prompt_ids"][mask])

    # Scored here: ROUGE-L per run, paired differences per seed.
    report, rouge, scored = score.score(out, tiny_data)
    text, differences = score.table(report, rouge, scored)
    assert set(rouge) == {"teacher"} | {f"{v}_s{s}" for v, s in runs}
    assert all(0.0 <= r <= 100.0 for r in rouge.values())
    assert len(differences["mta-kd:rouge_l"]["per_seed"]) == 2
    assert "| MTA - KD | rouge_l | 2 |" in text
