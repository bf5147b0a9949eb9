"""One test per keras-hub access of `cached_causal_lm`."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_lowrank.generation import cached_causal_lm
from tests.generation import tiny_lms


@pytest.mark.parametrize("name", sorted(tiny_lms.MODELS))
def test_keras_hub_causal_lms_take_a_cache(tiny_models, name):
    model = tiny_models[name]
    assert cached_causal_lm.is_cached_causal_lm(model)
    shape = cached_causal_lm.cache_shape(model, 24)
    assert shape[:4] == (1, 2, 2, 24) and len(shape) == 6
    logits, cache = cached_causal_lm.call_with_cache(
        model, np.array([[3, 4]], "int32"), np.zeros(shape, "float32"), 0)
    assert tuple(logits.shape) == (1, 2, tiny_lms.VOCAB)
    assert tuple(cache.shape) == shape
    assert cached_causal_lm.vocabulary_size(model) == tiny_lms.VOCAB
    # Another length from the shape traced once: keras-hub's call takes it.
    longer = cached_causal_lm.cache_shape(model, 40)
    assert longer == shape[:3] + (40,) + shape[4:]
    _, cache = cached_causal_lm.call_with_cache(
        model, np.array([[3, 4]], "int32"), np.zeros(longer, "float32"), 0)
    assert tuple(cache.shape) == longer


def test_other_models_do_not(tiny_models):
    assert not cached_causal_lm.is_cached_causal_lm(tiny_models["llama"].backbone)
    assert not cached_causal_lm.is_cached_causal_lm(keras.Sequential())
    assert not cached_causal_lm.is_cached_causal_lm("model")


def test_max_positions(tiny_models):
    assert cached_causal_lm.max_positions(tiny_models["gpt2"]) == tiny_lms.MAX_LENGTH
    assert cached_causal_lm.max_positions(tiny_models["llama"]) is None


def test_onnx_friendly_slice_update_equals_slice_update():
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(1, 10, 3, 4)).astype("float32")
    updates = rng.normal(size=(1, 4, 3, 4)).astype("float32")
    start = [0, tf.constant(5), 0, 0]
    expected = keras.ops.slice_update(inputs, start, updates)
    with cached_causal_lm.onnx_friendly_slice_update():
        assert keras.ops.slice_update is cached_causal_lm._pad_and_select_update
        got = keras.ops.slice_update(inputs, start, updates)
    assert keras.ops.slice_update is not cached_causal_lm._pad_and_select_update
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))


@pytest.mark.parametrize("name", sorted(tiny_lms.MODELS))
def test_attention_layers_write_the_cache_with_slice_update(tiny_models, name):
    """The patch reaches keras-hub's attention: no DynamicUpdateSlice left."""
    model = tiny_models[name]
    shape = cached_causal_lm.cache_shape(model, 16)

    def step(token_ids, cache, index):
        return cached_causal_lm.call_with_cache(model, token_ids, cache, index)

    specs = [tf.TensorSpec((1, 1), tf.int32), tf.TensorSpec(shape, tf.float32),
             tf.TensorSpec((), tf.int32)]

    def op_types():
        graph = tf.function(step).get_concrete_function(*specs).graph
        return {op.type for op in graph.get_operations()}

    assert "XlaDynamicUpdateSlice" in op_types()
    with cached_causal_lm.onnx_friendly_slice_update():
        patched = op_types()
    assert "XlaDynamicUpdateSlice" not in patched and "SelectV2" in patched
