"""One test per function of `keras_lowrank._compat.tensorflow`."""

import gc
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from keras_lowrank._compat import tensorflow as tensorflow_compat


def test_configure_worker_registration_sets_a_barrier_and_a_limit():
    # In a child: the setting belongs to the process's TensorFlow context.
    script = textwrap.dedent("""
        import json
        import tensorflow as tf
        from tensorflow.python.eager import context
        from keras_lowrank._compat import tensorflow as tensorflow_compat
        cluster = tf.train.ClusterSpec({"chief": ["127.0.0.1:1"],
                                        "worker": ["127.0.0.1:2", "127.0.0.1:3"]})
        tensorflow_compat.configure_worker_registration(cluster, 12.5)
        config = context.context().coordination_service
        print(json.dumps({
            "type": config.service_type, "leader": config.service_leader,
            "jobs": [[job.name, job.num_tasks] for job in config.coordinated_job_list],
            "timeout_ms": config.cluster_register_timeout_in_ms,
            "barrier": config.cluster_register_with_barrier}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "type": "standalone", "leader": "/job:chief/replica:0/task:0",
        "jobs": [["chief", 1], ["worker", 2]], "timeout_ms": 12500, "barrier": True}


def _debugger_case(tmp_path):
    """A small float model's converter maker, and the debugger on it."""
    import numpy as np
    import tensorflow as tf

    class Small(tf.Module):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.w1 = tf.constant(rng.normal(size=(8, 16)).astype("float32"))
            self.w2 = tf.constant(rng.normal(size=(16, 4)).astype("float32"))

        @tf.function(input_signature=[tf.TensorSpec((None, 8), tf.float32, name="x")])
        def serve(self, x):
            hidden = tf.nn.gelu(tf.matmul(x, self.w1))
            return {"y": tf.nn.softmax(tf.matmul(hidden, self.w2))}

    module = Small()
    tf.saved_model.save(module, str(tmp_path / "m"), signatures={"serving_default": module.serve})
    rows = np.random.default_rng(1).normal(size=(6, 1, 8)).astype("float32")

    def data():
        return iter([{"x": row} for row in rows])

    def converter():
        made = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "m"))
        made.optimizations = [tf.lite.Optimize.DEFAULT]
        made.representative_dataset = data
        made.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                          tf.lite.OpsSet.TFLITE_BUILTINS]
        return made

    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter(), debug_dataset=data,
        debug_options=tf.lite.experimental.QuantizationDebugOptions())
    return converter, debugger


def test_calibrated_flatbuffer_is_the_debuggers(tmp_path):
    from keras_lowrank._compat import tensorflow as tensorflow_compat

    converter, debugger = _debugger_case(tmp_path)
    assert tensorflow_compat.calibrated_flatbuffer(converter()) == debugger.calibrated_model


def test_quantize_calibrated_gives_the_debuggers_bytes(tmp_path):
    """With nothing, an op kind, or a node kept in float: the bytes of
    `QuantizationDebugger.get_nondebug_quantized_model()`."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from keras_lowrank._compat import litert as litert_compat
    from keras_lowrank._compat import tensorflow as tensorflow_compat

    converter, debugger = _debugger_case(tmp_path)
    calibrated = debugger.calibrated_model
    interpreter = Interpreter(model_content=calibrated)
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    first_fc = next(op for op in litert_compat.ops_details(interpreter)
                    if op["op_name"] == "FULLY_CONNECTED")
    node = names[first_fc["outputs"][0]]
    options = tf.lite.experimental.QuantizationDebugOptions
    results = set()
    for ops, nodes in (((), ()), (("SOFTMAX",), ()), ((), (node,))):
        debugger.options = options(denylisted_ops=list(ops), denylisted_nodes=list(nodes))
        expected = debugger.get_nondebug_quantized_model()
        made = converter()
        tensorflow_compat.calibrated_flatbuffer(made)
        assert tensorflow_compat.quantize_calibrated(made, calibrated, ops, nodes) == expected
        results.add(expected)
    assert len(results) == 3  # each denylist changed the model


def test_custom_gradients_released_drops_only_what_its_traces_registered():
    import gc
    import weakref

    import tensorflow as tf
    from tensorflow.python.framework import ops

    registry = ops._gradient_registry._registry

    def custom_names():
        return {n for n in registry if n.startswith("CustomGradient-")}

    @tf.function(input_signature=[tf.TensorSpec((None, 4), tf.float32)])
    def outside(x):
        return tf.nn.silu(x)

    outside.get_concrete_function()
    kept = custom_names()
    assert kept  # tf.nn.silu registers its gradient in graph mode
    x = tf.constant(np.linspace(-3, 3, 8, dtype="float32").reshape(2, 4))
    with tensorflow_compat.custom_gradients_released():
        @tf.function(input_signature=[tf.TensorSpec((None, 4), tf.float32)])
        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = tf.reduce_sum(tf.nn.silu(x))
            return tape.gradient(y, x)

        concrete = step.get_concrete_function()
        assert len(custom_names()) > len(kept)  # registered during the trace
        gradient = step(x).numpy()  # taken within the context: as usual
        graph = weakref.ref(concrete.graph)
    sigmoid = 1 / (1 + np.exp(-x.numpy()))
    np.testing.assert_allclose(gradient, sigmoid * (1 + x.numpy() * (1 - sigmoid)),
                               rtol=1e-6)
    assert custom_names() == kept  # the earlier registrations stay
    del step, concrete
    gc.collect()
    assert graph() is None  # the traced graph is freed with its function


def test_custom_gradients_released_as_a_decorator():
    import tensorflow as tf
    from tensorflow.python.framework import ops

    registry = ops._gradient_registry._registry
    before = set(registry)

    @tensorflow_compat.custom_gradients_released()
    def trace():
        return tf.function(tf.nn.silu).get_concrete_function(
            tf.TensorSpec((3,), tf.float32))

    trace()
    assert set(registry) == before


def test_silu_without_custom_gradient_gives_tensorflows_values_and_registers_none():
    import keras
    import tensorflow as tf
    from tensorflow.python.framework import ops

    registry = ops._gradient_registry._registry
    original = tf.nn.silu
    x = tf.constant(np.random.default_rng(0).normal(0, 4, (3, 64)).astype("float32"))

    def trace():
        @tf.function(input_signature=[tf.TensorSpec((None, 64), tf.float32)])
        def step(x):
            return keras.activations.silu(x)  # Keras' own, as the models call it

        return step.get_concrete_function()

    expected = trace()(x).numpy()
    before = set(registry)
    with tensorflow_compat.silu_without_custom_gradient():
        assert tf.nn.silu is not original
        concrete = trace()
    assert set(registry) == before  # no gradient function registered
    np.testing.assert_array_equal(concrete(x).numpy(), expected)
    assert tf.nn.silu is original
    with pytest.raises(RuntimeError, match="inside"):
        with tensorflow_compat.silu_without_custom_gradient():
            raise RuntimeError("inside")
    assert tf.nn.silu is original


def _loads_counted(monkeypatch):
    """A list that grows by one at each full SavedModel load (`Loader`)."""
    from tensorflow.python.saved_model import load as load_module

    loads = []
    original = load_module.Loader.__init__

    def counting(self, *args, **kwargs):
        loads.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(load_module.Loader, "__init__", counting)
    return loads


def _module_with_two_signatures():
    """A module whose two functions read one 64 x 32 weight."""
    import tensorflow as tf

    module = tf.Module()
    module.w = tf.Variable(np.random.default_rng(0).normal(size=(64, 32)).astype("float32"))

    @tf.function(input_signature=[tf.TensorSpec([1, 64], tf.float32)])
    def relu(x):
        return {"y": tf.nn.relu(x @ module.w)}

    @tf.function(input_signature=[tf.TensorSpec([1, 64], tf.float32)])
    def tanh(x):
        return {"y": tf.tanh(x @ module.w)}

    module.relu, module.tanh = relu, tanh
    return module


def test_converted_loads_a_saved_model_once_and_gives_the_same_bytes(tmp_path, monkeypatch):
    import tensorflow as tf
    from tensorflow.lite.python import lite
    from tensorflow.python.saved_model.load import load

    module = _module_with_two_signatures()
    tf.saved_model.save(module, str(tmp_path / "m"),
                        signatures={"serving_default": module.relu})
    loads = _loads_counted(monkeypatch)
    made = {}
    for how in ("convert", "converted"):
        converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "m"))
        before = len(loads)
        made[how] = (converter.convert() if how == "convert"
                     else tensorflow_compat.converted(converter))
        made[how + " loads"] = len(loads) - before
    assert made["convert loads"] == 1 and made["converted loads"] == 0
    assert made["converted"] == made["convert"]
    # The converter's own attributes are back.
    assert lite._load is load and lite.gc is gc


def test_converted_without_deduplication_keeps_each_weight_once(monkeypatch):
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter
    from tensorflow.lite.python import convert
    from tensorflow.lite.python import lite


    module = _module_with_two_signatures()
    functions = [module.relu.get_concrete_function(), module.tanh.get_concrete_function()]
    loads = _loads_counted(monkeypatch)
    flatbuffers = {}
    for deduplicate in (True, False):
        converter = tf.lite.TFLiteConverter.from_concrete_functions(functions, module)
        flatbuffers[deduplicate] = tensorflow_compat.converted(
            converter, deduplicate_buffers=deduplicate)
    assert loads == []  # the SavedModel the converter writes is not loaded
    assert lite._deduplicate_readonly_buffers is convert.deduplicate_readonly_buffers
    weight_bytes = 64 * 32 * 4
    # One copy of the weight in each, the same outputs from each signature.
    for flatbuffer in flatbuffers.values():
        assert weight_bytes < len(flatbuffer) < 2 * weight_bytes
    x = np.random.default_rng(1).normal(size=(1, 64)).astype("float32")
    for name in ("relu", "tanh"):
        outputs = [Interpreter(model_content=f).get_signature_runner(name)(x=x)["y"]
                   for f in flatbuffers.values()]
        np.testing.assert_array_equal(outputs[0], outputs[1])


def test_converted_puts_the_converter_back_when_it_raises(monkeypatch):
    from tensorflow.lite.python import lite


    original = {name: lite.__dict__[name]
                for name in ("_load", "gc", "_deduplicate_readonly_buffers")}

    class Failing:
        def convert(self):
            assert lite._load is not original["_load"]
            raise RuntimeError("conversion failed")

    with pytest.raises(RuntimeError, match="conversion failed"):
        tensorflow_compat.converted(Failing(), deduplicate_buffers=False)
    assert {name: lite.__dict__[name] for name in original} == original
