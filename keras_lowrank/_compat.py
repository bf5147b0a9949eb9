"""Every private Keras (and tfds, TensorFlow) attribute keras_lowrank relies on.

Keras 3 has no public API for some of what model surgery needs: the list of
a layer's direct sublayers, a layer's own (not its children's) variables,
the kernel variable behind the `kernel` property, the graph of a Functional
model. Each access below has a test of its own in `tests/test_compat.py`, so
a Keras upgrade that moves one breaks a named test, not the package somewhere
unknown. Pinned: keras==3.15.1, tensorflow==2.21.0.
"""

import contextlib

import keras

# === Layers ===


def sublayers(layer):
    """The direct sublayers of `layer`, in tracking order (Keras `_layers`)."""
    return list(getattr(layer, "_layers", []))


def set_sublayers(layer, layers):
    """Replaces the tracked list of direct sublayers, in place."""
    layer._layers[:] = layers


def is_sublayer_list(layer, value):
    """Whether `value` is the tracked list of `layer`'s direct sublayers."""
    return value is vars(layer).get("_layers")


def has_sublayers(layer):
    return bool(getattr(layer, "_layers", None))


def flatten_layers(layer, include_self=True):
    """`layer` (optionally) and every layer below it (`_flatten_layers`)."""
    return list(layer._flatten_layers(include_self=include_self))


def own_trainable_weights(layer):
    """The trainable variables `layer` created itself, not its sublayers'."""
    return layer._trainable_variables


def kernel_variable(layer, name="kernel"):
    """The variable behind `layer.<name>`.

    Dense, EinsumDense and Embedding expose their kernel through a property
    that adds Keras' own LoRA delta when enabled; the variable itself is
    `_kernel` (`_embeddings`). Falls back to the attribute.
    """
    variable = getattr(layer, f"_{name}", None)
    return getattr(layer, name) if variable is None else variable


@contextlib.contextmanager
def unlocked_tracker(layer):
    """Lets a built layer's tracker take a new sublayer for a moment."""
    tracker = getattr(layer, "_tracker", None)
    locked = tracker is not None and tracker.locked
    if locked:
        tracker.unlock()
    try:
        yield
    finally:
        if locked:
            tracker.lock()


# === Functional graphs ===


def move_nodes(old, new):
    """Gives `new` the graph nodes of `old` (a layer it replaces)."""
    new._inbound_nodes = old._inbound_nodes
    new._outbound_nodes = old._outbound_nodes


def is_graph(owner):
    """Whether `owner` holds a Functional graph of operations."""
    return hasattr(owner, "_operations")


def replace_in_graph(function, old, new):
    """Points the operations and nodes of a Functional graph at `new`."""
    from keras.src.ops.function import make_node_key

    _replace_in_list(function._operations, old, new)
    # `Functional.get_config` keeps the nodes whose keys, made of their
    # operation's id, are in `_nodes`: without this, `new`'s nodes are
    # dropped from the config (and an output of `new` raises).
    if hasattr(function, "_nodes"):
        keys = {make_node_key(old, i): make_node_key(new, i)
                for i in range(len(new._inbound_nodes))}
        function._nodes = {keys.get(key, key) for key in function._nodes}
    for operations in getattr(function, "_operations_by_depth", {}).values():
        _replace_in_list(operations, old, new)
    for nodes in getattr(function, "_nodes_by_depth", {}).values():
        for node in nodes:
            if node.operation is old:
                node.operation = new
                for tensor in node.outputs:
                    history = tensor._keras_history
                    tensor._keras_history = type(history)(
                        new, history.node_index, history.tensor_index
                    )


def sequential_graph(layer):
    """The Functional graph a built Sequential model keeps, or None."""
    return getattr(layer, "_functional", None)


def _replace_in_list(items, old, new):
    for i, item in enumerate(list(items)):
        if item is old:
            items[i] = new


# === Serialization ===


def register_serializable_name(cls, name):
    """Makes Keras save `cls` under `name` (for classes made at run time)."""
    from keras.src.saving import object_registration

    keras.saving.get_custom_objects()  # make sure the registry exists
    object_registration.GLOBAL_CUSTOM_NAMES[cls] = name


# Constructor arguments that a keras-hub class keeps as an attribute but
# leaves out of `get_config()` (keras-hub 0.32: `LlamaBackbone` and its
# subclasses drop `tie_word_embeddings`, so a tied SmolLM2 rebuilt from its
# config grows an untied output head: one weight more than the model).
_DROPPED_CONFIG_KEYS = ("tie_word_embeddings",)


def restore_dropped_config(model, config):
    """Adds to the serialized `config` of `model` what its layers' `get_config`
    left out (see `_DROPPED_CONFIG_KEYS`), in place; returns `config`."""
    dropped = {}
    for layer in flatten_layers(model):
        for key in _DROPPED_CONFIG_KEYS:
            if hasattr(layer, key) and key not in layer.get_config():
                dropped.setdefault(layer.name, {})[key] = getattr(layer, key)
    if dropped:
        _restore_keys(config, dropped)
    return config


def _restore_keys(node, dropped):
    if isinstance(node, dict):
        inner = node.get("config")
        if "class_name" in node and isinstance(inner, dict):
            for key, value in dropped.get(inner.get("name"), {}).items():
                inner.setdefault(key, value)
        for value in node.values():
            _restore_keys(value, dropped)
    elif isinstance(node, list):
        for value in node:
            _restore_keys(value, dropped)


# === EinsumDense ===


def analyze_einsum_string(equation, bias_axes, input_shape, output_shape):
    """Keras' EinsumDense shape analysis: `(kernel_shape, bias_shape,
    full_output_shape, ...)` for an equation, as EinsumDense builds it."""
    from keras.src.layers.core.einsum_dense import _analyze_einsum_string

    return _analyze_einsum_string(equation, bias_axes, input_shape, output_shape)


# === tensorflow-datasets ===


def tfds_progress_bars_shown():
    """Whether tfds shows progress bars now (its private `tqdm_utils._active`),
    so that a quiet block can put the setting back as it was."""
    import tensorflow_datasets as tfds

    return getattr(tfds.core.utils.tqdm_utils, "_active", True)


# === TensorFlow's coordination service ===


def configure_worker_registration(cluster_spec, timeout_seconds):
    """Has a multi-worker strategy fail if a worker does not register in time.

    `tf.distribute.MultiWorkerMirroredStrategy()` starts TensorFlow's
    coordination service and waits, with no time limit and holding the
    GIL, for every task of the cluster to register. TensorFlow configures
    the service only where none is configured yet; configured here first,
    with TensorFlow's own job list and leader plus a registration barrier
    (`cluster_register_with_barrier`, `cluster_register_timeout_in_ms`),
    making the strategy raises `tf.errors.DeadlineExceededError` ("Barrier
    timed out. Id: [Init]Wait_for_all_tasks_to_register ... Some timed out
    task names: /job:worker/replica:0/task:1") instead. There is no public
    API for either setting. Call it before TensorFlow runs any op.

    Args:
        cluster_spec: `tf.train.ClusterSpec` of `TF_CONFIG`.
        timeout_seconds: positive number.
    """
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.distribute import multi_worker_util
    from tensorflow.python.eager import context

    jobs = [coordination_config_pb2.CoordinatedJob(
                name=job, num_tasks=cluster_spec.num_tasks(job))
            for job in ("chief", "worker") if job in cluster_spec.jobs]
    context.context().configure_coordination_service(
        service_type="standalone",
        service_leader=multi_worker_util.coordination_leader(cluster_spec),
        coordinated_jobs=jobs,
        cluster_register_timeout_in_ms=int(timeout_seconds * 1000),
    )
    context.context().coordination_service.cluster_register_with_barrier = True
