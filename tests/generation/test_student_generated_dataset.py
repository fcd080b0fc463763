import threading

import numpy as np
import pytest

from keras_mta.generation import GenerationSchedule
from keras_mta.generation import StudentGeneratedDataset
from tests.generation.fake_responder import FakeResponder
from tests.generation.fake_responder import examples

pytestmark = pytest.mark.once


def dataset(mode="adaptive", threshold=0.0, capacity=3, count=10, **kwargs):
    arrays, prompts = examples(count)
    schedule = GenerationSchedule(
        mode=mode,
        total_steps=40,
        init_threshold=threshold,
        capacity=capacity,
        on_policy_fraction=kwargs.pop("fraction", 0.5),
        seed=7,
    )
    return StudentGeneratedDataset(
        arrays,
        prompts,
        batch_size=4,
        responder=FakeResponder(),
        schedule=schedule,
        seed=7,
        **kwargs,
    )


def test_threshold_zero_trains_on_the_data_only():
    data = dataset(threshold=0.0)
    seen = []
    for step in range(6):
        x, y, sample_weight = data[step]
        assert x["token_ids"].shape == (4, 6)
        seen += list(x["token_ids"][:, 0])
    assert data.responder.calls == []
    assert set(data.sources.values()) == {"ground_truth"}
    # Passes of 10 // 4 = 2 batches, each a seeded permutation.
    assert len(set(seen[:8])) == 8
    assert data.num_batches is None


def test_generated_batches_answer_the_batch_prompts():
    data = dataset(mode="on_policy", fraction=1.0)
    for step in range(5):
        x, _, _ = data[step]
        rows = data.rows(step)
        assert data.responder.calls[step] == [f"prompt {i}" for i in rows]
        assert np.all(x["token_ids"] >= 24)
    assert data.buffer is None


def test_adaptive_fills_the_buffer_then_replays():
    data = dataset(threshold=1.0, capacity=3)
    for step in range(30):
        data[step]
    sources = [data.sources[s] for s in range(30)]
    # r < 1 always: the first `capacity` steps generate (buffer filling),
    # then generate with probability s (decreasing) or replay.
    assert sources[:3] == ["generate"] * 3
    assert "replay" in sources and "ground_truth" not in sources
    assert len(data.buffer) == 3
    assert len(data.responder.calls) == sources.count("generate")


def test_a_batch_asked_twice_is_made_once():
    data = dataset(mode="on_policy", fraction=1.0)
    first = data[0]
    data[1]
    again = data[0]
    assert len(data.responder.calls) == 2
    np.testing.assert_array_equal(first[0]["token_ids"], again[0]["token_ids"])


def test_resume_with_a_non_empty_buffer_continues_the_same_draws(tmp_path):
    whole = dataset(threshold=0.8, capacity=4)
    batches = [whole[step] for step in range(24)]
    first = dataset(threshold=0.8, capacity=4)
    for step in range(12):
        first[step]
    path = str(tmp_path / "generation.npz")
    first.save_state(path, step=12)
    assert len(first.buffer) > 0
    resumed = dataset(threshold=0.0, capacity=4)
    resumed.responder.calls = [None] * len(first.responder.calls)
    resumed.load_state(path)
    assert resumed.schedule.threshold == pytest.approx(0.8)
    assert resumed.buffer.steps == first.buffer.steps
    # The next fit reads index 0 as global step 12.
    for index in range(12):
        x, y, sample_weight = resumed[index]
        want = batches[12 + index]
        np.testing.assert_array_equal(x["token_ids"], want[0]["token_ids"])
        np.testing.assert_array_equal(y, want[1])
        assert resumed.sources[12 + index] == whole.sources[12 + index]
    assert {whole.sources[s] for s in range(12, 24)} >= {"replay", "generate"}


def test_start_at_forgets_batches_made_ahead():
    data = dataset(threshold=1.0, capacity=10)
    for step in range(6):
        data[step]
    assert data.buffer.steps == [0, 1, 2, 3, 4, 5]
    data.start_at(4)
    assert data.buffer.steps == [0, 1, 2, 3]
    assert sorted(data.sources) == [0, 1, 2, 3]
    data[0]  # global step 4 again
    assert data.buffer.steps == [0, 1, 2, 3, 4]


def test_a_responder_batch_of_another_shape_is_refused():
    data = dataset(mode="on_policy", fraction=1.0)
    generate = data.responder.generate_batch

    def short(prompts):
        x, y, sample_weight = generate(prompts)
        x["word_units"] = x["word_units"][:, :2]
        return x, y, sample_weight

    data.responder.generate_batch = short
    with pytest.raises(
        ValueError, match=r"x\['word_units'\]: got shape \(4, 2, 2\)"
    ):
        data[0]


def test_bad_construction_names_the_problem():
    arrays, prompts = examples(10)
    schedule = GenerationSchedule(total_steps=10)
    with pytest.raises(ValueError, match="one row per example"):
        StudentGeneratedDataset(arrays, prompts[:9], 4, None, schedule)
    with pytest.raises(ValueError, match="fewer than one batch"):
        StudentGeneratedDataset(arrays, prompts, 16, None, schedule)
    with pytest.raises(ValueError, match="workers=1"):
        StudentGeneratedDataset(arrays, prompts, 4, None, schedule, workers=2)


def test_overlap_submits_ahead_and_gives_the_same_batches():
    plain = dataset(threshold=0.7, capacity=3)
    ahead = dataset(threshold=0.7, capacity=3, overlap=True)
    for step in range(20):
        want, got = plain[step], ahead[step]
        # (What `batch` does itself off jax, and GenerationMetrics under
        # jax; a second call for the same step submits nothing.)
        ahead.submit_ahead(step + 1)
        np.testing.assert_array_equal(want[0]["token_ids"], got[0]["token_ids"])
    assert ahead.sources == plain.sources
    assert ahead.responder.submitted
    assert len(ahead.responder.calls) == len(plain.responder.calls)
    generated = [s for s in range(20) if plain.sources[s] == "generate"]
    assert len(ahead.responder.submitted) >= len(generated) - 3


def test_overlap_waits_for_a_pending_validation_measure():
    data = dataset(mode="on_policy", fraction=1.0, overlap=True)
    data.hold_from(3, training_thread=threading.get_ident())
    assert data.submit_ahead(2)
    assert not data.submit_ahead(2)  # one at a time
    data[2]
    assert not data.submit_ahead(3)  # its decision waits for the measure
    data.start_at(0)
    assert data._pending is None


def test_a_batch_that_waits_too_long_for_its_measure_is_an_error(
    monkeypatch,
):
    # The training thread, inside `fit`, holds batches from step 2 on (a
    # validation measure due there); a reader that asks for step 2 and is
    # never released gets an error naming the step and the fix, not a
    # silent hang.
    from keras_mta.generation import student_generated_dataset as module

    monkeypatch.setattr(module, "DECISION_WAIT_S", 0.2)
    data = dataset(threshold=0.5)
    release = threading.Event()

    def fit():  # the training loop, inside `model.fit`
        data.hold_from(2, threading.get_ident())
        release.wait(timeout=30)

    trainer = threading.Thread(target=fit)
    trainer.start()
    assert _until(lambda: data._hold == 2)
    data[1]  # before the measure: made at once
    with pytest.raises(RuntimeError, match="step 2 waited .* at step 2"):
        data[2]
    release.set()
    trainer.join()
    data.hold_from(None)
    data[2]  # released: made


def test_a_reader_stops_waiting_once_the_training_thread_left_fit():
    # A `fit` that raised never reaches `on_train_end`: once its thread is
    # out of `fit`, a reader waiting for its measure gets the data's own
    # batch (never trained on) and nothing is drawn or recorded.
    data = dataset(threshold=1.0)
    data.hold_from(1, threading.get_ident())  # this thread is in no `fit`
    got = []
    _reader(data, 1, got).join(timeout=10)
    assert got and 1 not in data.sources and data.responder.draws == 0
    np.testing.assert_array_equal(got[0][1], data.ground_truth(1)[1])


def _reader(data, step, into):
    """A thread that asks for `step`'s batch, as TensorFlow's prefetching
    thread does; its result goes into `into`."""
    thread = threading.Thread(target=lambda: into.append(data[step]))
    thread.start()
    return thread


def _until(condition, seconds=10.0):
    import time

    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_a_batch_read_ahead_of_the_end_of_fit_is_not_made():
    # The fit trains steps 0 and 1 and ends; a reader of step 2 (what
    # TensorFlow's prefetching asks for) waits for the measure at step 2,
    # and, released by the end of the fit, gets the data's own batch:
    # nothing drawn, generated, pushed or recorded.
    # (The calls run inside a function named `fit`, as the
    # training thread's do: see `_training_thread_in_fit`.)
    def fit():
        data = dataset(threshold=1.0)
        data.begin_fit(threading.get_ident())
        data.hold_from(2, threading.get_ident())
        data[0], data[1]
        made, draws = dict(data.sources), data.responder.draws
        got = []
        reader = _reader(data, 2, got)
        assert _until(lambda: data.waiting == 1)
        data.end_fit()
        reader.join(timeout=10)
        assert not reader.is_alive() and data.waiting == 0
        np.testing.assert_array_equal(got[0][1], data.ground_truth(2)[1])
        after = []
        _reader(data, 3, after).join(timeout=10)  # asked for after the end
        np.testing.assert_array_equal(after[0][1], data.ground_truth(3)[1])
        assert data.sources == made and data.responder.draws == draws
        assert len(data.buffer) == sum(s == "generate" for s in made.values())
        # The training thread itself still makes batches after the end, and a
        # new fit lets readers make them again.
        data[2]
        assert data.sources[2] in ("generate", "replay")
        data.begin_fit(threading.get_ident())
        _reader(data, 3, after).join(timeout=10)
        assert 3 in data.sources

    fit()


def test_a_fit_left_by_an_exception_is_ended_by_the_next_fit_on_its_thread():
    # A fit that raised never reaches `on_train_end`: its reader would
    # wait for a measure forever (and hold one of TensorFlow's threads).
    # The next fit on the same thread, on any dataset, ends it.
    # (The calls run inside a function named `fit`, as the
    # training thread's do: see `_training_thread_in_fit`.)
    def fit():
        left, fresh = dataset(threshold=1.0), dataset(threshold=1.0)
        left.begin_fit(threading.get_ident())
        left.hold_from(1, threading.get_ident())
        got = []
        reader = _reader(left, 1, got)
        assert _until(lambda: left.waiting == 1)
        fresh.begin_fit(threading.get_ident())
        reader.join(timeout=10)
        assert not reader.is_alive() and left.waiting == 0
        assert 1 not in left.sources and left.responder.draws == 0
        # A fit begun again on the same dataset ends its own earlier one too.
        fresh.hold_from(1, threading.get_ident())
        reader = _reader(fresh, 1, got)
        assert _until(lambda: fresh.waiting == 1)
        fresh.begin_fit(threading.get_ident())
        reader.join(timeout=10)
        assert not reader.is_alive() and 1 not in fresh.sources

    fit()


def test_a_reader_waits_for_the_batch_the_training_thread_generates():
    # With `GenerationMetrics` (`makes_generated=True`) the training thread
    # samples every batch to be generated when its step begins; a reader
    # (TensorFlow's prefetching thread) gets the ground-truth batches at
    # once and waits for the generated ones, so the student never samples
    # with the weights of a step still training. (Inside a function named
    # `fit`, as the training thread's calls are.)
    def fit():
        data = dataset(mode="on_policy", fraction=1.0)
        data.begin_fit(threading.get_ident(), makes_generated=True)
        got = []
        reader = _reader(data, 0, got)
        assert _until(lambda: data.waiting == 1)
        assert data.responder.draws == 0 and 0 not in data.sources
        data.batch(0)  # the training thread, when step 0 begins
        reader.join(timeout=10)
        assert not reader.is_alive() and data.responder.draws == 1
        assert got[0] is data.batch(0)
        # Another callback's `begin_fit` leaves it on; the end of the fit
        # turns it off.
        data.begin_fit(threading.get_ident())
        assert data._trainer_generates
        data.end_fit()
        assert not data._trainer_generates

    fit()


def test_a_batch_asked_for_an_older_fit_is_not_made():
    # A reader let through for one fit that gets its turn to make the
    # batch only once a newer fit has begun (it waited for the batch being
    # made) is stale: it gets the data's own batch and records nothing.
    def fit():
        data = dataset(mode="on_policy", fraction=1.0)
        data.begin_fit(threading.get_ident())
        got = []
        with data._making:  # a batch being made
            reader = _reader(data, 3, got)
            assert _until(lambda: reader.is_alive() and not got)
            import time

            time.sleep(0.2)  # the reader is past its checks, at the lock
            data.begin_fit(threading.get_ident())  # a newer fit
        reader.join(timeout=10)
        assert 3 not in data.sources and data.responder.draws == 0
        np.testing.assert_array_equal(got[0][1], data.ground_truth(3)[1])

    fit()
