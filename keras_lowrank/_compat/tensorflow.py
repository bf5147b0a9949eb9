"""Every private TensorFlow API keras_lowrank relies on.

The test of each function is in `tests/compat/test_tensorflow.py`. Pinned:
tensorflow==2.21.0.
"""

import contextlib
import sys

from keras_lowrank._compat.patching import attribute_replaced

# === Graph-mode custom gradients ===

# The name `tf.custom_gradient` registers each gradient under
# (`custom_gradient.generate_name`).
_CUSTOM_GRADIENT_PREFIX = "CustomGradient-"


@contextlib.contextmanager
def custom_gradients_released():
    """At the end of the context (or of a function it decorates), drops the
    gradient functions that `tf.custom_gradient` registered within it.

    In graph mode, each call of a `tf.custom_gradient` function registers
    its gradient in TensorFlow's global gradient registry
    (`ops._gradient_registry`, under `CustomGradient-<uid>`) and never
    removes it; the gradient's closure holds the call's tensors, so the
    whole traced graph lives as long as the process. `tf.nn.silu` is one
    (Keras' `silu` on this backend: Llama, SmolLM2, Qwen, Mistral): every
    trace of such a model stayed in memory (one LiteRT generator export of
    a tiny 2-block Llama: 16 registrations; a test process kept 300-450 MB
    a test file). Use it around work whose graphs are done with when it
    ends (an export, a whole run); gradients taken within it work as
    usual. Registrations from before the context, and every other kind of
    gradient, are kept.
    """
    before = _custom_gradient_names()
    try:
        yield
    finally:
        registry = _gradient_registry()
        for name in _custom_gradient_names() - before:
            registry.pop(name, None)


def _gradient_registry():
    if "tensorflow" not in sys.modules:  # nothing registered yet
        return {}
    from tensorflow.python.framework import ops

    return ops._gradient_registry._registry


def _custom_gradient_names():
    return {name for name in _gradient_registry()
            if name.startswith(_CUSTOM_GRADIENT_PREFIX)}


@contextlib.contextmanager
def silu_without_custom_gradient():
    """Within the context, `tf.nn.silu` (Keras' `silu` on this backend) is
    its forward ops alone, `x * sigmoid(x)` as TensorFlow computes it, bit
    for bit, without the `tf.custom_gradient` around them.

    For graphs that are never differentiated (a generator's prefill and
    decode steps): `tf.saved_model.save`, which the LiteRT converter runs,
    traced, stored and loaded again a gradient function for every SiLU of
    the model (30 per SmolLM2 graph). Not for training: the plain ops'
    gradient is correct but not TensorFlow's memory-saving one.
    """
    import tensorflow as tf

    original = tf.nn.silu

    def silu(features, beta=1.0):
        features = tf.convert_to_tensor(features, name="features")
        beta = tf.cast(tf.convert_to_tensor(beta, name="beta"), features.dtype)
        return features * tf.math.sigmoid(beta * features)

    tf.nn.silu = silu
    try:
        yield
    finally:
        tf.nn.silu = original


# === The coordination service ===


def configure_worker_registration(cluster_spec, timeout_seconds):
    """Has a multi-worker strategy fail if a worker does not register in time.

    `tf.distribute.MultiWorkerMirroredStrategy()` starts TensorFlow's
    coordination service and waits, with no time limit and holding the
    GIL, for every task of the cluster to register. TensorFlow configures
    the service only where none is configured yet; configured here first,
    with TensorFlow's own job list and leader plus a registration barrier
    (`cluster_register_with_barrier`, `cluster_register_timeout_in_ms`),
    making the strategy raise `tf.errors.DeadlineExceededError` ("Barrier
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


# === LiteRT's converter: one reading of the SavedModel ===


def converted(converter, deduplicate_buffers=True):
    """`converter.convert()`, reading its SavedModel's variables once.

    LiteRT's converter (`tf.lite.TFLiteConverter`, from a SavedModel or
    from concrete functions, which it saves as one) restores the whole
    SavedModel, variables included, a second time during `convert()`
    (`lite._load`) only to read its graph debug information, the stack
    traces its error messages quote; after a `from_saved_model` it then
    runs a full `gc.collect()`. Here that reading parses the SavedModel's
    protos alone (`saved_model/debug/saved_model_debug_info.pb`, as the
    full load reads them), and no collection runs. For SmolLM2's generator
    (540 MB of variables) the second load took 8 s and held its copy of
    the weights through the conversion.

    Args:
        converter: a `tf.lite.TFLiteConverter`, configured.
        deduplicate_buffers: bool. False skips the converter's last step
            that merges read-only buffers of equal bytes, for graphs whose
            weights the converter already shares (one constant per
            variable, whatever the number of signatures): it unpacks and
            repacks the whole flatbuffer in Python (10 s for SmolLM2's
            652 MB) and found 24 bytes to merge in a tiny Llama's
            generator.

    Returns:
        The flatbuffer, bytes.
    """
    from tensorflow.lite.python import lite
    from tensorflow.python.saved_model import loader_impl

    def debug_information_only(saved_model_dir, tags=None):
        _, debug_info = loader_impl.parse_saved_model_with_debug_info(saved_model_dir)
        return _DebugInformation(debug_info)

    with contextlib.ExitStack() as stack:
        stack.enter_context(attribute_replaced(lite, "_load", debug_information_only))
        stack.enter_context(attribute_replaced(lite, "gc", _NoCollection))
        if not deduplicate_buffers:
            stack.enter_context(attribute_replaced(
                lite, "_deduplicate_readonly_buffers", lambda model: model))
        return converter.convert()


class _DebugInformation:
    """What the converter reads of a loaded SavedModel: its
    `graph_debug_info`."""

    def __init__(self, graph_debug_info):
        self.graph_debug_info = graph_debug_info


class _NoCollection:
    """Stands for the `gc` module inside the converter."""

    @staticmethod
    def collect(generation=2):
        return 0


# === LiteRT's converter: calibration, then quantization with denylists ===


def calibrated_flatbuffer(converter):
    """The float model with calibration statistics, not yet quantized.

    What `tf.lite.experimental.QuantizationDebugger` does first, without
    the debug models it builds next: the converter's private
    `_experimental_calibrate_only` (with `experimental_mlir_quantizer`)
    stops `convert()` after the calibration on `representative_dataset`.

    Args:
        converter: a `tf.lite.TFLiteConverter` with `optimizations` and
            `representative_dataset` set.

    Returns:
        The calibrated flatbuffer, bytes.
    """
    converter.experimental_mlir_quantizer = True
    converter._experimental_calibrate_only = True
    return converted(converter)


def quantize_calibrated(converter, calibrated, denylisted_ops=(), denylisted_nodes=()):
    """The calibrated model quantized, some ops and nodes left in float.

    The call `QuantizationDebugger.get_nondebug_quantized_model()` makes
    (`tensorflow.lite.python.convert.mlir_quantize`, partial quantization,
    no numeric-verify ops), with the converter's per-channel setting.

    Args:
        converter: the converter `calibrated_flatbuffer` ran.
        calibrated: its result.
        denylisted_ops: op kinds (e.g. `"SOFTMAX"`) kept in float.
        denylisted_nodes: output tensor names of nodes kept in float.

    Returns:
        The quantized flatbuffer, bytes.
    """
    from tensorflow.lite.python import convert

    return convert.mlir_quantize(
        calibrated,
        disable_per_channel=converter._experimental_disable_per_channel,
        fully_quantize=False,
        enable_numeric_verify=False,
        denylisted_ops=list(denylisted_ops),
        denylisted_nodes=list(denylisted_nodes),
    )
