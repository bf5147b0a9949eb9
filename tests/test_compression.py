"""compress: factorized layers, parameter counts, flags, saving, export."""

import collections
import json

import keras
import keras_hub
import numpy as np
import pytest

from keras_lowrank.adapters.adapted_model import add_adapters
from keras_lowrank.adapters.summary import parameter_counts
from keras_lowrank.compression.compress import compress
from keras_lowrank.layers import KernelLayout
from keras_lowrank.layers import LowRankDense
from keras_lowrank.layers import LowRankEinsumDense
from keras_lowrank.surgery.layer_paths import layer_paths
from keras_lowrank.svd import relative_error
from tests import tiny_models as tiny


def mlp(width=32, depth=2, inputs=16, seed=0):
    """A Sequential MLP whose hidden kernels have exact rank 3."""
    layers = [keras.Input((inputs,))]
    layers += [keras.layers.Dense(width, activation="relu", name=f"hidden_{i}")
               for i in range(depth)]
    model = keras.Sequential(layers + [keras.layers.Dense(4, name="out")], name="mlp")
    rng = np.random.default_rng(seed)
    for i in range(depth):
        dense = model.get_layer(f"hidden_{i}")
        fan_in = dense.kernel.shape[0]
        low = rng.standard_normal((fan_in, 3)) @ rng.standard_normal((3, width))
        dense.kernel.assign(low.astype("float32") / 4)
        dense.bias.assign(rng.standard_normal(width).astype("float32"))
    return model


def max_diff(a, b, x):
    return float(np.abs(a.predict(x, verbose=0) - b.predict(x, verbose=0)).max())


def test_exact_low_rank_kernels_keep_the_outputs():
    model = mlp()
    x = np.random.default_rng(1).standard_normal((8, 16)).astype("float32")
    compressed, report = compress(model, rank=3, exclude=["out"])
    assert max_diff(model, compressed, x) < 1e-5
    assert report.ranks == {"hidden_0": 3, "hidden_1": 3}
    paths = layer_paths(compressed)
    assert isinstance(paths["hidden_0"], LowRankDense)
    assert type(paths["out"]) is keras.layers.Dense
    # 3·(16 + 32) + 32 and 3·(32 + 32) + 32 instead of 16·32 + 32 and 32·32 + 32.
    rows = {row.path: row for row in report.layers}
    assert (rows["hidden_0"].params_before, rows["hidden_0"].params_after) == (544, 176)
    assert (rows["hidden_1"].params_before, rows["hidden_1"].params_after) == (1056, 224)
    assert rows["hidden_0"].relative_error < 1e-6 and rows["hidden_0"].energy > 1 - 1e-9
    assert report.total_params_before == model.count_params() == 1732
    assert report.total_params_after == compressed.count_params() == 1732 - 368 - 832


def test_layer_with_keras_lora_counts_its_factors_before_only():
    inputs = keras.Input((64,))
    outputs = keras.layers.Dense(64, name="proj")(inputs)
    model = keras.Model(inputs, outputs)
    model.get_layer("proj").enable_lora(4)
    compressed, report = compress(model, rank=4)
    row = report.layers[0]
    # Kernel 64·64 + Keras' LoRA 4·(64 + 64) + bias 64, then 4·(64 + 64) + 64.
    assert (row.params_before, row.params_after) == (4_672, 576)
    assert report.total_params_after == compressed.count_params() == 576
    assert report.total_params_before - report.total_params_after == (
        row.params_before - row.params_after
    )


def test_param_ratio_ranks_and_parameter_totals_on_bert():
    model = tiny.bert_classifier()
    compressed, report = compress(model, param_ratio=0.5)
    # Kernels 16x16 (query, key, value, output, pooled): floor(0.5·256/32) = 4;
    # 16x32 and 32x16 (feed-forward): floor(0.5·512/48) = 5.
    ranks = report.ranks
    assert ranks["transformer_layer_0/self_attention_layer/query"] == 4
    assert ranks["transformer_layer_1/feedforward_intermediate_dense"] == 5
    assert ranks["pooled_dense"] == 4
    assert "logits" not in ranks  # the task's head is never targeted
    assert type(layer_paths(compressed)["logits"]) is keras.layers.Dense
    assert len(ranks) == 13
    # Per layer: 4·32 = 128 instead of 256 (x 9), 5·48 = 240 instead of 512 (x 4).
    saved = 9 * (256 - 128) + 4 * (512 - 240)
    assert report.targeted_params_before - report.targeted_params_after == saved == 2240
    assert report.total_params_after == parameter_counts(compressed)[1]
    assert report.total_params_before - report.total_params_after == saved
    assert isinstance(
        layer_paths(compressed)["transformer_layer_0/self_attention_layer/query"],
        LowRankEinsumDense,
    )


def test_reported_error_is_the_factors_error():
    model = tiny.bert_classifier()
    compressed, report = compress(model, energy=0.8, targets="feedforward_*")
    originals, factored = layer_paths(model), layer_paths(compressed)
    for row in report.layers:
        assert row.status == "factorized"
        low_rank = factored[row.path]
        measured = relative_error(originals[row.path].kernel, low_rank.left, low_rank.right)
        assert abs(measured - row.relative_error) < 1e-5
        assert row.energy >= 0.8 and row.relative_error <= np.sqrt(0.2) + 1e-9
        # Balanced factors: left = U·√Σ, right = √Σ·Vᵀ, so both hold √σ_i.
        np.testing.assert_allclose(np.linalg.norm(low_rank.left.numpy(), axis=0),
                                   np.linalg.norm(low_rank.right.numpy(), axis=1),
                                   rtol=1e-4)


def test_layer_that_would_grow_is_kept_with_the_reason():
    model = mlp()
    model.get_layer("hidden_1").kernel.assign(
        np.random.default_rng(3).standard_normal((32, 32)).astype("float32"))
    compressed, report = compress(model, energy=0.99, targets=["hidden_0", "hidden_1"])
    kept = {row.path: row for row in report.layers}["hidden_1"]
    assert kept.status == "kept" and kept.params_after == kept.params_before == 1056
    k = kept.rank
    assert k > 16  # the break-even rank of a 32x32 kernel is 32·32 / 64 = 16
    assert kept.reason == (
        f"rank {k} keeps {100 * kept.energy:.3g}% energy but needs "
        f"{64 * k:,} ≥ 1,024 parameters"
    )
    assert type(layer_paths(compressed)["hidden_1"]) is keras.layers.Dense
    assert f"kept: rank {k} keeps" in str(report)


def test_einsum_dense_in_multi_head_attention():
    model = tiny.functional_with_attention()
    rng = np.random.default_rng(0)
    for name in ("query", "key", "value", "attention_output"):
        layer = layer_paths(model)[f"attention/{name}"]
        layout = KernelLayout.for_einsum(layer.equation, tuple(layer.kernel.shape))
        low = rng.standard_normal((16, 3)) @ rng.standard_normal((3, 16)) / 4
        layer.kernel.assign(keras.ops.convert_to_numpy(layout.from_matrix(low)))
    x = rng.standard_normal((2, 5, 16)).astype("float32")
    # Kernels 16 -> 2x8 and 2x8 -> 16: rank 8 would need 8·32 = 256 ≥ 256.
    _, report = compress(model, rank=8, targets=["attention/*"])
    assert [row.status for row in report.layers] == ["kept"] * 4
    compressed, report = compress(model, rank=3, targets=["attention/*"])
    assert len(report.ranks) == 4
    assert max_diff(model, compressed, x) < 1e-5
    assert isinstance(layer_paths(compressed)["attention/query"], LowRankEinsumDense)


def test_input_model_is_untouched():
    model = tiny.bert_classifier()
    weights, flags = tiny.weights_of(model), tiny.flags_of(model)
    layers = dict(layer_paths(model))
    compress(model, rank=2)
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(weights, model.weights))
    assert tiny.flags_of(model) == flags
    assert all(layer_paths(model)[p] is layer for p, layer in layers.items())
    assert type(model) is keras_hub.models.BertTextClassifier


def test_save_and_reload_keep_predictions_and_flags(tmp_path):
    model = tiny.bert_classifier()
    model.backbone.get_layer("token_embedding").trainable = False
    compressed, _ = compress(model, param_ratio=0.3)
    path = tmp_path / "compressed.keras"
    compressed.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, keras_hub.models.BertTextClassifier)
    x = tiny.bert_inputs()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), compressed.predict(x, verbose=0))
    frozen = lambda m: {p for p, t in tiny.flags_of(m).items() if not t}  # noqa: E731
    assert frozen(loaded) == frozen(compressed) == {"token_embedding"}


def test_factors_train_and_other_flags_follow_the_input():
    model = mlp()
    model.get_layer("out").trainable = False
    compressed, _ = compress(model, rank=2, targets=["hidden_0"])
    paths = layer_paths(compressed)
    assert paths["hidden_0"].trainable and paths["hidden_1"].trainable
    assert not paths["out"].trainable
    left = paths["hidden_0"].left.numpy().copy()
    compressed.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x = np.random.default_rng(0).standard_normal((16, 16)).astype("float32")
    compressed.fit(x, np.ones((16, 4), "float32"), epochs=1, verbose=0)
    assert np.abs(paths["hidden_0"].left.numpy() - left).max() > 0


def test_train_only_factors_freezes_the_rest():
    model = tiny.bert_classifier()
    compressed, report = compress(model, targets="feedforward_*", param_ratio=0.5,
                                  train_only_factors=True)
    trainable, _ = parameter_counts(compressed)
    # 4 factorized feed-forward layers: 5·48 + bias (32 or 16) each; the head
    # (logits, 16·2 + 2) stays trainable.
    assert trainable == 2 * (240 + 32) + 2 * (240 + 16) + 34 == 1090
    paths = layer_paths(compressed)
    assert not paths["transformer_layer_0/self_attention_layer/query"].trainable
    assert paths["logits"].trainable


def test_report_table_and_dict():
    compressed, report = compress(mlp(), rank=3, exclude=["out"])
    text = str(report).splitlines()
    assert text[0] == "Compression (rank=3): 2 of 2 targeted layers factorized"
    assert text[1].split() == ["path", "kernel", "rank", "params", "before",
                               "params", "after", "rel.", "error", "status"]
    assert text[2].split()[:5] == ["hidden_0", "16x32", "3", "544", "176"]
    assert text[-2] == "targeted layers: 1,600 -> 400 parameters (25.0%)"
    assert text[-1] == "model:           1,732 -> 532 parameters (30.7%)"
    data = json.loads(json.dumps(report.to_dict()))
    assert data["layers"][0]["kernel_shape"] == [16, 32]
    assert data["total_params_after"] == 532 and data["method"] == "rank=3"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, r"exactly one of `rank`, `energy` or `param_ratio`\. Received: "
             r"rank=None, energy=None, param_ratio=None"),
        ({"rank": 2, "energy": 0.9}, r"Received: rank=2, energy=0\.9, param_ratio=None"),
        ({"rank": 0}, r"`rank` to be a positive integer\. Received: rank=0"),
        ({"energy": 1.5}, r"`energy` in \(0, 1\]\. Received: energy=1\.5"),
        ({"param_ratio": 1.0}, r"`param_ratio` in \(0, 1\).*Received: param_ratio=1\.0"),
        ({"rank": 2, "targets": "attention*"},
         r"No layer matched targets=\['attention\*'\].*Dense and EinsumDense layers "
         r"of the model: hidden_0 \(Dense\), hidden_1 \(Dense\), out \(Dense\)"),
        ({"rank": 2, "targets": "hidden_*", "exclude": ["re:hidden_\\d"]},
         r"Every layer that targets=\['hidden_\*'\] matched is excluded"),
        ({"rank": 2, "targets": "re:("}, r"`targets` has an invalid regular expression"),
    ],
)
def test_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        compress(mlp(), **kwargs)


def test_head_is_listed_but_not_matched():
    with pytest.raises(ValueError, match=r"logits \(Dense, head\)"):
        compress(tiny.bert_classifier(), rank=2, targets="logits")


def test_adapted_model_must_be_merged_first():
    adapted = add_adapters(tiny.bert_classifier(), rank=2)
    with pytest.raises(ValueError, match=r"holds LoRA adapters .*`klr\.merge_adapters"):
        compress(adapted, rank=2)


def test_unmatched_patterns_warn():
    with pytest.warns(UserWarning, match=r"Target pattern 'nothing' matched no"):
        compress(mlp(), rank=2, targets=["hidden_0", "nothing"])
    with pytest.warns(UserWarning, match=r"Exclude pattern 'gone' matched no"):
        compress(mlp(), rank=2, exclude=["gone"])


def tflite_ops(path):
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_path=str(path))._get_ops_details()
    return collections.Counter(op["op_name"] for op in details)


def test_float_tflite_keeps_the_factors(tmp_path):
    from keras_lowrank.exporters import export

    model = mlp(width=96, inputs=64)
    compressed, report = compress(model, rank=3, exclude=["out"])
    # A Sequential model never called has no symbolic input: give a sample.
    x = np.random.default_rng(0).standard_normal((2, 64)).astype("float32")
    plain = export(model, tmp_path / "plain.tflite", "tflite", sample_inputs=x)
    small = export(compressed, tmp_path / "small.tflite", "tflite", sample_inputs=x)
    assert small.max_abs_diff < 1e-4
    # Kernels 64x96 + 96x96 + 96x4 = 15,744 floats, factors 3·160 + 3·192 +
    # 96x4 = 1,440: about 57 KB less.
    assert small.size_bytes < plain.size_bytes - 50_000
    matmuls = lambda ops: ops["FULLY_CONNECTED"] + ops["BATCH_MATMUL"]  # noqa: E731
    assert matmuls(tflite_ops(tmp_path / "plain.tflite")) == 3
    # Two matmuls per factorized layer (hidden_0, hidden_1), one for `out`.
    assert matmuls(tflite_ops(tmp_path / "small.tflite")) == 2 * 2 + 1
