"""shrink_adapters: ranks by energy and max_rank, exact outputs, merge, files."""

import json

import keras
import numpy as np
import pytest

import keras_lowrank as klr
from keras_lowrank.adapters.adapted_model import adapters
from keras_lowrank.adapters.shrinking import shrink_adapters
from keras_lowrank.surgery.layer_paths import layer_paths
from tests import tiny_models as tiny

QUERY = "transformer_layer_0/self_attention_layer/query"


def set_delta(adapter, spectrum, seed=0):
    """Gives `adapter` a delta `s·A·B` with singular values `spectrum`.

    The factors are mixed by a random invertible `R` (A·R, R⁻¹·B), so they are
    neither orthogonal nor balanced, as trained factors are not.
    """
    rng = np.random.default_rng(seed)
    m, r = adapter.lora_a.shape
    n = adapter.lora_b.shape[1]
    sigma = np.zeros(r)
    sigma[: len(spectrum)] = spectrum
    u = np.linalg.qr(rng.standard_normal((m, r)))[0]
    v = np.linalg.qr(rng.standard_normal((n, r)))[0]
    mix = rng.standard_normal((r, r)) + 3 * np.eye(r)
    a = u * sigma @ mix
    b = np.linalg.solve(mix, v.T) / adapter.scale
    adapter.lora_a.assign(a.astype("float32"))
    adapter.lora_b.assign(b.astype("float32"))
    return sigma[: len(spectrum)]


def adapted(rank=8, base=None, **kwargs):
    base = base or tiny.bert_classifier()
    model = klr.add_adapters(base, rank=rank, alpha=16, **kwargs)
    for i, adapter in enumerate(adapters(model).values()):
        set_delta(adapter, [3.0, 2.0, 1.5], seed=i)
    return model


@pytest.fixture(scope="module")
def base():
    return tiny.bert_classifier()


@pytest.fixture(scope="module")
def model(base):
    """`adapted()` on `base`, shared by the tests that only read it:
    `shrink_adapters` leaves its input as it was
    (test_input_untouched_and_unchanged_ranks_kept_as_they_are)."""
    return adapted(base=base)


def delta_matrix(adapter):
    return keras.ops.convert_to_numpy(adapter.layout.to_matrix(adapter.delta_kernel()))


def test_a_rank_3_delta_shrinks_to_3_with_equal_outputs(model):
    x = tiny.bert_inputs()
    shrunk, report = shrink_adapters(model, energy=0.9999, sample_inputs=x)
    assert report.ranks == {path: 3 for path in adapters(model)}
    assert report.max_abs_diff < 1e-5
    assert np.abs(shrunk.predict(x, verbose=0) - model.predict(x, verbose=0)).max() < 1e-5
    old, new = adapters(model)[QUERY], adapters(shrunk)[QUERY]
    assert new.rank == 3 and new.scale == pytest.approx(old.scale) == 2.0
    assert new.alpha == pytest.approx(6.0)  # s' = alpha' / 3 = 2
    np.testing.assert_allclose(delta_matrix(new), delta_matrix(old), atol=1e-5)
    # 4 adapters of 16x16: 8·32 -> 3·32 parameters each.
    assert (report.params_before, report.params_after) == (4 * 256, 4 * 96)
    row = report.adapters[0]
    assert row.relative_error < 1e-6 and row.energy > 1 - 1e-9


def test_energy_gives_the_analytic_rank(base):
    model = klr.add_adapters(base, rank=8)
    spectrum = 2.0 ** -np.arange(8)  # σ² shares: 0.75, 0.9375, ... of the total
    set_delta(adapters(model)[QUERY], spectrum)
    # Random factors: the rank is that of the full matrix's spectrum.
    value = adapters(model)["transformer_layer_0/self_attention_layer/value"]
    rng = np.random.default_rng(5)
    value.lora_a.assign(rng.standard_normal((16, 8)).astype("float32"))
    value.lora_b.assign(rng.standard_normal((8, 16)).astype("float32"))
    s = np.linalg.svd(delta_matrix(value).astype("float64"), compute_uv=False)
    expected = int(np.argmax(np.cumsum(s**2) / np.sum(s**2) >= 0.9)) + 1

    _, report = shrink_adapters(model, energy=0.9)
    rows = {row.path: row for row in report.adapters}
    assert rows[QUERY].rank_after == 2
    total = np.sum(spectrum**2)
    assert rows[QUERY].energy == pytest.approx(np.sum(spectrum[:2] ** 2) / total)
    assert rows[QUERY].relative_error == pytest.approx(np.sqrt(np.sum(spectrum[2:] ** 2) / total))
    assert rows["transformer_layer_0/self_attention_layer/value"].rank_after == expected
    assert 1 < expected < 8


def test_max_rank_caps_and_energy_combines(model):
    shrunk, report = shrink_adapters(model, max_rank=2)
    assert set(report.ranks.values()) == {2}
    row = report.adapters[0]
    assert row.relative_error == pytest.approx(1.5 / np.sqrt(9 + 4 + 2.25), rel=1e-5)
    assert row.spectral_error == pytest.approx(1.5, rel=1e-5)  # σ_3, dropped
    _, report = shrink_adapters(model, energy=0.5, max_rank=2)
    assert set(report.ranks.values()) == {1}  # 9 / 15.25 >= 0.5 already


def test_lossy_shrink_reports_the_output_difference_and_layer_bounds(model):
    x = tiny.bert_inputs(batch=6, seed=2)
    shrunk, report = shrink_adapters(model, max_rank=1, sample_inputs=x)
    actual = np.abs(shrunk.predict(x, verbose=0) - model.predict(x, verbose=0)).max()
    assert report.max_abs_diff == pytest.approx(float(actual), rel=1e-6)
    assert report.max_abs_diff > 1e-5  # the lossless shrink stays below 1e-5
    # Each layer's operator-norm change is exactly the dropped σ_2 = 2.
    for row in report.adapters:
        new = adapters(shrunk)[row.path]
        change = delta_matrix(new) - delta_matrix(adapters(model)[row.path])
        assert row.spectral_error == pytest.approx(2.0, rel=1e-5)
        assert np.linalg.norm(change.astype("float64"), 2) == pytest.approx(2.0, rel=1e-4)
    assert "spectral error" in str(report)


def test_merge_of_the_shrunk_model_is_within_the_reported_error(model):
    shrunk, report = shrink_adapters(model, max_rank=2)
    merged, merged_shrunk = klr.merge_adapters(model), klr.merge_adapters(shrunk)
    originals = adapters(model)
    for row in report.adapters:
        old = layer_paths(merged)[row.path]
        new = layer_paths(merged_shrunk)[row.path]
        diff = np.linalg.norm(new.kernel.numpy() - old.kernel.numpy())
        delta = np.linalg.norm(delta_matrix(originals[row.path]))
        assert diff == pytest.approx(row.relative_error * delta, rel=1e-3)


def test_adapter_files_of_the_shrunk_model(base, model, tmp_path):
    shrunk, _ = shrink_adapters(model, energy=0.9999)
    path = tmp_path / "shrunk.safetensors"
    klr.save_adapters(shrunk, path)
    metadata = klr.read_adapter_metadata(path)
    assert metadata["adapters"][QUERY]["rank"] == 3
    assert metadata["adapters"][QUERY]["alpha"] == pytest.approx(6.0)
    loaded = klr.load_adapters(base, path)
    x = tiny.bert_inputs()
    assert np.abs(loaded.predict(x, verbose=0) - shrunk.predict(x, verbose=0)).max() < 1e-6


def test_rslora_dropout_and_flags_are_kept(base):
    model = adapted(base=base, use_rslora=True, dropout=0.1)
    shrunk, _ = shrink_adapters(model, max_rank=3)
    old, new = adapters(model)[QUERY], adapters(shrunk)[QUERY]
    assert new.use_rslora and new.dropout == 0.1
    assert new.scale == pytest.approx(old.scale)  # 16 / sqrt(8) = alpha' / sqrt(3)
    np.testing.assert_allclose(delta_matrix(new), delta_matrix(old), atol=1e-5)
    def frozen(m):
        return {p for p, layer in layer_paths(m).items() if layer.weights and not layer.trainable}

    assert frozen(shrunk) == frozen(model) and "token_embedding" in frozen(model)
    assert klr.parameter_counts(shrunk)[0] == 4 * 3 * 32 + 34  # factors and head


def test_input_untouched_and_unchanged_ranks_kept_as_they_are(model):
    weights = tiny.weights_of(model)
    shrunk, report = shrink_adapters(model, max_rank=8)
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(weights, model.weights))
    assert set(report.ranks.values()) == {8}
    for path, adapter in adapters(shrunk).items():
        np.testing.assert_array_equal(adapter.lora_a.numpy(), adapters(model)[path].lora_a.numpy())


def test_an_untrained_adapter_keeps_a_trainable_direction():
    model = klr.add_adapters(tiny.sequential_mlp(), targets="hidden", rank=4)
    shrunk, report = shrink_adapters(model, energy=0.9)
    new = adapters(shrunk)["hidden"]
    assert new.rank == 1 and report.adapters[0].relative_error == 0.0
    assert np.abs(new.lora_b.numpy()).max() == 0
    assert np.linalg.norm(new.lora_a.numpy()) == pytest.approx(1.0, rel=1e-5)


def test_report_table_and_dict(model):
    _, report = shrink_adapters(model, max_rank=3, sample_inputs=tiny.bert_inputs())
    lines = str(report).splitlines()
    assert lines[0] == "Adapter shrinking (max_rank=3): 4 adapters"
    assert lines[1].split()[:3] == ["path", "rank", "before"]
    assert lines[2].split()[:3] == [QUERY, "8", "3"]
    assert lines[-2] == "adapter params: 1,024 -> 384 (37.5%)"
    assert lines[-1].startswith("max abs output difference: ")
    data = json.loads(json.dumps(report.to_dict()))
    assert data["params_after"] == 384 and data["adapters"][0]["rank_after"] == 3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, r"expected `energy`, `max_rank` or both\. Received: energy=None, max_rank=None"),
        ({"energy": 0.0}, r"`energy` in \(0, 1\]\. Received: energy=0\.0"),
        ({"max_rank": 0}, r"`max_rank` to be a positive integer\. Received: max_rank=0"),
        ({"max_rank": 2.5}, r"Received: max_rank=2\.5"),
    ],
)
def test_argument_errors(kwargs, match, model):
    with pytest.raises(ValueError, match=match):
        shrink_adapters(model, **kwargs)


def test_model_without_adapters():
    with pytest.raises(ValueError, match=r"holds no LoRA adapter to shrink"):
        shrink_adapters(tiny.sequential_mlp(), energy=0.9)
