"""`FinetuneOptions.distribute`: the strategy a run trains under, and who writes.

A distributed run uses TensorFlow's own engines through
`keras_lowrank.distribution`: the classifier is built, adapted and compiled
in the strategy's scope, `fit` splits each global batch (`batch_size`) over
the replicas, and the training data is sharded by data (every worker builds
the same batches and keeps its replicas' rows of each), so step k trains on
the batch a one-device run trains on at step k.

Files are written once, by the chief (`klr.distribution.is_chief`):
- "mirrored": one process, the chief; it trains on every GPU of the
  machine, else on every logical CPU device (one, unless the process split
  its CPU with `tf.config.set_logical_device_configuration`).
- "multi-worker": every worker runs the same command with its own task in
  `TF_CONFIG`. The chief builds its run folder beside `--out` and moves it
  into place at the end, as a one-device run does; every other worker
  builds its run in a temporary folder and removes it, and never touches
  `--out` (on a shared disk all workers name the same folder).

After training, every worker saves the adapters (`klr.distribution.
save_adapters`: the chief to the run folder, the others to a scratch file
they delete, so all check the same weights); the chief alone then loads
them into a one-device classifier, outside the scope, and evaluates and
exports that (the adapter file is the one-device format).

A worker that dies: TensorFlow's coordination service notices that its
heartbeats stop (10 s without one; the others stopped ~5-25 s after a
SIGKILL, measured on 2 CPUs), and a worker that hangs alive fails the
others' next collective step after `COLLECTIVE_TIMEOUT_S`. Either way the
others' TensorFlow error becomes a `WorkerLostError` of one line
(`worker_loss_reported`) naming the lost task; the chief's run folder is
built aside and removed, so `--out` keeps the earlier run whole (its
`adapters.safetensors` and `report.json` byte for byte). A chief that is
killed itself leaves its hidden `.<out>.<pid>-<host>.<hex>.tmp` folder
beside `--out`, which the next run removes; another worker killed leaves
its `klr-finetune-worker-*` folder in its temporary folder. Recovery: run
the same command again on every worker; training starts over.

A worker that never starts, or hangs before the first training step,
cannot be noticed that way: TensorFlow would wait for it without a limit.
Making the strategy waits for every worker to register with TensorFlow's
coordination service for `startup_timeout(options)` at most, then fails
naming the missing task (`WorkerLostError`, "it did not register ...").
From then to the end of the first training step, `startup_watchdog` ends
each waiting worker's process in one line once the same time has passed
(`keras_lowrank.finetune.startup_watchdog`).
"""

import contextlib
import re
import shutil
import tempfile

from keras_lowrank.finetune.options import DEFAULT_STARTUP_TIMEOUT_S
from keras_lowrank.finetune.options import FinetuneOptions
from keras_lowrank.finetune.startup_watchdog import StartupWatchdog

# How long a collective step of a multi-worker run waits for the other
# workers. Steps keep the workers within one step of each other, so a
# healthy run waits seconds (at the first step: as long as one worker
# tokenizes and traces before another); a dead worker is noticed sooner,
# by its missing heartbeats. (TensorFlow broadcasts initial values, while
# the model is built, with no time limit.)
COLLECTIVE_TIMEOUT_S = 300
# A task as TensorFlow's errors name it: "/job:worker/replica:0/task:1".
_TASK = re.compile(r"/job:(?P<type>\w+)(?:/replica:\d+)?/task:(?P<index>\d+)")


class WorkerLostError(RuntimeError):
    """A multi-worker run stopped because another worker died or hung."""


def make_strategy(options: FinetuneOptions):
    """The `tf.distribute` strategy of `options.distribute`, or None.

    Call it first, before TensorFlow runs an op, inside
    `worker_loss_reported`: on "multi-worker" it waits up to
    `startup_timeout(options)` for every worker to register, and then
    raises TensorFlow's `DeadlineExceededError`, naming the missing ones.

    Raises:
        ValueError: "multi-worker" without a valid `TF_CONFIG`, or a backend
            other than TensorFlow (one line, from `klr.distribution`).
    """
    if options.distribute is None:
        return None
    from keras_lowrank import distribution

    if options.distribute == "multi-worker":
        distribution.tf_config()  # one line naming TF_CONFIG, before TensorFlow
        return distribution.tf_strategy(
            "multi-worker", timeout_seconds=COLLECTIVE_TIMEOUT_S,
            register_timeout_seconds=startup_timeout(options))
    return distribution.tf_strategy("mirrored", devices=_local_devices())


def startup_timeout(options: FinetuneOptions) -> float:
    """Seconds a multi-worker run waits for the workers at each of its two
    start-up points: registration, and the end of the first step."""
    return float(options.startup_timeout or DEFAULT_STARTUP_TIMEOUT_S)


@contextlib.contextmanager
def startup_watchdog(options: FinetuneOptions):
    """Yields a started `StartupWatchdog` on "multi-worker", else None.

    Enter it after `make_strategy` (which has its own time limit) and
    disarm it after the first training step
    (`watchdog.disarm_after_first_step()`); leaving the block disarms it,
    so an error, or a run that ends, never ends the process later.
    """
    if options.distribute != "multi-worker":
        yield None
        return
    timeout = startup_timeout(options)
    watchdog = StartupWatchdog(timeout, _no_start_message(options, timeout))
    watchdog.start()
    try:
        yield watchdog
    finally:
        watchdog.disarm()


def _no_start_message(options, timeout):
    return (f"multi-worker training stopped: the workers did not all finish "
            f"the first training step within {timeout:g} s of meeting (one "
            "hung or is far slower before training, and TensorFlow waits for "
            f"it without a limit: check each worker's output); {_outcome(options)}. "
            "Run the same command again on every worker (--startup-timeout "
            "sets the limit).")


def _local_devices():
    """Every GPU of this machine, else every logical CPU device."""
    import tensorflow as tf

    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return [device.name for device in devices]


def scope(strategy):
    """The strategy's scope, or no scope for a one-device run."""
    return contextlib.nullcontext() if strategy is None else strategy.scope()


def is_chief(strategy) -> bool:
    """Whether this process writes the run's files."""
    if strategy is None:
        return True
    from keras_lowrank import distribution

    return distribution.is_chief()


def describe(options: FinetuneOptions, strategy) -> dict | None:
    """The report's `distribute` entry: kind, replicas, workers, this task."""
    if strategy is None:
        return None
    from keras_lowrank import distribution

    workers, task = 1, None
    if options.distribute == "multi-worker":
        config = distribution.tf_config()
        workers = sum(len(members) for members in config["cluster"].values())
        task = dict(config["task"])
    return {
        "kind": options.distribute,
        "replicas": int(strategy.num_replicas_in_sync),
        "workers": workers,
        "task": task,
    }


def shard_by_data(dataset):
    """`dataset`, auto-sharded by data over the workers (no files to shard)."""
    import tensorflow as tf

    data_options = tf.data.Options()
    data_options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    return dataset.with_options(data_options)


def save_adapters(model, path, strategy) -> int:
    """`klr.save_adapters`, or on a distributed run the chief-only save."""
    import keras_lowrank as klr

    if strategy is None:
        return klr.save_adapters(model, path)
    return klr.distribution.save_adapters(model, path)


@contextlib.contextmanager
def worker_folder():
    """A temporary folder for a non-chief worker's run, removed at the end."""
    folder = tempfile.mkdtemp(prefix="klr-finetune-worker-")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def worker_loss_reported(options: FinetuneOptions):
    """Turns a multi-worker run's lost peer into a `WorkerLostError`.

    TensorFlow stops the surviving workers' collectives with a many-line
    `UnavailableError` (heartbeats stopped, a socket closed) or a
    `DeadlineExceededError` (no answer within `COLLECTIVE_TIMEOUT_S`); this
    says in one line which task was lost, what became of `options.out`, and
    how to recover. Other errors, and every error of other runs, pass as
    they are.

    Raises:
        WorkerLostError: from the TensorFlow error, which is its cause.
    """
    if options.distribute != "multi-worker":
        yield
        return
    import tensorflow as tf

    try:
        yield
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
            tf.errors.AbortedError, tf.errors.CancelledError) as error:
        message = _lost_worker_message(error, options)
        if message is None:
            raise
        raise WorkerLostError(message) from error


def _outcome(options):
    """What became of `options.out`, as this worker's line says it."""
    from keras_lowrank import distribution

    if distribution.is_chief():
        return f"nothing was written: --out '{options.out}' is as it was"
    return f"this worker wrote nothing (the chief writes --out '{options.out}')"


# What a collective step reads when the peer's process is gone: its port
# closed (refused, closed), or the connection dropped as the process died
# mid-step (reset; seen when a worker is killed while others start).
_PEER_GONE = ("Connection refused", "Socket closed", "Connection reset by peer")


def _lost_worker_message(error, options):
    """The one line for `error`, or None when it names no peer or collective."""
    import tensorflow as tf

    from keras_lowrank import distribution

    text = str(getattr(error, "message", error))
    task = distribution.tf_config()["task"]
    own = (task["type"], int(task.get("index", 0)))
    lost = sorted({(m["type"], int(m["index"])) for m in _TASK.finditer(text)} - {own})
    if not lost and "Collective" not in text:
        return None
    names = ", ".join(f"{kind} {index}" for kind, index in lost) or "another worker"
    if "Wait_for_all_tasks_to_register" in text:
        reason = (f"it did not register within {startup_timeout(options):g} s: "
                  "it never started, or TF_CONFIG gives another address")
    elif "stopped sending heartbeats" in text:
        reason = "it stopped sending heartbeats: it died or was killed"
    elif any(sign in text for sign in _PEER_GONE):
        # A step reached its address first: nothing listens there anymore.
        reason = "its address refuses connections: it died or was killed"
    elif isinstance(error, tf.errors.DeadlineExceededError):
        reason = (f"a collective step waited {COLLECTIVE_TIMEOUT_S} s for it: "
                  "it hung or is far slower")
    else:
        aborted = re.search(r"aborted by: ([^\n]+)", text)
        first = aborted.group(1) if aborted else text.strip().splitlines()[0]
        reason = f"TensorFlow: {type(error).__name__}: {first.strip()[:160]}"
    return (f"multi-worker training stopped: lost {names} ({reason}); {_outcome(options)}. "
            "Run the same command again on every worker.")
