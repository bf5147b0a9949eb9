import keras
import numpy as np
import pytest

import keras_lowrank as klr
from keras_lowrank.surgery.layer_paths import layer_paths
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



def test_pissa_adapter_file_rebuilds_the_residual_kernel(tmp_path):
    base = tiny.bert_classifier()
    original = tiny.weights_of(base)
    adapted = klr.add_adapters(base, rank=4, init="pissa")
    adapted.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    adapted.fit(tiny.bert_inputs(batch=8), np.arange(8) % 2, epochs=2, verbose=0)
    path = tmp_path / "pissa.safetensors"
    klr.save_adapters(adapted, path)
    specs = klr.read_adapter_metadata(path)["adapters"]
    assert {spec["pissa_rank"] for spec in specs.values()} == {4}
    # Only the factors and the head travel: no kernel-sized residual.
    query = "transformer_layer_1/self_attention_layer/query"
    assert layer_paths(adapted)[query].pissa_rank == 4

    loaded = klr.load_adapters(base, path)
    x = tiny.bert_inputs(batch=5, seed=3)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), adapted.predict(x, verbose=0))
    np.testing.assert_array_equal(
        layer_paths(loaded)[query].base_kernel.numpy(),
        layer_paths(adapted)[query].base_kernel.numpy(),
    )
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(original, base.weights))


def test_pissa_rank_survives_keras_files_and_shrinking(tmp_path):
    adapted = klr.add_adapters(tiny.bert_classifier(), rank=4, init="pissa")
    path = tmp_path / "pissa.keras"
    adapted.save(path)
    reloaded = keras.models.load_model(path)
    query = "transformer_layer_0/self_attention_layer/query"
    assert layer_paths(reloaded)[query].pissa_rank == 4
    shrunk, _ = klr.shrink_adapters(adapted, max_rank=2)
    assert layer_paths(shrunk)[query].rank == 2
    assert layer_paths(shrunk)[query].pissa_rank == 4


def test_pissa_rank_errors():
    dense = keras.layers.Dense(4, name="proj")
    dense.build((None, 8))
    with pytest.raises(ValueError, match=r"LoRADense\(layer='proj'\) expected `pissa_rank` "
                                         r"to be None or a positive integer\. Received: pissa_rank=0"):
        klr.LoRADense(dense, rank=2, pissa_rank=0)
