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
