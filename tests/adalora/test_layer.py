"""The AdaLoRA adapter layer: its delta, merge, config, and bad input."""

import keras
import numpy as np
import pytest

import keras_lowrank as klr
from keras_lowrank.layers.adalora import AdaLoRAVariant
from keras_lowrank.surgery.layer_paths import layer_paths
from tests import tiny_models as tiny
from tests.adalora import helpers


def _random_adalora(layer, rank, rng):
    adapter = klr.LoRADense(layer, rank=rank, alpha=3.0, variant="adalora") \
        if isinstance(layer, keras.layers.Dense) else \
        klr.LoRAEinsumDense(layer, rank=rank, alpha=3.0, variant="adalora")
    p = rng.normal(size=adapter.lora_a.shape).astype("float32")
    q = rng.normal(size=adapter.lora_b.shape).astype("float32")
    e = rng.normal(size=(rank,)).astype("float32")
    mask = (rng.random(rank) < 0.6).astype("float32")
    for weight, value in ((adapter.lora_a, p), (adapter.lora_b, q),
                          (adapter.lora_e, e), (adapter.lora_mask, mask)):
        weight.assign(value)
    return adapter, p, e, q, mask


@pytest.mark.parametrize("seed", range(4))
def test_merge_equals_unmerged_and_the_formula(seed):
    rng = np.random.default_rng(seed)
    if seed % 2:
        layer = keras.layers.Dense(12, name="d")
        layer.build((None, 10))
        x = rng.normal(size=(5, 10)).astype("float32")
    else:
        layer = keras.layers.EinsumDense("abc,cde->abde", output_shape=(None, 3, 4),
                                         bias_axes="de", name="e")
        layer.build((None, 6, 10))
        x = rng.normal(size=(5, 6, 10)).astype("float32")
    layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.weights])
    rank = 5
    adapter, p, e, q, mask = _random_adalora(layer, rank, rng)
    merged = adapter.merge()
    assert helpers.max_diff(adapter(x), merged(x)) < 1e-5
    # W + s·P·diag(Λ⊙m)·Q, s = alpha / ranknum, in the kernel's shape.
    delta = (3.0 / rank) * (p * (e * mask)) @ q  # (fan_in, fan_out)
    kernel = np.asarray(layer.kernel).reshape(delta.shape) + delta
    merged_kernel = np.asarray(merged.kernel).reshape(delta.shape)
    assert helpers.max_diff(merged_kernel, kernel) < 1e-5


def test_outputs_start_at_the_wrapped_layers():
    model = tiny.bert_classifier()
    x = tiny.bert_inputs()
    adapted = klr.add_adapters(model, klr.LoRAConfig(
        rank=4, targets="all-linear", adaptive=klr.AdaLoRA(target_rank=2, total_steps=10)))
    assert helpers.max_diff(model(x), adapted(x)) == 0.0
    assert len(klr.adapter_paths(adapted)) == 13
    query = layer_paths(adapted)["transformer_layer_0/self_attention_layer/query"]
    assert float(np.std(query.lora_a)) == pytest.approx(0.02, rel=0.3)  # PEFT's init
    assert float(np.std(query.lora_b)) == pytest.approx(0.02, rel=0.3)
    assert np.all(np.asarray(query.lora_e) == 0)
    assert set(klr.adapter_ranks(adapted).values()) == {4}


def test_config_round_trip_and_trainable_weights():
    layer = keras.layers.Dense(8)
    layer.build((None, 6))
    adapter = klr.LoRADense(layer, rank=3, variant="adalora")
    config = adapter.get_config()
    again = klr.LoRADense.from_config(config)
    assert again.get_config() == config
    assert sorted(w.name for w in adapter.trainable_weights) == ["lora_a", "lora_b", "lora_e"]
    assert sorted(w.name for w in adapter.non_trainable_weights if "lora" in w.name) == [
        "lora_mask", "lora_ranknum"]


def test_bad_options_are_refused_in_one_line():
    with pytest.raises(ValueError, match=r"target_rank=8 is above the initial rank=4"):
        klr.LoRAConfig(rank=4, adaptive=klr.AdaLoRA(target_rank=8, total_steps=100))
    with pytest.raises(ValueError, match=r"rank_pattern\['q'\]=2"):
        klr.LoRAConfig(rank=8, rank_pattern={"q": 2},
                       adaptive=klr.AdaLoRA(target_rank=4, total_steps=100))
    with pytest.raises(ValueError, match=r"total_steps > warmup_steps \+ final_steps"):
        klr.AdaLoRA(total_steps=10, warmup_steps=5, final_steps=5)
    with pytest.raises(ValueError, match=r"expected `total_steps`"):
        klr.AdaLoRA()
    with pytest.raises(ValueError, match=r"`interval` to be a positive integer"):
        klr.AdaLoRA(total_steps=10, interval=0)
    with pytest.raises(ValueError, match=r"`beta1` in \(0, 1\)"):
        klr.AdaLoRA(total_steps=10, beta1=1.0)
    with pytest.raises(ValueError, match=r"`orth_reg_weight` >= 0"):
        klr.AdaLoRA(total_steps=10, orth_reg_weight=-1)
    with pytest.raises(ValueError, match=r"DoRA or AdaLoRA, not both"):
        klr.LoRAConfig(use_dora=True, adaptive=klr.AdaLoRA(total_steps=10))
    embedding = keras.layers.Embedding(10, 8)
    embedding.build((None,))
    with pytest.raises(ValueError, match=r"'adalora' variant does not support Embedding"):
        klr.LoRAEmbedding(embedding, rank=2, variant="adalora")


def test_config_round_trips_through_json():
    config = helpers.adalora_config()
    assert klr.LoRAConfig.from_json(config.to_json()) == config
    assert config.spec_for("dense_0").variant == AdaLoRAVariant.name


def test_fit_without_the_callback_raises_before_any_step():
    model = helpers.compiled(klr.add_adapters(helpers.mlp(), helpers.adalora_config()))
    before = [np.array(w) for w in model.weights]
    x, y = helpers.data()
    with pytest.raises(RuntimeError, match=r"callbacks=\[klr.AdaLoRACallback\(\)\]"):
        model.fit(x, y, epochs=1, verbose=0)
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(before, model.weights))
