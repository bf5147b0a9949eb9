"""`keras-lowrank finetune --distribute multi-worker` when a worker is lost.

Two MultiWorkerMirroredStrategy workers on 127.0.0.1 start a long run to
an `--out` that holds an earlier run (`EARLIER_RUN`); then worker 1 is
killed (SIGKILL) as its second epoch begins, or it hangs alive before
training (in `add_adapters`), or it never starts.
The chief must stop within a bounded time with one line on stderr and exit
status 3, and leave the earlier `--out` as it was, byte for byte, with no
temporary folder beside it.

Most of each run is waiting (for the heartbeats, for the start-up
timeout), so the three overlap (`Runs`): the hang's 30 s pass while the
dead worker's run trains (the file's tests took 73 s on a loaded machine,
105 s with the hang's run started after the kill).
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from keras_lowrank.cli.finetune_command import WORKER_LOST
from keras_lowrank.finetune import FinetuneOptions
from keras_lowrank.finetune import distributed
from tests.distribute.conftest import free_ports
from tests.finetune.conftest import snapshot

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Each worker's start (TensorFlow, the preset, the first traced step) on a
# busy 2-core machine, with room to spare (measured: ~30 s).
START_LIMIT_S = 180
# From the kill to the chief's exit: TensorFlow's coordination service
# waits 10 s for a heartbeat (measured: ~20 s on 2 busy cores), well
# before COLLECTIVE_TIMEOUT_S.
STOP_LIMIT_S = 90


# Worker 1 of the hang test: stuck, alive, where it adapts its model.
_HANG_IN_ADD_ADAPTERS = (
    "import time, keras_lowrank\n"
    "keras_lowrank.add_adapters = lambda *args, **kwargs: time.sleep(10**6)\n"
)


def _launch(folder, index, cluster, argv, prelude=""):
    environ = {key: value for key, value in os.environ.items()
               if key not in ("TF_CONFIG", "KERAS_BACKEND")}
    environ.update({
        "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONUNBUFFERED": "1", "TMPDIR": str(folder),
        "TF_CONFIG": json.dumps({"cluster": cluster,
                                 "task": {"type": "worker", "index": index}}),
    })
    with open(folder / f"worker{index}.out", "w") as stdout, \
            open(folder / f"worker{index}.err", "w") as stderr:
        start = (prelude + "import sys\nfrom keras_lowrank.cli.main import main\n"
                 "sys.exit(main(sys.argv[1:]))")
        return subprocess.Popen(
            [sys.executable, "-c", start, *argv],
            cwd=ROOT, env=environ, stdout=stdout, stderr=stderr)


def _one_device_args(folder, out, preset, train_csv):
    """A quick `finetune` of the tiny preset, without exports, to `out`."""
    return ["finetune", "--quiet", "--model", preset, "--train", train_csv,
            "--sequence-length", "12", "--batch-size", "4", "--export", "none",
            "--no-phone-artifacts", "--cache-dir", str(folder / "cache"),
            "--out", str(out)]


# An earlier run folder: a run's files (the chief takes --out for an
# earlier output of its kind by their names), each with bytes no new run
# would write, so that any file written over them shows.
EARLIER_RUN = {"adapters.safetensors": b"earlier adapters",
               "report.json": b'{"test_accuracy": 0.5}\n',
               "training_curves.png": b"earlier png"}


def _earlier_run_at(out):
    """Writes `EARLIER_RUN` to the folder `out`; returns its snapshot."""
    out.mkdir(parents=True)
    for name, content in EARLIER_RUN.items():
        (out / name).write_bytes(content)
    return snapshot(out)


def _kill_left(*processes):
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def _wait_for(path, text, process, limit_s):
    deadline = time.monotonic() + limit_s
    while text not in path.read_text():
        assert process.poll() is None, (
            f"{path.stem} exited {process.returncode} before {text!r}:\n"
            f"{path.with_suffix('.err').read_text()[-3000:]}")
        assert time.monotonic() < deadline, f"no {text!r} in {path.name} after {limit_s} s"
        time.sleep(0.2)


class Run:
    """One test's workers; `folder` is their TMPDIR and holds their
    `worker<i>.out` and `.err`."""

    def __init__(self, folder, out, before, workers):
        self.folder, self.out, self.before, self.workers = folder, out, before, workers
        self.started = time.monotonic()


class Runs:
    """The multi-worker runs of the tests here that this session runs;
    `runs[test]` is one. The first `runs[...]` starts the hang's workers,
    then, once its chief waits idle in its model stage, the dead worker's
    run; the never-started one's starts after the kill (`start(NEVER)`).
    So the hang's chief reads its data (within its start-up timeout)
    before the other run competes for the cores, and the kill lands with
    its two workers alone at work: with all five started at once, the
    chief once lost worker 1 to "recvmsg:Connection reset by peer"
    (`test_a_reset_connection_names_the_worker_killed_mid_step`)."""

    def __init__(self, wanted, tmp_path_factory, preset, train_csv):
        self.wanted, self.factory = wanted, tmp_path_factory
        self.preset, self.train_csv = preset, train_csv
        self.ports = iter(free_ports(6))  # one call: the clusters' are distinct
        self.started = {}

    def __getitem__(self, test):
        if not self.started:
            self.start(HUNG)
            if HUNG in self.started and DEAD in self.wanted:
                self._wait_until_idle(self.started[HUNG])
            self.start(DEAD)
        self.start(test)  # the never-started one's, if not started yet
        return self.started[test]

    def start(self, test):
        """Starts the run of `test`, if this session runs it, once."""
        if test in self.wanted and test not in self.started:
            self.started[test] = self._launch(test)

    @staticmethod
    def _wait_until_idle(run):
        """Until the hang's chief waits in its model stage, or one of its
        workers exited, or `START_LIMIT_S` passed (its test checks which)."""
        chief = run.folder / "worker0.out"
        deadline = time.monotonic() + START_LIMIT_S
        while ("[2/6] model ..." not in chief.read_text()
               and all(worker.poll() is None for worker in run.workers)
               and time.monotonic() < deadline):
            time.sleep(0.2)

    def _launch(self, test):
        folder = self.factory.mktemp("death")
        earlier = test != NEVER
        out = folder / "runs" / "run" if earlier else folder / "run"
        before = _earlier_run_at(out) if earlier else None
        args = _one_device_args(folder, out, self.preset, self.train_csv)
        preludes = ("", "")
        if test == DEAD:
            # Far more epochs than run before the kill: the chief cannot finish.
            argv = [*args, "--epochs", "1000", "--patience", "1000"]
        elif test == HUNG:
            argv = [*args, "--epochs", "2", "--startup-timeout", str(NO_START_TIMEOUT_S)]
            preludes = ("", _HANG_IN_ADD_ADAPTERS)
        else:
            argv = [*args, "--startup-timeout", str(REGISTER_TIMEOUT_S)]
            preludes = ("",)  # worker 1 is never launched
        argv += ["--distribute", "multi-worker"]
        cluster = {"worker": [f"127.0.0.1:{next(self.ports)}" for _ in range(2)]}
        workers = [_launch(folder, index, cluster, argv, prelude)
                   for index, prelude in enumerate(preludes)]
        return Run(folder, out, before, workers)


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory, tiny_preset, tiny_train_csv):
    """The `Runs` of this file; their processes are killed at its end."""
    wanted = {item.originalname for item in request.session.items
              if item.module.__name__ == __name__}
    started = Runs(wanted, tmp_path_factory, tiny_preset, tiny_train_csv)
    try:
        yield started
    finally:
        for run in started.started.values():
            _kill_left(*run.workers)


def test_a_dead_worker_stops_the_chief_in_one_line_and_leaves_out_as_it_was(runs):
    run = runs[DEAD]
    workers, out = run.workers, run.out
    try:
        _wait_for(run.folder / "worker1.out", "Epoch 2/", workers[1], START_LIMIT_S)
        assert workers[0].poll() is None
        workers[1].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        runs.start(NEVER)  # after the kill, while this chief waits (`Runs`)
        code = workers[0].wait(timeout=STOP_LIMIT_S)
        print(f"the chief stopped {time.monotonic() - killed:.1f} s after the kill")
    finally:
        _kill_left(*workers)

    err = (run.folder / "worker0.err").read_text()
    ours = [line for line in err.splitlines() if line.startswith("keras-lowrank")]
    assert code == WORKER_LOST, err[-3000:]
    assert "Traceback" not in err
    # The chief learns it from the missing heartbeats, or first from a
    # step's connection refused (measured: 1 run in 4).
    causes = ["it stopped sending heartbeats: it died or was killed",
              "its address refuses connections: it died or was killed"]
    assert ours in [[
        "keras-lowrank finetune: error: multi-worker training stopped: lost "
        f"worker 1 ({cause}); nothing was written: --out '{out}' is as it "
        "was. Run the same command again on every worker."] for cause in causes]
    # The earlier run's files, byte for byte; the chief's build folder
    # (`.run.<pid>-<host>.<hex>.tmp`, beside `--out`) is gone.
    assert snapshot(out) == run.before
    assert os.listdir(out.parent) == ["run"]


def _no_start_line(out, chief=True):
    outcome = (f"nothing was written: --out '{out}' is as it was" if chief else
               f"this worker wrote nothing (the chief writes --out '{out}')")
    return ("keras-lowrank finetune: error: multi-worker training stopped: the "
            "workers did not all finish the first training step within "
            f"{NO_START_TIMEOUT_S} s of meeting (one hung or is far slower "
            "before training, and TensorFlow waits for it without a limit: "
            f"check each worker's output); {outcome}. Run the same command "
            "again on every worker (--startup-timeout sets the limit).")


# --startup-timeout of the hang test: the two workers, started together,
# must register within it, and the chief must then reach its model stage
# (its data stage: measured 1 s idle, 2.6 s with 2 busy loops on the 2
# cores; 15 s was too short once, with 5 test processes on the 2 cores);
# its watchdog ends it this long after registration.
NO_START_TIMEOUT_S = 30
# --startup-timeout of the test whose worker 1 never starts: the chief
# waits this long for it to register (0.5 s and 1 s, measured on 2 busy
# cores, gave this test's outcome).
REGISTER_TIMEOUT_S = 1


def test_a_worker_hung_before_training_stops_both_in_one_line(runs):
    run = runs[HUNG]
    workers, out = run.workers, run.out
    try:
        codes = [worker.wait(timeout=NO_START_TIMEOUT_S + START_LIMIT_S)
                 for worker in workers]
        print(f"both stopped {time.monotonic() - run.started:.1f} s after the start")
    finally:
        _kill_left(*workers)

    assert codes == [WORKER_LOST, WORKER_LOST]
    # The chief had built its run folder and was waiting in the model
    # stage, where TensorFlow broadcasts the initial values.
    assert "[2/6] model ..." in (run.folder / "worker0.out").read_text()
    for index, chief in ((0, True), (1, False)):
        err = (run.folder / f"worker{index}.err").read_text()
        ours = [line for line in err.splitlines() if line.startswith("keras-lowrank")]
        assert ours == [_no_start_line(out, chief)], err[-3000:]
        assert "Traceback" not in err
    assert snapshot(out) == run.before
    assert os.listdir(out.parent) == ["run"]
    # Worker 1's scratch run folder (in its TMPDIR, this test's folder) too.
    assert not [name for name in os.listdir(run.folder)
                if name.startswith("klr-finetune-")]


def test_a_worker_that_never_starts_stops_the_chief_in_one_line(runs):
    run = runs[NEVER]
    (chief,), out = run.workers, run.out
    try:
        code = chief.wait(timeout=REGISTER_TIMEOUT_S + START_LIMIT_S)
    finally:
        _kill_left(chief)
    err = (run.folder / "worker0.err").read_text()
    assert code == WORKER_LOST, err[-3000:]
    assert "Traceback" not in err
    ours = [line for line in err.splitlines() if line.startswith("keras-lowrank")]
    assert ours == [
        "keras-lowrank finetune: error: multi-worker training stopped: lost "
        f"worker 1 (it did not register within {REGISTER_TIMEOUT_S} s: it never "
        "started, or TF_CONFIG gives another address); nothing was written: "
        f"--out '{out}' is as it was. Run the same command again on every worker."]
    # It waited in TensorFlow's start-up, before the first stage.
    assert (run.folder / "worker0.out").read_text() == ""
    assert not out.exists()


# The tests of the three runs, as `runs` knows them.
DEAD = test_a_dead_worker_stops_the_chief_in_one_line_and_leaves_out_as_it_was.__name__
HUNG = test_a_worker_hung_before_training_stops_both_in_one_line.__name__
NEVER = test_a_worker_that_never_starts_stops_the_chief_in_one_line.__name__


@pytest.fixture
def worker1(monkeypatch):
    """This process as worker 1 of a two-worker `TF_CONFIG` (no strategy)."""
    monkeypatch.setenv("TF_CONFIG", json.dumps({
        "cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
        "task": {"type": "worker", "index": 1}}))
    return FinetuneOptions(out="runs/demo", distribute="multi-worker")


def test_a_collective_timeout_is_one_line(worker1):
    import tensorflow as tf

    with pytest.raises(distributed.WorkerLostError) as raised:
        with distributed.worker_loss_reported(worker1):
            raise tf.errors.DeadlineExceededError(
                None, None, "Collective has timed out waiting for other workers.")
    assert str(raised.value) == (
        "multi-worker training stopped: lost another worker (a collective step "
        f"waited {distributed.COLLECTIVE_TIMEOUT_S} s for it: it hung or is far "
        "slower); this worker wrote nothing (the chief writes --out "
        "'runs/demo'). Run the same command again on every worker.")
    assert isinstance(raised.value.__cause__, tf.errors.DeadlineExceededError)


def test_a_closed_socket_names_the_chief(worker1):
    import tensorflow as tf

    # What worker 1 received when the chief was killed (measured).
    message = ("Graph execution error:\n\nCollective ops is aborted by: Socket "
               "closed\nAdditional GRPC error information from remote target "
               "/job:worker/replica:0/task:0 while calling "
               "/tensorflow.WorkerService/RecvBuf:\n")
    with pytest.raises(distributed.WorkerLostError, match=(
            r"^multi-worker training stopped: lost worker 0 \(its address "
            r"refuses connections: it died or was killed\); this worker wrote "
            r"nothing")):
        with distributed.worker_loss_reported(worker1):
            raise tf.errors.UnavailableError(None, None, message)


def test_a_reset_connection_names_the_worker_killed_mid_step(monkeypatch):
    import tensorflow as tf

    monkeypatch.setenv("TF_CONFIG", json.dumps({
        "cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
        "task": {"type": "worker", "index": 0}}))
    chief = FinetuneOptions(out="runs/demo", distribute="multi-worker")
    # What the chief received when worker 1 was killed while other runs
    # started (measured): the connection dropped mid-step.
    message = ("Collective ops is aborted by: recvmsg:Connection reset by peer\n"
               "Additional GRPC error information from remote target "
               "/job:worker/replica:0/task:1 while calling "
               "/tensorflow.WorkerService/RecvBuf:\n")
    with pytest.raises(distributed.WorkerLostError, match=(
            r"^multi-worker training stopped: lost worker 1 \(its address "
            r"refuses connections: it died or was killed\); nothing was "
            r"written: --out 'runs/demo' is as it was")):
        with distributed.worker_loss_reported(chief):
            raise tf.errors.UnavailableError(None, None, message)


def test_other_errors_pass_as_they_are(worker1):
    import tensorflow as tf

    unrelated = tf.errors.UnavailableError(None, None, "gs://bucket is unreachable")
    with pytest.raises(tf.errors.UnavailableError, match="gs://bucket"):
        with distributed.worker_loss_reported(worker1):
            raise unrelated
    one_device = FinetuneOptions(out="runs/demo")
    with pytest.raises(tf.errors.UnavailableError, match="Collective"):
        with distributed.worker_loss_reported(one_device):
            raise tf.errors.UnavailableError(None, None, "Collective ops is aborted")


def test_the_python_api_raises_the_one_line_error(worker1, monkeypatch, tmp_path):
    import tensorflow as tf

    from keras_lowrank.finetune import pipeline

    # The strategy stands aside (it would dial the two workers of
    # TF_CONFIG); the run fails inside as a killed peer makes it fail.
    monkeypatch.setattr(distributed, "make_strategy", lambda options: None)

    def lost(*args, **kwargs):
        raise tf.errors.UnavailableError(
            None, None, "Collective ops is aborted by: Socket closed\nfrom "
            "remote target /job:worker/replica:0/task:0")

    monkeypatch.setattr(pipeline, "_run", lost)
    out = tmp_path / "run"
    options = FinetuneOptions(out=str(out), distribute="multi-worker")
    with pytest.raises(distributed.WorkerLostError, match=(
            r"^multi-worker training stopped: lost worker 0 \(its address "
            r"refuses connections")) as raised:
        pipeline.finetune(options, log=lambda line: None)
    assert "\n" not in str(raised.value)
    assert os.listdir(tmp_path) == []
