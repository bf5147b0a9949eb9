"""One test per private Keras access in `keras_lowrank._compat`.

When a Keras upgrade moves one of these, the test named after it fails.
"""

import keras
import numpy as np

from keras_lowrank import _compat


def _block():
    class Block(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.first = keras.layers.Dense(4, name="first")
            self.second = keras.layers.Dense(2, name="second")
            self.token = self.add_weight(shape=(2,), name="token")

        def call(self, x):
            return self.second(self.first(x)) + self.token

    block = Block(name="block")
    block(np.zeros((1, 3), "float32"))
    return block


def _functional():
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(hidden), name="net")


def test_sublayers_are_the_direct_children_in_order():
    block = _block()
    assert [layer.name for layer in _compat.sublayers(block)] == ["first", "second"]
    assert _compat.has_sublayers(block)
    assert not _compat.has_sublayers(block.first)


def test_set_sublayers_replaces_the_tracked_list():
    block = _block()
    _compat.set_sublayers(block, [block.second, block.first])
    assert [layer.name for layer in _compat.sublayers(block)] == ["second", "first"]


def test_flatten_layers_walks_the_whole_tree():
    block = _block()
    names = [layer.name for layer in _compat.flatten_layers(block)]
    assert names == ["block", "first", "second"]
    assert [layer.name for layer in _compat.flatten_layers(block, include_self=False)] == [
        "first", "second"]


def test_own_trainable_weights_exclude_the_children():
    block = _block()
    assert [v.name for v in _compat.own_trainable_weights(block)] == ["token"]


def test_kernel_variable_is_the_variable_not_keras_lora_sum():
    dense = keras.layers.Dense(3)
    dense.build((None, 4))
    assert _compat.kernel_variable(dense) is dense._kernel
    dense.enable_lora(2)
    dense.lora_kernel_b.assign(np.ones((2, 3), "float32"))
    variable = _compat.kernel_variable(dense)
    assert isinstance(variable, keras.Variable)
    assert not np.allclose(variable.numpy(), keras.ops.convert_to_numpy(dense.kernel))
    table = keras.layers.Embedding(5, 2)
    table.build()
    assert _compat.kernel_variable(table, "embeddings") is table._embeddings


def test_unlocked_tracker_lets_a_built_layer_take_a_new_sublayer():
    block = _block()
    tracker = block._tracker
    assert tracker.locked
    with _compat.unlocked_tracker(block):
        assert not tracker.locked
        block.extra = keras.layers.Dense(1, name="extra")
    assert tracker.locked
    assert any(layer is block.extra for layer in _compat.sublayers(block))


def test_graph_replacement_reroutes_a_functional_model():
    model = _functional()
    old = model.get_layer("hidden")
    new = keras.layers.Dense(4, name="hidden", kernel_initializer="ones")
    new.build((None, 3))
    assert _compat.is_graph(model)
    _compat.move_nodes(old, new)
    _compat.replace_in_graph(model, old, new)
    _compat.set_sublayers(model, [new if l is old else l for l in _compat.sublayers(model)])
    x = np.ones((1, 3), "float32")
    hidden = keras.ops.convert_to_numpy(new(x))
    np.testing.assert_allclose(hidden, np.full((1, 4), 3.0))
    out = model.get_layer("out")
    want = hidden @ out.kernel.numpy() + out.bias.numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-6)


def test_graph_replacement_keeps_the_swapped_layer_in_the_config():
    model = _functional()
    old = model.get_layer("out")
    new = keras.layers.Dense(2, name="out")
    new.build((None, 4))
    _compat.move_nodes(old, new)
    _compat.replace_in_graph(model, old, new)
    _compat.set_sublayers(model, [new if l is old else l for l in _compat.sublayers(model)])
    config = model.get_config()  # Keras keys the graph's nodes by layer id
    assert [layer["name"] for layer in config["layers"]][-1] == "out"
    assert config["output_layers"] == ["out", 0, 0]


def test_sequential_graph_is_found():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    graph = _compat.sequential_graph(model)
    assert graph is not None and _compat.is_graph(graph)


def test_register_serializable_name_is_used_when_saving():
    class Renamed(keras.layers.Dense):
        pass

    _compat.register_serializable_name(Renamed, "tests>Renamed")
    config = keras.saving.serialize_keras_object(Renamed(2))
    assert config["registered_name"] == "tests>Renamed"


def test_analyze_einsum_string_gives_the_kernel_shape():
    kernel_shape, bias_shape, output_shape, _, _ = _compat.analyze_einsum_string(
        "abc,cde->abde", "de", (None, 5, 8), (5, 2, 4))
    assert tuple(kernel_shape) == (8, 2, 4)
    assert tuple(bias_shape) == (2, 4)
    assert tuple(output_shape) == (None, 5, 2, 4)


def test_tfds_progress_bar_setting_is_read_back():
    import tensorflow_datasets as tfds

    before = _compat.tfds_progress_bars_shown()
    try:
        tfds.display_progress_bar(False)
        assert _compat.tfds_progress_bars_shown() is False
        tfds.display_progress_bar(True)
        assert _compat.tfds_progress_bars_shown() is True
    finally:
        tfds.display_progress_bar(before)


def test_restore_dropped_config_keeps_a_tied_llama_tied():
    import keras_hub

    backbone = keras_hub.models.Llama3Backbone(
        vocabulary_size=32, num_layers=1, num_query_heads=2,
        num_key_value_heads=1, hidden_dim=8, intermediate_dim=16,
        tie_word_embeddings=True,
    )
    lm = keras_hub.models.Llama3CausalLM(backbone=backbone, preprocessor=None)
    config = keras.saving.serialize_keras_object(lm)
    backbone_config = config["config"]["backbone"]["config"]
    # keras-hub leaves it out; when it starts writing it, drop the shim.
    assert "tie_word_embeddings" not in backbone_config
    _compat.restore_dropped_config(lm, config)
    assert backbone_config["tie_word_embeddings"] is True
    rebuilt = keras.saving.deserialize_keras_object(config)
    assert len(rebuilt.weights) == len(lm.weights)


def test_worker_registration_is_configured_with_a_barrier_and_a_limit():
    import json
    import os
    import subprocess
    import sys
    import textwrap

    # In a child: the setting belongs to the process's TensorFlow context.
    script = textwrap.dedent("""
        import json
        import tensorflow as tf
        from tensorflow.python.eager import context
        from keras_lowrank import _compat
        cluster = tf.train.ClusterSpec({"chief": ["127.0.0.1:1"],
                                        "worker": ["127.0.0.1:2", "127.0.0.1:3"]})
        _compat.configure_worker_registration(cluster, 12.5)
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
