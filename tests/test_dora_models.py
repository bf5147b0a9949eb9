"""DoRA through the model API: config, add_adapters, files, merge, PiSSA, shrink."""

import json

import keras
import keras_hub
import numpy as np
import pytest

import keras_lowrank as klr
from keras_lowrank.adapters.adapted_model import adapters
from keras_lowrank.layers import DoRAVariant
from keras_lowrank.surgery.layer_paths import layer_paths
from tests import tiny_models as tiny

QUERY = "transformer_layer_0/self_attention_layer/query"


def randomized(model, seed=3):
    """Random non-zero factors, and magnitudes away from `‖W‖_c`."""
    rng = np.random.default_rng(seed)
    for adapter in adapters(model).values():
        adapter.lora_a.assign(rng.normal(0, 0.3, adapter.lora_a.shape).astype("float32"))
        adapter.lora_b.assign(rng.normal(0, 0.3, adapter.lora_b.shape).astype("float32"))
        m = adapter.lora_magnitude.numpy() * rng.uniform(0.5, 1.5, adapter.lora_magnitude.shape)
        adapter.lora_magnitude.assign(m.astype("float32"))
    return model


def predict(model, x):
    return model.predict(x, verbose=0)


@pytest.fixture(scope="module")
def base():
    """The tiny BERT classifier the tests adapt; `add_adapters` returns new
    models and leaves it as it is (tests/test_adapted_model.py)."""
    return tiny.bert_classifier()


# === LoRAConfig ===


def test_use_dora_gives_the_dora_variant():
    config = klr.LoRAConfig(rank=4, use_dora=True, rank_pattern={"value": 2})
    assert config.spec_for("t/self_attention_layer/value") == klr.AdapterSpec(
        rank=2, variant="dora"
    )
    assert klr.LoRAConfig().spec_for("query").variant == "lora"
    assert klr.LoRAConfig().use_dora is False


def test_use_dora_round_trips_through_dict_and_json():
    config = klr.LoRAConfig(rank=4, alpha=8, use_dora=True, init="pissa")
    data = json.loads(json.dumps(config.to_dict()))
    assert data["use_dora"] is True
    assert klr.LoRAConfig.from_dict(data) == config
    assert klr.LoRAConfig.from_json(config.to_json()) == config
    # Configs recorded before the field existed read as plain LoRA.
    del data["use_dora"]
    assert klr.LoRAConfig.from_dict(data).use_dora is False


@pytest.mark.parametrize("value", [1, "yes", None, np.bool_(True)])
def test_use_dora_must_be_a_bool(value):
    with pytest.raises(
        ValueError,
        match=rf"LoRAConfig expected `use_dora` to be True or False\. "
        rf"Received: use_dora={value!r}",
    ):
        klr.LoRAConfig(use_dora=value)


# === add_adapters ===


def test_outputs_start_at_the_base_and_parameter_counts_are_exact(base):
    x = tiny.bert_inputs()
    lora = klr.add_adapters(base, targets="all-linear", rank=4)
    dora = klr.add_adapters(base, targets="all-linear", rank=4, use_dora=True)
    # m / ‖W'‖_c is 1 up to rounding (the norm is taken eagerly at init, in
    # the traced graph in predict).
    assert np.abs(predict(dora, x) - predict(base, x)).max() < 1e-6
    # 13 adapters: per block q, k, v, attention output (16 -> 16), the
    # feed-forward pair (16 -> 32 -> 16), and the pooler (16 -> 16). DoRA
    # adds fan_out values each: 2·(4·16 + 32 + 16) + 16 = 240.
    assert klr.parameter_counts(dora)[0] - klr.parameter_counts(lora)[0] == 240
    assert klr.parameter_counts(dora)[0] == 2160 + 34  # adapters + the head
    assert klr.parameter_counts(dora)[1] == klr.parameter_counts(base)[1] + 2160
    for adapter in adapters(dora).values():
        assert adapter.variant is DoRAVariant
        w = keras.ops.convert_to_numpy(adapter.layout.to_matrix(adapter.base_kernel))
        np.testing.assert_allclose(adapter.lora_magnitude.numpy(),
                                   np.linalg.norm(w, axis=0), rtol=1e-6)


def test_an_embedding_target_is_refused_with_its_path(base):
    with pytest.raises(
        ValueError,
        match=r"Layer 'token_embedding': LoRAEmbedding\(layer='token_embedding'\): the "
        r"'dora' variant does not support Embedding layers",
    ):
        klr.add_adapters(base, targets=("token_embedding", "query"),
                         use_dora=True)


def test_training_moves_the_magnitudes():
    model = klr.add_adapters(tiny.bert_classifier(), rank=2, use_dora=True)
    before = {p: a.lora_magnitude.numpy().copy() for p, a in adapters(model).items()}
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        # Two steps: tracing a train step takes 8 times as long as running
        # them eagerly (a traced DoRA fit: tests/layers/test_dora.py).
        run_eagerly=True,
    )
    model.fit(tiny.bert_inputs(batch=8), np.arange(8) % 2, epochs=2, verbose=0)
    moved = [np.abs(a.lora_magnitude.numpy() - before[p]).max()
             for p, a in adapters(model).items()]
    assert min(moved) > 1e-4


# === Files ===


def test_adapter_file_round_trip_is_bit_identical(base, tmp_path):
    model = randomized(klr.add_adapters(base, targets="all-linear", rank=2, use_dora=True))
    path = tmp_path / "dora.safetensors"
    klr.save_adapters(model, path)
    from safetensors.numpy import load_file

    tensors = load_file(path)
    np.testing.assert_array_equal(tensors[f"{QUERY}/lora_magnitude"],
                                  adapters(model)[QUERY].lora_magnitude.numpy())
    assert len(tensors) == 13 * 3 + 2  # A, B, magnitude of 13 adapters; the head
    meta = klr.read_adapter_metadata(path)
    assert meta["adapters"][QUERY]["variant"] == "dora"
    assert meta["config"]["use_dora"] is True

    loaded = klr.load_adapters(base, path)
    x = tiny.bert_inputs(batch=4, seed=2)
    np.testing.assert_array_equal(predict(loaded, x), predict(model, x))
    assert adapters(loaded)[QUERY].variant is DoRAVariant
    assert klr.parameter_counts(loaded) == klr.parameter_counts(model)


def test_keras_file_round_trip_keeps_the_magnitudes(base, tmp_path):
    model = randomized(klr.add_adapters(base, rank=2, use_dora=True))
    model.save(tmp_path / "dora.keras")
    loaded = keras.models.load_model(tmp_path / "dora.keras")
    x = tiny.bert_inputs()
    np.testing.assert_array_equal(predict(loaded, x), predict(model, x))
    np.testing.assert_array_equal(adapters(loaded)[QUERY].lora_magnitude.numpy(),
                                  adapters(model)[QUERY].lora_magnitude.numpy())


# === Merge ===


@pytest.mark.parametrize(
    "build, inputs, cls",
    [
        (tiny.bert_classifier, tiny.bert_inputs, keras_hub.models.BertTextClassifier),
        (tiny.gpt2_causal_lm, tiny.lm_inputs, keras_hub.models.GPT2CausalLM),
    ],
    ids=["bert", "gpt2"],
)
def test_merge_adapters_matches_the_adapted_model(build, inputs, cls):
    adapted = randomized(klr.add_adapters(build(), targets="all-linear", rank=3,
                                          alpha=6, use_dora=True))
    x = inputs()
    merged = klr.merge_adapters(adapted)
    assert type(merged) is cls and klr.adapter_paths(merged) == []
    assert np.abs(predict(merged, x) - predict(adapted, x)).max() < 1e-5
    config = json.dumps(keras.saving.serialize_keras_object(merged))
    assert "lora" not in config.lower()
    # The merged kernel is m / ‖W + ΔW‖_c · (W + ΔW).
    query = klr.adapter_paths(adapted)[0]
    adapter = adapters(adapted)[query]
    w = keras.ops.convert_to_numpy(adapter.layout.to_matrix(adapter.base_kernel))
    w = w + keras.ops.convert_to_numpy(adapter.layout.to_matrix(adapter.delta_kernel()))
    want = w * adapter.lora_magnitude.numpy() / np.linalg.norm(w, axis=0)
    got = adapter.layout.to_matrix(layer_paths(merged)[query].kernel).numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)


# === PiSSA with DoRA: the magnitude starts after the split ===


def test_pissa_with_dora_starts_at_the_base_and_reloads(base, tmp_path):
    x = tiny.bert_inputs()
    model = klr.add_adapters(base, targets="all-linear", rank=4, init="pissa", use_dora=True)
    assert np.abs(predict(model, x) - predict(base, x)).max() < 1e-5
    adapter = adapters(model)[QUERY]
    original = adapter.layout.to_matrix(layer_paths(base)[QUERY].kernel).numpy()
    # The residual plus the principal part is W: m starts at ‖W‖_c.
    np.testing.assert_allclose(adapter.lora_magnitude.numpy(),
                               np.linalg.norm(original, axis=0), rtol=1e-5)
    assert adapter.pissa_rank == 4 and np.abs(adapter.lora_b.numpy()).max() > 0

    randomized(model)
    path = tmp_path / "pissa_dora.safetensors"
    klr.save_adapters(model, path)
    loaded = klr.load_adapters(base, path)
    np.testing.assert_array_equal(predict(loaded, x), predict(model, x))
    merged = klr.merge_adapters(model)
    assert np.abs(predict(merged, x) - predict(model, x)).max() < 1e-5


# === shrink_adapters: truncates the delta the merged kernel sees ===


def _merged_matrix(adapter):
    kernel = adapter.merged_kernel()
    return keras.ops.convert_to_numpy(adapter.layout.to_matrix(kernel)).astype("float64")


def test_shrink_keeps_the_column_scale_and_is_optimal(base):
    model = randomized(klr.add_adapters(base, targets="all-linear",
                                        rank=4, alpha=8, use_dora=True))
    x = tiny.bert_inputs()
    shrunk, report = klr.shrink_adapters(model, max_rank=2, sample_inputs=x)
    assert set(report.ranks.values()) == {2}
    # 13 adapters: 4·(sum of fan_in + fan_out) + sum of fan_out -> 2·(...) + ...
    assert (report.params_before, report.params_after) == (2160, 2160 - 2 * 480)
    for row in report.adapters:
        old, new = adapters(model)[row.path], adapters(shrunk)[row.path]
        assert new.variant is DoRAVariant and new.scale == pytest.approx(old.scale)
        np.testing.assert_allclose(DoRAVariant.column_scale(new),
                                   DoRAVariant.column_scale(old), rtol=1e-5)
        # ‖K - K'‖_2 is the reported σ_{k+1} of s·A·B·diag(c) ...
        change = _merged_matrix(old) - _merged_matrix(new)
        assert np.linalg.norm(change, 2) == pytest.approx(row.spectral_error, rel=1e-3)
        # ... which no other rank-2 delta under the same column scale beats:
        # the plain truncation of s·A·B (magnitudes kept) does worse.
        c = DoRAVariant.column_scale(old).astype("float64")
        w = keras.ops.convert_to_numpy(old.layout.to_matrix(old.base_kernel))
        delta = keras.ops.convert_to_numpy(old.layout.to_matrix(old.delta_kernel()))
        u, s, vt = np.linalg.svd(delta.astype("float64"), full_matrices=False)
        naive = w + (u[:, :2] * s[:2]) @ vt[:2]
        naive = naive * old.lora_magnitude.numpy() / np.linalg.norm(naive, axis=0)
        assert np.linalg.norm(_merged_matrix(old) - naive, 2) > row.spectral_error
        assert np.all(c > 0)
    assert report.max_abs_diff > 0


def test_shrink_to_the_same_rank_changes_nothing(base):
    model = randomized(klr.add_adapters(base, rank=3, use_dora=True))
    x = tiny.bert_inputs()
    shrunk, report = klr.shrink_adapters(model, energy=1.0, sample_inputs=x)
    assert set(report.ranks.values()) == {3}
    assert report.max_abs_diff == 0.0
    assert report.params_before == report.params_after == 4 * (3 * 32 + 16)


def test_shrink_an_exactly_low_rank_dora_delta_loses_nothing(base):
    model = klr.add_adapters(base, rank=4, use_dora=True)
    rng = np.random.default_rng(0)
    for adapter in adapters(model).values():
        a = rng.normal(0, 0.3, adapter.lora_a.shape)
        a[:, 2:] = 0.0  # rank-2 delta in a rank-4 adapter
        adapter.lora_a.assign(a.astype("float32"))
        adapter.lora_b.assign(rng.normal(0, 0.3, adapter.lora_b.shape).astype("float32"))
        m = adapter.lora_magnitude.numpy() * rng.uniform(0.5, 1.5, adapter.lora_magnitude.shape)
        adapter.lora_magnitude.assign(m.astype("float32"))
    x = tiny.bert_inputs()
    shrunk, report = klr.shrink_adapters(model, energy=0.99999, sample_inputs=x)
    assert set(report.ranks.values()) == {2}
    assert report.max_abs_diff < 1e-5
