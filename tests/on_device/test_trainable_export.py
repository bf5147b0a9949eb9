"""Trainable LiteRT artifacts: the same steps as Keras' `train_on_batch`.

Tiny keras-hub models (dropout 0, so Keras trains as the device does) with
LoRA; every artifact runs in the real `ai_edge_litert`.
"""

import os

import keras
import keras_hub
import numpy as np
import pytest

import keras_lowrank as klr
from keras_lowrank.adapters.files import file_weights
from keras_lowrank.on_device import artifact_files
from keras_lowrank.on_device.op_check import operator_codes
from keras_lowrank.on_device.op_check import variable_names
from keras_lowrank.on_device.trainer import OnDeviceTrainer
from tests.tiny_models import random_factors

BATCH, SEQ, VOCAB, CLASSES, STEPS = 4, 12, 64, 3, 3
OPTIMIZERS = {
    "sgd": lambda: keras.optimizers.SGD(0.05),
    "adam": lambda: keras.optimizers.Adam(0.01),
    "adamw": lambda: keras.optimizers.AdamW(0.01, weight_decay=0.1),
}
TRAINING = {
    "sgd": klr.OnDeviceTraining(
        batch_size=BATCH, sequence_length=SEQ, optimizer="sgd", learning_rate=0.05),
    "adam": klr.OnDeviceTraining(
        batch_size=BATCH, sequence_length=SEQ, optimizer="adam", learning_rate=0.01),
    "adamw": klr.OnDeviceTraining(
        batch_size=BATCH, sequence_length=SEQ, optimizer="adamw", learning_rate=0.01,
        weight_decay=0.1),
}


def bert_base():
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=VOCAB, num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=SEQ, dropout=0.0)
    return keras_hub.models.BertTextClassifier(
        backbone=backbone, num_classes=CLASSES, preprocessor=None, dropout=0.0)


def bert_classifier():
    return random_factors(klr.add_adapters(bert_base(), rank=4), 0, spread=0.1)


def llama_causal_lm():
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.LlamaBackbone(
        vocabulary_size=VOCAB, num_layers=2, num_query_heads=4, num_key_value_heads=2,
        hidden_dim=16, intermediate_dim=32, dropout=0.0)
    model = keras_hub.models.LlamaCausalLM(backbone=backbone, preprocessor=None)
    return random_factors(klr.add_adapters(model, rank=4), 0, spread=0.1)


def classifier_batches(steps=STEPS):
    rng = np.random.default_rng(1)
    batches = []
    for _ in range(steps):
        mask = np.ones((BATCH, SEQ), "int32")
        mask[:, rng.integers(4, SEQ):] = 0
        batches.append(({
            "token_ids": rng.integers(1, VOCAB, (BATCH, SEQ)).astype("int32") * mask,
            "segment_ids": np.zeros((BATCH, SEQ), "int32"),
            "padding_mask": mask,
        }, rng.integers(0, CLASSES, BATCH).astype("int32"), None))
    return batches


def lm_batches(steps=STEPS):
    rng = np.random.default_rng(2)
    batches = []
    for _ in range(steps):
        tokens = rng.integers(1, VOCAB, (BATCH, SEQ + 1)).astype("int32")
        mask = np.zeros((BATCH, SEQ), bool)
        mask[:, :9] = True
        loss_mask = np.zeros((BATCH, SEQ), "float32")
        loss_mask[:, 4:8] = 1.0  # the completion's tokens
        batches.append(({"token_ids": tokens[:, :SEQ] * mask, "padding_mask": mask},
                        tokens[:, 1:], loss_mask))
    return batches


def export_trainable(model, path, training):
    return klr.export(model, str(path), "tflite", on_device_training=training)


def keras_steps(model, optimizer, batches):
    """`(losses, factors)` of `train_on_batch` on a copy of `model`.

    Keras' `train_step` runs eagerly: three steps need no traced train
    function. Measured against the traced step: the same losses bit for
    bit, factors within 2.1e-7; 0.45 s instead of 2.1 s of CPU on the
    classifier, 0.85 s instead of 2.5 s on the causal LM."""
    copy = klr.load_adapters(model, _factors(model))
    copy.compile(optimizer=optimizer,
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                 run_eagerly=True)
    losses = [float(copy.train_on_batch(x, y, sample_weight=w, return_dict=True)["loss"])
              for x, y, w in batches]
    return losses, _factors(copy)


def device_steps(path, batches):
    trainer = OnDeviceTrainer(path)
    losses = [trainer.train(x, y, loss_mask=w) for x, y, w in batches]
    return losses, trainer.save()


def _factors(model):
    return {k: np.asarray(w.numpy()) for k, w in file_weights(model).items() if w.trainable}


@pytest.fixture(scope="module")
def classifier():
    return bert_classifier()


@pytest.fixture(scope="module")
def causal_lm():
    return llama_causal_lm()


@pytest.fixture(scope="module")
def classifier_artifacts(classifier, tmp_path_factory):
    folder = tmp_path_factory.mktemp("classifier")
    return {name: (folder / f"{name}.tflite", export_trainable(
        classifier, folder / f"{name}.tflite", training)) for name, training in TRAINING.items()}


# The causal LM's loss (masked, over the sequence) with SGD, compared
# tightly, and with AdamW, which runs Adam's update (the same `_adam` of
# on_device/optimizers.py) after its decay. Adam alone is the classifier's:
# each optimizer and each task is compared with Keras, one trainable export
# (~13 s) fewer.
LM_OPTIMIZERS = ("adamw", "sgd")


@pytest.fixture(scope="module")
def lm_artifacts(causal_lm, tmp_path_factory):
    folder = tmp_path_factory.mktemp("causal_lm")
    return {name: (folder / f"{name}.tflite", export_trainable(
        causal_lm, folder / f"{name}.tflite", TRAINING[name])) for name in LM_OPTIMIZERS}


def _check_steps(name, device, reference):
    (device_losses, device_factors), (keras_losses, keras_factors) = device, reference
    assert sorted(device_factors) == sorted(keras_factors)
    if name == "sgd":
        np.testing.assert_allclose(device_losses, keras_losses, rtol=0, atol=1e-5)
        for key, value in keras_factors.items():
            np.testing.assert_allclose(device_factors[key], value, rtol=0, atol=1e-5, err_msg=key)
    else:
        np.testing.assert_allclose(device_losses, keras_losses, rtol=1e-4)
        for key, value in keras_factors.items():
            scale = np.max(np.abs(value))
            assert np.max(np.abs(device_factors[key] - value)) <= 1e-4 * scale, key


@pytest.mark.parametrize("name", sorted(TRAINING))
def test_classifier_steps_equal_keras(name, classifier, classifier_artifacts):
    path, report = classifier_artifacts[name]
    batches = classifier_batches()
    device = device_steps(path, batches)
    reference = keras_steps(classifier, OPTIMIZERS[name](), batches)
    _check_steps(name, device, reference)
    # Training moved the factors: the comparison is not of two untouched models.
    assert device[0][0] != device[0][-1]
    assert report.checks.logits_max_abs_diff <= 1e-4


@pytest.mark.parametrize("name", LM_OPTIMIZERS)
def test_causal_lm_steps_equal_keras(name, causal_lm, lm_artifacts):
    path, report = lm_artifacts[name]
    batches = lm_batches()
    device = device_steps(path, batches)
    reference = keras_steps(causal_lm, OPTIMIZERS[name](), batches)
    _check_steps(name, device, reference)
    assert report.task == "causal_lm"


def test_only_builtin_ops_and_the_four_signatures(classifier_artifacts, lm_artifacts):
    for path, report in [*classifier_artifacts.values(), *lm_artifacts.values()]:
        with open(path, "rb") as file:
            codes = operator_codes(file.read())
        assert [custom for _, custom in codes if custom] == []
        assert report.ops == tuple(sorted({name for name, _ in codes}))
        assert {"ASSIGN_VARIABLE", "READ_VARIABLE", "FULLY_CONNECTED"} <= set(report.ops)
    report = classifier_artifacts["sgd"][1]
    assert report.tokenizer is None and "No tokenizer inside: it trains on token ids" in str(report)
    assert f"bound {1e-4:.0e}" in str(report.checks)  # tiny logits: the absolute floor
    trainer = OnDeviceTrainer(classifier_artifacts["sgd"][0])
    assert trainer.metadata["task"] == "classifier"
    assert trainer.metadata["batch_size"] == BATCH


def test_base_is_constant_and_factors_named_as_the_adapter_file(classifier, classifier_artifacts, tmp_path):
    path, report = classifier_artifacts["sgd"]
    metadata = artifact_files.read_metadata(path)
    trained = _factors(classifier)
    assert [f["key"] for f in metadata["factors"]] == list(trained)
    from ai_edge_litert.interpreter import Interpreter

    signatures = Interpreter(model_path=str(path)).get_signature_list()
    assert sorted(signatures["save"]["outputs"]) == sorted(trained)
    assert sorted(signatures["restore"]["inputs"]) == sorted(trained)
    # 2 layers x (query, value) x (A, B), and the head's kernel and bias.
    assert len(trained) == report.factors == 10
    assert report.trained_parameters == sum(v.size for v in trained.values())
    klr.save_adapters(classifier, tmp_path / "a.safetensors")
    assert metadata["adapter_metadata"] == klr.read_adapter_metadata(tmp_path / "a.safetensors")
    # The flatbuffer's variables: the trained tensors and the step count
    # (SGD); Adam adds two moments per tensor. Every other weight is constant.
    for name, moments in (("sgd", 0), ("adam", 2)):
        with open(classifier_artifacts[name][0], "rb") as file:
            assert len(variable_names(file.read())) == len(trained) * (1 + moments) + 1
    trainer = OnDeviceTrainer(path)
    before = trainer.save()
    for key, value in before.items():
        np.testing.assert_array_equal(value, trained[key])


def test_host_model_from_device_factors_equals_infer(classifier, classifier_artifacts, tmp_path):
    path, _ = classifier_artifacts["adam"]
    trainer = OnDeviceTrainer(path)
    for x, y, _ in classifier_batches():
        trainer.train(x, y)
    factors = trainer.save()
    host = klr.load_adapters(classifier, factors)
    x = classifier_batches(1)[0][0]
    np.testing.assert_allclose(np.asarray(host(x)), trainer.infer(x), rtol=0, atol=1e-4)
    # The input model is untouched.
    for key, value in _factors(classifier).items():
        assert not np.array_equal(value, factors[key]) or "bias" in key
    # From there it is any adapted model: merged, saved, and in PEFT's format.
    merged = klr.merge_adapters(host)
    np.testing.assert_allclose(np.asarray(merged(x)), trainer.infer(x), rtol=0, atol=1e-4)
    klr.save_adapters(host, tmp_path / "device.safetensors")
    from_file = klr.load_adapters(bert_base(), str(tmp_path / "device.safetensors"))
    np.testing.assert_array_equal(np.asarray(from_file(x)), np.asarray(host(x)))
    exported = klr.export(host, str(tmp_path / "merged.tflite"), "tflite")
    assert exported.max_abs_diff <= 1e-4
    klr.save_peft_adapters(host, tmp_path / "peft")
    from_peft = klr.load_peft_adapters(bert_base(), tmp_path / "peft")
    np.testing.assert_allclose(np.asarray(from_peft(x)), trainer.infer(x), rtol=0, atol=1e-4)


def test_restore_sets_the_factors(classifier_artifacts):
    path, _ = classifier_artifacts["sgd"]
    trainer = OnDeviceTrainer(path)
    start = trainer.save()
    x, y, _ = classifier_batches(1)[0]
    first = trainer.train(x, y)
    trainer.restore(start)
    assert trainer.train(x, y) == pytest.approx(first, abs=1e-6)


# === Bad input: one clear error, nothing written ===


@pytest.mark.parametrize("fields, message", [
    ({"quantize": "dynamic"}, "quantize"),
    ({"allow_flex": True}, "allow_flex"),
    ({"metadata": "text_classifier"}, "metadata"),
    ({"tokenizer": "tokenizer.json"}, r"^`tokenizer` \(a tokenizer.json\) is for a causal LM"),
])
def test_refused_options(classifier, tmp_path, fields, message):
    path = tmp_path / "x.tflite"
    with pytest.raises(ValueError, match=message):
        klr.export(classifier, str(path), "tflite",
                   on_device_training=TRAINING["sgd"], **fields)
    assert not os.listdir(tmp_path)


def test_refuses_other_formats_and_models_without_adapters(classifier, tmp_path):
    with pytest.raises(ValueError, match="format='tflite'"):
        klr.export(classifier, str(tmp_path / "x.onnx"), "onnx",
                   on_device_training=TRAINING["sgd"])
    base = klr.merge_adapters(classifier)
    with pytest.raises(ValueError, match="holds no LoRA adapter"):
        klr.export(base, str(tmp_path / "x.tflite"), "tflite",
                   on_device_training=TRAINING["sgd"])
    with pytest.raises(ValueError, match="klr.OnDeviceTraining"):
        klr.export(classifier, str(tmp_path / "x.tflite"), "tflite",
                   on_device_training={"batch_size": 8})
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("where, fields, message", [
    ("x.tflite", {"tokenizer": "missing/tokenizer.json"}, "^`tokenizer` must be the model's"),
    ("file/x.tflite", {}, "is a file, not a folder"),
])
def test_a_bad_tokenizer_or_target_fails_before_the_conversion(
        causal_lm, tmp_path, monkeypatch, where, fields, message):
    # The conversion takes minutes on a real LM: these fail before it.
    from keras_lowrank.on_device import export as export_module

    def converted(module):
        raise AssertionError("the conversion ran")

    monkeypatch.setattr(export_module, "_convert", converted)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match=message):
        klr.export(causal_lm, str(tmp_path / where), "tflite",
                   on_device_training=TRAINING["sgd"], **fields)
    assert os.listdir(tmp_path) == ["file"]


@keras.saving.register_keras_serializable("test_on_device")
class LogGamma(keras.layers.Layer):
    """log Γ(|x| + 1): its gradient (Digamma) is no LiteRT op at all."""

    def call(self, x):
        import tensorflow as tf

        return tf.math.lgamma(tf.abs(x) + 1.0)


def test_an_op_outside_the_builtins_is_refused_naming_it_and_its_layer(tmp_path):
    inputs = {"features": keras.Input((8,), name="features")}
    hidden = LogGamma(name="log_gamma")(keras.layers.Dense(8, name="proj")(inputs["features"]))
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(hidden))
    model = klr.add_adapters(model, rank=2, targets=["proj"])
    with pytest.raises(klr.UnsupportedOpsError, match=(
            r"^The trainable artifact needs ops outside LiteRT's builtins, which phones "
            r"lack by default: Digamma in layer 'log_gamma' \(its gradient\)\.")):
        klr.export(model, str(tmp_path / "x.tflite"), "tflite",
                   on_device_training=klr.OnDeviceTraining(batch_size=2))
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("fields, message", [
    ({"batch_size": 0}, "batch_size"),
    ({"optimizer": "rmsprop"}, "optimizer='rmsprop'"),
    ({"learning_rate": -1.0}, "learning_rate"),
    ({"weight_decay": float("nan")}, "weight_decay"),
    ({"sequence_length": 1}, "sequence_length"),
])
def test_training_options_are_checked(fields, message):
    with pytest.raises(ValueError, match=message):
        klr.OnDeviceTraining(**fields)


def test_keras_defaults():
    assert klr.OnDeviceTraining(optimizer="adamw").weight_decay == 0.004
    assert klr.OnDeviceTraining(optimizer="adam").learning_rate == 0.001
    assert klr.OnDeviceTraining().learning_rate == 0.01


def test_host_factors_of_the_wrong_shape_or_keys(classifier):
    factors = _factors(classifier)
    key = next(k for k in factors if k.endswith("lora_a"))
    wrong = {**factors, key: np.zeros((3, 3), "float32")}
    with pytest.raises(ValueError, match=f"factor '{key}' has shape"):
        klr.load_adapters(classifier, wrong)
    missing = {k: v for k, v in factors.items() if k != key}
    with pytest.raises(ValueError, match="missing"):
        klr.load_adapters(classifier, missing)
    with pytest.raises(ValueError, match="holds no adapter"):
        klr.load_adapters(klr.merge_adapters(classifier), factors)
