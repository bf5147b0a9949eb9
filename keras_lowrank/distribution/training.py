"""TensorFlow strategies, the chief, adapter files written once, checks.

See the package docstring (`keras_lowrank.distribution`).
"""


import json
import math
import os
import shutil
import tempfile

import keras

from keras_lowrank._compat import tensorflow as tensorflow_compat
from keras_lowrank.adapters import files as adapter_files
from keras_lowrank.surgery import checks

KINDS = ("mirrored", "multi-worker")
_TF_CONFIG_EXAMPLE = (
    'TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
    '"task": {"type": "worker", "index": 0}}\''
)



# === TensorFlow strategies ===


def tf_strategy(kind="mirrored", *, devices=None, timeout_seconds=None,
                register_timeout_seconds=None):
    """A `tf.distribute` strategy to build, adapt and train a model under.

    Args:
        kind: str. `"mirrored"`: the devices of this machine
            (`tf.distribute.MirroredStrategy`). `"multi-worker"`: every
            worker `TF_CONFIG` names, each with its local devices
            (`tf.distribute.MultiWorkerMirroredStrategy`; `fit` works on it
            despite keras-team/keras#20329, see `_multi_worker_class`).
        devices: list of str. `"mirrored"` only: the devices, e.g.
            `["/gpu:0", "/gpu:1"]`. Default: every GPU, else the CPU.
        timeout_seconds: positive number. `"multi-worker"` only: how long a
            collective step waits for the other workers before failing
            (`CommunicationOptions.timeout_seconds`). Default: no limit.
        register_timeout_seconds: positive number. `"multi-worker"` only:
            how long making the strategy waits for every worker of
            `TF_CONFIG` to start and register with TensorFlow's
            coordination service; past it, `tf.errors.DeadlineExceededError`
            names the missing tasks. Default: no limit (TensorFlow's).

    Make it first, before TensorFlow runs any op (TensorFlow configures a
    multi-worker strategy's collectives at start-up). The batch size given
    to `fit` (or the dataset's batches) is the global batch: each of the
    `strategy.num_replicas_in_sync` replicas gets its share.

    Returns:
        The strategy. Enter `strategy.scope()` to build and adapt the model.

    Raises:
        ValueError: the backend is not TensorFlow, an unknown `kind`, an
            option of the other kind, or (multi-worker) a missing or
            malformed `TF_CONFIG`, in one line that names it.

    Example:
    ```python
    strategy = klr.distribution.tf_strategy("mirrored")
    with strategy.scope():
        model = klr.add_adapters(build_base(), rank=8)
    ```
    """
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            "tf_strategy needs the TensorFlow backend (KERAS_BACKEND="
            f"tensorflow). Received: backend '{keras.backend.backend()}'. On "
            "JAX use keras.distribution.DataParallel or ModelParallel with "
            "klr.distribution.lora_layout_map."
        )
    if kind not in KINDS:
        raise ValueError(f"Unknown kind={kind!r}. Supported kinds are: {list(KINDS)}")
    if devices is not None and kind != "mirrored":
        raise ValueError(
            f"devices= is for kind='mirrored'; a {kind} strategy uses every "
            f"local device of each worker. Received: devices={devices!r}"
        )
    for name, value in (("timeout_seconds", timeout_seconds),
                        ("register_timeout_seconds", register_timeout_seconds)):
        if value is not None and kind != "multi-worker":
            raise ValueError(
                f"{name}= is for kind='multi-worker'. Received: {name}={value!r}")
        if value is not None and not (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
            and value > 0
        ):
            raise ValueError(
                f"{name} expected a positive number of seconds or None. "
                f"Received: {name}={value!r}"
            )
    if kind == "multi-worker":
        tf_config()  # raises, naming TF_CONFIG, before TensorFlow's own errors
    import tensorflow as tf

    if kind == "mirrored":
        return tf.distribute.MirroredStrategy(devices)
    if register_timeout_seconds is not None:
        cluster = tf.distribute.cluster_resolver.TFConfigClusterResolver().cluster_spec()
        tensorflow_compat.configure_worker_registration(cluster, register_timeout_seconds)
    options = tf.distribute.experimental.CommunicationOptions(
        timeout_seconds=timeout_seconds
    )
    return _multi_worker_class()(communication_options=options)


def tf_config():
    """The parsed `TF_CONFIG` of this process, checked.

    Returns:
        `{"cluster": {task type: [address, ...]}, "task": {"type": ...,
        "index": ...}}`, as TensorFlow reads it.

    Raises:
        ValueError: `TF_CONFIG` is unset, not JSON, lacks `cluster` or
            `task`, or names a task its cluster does not have (one line).
    """
    raw = os.environ.get("TF_CONFIG", "")
    if not raw.strip():
        raise ValueError(
            "multi-worker training needs TF_CONFIG, the JSON naming every "
            f"worker and this process's task, e.g. {_TF_CONFIG_EXAMPLE}. "
            "Received: TF_CONFIG unset. On one machine use 'mirrored'."
        )
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"TF_CONFIG is not valid JSON ({error}); expected e.g. "
            f"{_TF_CONFIG_EXAMPLE}. Received: TF_CONFIG={raw!r:.200}"
        ) from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster or not isinstance(task, dict):
        raise ValueError(
            "TF_CONFIG needs a non-empty 'cluster' and a 'task', e.g. "
            f"{_TF_CONFIG_EXAMPLE}. Received: TF_CONFIG={raw!r:.200}"
        )
    kind, index = task.get("type"), task.get("index", 0)
    members = cluster.get(kind)
    if not isinstance(members, list) or not (
        isinstance(index, int) and 0 <= index < len(members)
    ):
        raise ValueError(
            f"TF_CONFIG's task {{'type': {kind!r}, 'index': {index!r}}} is not "
            f"in its cluster {cluster}. Give each process the type and index "
            "of its own address."
        )
    return config


def _multi_worker_class():
    """`tf.distribute.MultiWorkerMirroredStrategy` with a `reduce` Keras can use.

    Keras 3's `fit` passes `strategy.reduce` a nest (the first batch, to
    build the model) and scalars with `axis=0` (each step's logs). With more
    than one worker, TensorFlow's `reduce` takes one tensor of rank >= 1
    only, so every `fit` on two workers fails (keras-team/keras#20329,
    Keras 3.15.1, TensorFlow 2.21). This subclass reduces each item of a
    nest, and a scalar across replicas whatever `axis` says; all else is
    TensorFlow's. The test that fails when TensorFlow takes nests itself
    is `tests/distribute/test_multi_worker.py::
    test_the_reduce_workaround_is_still_needed`.
    """
    global _MULTI_WORKER
    if _MULTI_WORKER is None:
        import tensorflow as tf

        class MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
            def reduce(self, reduce_op, value, axis=None):
                parent = super()

                def reduce_one(item):
                    local = self.experimental_local_results(item)[0]
                    rank = getattr(getattr(local, "shape", None), "rank", None)
                    return parent.reduce(reduce_op, item, None if rank == 0 else axis)

                return tf.nest.map_structure(reduce_one, value)

        _MULTI_WORKER = MultiWorkerMirroredStrategy
    return _MULTI_WORKER


_MULTI_WORKER = None


# === The chief, and files written once ===


def is_chief() -> bool:
    """Whether this process is the one that writes files.

    TensorFlow: the task of type `"chief"`, else worker 0 (TensorFlow's
    rule), read from `TF_CONFIG`; without `TF_CONFIG`, the only process is
    the chief. JAX: process 0 (`jax.process_index()`). PyTorch: rank 0 of
    an initialized `torch.distributed`, else True.

    Raises:
        ValueError: a malformed `TF_CONFIG` (see `tf_config`).
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.process_index() == 0
    if backend == "torch":
        import torch.distributed as torch_distributed

        if torch_distributed.is_available() and torch_distributed.is_initialized():
            return torch_distributed.get_rank() == 0
        return True
    if not os.environ.get("TF_CONFIG", "").strip():
        return True
    config = tf_config()
    kind, index = config["task"]["type"], config["task"].get("index", 0)
    if kind == "chief":
        return True
    return kind == "worker" and index == 0 and "chief" not in config["cluster"]


def save_adapters(model, path) -> int:
    """`klr.save_adapters` on the chief; the same checks, no file, elsewhere.

    Call it on every worker. The chief writes `path` atomically; any other
    worker writes the same file to a temporary folder of its own and removes
    it (Keras' multi-worker advice), so that all read the same weights and
    fail alike. `path` is only written by the chief, so it may lie on the
    chief's disk only.

    Args:
        model: keras.Model holding adapters (distributed or not).
        path: str. The `.safetensors` file the chief writes.

    Returns:
        The bytes written at `path`: the file's size on the chief, 0 on the
        other workers.

    Raises:
        ValueError: `path` is not a path, or as `klr.save_adapters` (no
            adapter; a NaN or Inf, named) on every worker alike.
    """
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ValueError(
            "save_adapters expected the path of a .safetensors file. "
            f"Received: path={path!r}"
        )
    if is_chief():
        return adapter_files.save_adapters(model, path)
    scratch = tempfile.mkdtemp(prefix="klr-worker-")
    try:
        adapter_files.save_adapters(model, os.path.join(scratch, "adapters.safetensors"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


# === Checks ===


def check_distributed(model, engine) -> int:
    """Raises unless every weight of `model` is distributed by `engine`.

    A model adapted outside the strategy's scope has plain variables and
    trains on one device only, silently; this says so before `fit`.

    Args:
        model: keras.Model, with adapters or not.
        engine: a `tf.distribute.Strategy` (TensorFlow backend: each weight
            must have been created in its scope) or a
            `keras.distribution.Distribution` (JAX: each weight must be
            placed on every device of its mesh).

    Returns:
        The number of weights checked.

    Raises:
        TypeError: `engine` is neither.
        ValueError: a weight is not distributed; the message names its path
            and the fix.
    """
    checks.check_model(model, "check_distributed")
    # keras.distribution exports DataParallel and ModelParallel, not their base.
    if hasattr(engine, "device_mesh") and hasattr(engine, "get_variable_layout"):
        return _check_sharded(model, engine)
    if hasattr(engine, "extended") and hasattr(engine, "scope"):
        return _check_mirrored(model, engine)
    raise TypeError(
        "check_distributed expected a tf.distribute.Strategy or a "
        f"keras.distribution.Distribution. Received: engine={engine!r:.80}"
    )


def _check_mirrored(model, strategy):
    for weight in model.weights:
        if not strategy.extended.variable_created_in_scope(weight.value):
            raise ValueError(
                f"Weight '{weight.path}' of model '{model.name}' was not "
                f"created in the scope of {type(strategy).__name__}, so fit "
                "would not train it on every replica. Build the model and "
                "call klr.add_adapters (or load_adapters) inside "
                "`with strategy.scope():`."
            )
    return len(model.weights)


def _check_sharded(model, distribution):
    mesh = distribution.device_mesh.backend_mesh
    devices = set(mesh.devices.flat)
    for weight in model.weights:
        placed = set(getattr(getattr(weight.value, "sharding", None), "device_set", ()))
        if placed != devices:
            raise ValueError(
                f"Weight '{weight.path}' of model '{model.name}' is on "
                f"{len(placed)} device(s), not on the {len(devices)} of "
                f"{type(distribution).__name__}'s mesh. Call klr.add_adapters "
                "(or load_adapters) inside `with distribution.scope():`."
            )
    return len(model.weights)
