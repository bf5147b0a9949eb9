"""Vision models with LoRA on their convolutions: adapt, train, merge, export.

A keras-hub `ResNetImageClassifier` built from a tiny config (no download):
a 3×3 stem and two basic blocks of 64 filters on 16×16 images. And a small
Functional CNN with a depthwise and a grouped convolution.
"""

import keras
import keras_hub
import numpy as np
import pytest

import keras_lowrank as klr
from keras_lowrank.adapters.adapted_model import adapters

IMAGE = (16, 16, 3)
CONV_PATHS = [
    "conv1_conv",
    "stack0_block0_1_conv",
    "stack0_block0_2_conv",
    "stack1_block0_1_conv",
    "stack1_block0_0_conv",
    "stack1_block0_2_conv",
]
RANK = 4
# Rank 4 on the stem (3, 3, 3, 64): 4·(27 + 64) = 364; on each of the four
# 3×3 convs (3, 3, 64, 64): 4·(576 + 64) = 2,560; on the 1×1 shortcut
# (1, 1, 64, 64): 4·(64 + 64) = 512. The head (64 → 3) stays trainable: 195.
ADAPTER_PARAMS = 364 + 4 * 2_560 + 512
HEAD_PARAMS = 64 * 3 + 3
RESNET_PARAMS = 155_011
TOLERANCE = 1e-4


def resnet_classifier():
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 64], stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2], block_type="basic_block", image_shape=IMAGE,
    )
    return keras_hub.models.ResNetImageClassifier(
        backbone=backbone, num_classes=3, preprocessor=None
    )


def images(batch, seed):
    return np.random.default_rng(seed).normal(size=(batch,) + IMAGE).astype("float32")


def weights_by_path(model):
    values = {w.path: w.numpy().copy() for w in model.weights}
    assert len(values) == len(model.weights)  # paths are unique
    return values


def compile_for_classes(model):
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )


@pytest.fixture(scope="module")
def trained():
    """`(base classifier, adapted and trained classifier, weights before)`."""
    keras.utils.set_random_seed(3)
    base = resnet_classifier()
    model = klr.add_adapters(base, rank=RANK, targets="*_conv")
    before = weights_by_path(model)
    compile_for_classes(model)
    history = model.fit(images(8, seed=0), np.arange(8) % 3, epochs=4,
                        batch_size=8, shuffle=False, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    return base, model, before


def test_resnet_adapts_every_conv_and_counts_exactly(trained):
    base, model, _ = trained
    assert klr.adapter_paths(model) == CONV_PATHS
    assert all(type(a) is klr.LoRAConv2D for a in adapters(model).values())
    assert klr.parameter_counts(base) == (154_243, RESNET_PARAMS)
    assert klr.parameter_counts(model) == (
        ADAPTER_PARAMS + HEAD_PARAMS, RESNET_PARAMS + ADAPTER_PARAMS)
    assert klr.parameter_counts(model)[0] == 11_311


def test_training_changes_only_factors_and_head(trained):
    _, model, before = trained
    after = weights_by_path(model)
    changed = {path for path in before if not np.array_equal(before[path], after[path])}
    factors = {f"{path}/lora_{ab}" for path in CONV_PATHS for ab in "ab"}
    assert changed == factors | {"predictions/kernel", "predictions/bias"}
    # Everything else is bit-identical: the 6 conv kernels (no bias) and the
    # 4 weights of each of the 6 BatchNorms, moving statistics included.
    assert len(before) - len(changed) == 6 + 6 * 4


def test_merge_and_files_reproduce_the_trained_model(trained, tmp_path):
    base, model, _ = trained
    x = images(4, seed=1)
    want = model.predict(x, verbose=0)
    merged = klr.merge_adapters(model)
    assert klr.adapter_paths(merged) == []
    assert type(merged.backbone.get_layer("conv1_conv")) is keras.layers.Conv2D
    assert np.abs(merged.predict(x, verbose=0) - want).max() < 1e-5

    model.save(tmp_path / "adapted.keras")
    loaded = keras.models.load_model(tmp_path / "adapted.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), want)

    klr.save_adapters(model, tmp_path / "adapters.safetensors")
    kinds = {
        path: fields["kind"]
        for path, fields in klr.read_adapter_metadata(tmp_path / "adapters.safetensors")["adapters"].items()
    }
    assert kinds == {path: "LoRAConv2D" for path in CONV_PATHS}
    again = klr.load_adapters(base, tmp_path / "adapters.safetensors")
    np.testing.assert_array_equal(again.predict(x, verbose=0), want)


def _without_deltas(model, x):
    """The model's outputs with every `B` zeroed (restored afterwards)."""
    found = adapters(model)
    saved = {path: a.lora_b.numpy().copy() for path, a in found.items()}
    for adapter in found.values():
        adapter.lora_b.assign(np.zeros(adapter.lora_b.shape, "float32"))
    try:
        return model.predict(x, verbose=0)
    finally:
        for path, adapter in found.items():
            adapter.lora_b.assign(saved[path])


@pytest.mark.parametrize("format", ["tflite", "onnx"])
def test_resnet_export_matches_keras(trained, format, tmp_path):
    _, model, _ = trained
    x = images(8, seed=2)
    # The trained deltas move the logits far beyond the tolerance, so an
    # artifact that dropped them could not pass.
    assert np.abs(model.predict(x, verbose=0) - _without_deltas(model, x)).max() > 100 * TOLERANCE
    report = klr.export(model, tmp_path / f"resnet.{format}", format, sample_inputs=x)
    assert report.verified
    assert report.max_abs_diff <= TOLERANCE
    assert report.batch_sizes_checked
    conv_op = {"tflite": "CONV_2D", "onnx": "Conv"}[format]
    assert conv_op in report.ops


def test_all_linear_leaves_convolutions_out(trained):
    base, _, _ = trained
    model = klr.add_adapters(base, rank=2, targets="all-linear", trainable=())
    assert klr.adapter_paths(model) == ["predictions"]


# === A small Functional CNN: depthwise and grouped convolutions ===


def mobile_cnn():
    inputs = keras.Input((12, 12, 4))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")(x)
    x = keras.layers.Conv2D(8, 1, groups=2, name="pw_grouped")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, name="head")(x)
    return keras.Model(inputs, outputs, name="mobile_cnn")


# Rank 2: stem (3, 3, 4, 8) 2·(36 + 8) = 88; depthwise (3, 3, 8, 1): its
# matrix is (9, 8), 2·(9 + 8) = 34; grouped 1×1 (1, 1, 4, 8): 2·(4 + 8) = 24.
MOBILE_ADAPTERS = {"stem": 88, "dw": 34, "pw_grouped": 24}
MOBILE_HEAD = 8 * 3 + 3


def test_depthwise_and_grouped_convs_train_merge_and_export(tmp_path):
    base = mobile_cnn()
    model = klr.add_adapters(
        base, rank=2, targets=list(MOBILE_ADAPTERS), trainable=("head",))
    assert [type(a).__name__ for a in adapters(model).values()] == [
        "LoRAConv2D", "LoRADepthwiseConv2D", "LoRAConv2D"]
    assert klr.parameter_counts(model) == (
        sum(MOBILE_ADAPTERS.values()) + MOBILE_HEAD,
        base.count_params() + sum(MOBILE_ADAPTERS.values()))
    before = weights_by_path(model)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 12, 12, 4)).astype("float32")
    compile_for_classes(model)
    losses = model.fit(x, np.arange(16) % 3, epochs=5, batch_size=16, verbose=0).history["loss"]
    assert losses[-1] < losses[0]
    after = weights_by_path(model)
    changed = {path for path in before if not np.array_equal(before[path], after[path])}
    assert changed == {f"{p}/lora_{ab}" for p in MOBILE_ADAPTERS for ab in "ab"} | {
        "head/kernel", "head/bias"}

    want = model.predict(x, verbose=0)
    merged = klr.merge_adapters(model)
    assert type(merged.get_layer("dw")) is keras.layers.DepthwiseConv2D
    assert np.abs(merged.predict(x, verbose=0) - want).max() < 1e-5
    report = klr.export(model, tmp_path / "mobile.tflite", "tflite", sample_inputs=x[:8])
    assert report.max_abs_diff <= TOLERANCE
    assert {"CONV_2D", "DEPTHWISE_CONV_2D"} <= set(report.ops)


def test_pissa_on_convs_starts_at_the_base_model_and_files_rebuild_it(tmp_path):
    base = mobile_cnn()
    x = np.random.default_rng(1).normal(size=(4, 12, 12, 4)).astype("float32")
    model = klr.add_adapters(base, rank=2, targets=list(MOBILE_ADAPTERS), init="pissa")
    assert np.abs(model.predict(x, verbose=0) - base.predict(x, verbose=0)).max() < 1e-5
    for adapter in adapters(model).values():
        assert adapter.pissa_rank == 2
        assert np.abs(adapter.lora_b.numpy()).max() > 0
    klr.save_adapters(model, tmp_path / "pissa.safetensors")
    again = klr.load_adapters(base, tmp_path / "pissa.safetensors")
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))


def test_shrink_conv_adapters_counts_their_matrix_view():
    model = klr.add_adapters(mobile_cnn(), rank=2, targets=list(MOBILE_ADAPTERS))
    _, report = klr.shrink_adapters(model, max_rank=1)
    rows = {row.path: row for row in report.adapters}
    assert {p: (r.params_before, r.params_after) for p, r in rows.items()} == {
        p: (n, n // 2) for p, n in MOBILE_ADAPTERS.items()}


def test_separable_conv_is_named_when_targeted():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.SeparableConv2D(4, 3, name="sep")(inputs)
    x = keras.layers.Conv2D(4, 3, name="conv")(x)
    model = keras.Model(inputs, x)
    note = r"It matched only layers no adapter exists for: sep \(SeparableConv2D\)"
    with pytest.raises(ValueError, match=r"No layer matched targets=\['sep'\].*" + note):
        klr.add_adapters(model, rank=2, targets="sep")
    with pytest.warns(UserWarning, match=r"Target pattern 'sep' matched no adaptable layer. " + note):
        adapted = klr.add_adapters(model, rank=2, targets=["sep", "conv"])
    assert klr.adapter_paths(adapted) == ["conv"]
