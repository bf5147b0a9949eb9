"""A causal LM whose output head is its token embedding (SmolLM2) stays tied
through `add_adapters` and `merge_adapters` (keras-hub's config drops the
tie: `_compat.keras_hub.restore_dropped_config`)."""

import keras_hub
import numpy as np

import keras_lowrank as klr


def _tied_llama():
    backbone = keras_hub.models.Llama3Backbone(
        vocabulary_size=32, num_layers=2, num_query_heads=2,
        num_key_value_heads=1, hidden_dim=8, intermediate_dim=16,
        tie_word_embeddings=True,
    )
    return keras_hub.models.Llama3CausalLM(backbone=backbone, preprocessor=None)


def test_adapters_and_merge_keep_a_tied_model_tied():
    lm = _tied_llama()
    inputs = {"token_ids": np.arange(1, 9)[None], "padding_mask": np.ones((1, 8), bool)}
    adapted = klr.add_adapters(lm, targets="all-linear", rank=2)
    assert adapted.backbone.tie_word_embeddings
    # Only the factors were added: the same weights plus 2 per adapted kernel.
    paths = klr.adapter_paths(adapted)
    assert len(adapted.weights) == len(lm.weights) + 2 * len(paths)
    # Zero-initialised B: the adapted model computes what the base does.
    np.testing.assert_array_equal(adapted.predict(inputs, verbose=0),
                                  lm.predict(inputs, verbose=0))
    for weight in adapted.trainable_weights:
        if weight.path.endswith("lora_b"):
            weight.assign(np.random.default_rng(0).normal(size=weight.shape) * 0.1)
    merged = klr.merge_adapters(adapted)
    assert merged.backbone.tie_word_embeddings
    assert len(merged.weights) == len(lm.weights)
    diff = np.abs(merged.predict(inputs, verbose=0) - adapted.predict(inputs, verbose=0))
    assert 0 < np.abs(adapted.predict(inputs, verbose=0) - lm.predict(inputs, verbose=0)).max()
    assert diff.max() < 1e-5
