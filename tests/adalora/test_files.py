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


def test_an_adalora_adapter_beside_a_named_lora_adapter(tmp_path):
    """A file of a model whose layers hold an AdaLoRA adapter ("default",
    pruned) and a plain LoRA one ("lora"): the AdaLoRA adapter keeps its
    surviving triplets, the LoRA one stays whole, and each gives back its
    own outputs after loading and after merging."""
    trained = helpers.trained()
    layer_paths(trained)["dense_2"].lora_mask.assign(np.zeros(6, "float32"))
    ranks = klr.adapter_ranks(trained)
    model = klr.add_adapters(trained, rank=2, targets="re:dense_.*", adapter_name="lora")
    rng = np.random.default_rng(8)
    for path in ("dense_0", "dense_1", "dense_2"):
        view = layer_paths(model)[path].view("lora")
        view.lora_b.assign(rng.normal(scale=0.5, size=view.lora_b.shape).astype("float32"))
    x, _ = helpers.data(seed=9)
    outputs = {}
    for name in ("default", "lora"):
        klr.set_adapter(model, name)
        outputs[name] = np.array(model(x))
    assert helpers.max_diff(outputs["default"], trained(x)) == 0.0

    path = str(tmp_path / "both.safetensors")
    klr.save_adapters(model, path)
    tensors = load_file(path)
    for layer_path, rank in ranks.items():
        assert tensors[f"{layer_path}/lora_e"].shape == (rank,) if rank else \
            f"{layer_path}/lora_e" not in tensors
    loaded = klr.load_adapters(helpers.mlp(), path)
    assert klr.adapter_names(loaded) == ["default", "lora"]
    assert klr.adapter_ranks(loaded, "default") == {p: r for p, r in ranks.items() if r}
    # dense_2 lost its AdaLoRA adapter and keeps the LoRA one.
    assert layer_paths(loaded)["dense_2"].adapter_names == ("lora",)
    for name in ("default", "lora"):
        klr.set_adapter(loaded, name)
        klr.set_adapter(model, name)
        assert helpers.max_diff(loaded(x), outputs[name]) < 1e-6
        merged = klr.merge_adapters(model, adapter_name=name)
        assert klr.adapter_paths(merged) == []
        assert helpers.max_diff(merged(x), outputs[name]) < 1e-5
