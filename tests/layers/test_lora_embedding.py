import keras
import keras_hub
import numpy as np

import keras_lowrank as klr


def test_lookup_adds_gathered_delta(rng):
    table = keras.layers.Embedding(30, 6)
    table.build()
    lora = klr.LoRAEmbedding(table, rank=2, alpha=4)
    lora.lora_b.assign(rng.normal(size=(2, 6)).astype("float32"))
    ids = rng.integers(0, 30, size=(4, 5))
    full = keras.ops.convert_to_numpy(table.embeddings + lora.delta_kernel())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(lora(ids)), full[ids], atol=1e-6)
    assert lora.lora_a.shape == (30, 2) and lora.lora_b.shape == (2, 6)


def test_mask_zero_is_kept(rng):
    table = keras.layers.Embedding(10, 4, mask_zero=True)
    table.build()
    lora = klr.LoRAEmbedding(table, rank=2)
    ids = np.array([[3, 4, 0, 0]])
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(lora.compute_mask(ids)), [[True, True, False, False]]
    )


def test_tied_reversible_embedding_in_reverse(rng):
    table = keras_hub.layers.ReversibleEmbedding(25, 8, tie_weights=True)
    table.build()
    lora = klr.LoRAEmbedding(table, rank=3)
    hidden = rng.normal(size=(2, 4, 8)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(lora(hidden, reverse=True)),
        keras.ops.convert_to_numpy(table(hidden, reverse=True)),
        atol=1e-6,
    )
    lora.lora_b.assign(rng.normal(size=(3, 8)).astype("float32"))
    merged = lora.merge()
    assert type(merged) is type(table)
    diff = keras.ops.convert_to_numpy(merged(hidden, reverse=True) - lora(hidden, reverse=True))
    assert np.abs(diff).max() < 1e-5


def test_reverse_dtype_is_kept_under_mixed_precision(rng):
    keras.config.set_dtype_policy("mixed_bfloat16")
    table = keras_hub.layers.ReversibleEmbedding(25, 8, tie_weights=True, reverse_dtype="float32")
    table.build()
    lora = klr.LoRAEmbedding(table, rank=3)
    hidden = keras.ops.cast(rng.normal(size=(2, 4, 8)), "bfloat16")
    got, want = lora(hidden, reverse=True), table(hidden, reverse=True)
    assert keras.backend.standardize_dtype(got.dtype) == "float32"
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(got), keras.ops.convert_to_numpy(want))
