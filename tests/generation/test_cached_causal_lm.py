"""One test per keras-hub access of `cached_causal_lm`."""

import inspect

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from keras_lowrank._compat import keras_hub as keras_hub_compat
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


def _seeded_cache_shape(model, max_length):
    """The shape of the cache keras-hub's `_build_cache` returns when run
    whole (the seeding pass included) on a prompt of `max_length`."""
    builder = keras_hub_compat.cache_builder(model)
    others = len(inspect.signature(builder).parameters) - 1
    _, cache = builder(np.ones((1, max_length), "int32"), *[None] * others)
    return tuple(cached_causal_lm._from_model_cache(cache).shape)


@pytest.mark.parametrize(
    "name", sorted({**tiny_lms.MODELS, **tiny_lms.FAMILY_MODELS}))
def test_cache_shape_is_the_shape_of_the_seeded_cache(name):
    """`cache_shape` reads the allocation and leaves the seeding pass out
    (`empty_cache_builder`): the seeded cache has that shape."""
    model = {**tiny_lms.MODELS, **tiny_lms.FAMILY_MODELS}[name]()
    assert cached_causal_lm.cache_shape(model, 24) == _seeded_cache_shape(model, 24)


def test_cache_shape_traces_a_builder_that_reads_the_seeding_pass_whole():
    class ReadsTheSeedingPass(keras_hub.models.Llama3CausalLM):
        def _build_cache(self, token_ids):
            hidden_states, cache = super()._build_cache(token_ids)
            return hidden_states * 1.0, cache

    llama = tiny_lms.llama()
    model = ReadsTheSeedingPass(backbone=llama.backbone, preprocessor=None)
    with pytest.raises(TypeError):  # what the unseeded stand-in gives it
        keras_hub_compat.empty_cache_builder(model)(np.ones((1, 4), "int32"))
    assert cached_causal_lm.cache_shape(model, 24) == (1, 2, 2, 24, 2, 4)


def test_check_step_keeps_cache_refuses_a_cache_of_another_shape(tiny_models):
    model = tiny_models["llama"]
    shape = cached_causal_lm.cache_shape(model, 16)
    specs = [tf.TensorSpec((1, None), tf.int32), tf.TensorSpec(shape, tf.float32),
             tf.TensorSpec((), tf.int32)]
    keeps = tf.function(lambda ids, cache, index: cached_causal_lm.call_with_cache(
        model, ids, cache, index), input_signature=specs)
    cached_causal_lm.check_step_keeps_cache(model, keeps)
    # A cache of one layer fewer, as a model of another depth returns it.
    drops = tf.function(lambda ids, cache, index: (
        tf.zeros((1, 1, tiny_lms.VOCAB)), cache[:, 1:]), input_signature=specs)
    with pytest.raises(TypeError, match=r"returns a cache of shape "
                       r"\(1, 1, 2, 16, 2, 4\) for one of \(1, 2, 2, 16, 2, 4\)"):
        cached_causal_lm.check_step_keeps_cache(model, drops)
