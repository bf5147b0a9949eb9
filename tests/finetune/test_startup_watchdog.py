"""`StartupWatchdog` and `distributed.startup_watchdog`, on their own.

The watchdog ends its process, so each expiry runs in a child process.
The child loads `startup_watchdog.py` on its own, not through the package
(whose `__init__` imports Keras and TensorFlow): the watchdog needs only the
standard library, and the child starts in a fraction of a second instead of
several seconds. The multi-worker runs it guards, in TensorFlow processes,
are in `test_worker_death.py`.
"""

import json
import os
import subprocess
import sys
import textwrap
import threading

import keras
import numpy as np
import pytest

from keras_lowrank.finetune import FinetuneOptions
from keras_lowrank.finetune import distributed
from keras_lowrank.finetune import startup_watchdog
from keras_lowrank.finetune.startup_watchdog import EXIT_STATUS
from keras_lowrank.finetune.startup_watchdog import StartupWatchdog

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Expiring, the child is ended by its watchdog within its 3 s sleep.
# Disarmed, it waits for the watchdog's timer thread to end instead (a
# timer that has ended can no longer fire; one that was not cancelled would
# fire at `timeout` and end the child first), where a sleep past the
# timeout took 3 s.
_CHILD = textwrap.dedent("""
    import importlib.util, sys, threading, time
    module, folder, timeout, disarm = (
        sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4] == "disarm")
    spec = importlib.util.spec_from_file_location("startup_watchdog", module)
    startup_watchdog = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(startup_watchdog)
    watchdog = startup_watchdog.StartupWatchdog(
        timeout, "the workers did not start", prefix="test: ")
    watchdog.remove_on_expiry(folder)
    watchdog.start()
    if disarm:
        watchdog.disarm()
        for thread in threading.enumerate():
            if isinstance(thread, threading.Timer):
                thread.join(timeout=30)
                assert not thread.is_alive()
    else:
        time.sleep(3)
    print("still running")
""")


def _child(folder, timeout, mode):
    environ = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-c", _CHILD, startup_watchdog.__file__, str(folder),
         str(timeout), mode],
        cwd=ROOT, env=environ, capture_output=True, text=True, timeout=300)


def test_an_expired_watchdog_removes_its_folders_and_ends_the_process(tmp_path):
    folder = tmp_path / "build"
    (folder / "inner").mkdir(parents=True)
    (folder / "inner" / "adapters.safetensors").write_bytes(b"partial")
    done = _child(folder, 0.5, "keep")
    assert done.returncode == EXIT_STATUS == 3
    assert done.stderr.splitlines()[-1] == "test: the workers did not start"
    assert "still running" not in done.stdout
    assert not folder.exists()


def test_a_disarmed_watchdog_leaves_the_process_alone(tmp_path):
    folder = tmp_path / "build"
    folder.mkdir()
    done = _child(folder, 0.5, "disarm")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "still running"
    assert folder.exists()


def _new_timers(before):
    """The `threading.Timer` threads started since `before` was taken."""
    return [thread for thread in threading.enumerate()
            if thread not in before and isinstance(thread, threading.Timer)]


def _assert_stopped(timers):
    """Each timer's thread ends (cancelled: an expiry would have ended this
    process), waited for with `join`, never with a sleep."""
    for timer in timers:
        timer.join(timeout=30)
        assert not timer.is_alive()


def test_the_first_training_step_disarms_it():
    before = set(threading.enumerate())
    watchdog = StartupWatchdog(600, "unused").start()
    (timer,) = _new_timers(before)
    assert timer.is_alive() and timer.interval == 600
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.compile(optimizer="sgd", loss="mse")
    seen = []

    class Probe(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append((batch, watchdog.disarmed))

    model.fit(np.ones((8, 3)), np.ones((8, 2)), batch_size=4, epochs=1, verbose=0,
              callbacks=[Probe(), watchdog.disarm_after_first_step()])
    # Armed through the first step, disarmed from the second on.
    assert seen == [(0, False), (1, True)]
    _assert_stopped([timer])


@pytest.fixture
def worker1(monkeypatch):
    """This process as worker 1 of a two-worker `TF_CONFIG` (no strategy)."""
    monkeypatch.setenv("TF_CONFIG", json.dumps({
        "cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
        "task": {"type": "worker", "index": 1}}))
    return FinetuneOptions(out="runs/demo", distribute="multi-worker",
                           startup_timeout=90)


def test_a_multi_worker_run_is_watched_until_the_block_ends(worker1):
    before = set(threading.enumerate())
    with distributed.startup_watchdog(worker1) as watchdog:
        timers = _new_timers(before)
        assert len(timers) == 1 and timers[0].is_alive()
        assert watchdog.timeout_s == 90.0 and not watchdog.disarmed
        assert watchdog.line == (
            "keras-lowrank finetune: error: multi-worker training stopped: the "
            "workers did not all finish the first training step within 90 s of "
            "meeting (one hung or is far slower before training, and "
            "TensorFlow waits for it without a limit: check each worker's "
            "output); this worker wrote nothing (the chief writes --out "
            "'runs/demo'). Run the same command again on every worker "
            "(--startup-timeout sets the limit).")
    assert watchdog.disarmed
    _assert_stopped(timers)


def test_an_error_disarms_it(worker1):
    before = set(threading.enumerate())
    with pytest.raises(ValueError, match="stage failed"):
        with distributed.startup_watchdog(worker1) as watchdog:
            timers = _new_timers(before)
            assert len(timers) == 1 and timers[0].interval == 90.0
            assert timers[0].is_alive()  # armed inside the block
            raise ValueError("stage failed")
    assert watchdog.disarmed
    _assert_stopped(timers)


def test_the_chief_says_out_is_as_it_was_and_the_default_is_30_minutes(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps({
        "cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
        "task": {"type": "worker", "index": 0}}))
    options = FinetuneOptions(out="runs/demo", distribute="multi-worker")
    with distributed.startup_watchdog(options) as watchdog:
        assert watchdog.timeout_s == 1800.0
        assert ("within 1800 s of meeting" in watchdog.line and "; nothing was written: "
                "--out 'runs/demo' is as it was. Run the same" in watchdog.line)


def test_a_worker_that_did_not_register_is_named(worker1, monkeypatch):
    import tensorflow as tf

    # What the chief's strategy raised when worker 1 was never started
    # (measured, first lines).
    message = ("Barrier timed out. Id: [Init]Wait_for_all_tasks_to_register::0. "
               "This usually happens because a task triggered the barrier too "
               "early or too slowly.\n# of tasks that reached the barrier: "
               "1/2.\nThe first task at the barrier: /job:worker/replica:0/"
               "task:0. Some timed out task names:\n/job:worker/replica:0/task:1\n")
    chief = dict(json.loads(os.environ["TF_CONFIG"]), task={"type": "worker", "index": 0})
    monkeypatch.setenv("TF_CONFIG", json.dumps(chief))
    with pytest.raises(distributed.WorkerLostError) as raised:
        with distributed.worker_loss_reported(worker1):
            raise tf.errors.DeadlineExceededError(None, None, message)
    assert str(raised.value) == (
        "multi-worker training stopped: lost worker 1 (it did not register "
        "within 90 s: it never started, or TF_CONFIG gives another address); "
        "nothing was written: --out 'runs/demo' is as it was. Run the same "
        "command again on every worker.")


def test_one_machine_runs_are_not_watched():
    before = threading.active_count()
    for options in (FinetuneOptions(), FinetuneOptions(distribute="mirrored")):
        with distributed.startup_watchdog(options) as watchdog:
            assert watchdog is None
    assert threading.active_count() == before
