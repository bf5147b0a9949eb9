import json

import keras
import keras_hub
import numpy as np
import pytest

import keras_lowrank as klr
from keras_lowrank.surgery.layer_paths import layer_paths
from tests import tiny_models as tiny


def randomized(model, scale=0.2):
    rng = np.random.default_rng(3)
    for w in model.trainable_weights:
        w.assign(rng.normal(size=w.shape).astype("float32") * scale)
    return model


@pytest.mark.parametrize("targets", [("query", "value"), "all-linear", ("token_embedding", "key")])
def test_merged_bert_matches_and_is_plain(targets, tmp_path):
    adapted = randomized(klr.add_adapters(tiny.bert_classifier(), targets=targets, rank=3))
    x = tiny.bert_inputs()
    merged = klr.merge_adapters(adapted)
    assert type(merged) is keras_hub.models.BertTextClassifier
    assert klr.adapter_paths(merged) == []
    diff = np.abs(merged.predict(x, verbose=0) - adapted.predict(x, verbose=0)).max()
    assert diff < 1e-5
    config = json.dumps(keras.saving.serialize_keras_object(merged))
    assert "keras_lowrank" not in config and "lora" not in config.lower()
    # Plain keras-hub can save and load it.
    merged.save_to_preset(str(tmp_path / "preset"))
    reloaded = keras_hub.models.BertTextClassifier.from_preset(str(tmp_path / "preset"))
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), merged.predict(x, verbose=0), atol=1e-6)
    assert klr.parameter_counts(merged)[1] == klr.parameter_counts(tiny.bert_classifier())[1]
    # As a freshly loaded model: every weight trainable again.
    assert klr.parameter_counts(merged)[0] == klr.parameter_counts(merged)[1]


def test_merge_leaves_adapted_model_untouched():
    adapted = randomized(klr.add_adapters(tiny.bert_classifier(), rank=2))
    before = [w.numpy().copy() for w in adapted.weights]
    layers = dict(layer_paths(adapted))
    klr.merge_adapters(adapted)
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, adapted.weights))
    assert all(layer_paths(adapted)[p] is l for p, l in layers.items())
    assert len(klr.adapter_paths(adapted)) == 4


def test_preprocessor_is_kept_or_stays_detached():
    adapted = randomized(klr.add_adapters(tiny.bert_classifier_with_preprocessor(), rank=2))
    merged = klr.merge_adapters(adapted)
    assert merged.preprocessor is adapted.preprocessor
    diff = np.abs(merged.predict(tiny.TEXTS, verbose=0) - adapted.predict(tiny.TEXTS, verbose=0))
    assert diff.max() < 1e-5
    # Detached to feed token ids: the merged copy must not grow back a
    # preprocessor rebuilt from config, which would have no vocabulary.
    adapted.preprocessor = None
    merged = klr.merge_adapters(adapted)
    assert merged.preprocessor is None
    x = tiny.bert_inputs()
    diff = np.abs(merged.predict(x, verbose=0) - adapted.predict(x, verbose=0)).max()
    assert diff < 1e-5


def test_merged_kernel_is_w_plus_delta():
    adapted = randomized(klr.add_adapters(tiny.sequential_mlp(), targets="hidden", rank=2))
    adapter = layer_paths(adapted)["hidden"]
    want = keras.ops.convert_to_numpy(adapter.base_kernel + adapter.delta_kernel())
    merged = klr.merge_adapters(adapted)
    np.testing.assert_allclose(layer_paths(merged)["hidden"].kernel.numpy(), want, atol=1e-7)
    assert type(merged) is keras.Sequential


def test_merged_causal_lm_generates_the_same():
    adapted = randomized(klr.add_adapters(tiny.gpt2_causal_lm(), targets="all-linear", rank=2), 0.05)
    merged = klr.merge_adapters(adapted)
    assert type(merged) is keras_hub.models.GPT2CausalLM
    for m in (adapted, merged):
        m.compile(sampler="greedy")
    x = tiny.lm_inputs()
    np.testing.assert_array_equal(
        merged.generate(x, max_length=tiny.SEQ, stop_token_ids=None)["token_ids"],
        adapted.generate(x, max_length=tiny.SEQ, stop_token_ids=None)["token_ids"],
    )


def test_model_without_adapters_is_returned_as_is():
    model = tiny.sequential_mlp()
    assert klr.merge_adapters(model) is model
