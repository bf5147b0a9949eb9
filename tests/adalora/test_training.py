"""AdaLoRA training: budget schedule, importance, masks, orthogonality."""

import keras
import numpy as np
import pytest

import keras_lowrank as klr
from keras_lowrank.adaptive import Importance
from keras_lowrank.adaptive import allocate
from keras_lowrank.adaptive import budget_at
from keras_lowrank.layers.adalora import orthogonality
from keras_lowrank.surgery.layer_paths import layer_paths
from tests.adalora import helpers


def test_budget_schedule_is_peft_cubic():
    options = klr.AdaLoRA(target_rank=2, total_steps=100, warmup_steps=10,
                          final_steps=20, interval=5)
    initial, target = 36, 6
    span = 100 - 20 - 10
    for step in (1, 10):
        assert budget_at(step, options, initial, target) == (36, False)
    for step in (11, 15, 40, 79, 80):
        expected = int((initial - target) * (1 - (step - 10) / span) ** 3 + target)
        assert budget_at(step, options, initial, target) == (expected, step % 5 == 0)
    assert budget_at(15, options, initial, target) == (int(30 * (1 - 5 / 70) ** 3 + 6), True)
    assert budget_at(80, options, initial, target) == (6, True)  # the last decay step
    for step in (81, 100, 130):
        assert budget_at(step, options, initial, target) == (6, True)


def test_allocate_keeps_exactly_the_budget_highest():
    scores = {"a": np.array([0.5, 0.1, 0.9]), "b": np.array([0.3, 0.3, 0.05, 0.7])}
    masks = allocate(scores, 4)
    assert masks["a"].tolist() == [1, 0, 1] and masks["b"].tolist() == [1, 0, 0, 1]
    masks = allocate(scores, 5)  # a tie at 0.3: the lower index wins
    assert masks["b"].tolist() == [1, 1, 0, 1]
    assert sum(m.sum() for m in allocate(scores, 0).values()) == 0


def test_importance_ema_equals_a_hand_computation_on_one_step():
    """One SGD step: the tapped gradient is (w0 - w1) / lr, and the EMAs
    are the paper's formulas with w1 (after the step, as PEFT)."""
    lr, beta1, beta2 = 0.1, 0.8, 0.7
    model = klr.add_adapters(helpers.mlp(), helpers.adalora_config(
        beta1=beta1, beta2=beta2, total_steps=40, warmup_steps=20, final_steps=0))
    helpers.compiled(model, keras.optimizers.SGD(lr))
    adapter = layer_paths(model)["dense_1"]
    rng = np.random.default_rng(3)
    adapter.lora_e.assign(rng.normal(size=(6,)).astype("float32"))  # P, Q get gradients
    before = {k: np.array(getattr(adapter, k)) for k in ("lora_a", "lora_e", "lora_b")}
    callback = klr.AdaLoRACallback()
    x, y = helpers.data()
    model.fit(x, y, epochs=1, batch_size=len(x), verbose=0, callbacks=[callback])
    importance = callback.importance[("dense_1", "default")]
    for key, w0 in before.items():
        w1 = np.array(getattr(adapter, key))
        gradient = (w0 - w1) / lr
        assert np.abs(gradient).max() > 1e-4, key
        np.testing.assert_allclose(
            np.array(callback.gradients[("dense_1", "default")][key]), gradient,
            atol=2e-5)
        current = np.abs(w1 * gradient)
        sensitivity = (1 - beta1) * current
        uncertainty = (1 - beta2) * np.abs(current - sensitivity)
        np.testing.assert_allclose(importance.sensitivity[key], sensitivity, atol=2e-6)
        np.testing.assert_allclose(importance.uncertainty[key], uncertainty, atol=2e-6)


def test_masking_zeroes_exactly_the_lowest_importance_triplets():
    model = klr.add_adapters(helpers.mlp(), helpers.adalora_config())
    callback = klr.AdaLoRACallback()
    callback.set_model(model)
    callback.on_train_begin()
    rng = np.random.default_rng(0)
    scores = {}
    for key, view in callback.views.items():
        view.lora_e.assign(rng.normal(size=(6,)).astype("float32") + 3)
        importance = callback.importance[key] = Importance(callback.importance[key].shapes)
        for factor in ("lora_a", "lora_e", "lora_b"):
            shape = importance.shapes[factor]
            importance.sensitivity[factor] = rng.random(shape).astype("float32")
            importance.uncertainty[factor] = rng.random(shape).astype("float32")
        scores[key] = importance.triplet_scores()
    before = {k: np.array(v.lora_e) for k, v in callback.views.items()}
    callback.apply_masks(callback.allocation(7))
    callback.on_train_end()
    everything = np.sort(np.concatenate(list(scores.values())))
    threshold = everything[-7]
    for key, view in callback.views.items():
        kept = scores[key] >= threshold
        assert np.array(view.lora_mask).tolist() == kept.astype("float32").tolist()
        np.testing.assert_array_equal(np.array(view.lora_e), before[key] * kept)
    assert sum(klr.adapter_ranks(model).values()) == 7


class _Ranks(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.sums = []

    def on_train_batch_end(self, batch, logs=None):
        self.sums.append(sum(klr.adapter_ranks(self.model).values()))


def test_budget_arithmetic_over_a_run():
    options = {"target_rank": 3, "total_steps": 12, "warmup_steps": 2,
               "final_steps": 3, "interval": 2}
    model = helpers.compiled(klr.add_adapters(helpers.mlp(), helpers.adalora_config(**options)))
    x, y = helpers.data()
    ranks = _Ranks()
    model.fit(x, y, epochs=14, batch_size=len(x), verbose=0,
              callbacks=[klr.AdaLoRACallback(), ranks])
    adaptive, initial, target = klr.AdaLoRA(**options), 18, 9
    expected = []
    for step in range(1, 15):
        budget, mask_now = budget_at(step, adaptive, initial, target)
        expected.append(budget if mask_now or step >= 9 else (expected or [initial])[-1])
    assert ranks.sums == expected
    final = klr.adapter_ranks(model)
    assert sum(final.values()) == 3 * 3  # target_rank × adapted matrices
    assert len(set(final.values())) > 1  # the budget went where it mattered
    for path, rank in final.items():  # masked Λ are zero
        adapter = layer_paths(model)[path]
        assert np.count_nonzero(np.array(adapter.lora_e)) <= rank


@pytest.mark.parametrize("weight", [0.0, 0.5])
def test_orthogonality_regularizer_changes_the_gradient(weight):
    """At step 1, Λ = 0, so the loss sends P no gradient: P moves by the
    regularizer's gradient alone, lr · w / (2n) · ∂(‖PᵀP − I‖ + ‖QQᵀ − I‖)/∂P."""
    lr = 0.1
    model = klr.add_adapters(helpers.mlp(), helpers.adalora_config(orth_reg_weight=weight))
    helpers.compiled(model, keras.optimizers.SGD(lr))
    adapter = layer_paths(model)["dense_0"]
    p0, q0 = np.array(adapter.lora_a), np.array(adapter.lora_b)
    x, y = helpers.data()
    model.fit(x, y, epochs=1, batch_size=len(x), verbose=0,
              callbacks=[klr.AdaLoRACallback()])
    p = keras.Variable(p0)
    import tensorflow as tf

    with tf.GradientTape() as tape:
        value = orthogonality(p, keras.ops.convert_to_tensor(q0))
    expected = -lr * weight / (2 * 3) * np.array(tape.gradient(value, p.value))
    moved = np.array(adapter.lora_a) - p0
    np.testing.assert_allclose(moved, expected, atol=1e-6)
    assert (np.abs(moved).max() > 1e-4) == (weight > 0)


def test_a_later_fit_without_the_callback_raises_too():
    model = helpers.compiled(klr.add_adapters(helpers.mlp(), helpers.adalora_config()))
    x, y = helpers.data()
    model.fit(x, y, epochs=1, batch_size=len(x), verbose=0, callbacks=[klr.AdaLoRACallback()])
    with pytest.raises(RuntimeError, match=r"callbacks=\[klr.AdaLoRACallback\(\)\]"):
        model.fit(x, y, epochs=1, batch_size=len(x), verbose=0)


def test_several_steps_per_execution_are_refused():
    model = klr.add_adapters(helpers.mlp(), helpers.adalora_config())
    model.compile(optimizer="adam", loss="mse", steps_per_execution=2)
    before = [np.array(w) for w in model.weights]
    x, y = helpers.data()
    with pytest.raises(ValueError, match=r"steps_per_execution=1.*Received: steps_per_execution=2"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[klr.AdaLoRACallback()])
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(before, model.weights))
