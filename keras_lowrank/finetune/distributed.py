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

A worker that dies: the others stop at their next collective step with an
error; the chief's run folder is built aside, so `--out` keeps the earlier
run whole (its `adapters.safetensors` intact). Recovery: run the same
command again on every worker.
"""

import contextlib
import shutil
import tempfile

from keras_lowrank.finetune.options import FinetuneOptions


def make_strategy(options: FinetuneOptions):
    """The `tf.distribute` strategy of `options.distribute`, or None.

    Call it first, before TensorFlow runs an op.

    Raises:
        ValueError: "multi-worker" without a valid `TF_CONFIG`, or a backend
            other than TensorFlow (one line, from `klr.distribution`).
    """
    if options.distribute is None:
        return None
    from keras_lowrank import distribution

    if options.distribute == "multi-worker":
        distribution.tf_config()  # one line naming TF_CONFIG, before TensorFlow
        return distribution.tf_strategy("multi-worker")
    return distribution.tf_strategy("mirrored", devices=_local_devices())


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
