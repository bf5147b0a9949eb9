import keras
import numpy as np

import keras_lowrank as klr
from keras_lowrank.model_surgery import layer_paths
from tests import tiny_models as tiny


def test_pissa_keeps_outputs_and_starts_at_the_principal_part():
    model = tiny.bert_classifier()
    x = tiny.bert_inputs()
    adapted = klr.add_adapters(model, targets="all-linear", rank=4, alpha=8, init="pissa")
    diff = np.abs(adapted.predict(x, verbose=0) - model.predict(x, verbose=0)).max()
    assert diff < 1e-5
    original = layer_paths(model)["transformer_layer_0/self_attention_layer/query"]
    adapter = layer_paths(adapted)["transformer_layer_0/self_attention_layer/query"]
    w = adapter.layout.to_matrix(original.kernel).numpy().astype("float64")
    s = np.linalg.svd(w, compute_uv=False)
    delta = adapter.layout.to_matrix(adapter.delta_kernel()).numpy()
    # s·A·B is the best rank-4 approximation: its singular values are W's top 4.
    np.testing.assert_allclose(np.linalg.svd(delta, compute_uv=False)[:4], s[:4], rtol=1e-4)
    residual = adapter.layout.to_matrix(adapter.base_kernel).numpy()
    np.testing.assert_allclose(np.linalg.svd(residual, compute_uv=False)[:4], s[4:8], rtol=1e-4)
    # Both factors train from a non-zero start.
    assert np.abs(adapter.lora_b.numpy()).max() > 0


def test_pissa_does_not_touch_the_input_model():
    model = tiny.bert_classifier()
    before = [w.numpy().copy() for w in model.weights]
    klr.add_adapters(model, rank=2, init="pissa")
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, model.weights))


def test_pissa_merge_recovers_the_original_kernel():
    model = tiny.sequential_mlp()
    adapted = klr.add_adapters(model, targets="hidden", rank=3, init="pissa")
    merged = klr.merge_adapters(adapted)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer_paths(merged)["hidden"].kernel),
        keras.ops.convert_to_numpy(layer_paths(model)["hidden"].kernel),
        atol=1e-6,
    )
