"""One test per function of `keras_lowrank._compat.keras_hub`.

Each test checks the private keras-hub attribute, or the keras-hub defect,
the function relies on (keras-hub==0.32.0): when an upgrade changes it, the
test named after the function fails.
"""

import keras
import keras_hub
import numpy as np

from keras_lowrank._compat import keras_hub as keras_hub_compat


def _llama(**kwargs):
    backbone = keras_hub.models.Llama3Backbone(
        vocabulary_size=32, num_layers=2, num_query_heads=4,
        num_key_value_heads=2, hidden_dim=16, intermediate_dim=32, **kwargs,
    )
    return keras_hub.models.Llama3CausalLM(backbone=backbone, preprocessor=None)


def test_cache_builder_builds_keras_hubs_kv_cache():
    lm = _llama()
    builder = keras_hub_compat.cache_builder(lm)
    assert builder == lm._build_cache
    token_ids = np.array([[1, 2, 3, 4, 5]], "int32")
    hidden, cache = builder(token_ids)
    # (batch, num_layers, 2 (key, value), max_length, kv_heads, head_dim)
    assert tuple(cache.shape) == (1, 2, 2, 5, 2, 4)
    assert tuple(hidden.shape) == (1, 5, 16)
    logits, _, _ = lm.call_with_cache(token_ids, cache, 0)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(logits), keras.ops.convert_to_numpy(lm(
            {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)})),
        atol=1e-5)


def test_cache_builder_of_a_model_without_a_cache_is_none():
    assert keras_hub_compat.cache_builder(_llama().backbone) is None
    assert keras_hub_compat.cache_builder(keras.Sequential()) is None


def test_restore_dropped_config_keeps_a_tied_llama_tied():
    lm = _llama(tie_word_embeddings=True)
    config = keras.saving.serialize_keras_object(lm)
    backbone_config = config["config"]["backbone"]["config"]
    # keras-hub leaves it out; when it starts writing it, drop the shim.
    assert "tie_word_embeddings" not in backbone_config
    keras_hub_compat.restore_dropped_config(lm, config)
    assert backbone_config["tie_word_embeddings"] is True
    rebuilt = keras.saving.deserialize_keras_object(config)
    assert len(rebuilt.weights) == len(lm.weights)


def test_restore_dropped_config_is_reachable_by_its_old_path():
    from keras_lowrank import _compat

    assert _compat.restore_dropped_config is keras_hub_compat.restore_dropped_config


def test_empty_cache_builder_allocates_the_cache_without_running_the_model():
    lm = _llama()
    token_ids = np.array([[1, 2, 3, 4, 5]], "int32")
    # keras-hub's builder seeds the cache it allocates: the prompt's keys
    # and values are written, the rest stays zero.
    _, seeded = keras_hub_compat.cache_builder(lm)(token_ids)
    seeded = keras.ops.convert_to_numpy(seeded)
    assert np.abs(seeded).max() > 0
    calls = []
    lm.call_with_cache = (lambda token_ids, cache, cache_update_index:
                          calls.append(token_ids))
    try:
        hidden, cache = keras_hub_compat.empty_cache_builder(lm)(token_ids)
    finally:
        del lm.call_with_cache
    assert calls == [] and hidden is None
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(cache),
                                  np.zeros_like(seeded))
    # The model is left as it was.
    assert "call_with_cache" not in vars(lm)
    assert keras_hub_compat.cache_builder(lm) == lm._build_cache


def test_empty_cache_builder_passes_gemma3s_cache_by_keyword():
    backbone = keras_hub.models.Gemma3Backbone(
        vocabulary_size=32, image_size=None, num_layers=2, num_query_heads=2,
        num_key_value_heads=1, hidden_dim=16, intermediate_dim=32, head_dim=8)
    lm = keras_hub.models.Gemma3CausalLM(backbone=backbone, preprocessor=None)
    _, cache = keras_hub_compat.empty_cache_builder(lm)(
        np.array([[1, 2, 3]], "int32"), None, None, None, None)
    # A tuple of per-layer (key, value) pairs of (batch, length, KVH, D).
    assert len(cache) == 2
    assert {tuple(t.shape) for pair in cache for t in pair} == {(1, 3, 1, 8)}


def test_empty_cache_builder_of_a_model_without_a_cache_is_none():
    assert keras_hub_compat.empty_cache_builder(_llama().backbone) is None
    assert keras_hub_compat.empty_cache_builder(keras.Sequential()) is None
