"""AdaLoRA adapter files and merge: surviving triplets only, exact round trip."""

import numpy as np
import pytest
from safetensors.numpy import load_file

import keras_lowrank as klr
from keras_lowrank.surgery.layer_paths import layer_paths
from tests.adalora import helpers


@pytest.fixture(scope="module")
def trained():
    return helpers.trained()


def test_file_keeps_the_surviving_triplets_and_loads_back_exactly(trained, tmp_path):
    path = str(tmp_path / "adalora.safetensors")
    klr.save_adapters(trained, path)
    tensors = load_file(path)
    ranks = klr.adapter_ranks(trained)
    assert sum(ranks.values()) == 9 and min(ranks.values()) < 6
    for layer_path, rank in ranks.items():
        adapter = layer_paths(trained)[layer_path]
        kept = np.flatnonzero(np.array(adapter.lora_mask))
        assert len(kept) == rank
        np.testing.assert_array_equal(tensors[f"{layer_path}/lora_a"], np.array(adapter.lora_a)[:, kept])
        np.testing.assert_array_equal(tensors[f"{layer_path}/lora_e"], np.array(adapter.lora_e)[kept])
        np.testing.assert_array_equal(tensors[f"{layer_path}/lora_b"], np.array(adapter.lora_b)[kept])
        assert tensors[f"{layer_path}/lora_ranknum"] == 6  # the scale stays alpha / 6
    metadata = klr.read_adapter_metadata(path)
    assert {p: m["rank"] for p, m in metadata["adapters"].items()} == ranks
    loaded = klr.load_adapters(helpers.mlp(), path)
    assert klr.adapter_ranks(loaded) == ranks
    x, _ = helpers.data(seed=4)
    assert helpers.max_diff(loaded(x), trained(x)) < 1e-6
    for layer_path in ranks:
        a, b = layer_paths(loaded)[layer_path], layer_paths(trained)[layer_path]
        assert helpers.max_diff(a.delta_kernel(), b.delta_kernel()) < 1e-7
    # Saved again, the file is the same.
    again = str(tmp_path / "again.safetensors")
    klr.save_adapters(loaded, again)
    second = load_file(again)
    assert sorted(second) == sorted(tensors)
    assert all(np.array_equal(second[k], tensors[k]) for k in tensors)


def test_merge_equals_the_trained_model(trained):
    merged = klr.merge_adapters(trained)
    assert klr.adapter_paths(merged) == []
    x, _ = helpers.data(seed=5)
    assert helpers.max_diff(merged(x), trained(x)) < 1e-5
    for path in klr.adapter_ranks(trained):
        adapter = layer_paths(trained)[path]
        p, e, q = (np.array(adapter.lora_a), np.array(adapter.lora_e), np.array(adapter.lora_b))
        mask = np.array(adapter.lora_mask)
        kernel = np.array(adapter.layer.kernel) + (adapter.alpha / 6) * (p * (e * mask)) @ q
        assert helpers.max_diff(layer_paths(merged)[path].kernel, kernel) < 1e-6


def test_a_fully_pruned_layer_is_left_out(trained, tmp_path):
    model = helpers.trained()
    adapter = layer_paths(model)["dense_2"]
    adapter.lora_mask.assign(np.zeros(6, "float32"))
    path = str(tmp_path / "pruned.safetensors")
    klr.save_adapters(model, path)
    assert "dense_2" not in klr.read_adapter_metadata(path)["adapters"]
    loaded = klr.load_adapters(helpers.mlp(), path)
    x, _ = helpers.data(seed=6)
    assert helpers.max_diff(loaded(x), model(x)) < 1e-6


def test_keras_save_and_load_keeps_the_masks(trained, tmp_path):
    import keras

    path = str(tmp_path / "model.keras")
    trained.save(path)
    loaded = keras.saving.load_model(path)
    assert klr.adapter_ranks(loaded) == klr.adapter_ranks(trained)
    x, _ = helpers.data(seed=7)
    assert helpers.max_diff(loaded(x), trained(x)) == 0.0
