"""`keras-lowrank export ... --on-device-training OPTIMIZER`: a trainable
artifact from a base model and its adapter file, and the flags' errors."""

import os

import numpy as np

import keras_lowrank as klr
from keras_lowrank.cli.main import main
from keras_lowrank.on_device.trainer import OnDeviceTrainer
from tests import tiny_models


def test_exports_a_trainable_artifact_from_an_adapter_file(tmp_path, capsys):
    base = tiny_models.bert_classifier()
    base.save(tmp_path / "base.keras")
    adapted = klr.add_adapters(base, rank=2)
    klr.save_adapters(adapted, tmp_path / "adapters.safetensors")
    out = tmp_path / "personal.tflite"
    status = main(["export", str(tmp_path / "base.keras"), "--adapters",
                   str(tmp_path / "adapters.safetensors"), "--format", "tflite",
                   "--on-device-training", "adam", "--train-batch-size", "2",
                   "--sequence-length", str(tiny_models.SEQ), "--learning-rate", "0.002",
                   "--out", str(out)])
    printed = capsys.readouterr()
    assert status == 0, printed.err
    assert "train with adam (learning rate 0.002), batch 2 x 12 tokens" in printed.out
    trainer = OnDeviceTrainer(out)
    assert trainer.metadata["training"]["learning_rate"] == 0.002
    inputs = tiny_models.bert_inputs(batch=2)
    np.testing.assert_allclose(trainer.infer(inputs), np.asarray(adapted(inputs)), atol=1e-4)


def test_training_flags_need_an_optimizer(tmp_path, capsys):
    status = main(["export", str(tmp_path / "missing.keras"), "--format", "tflite",
                   "--train-batch-size", "4", "--out", str(tmp_path / "x.tflite")])
    assert status == 2
    err = capsys.readouterr().err
    assert "--train-batch-size set how a trainable artifact trains" in err
    assert os.listdir(tmp_path) == []


def test_an_unknown_optimizer_is_one_line(tmp_path, capsys):
    status = main(["export", str(tmp_path / "missing.keras"), "--format", "tflite",
                   "--on-device-training", "rmsprop", "--out", str(tmp_path / "x.tflite")])
    assert status == 2
    assert "optimizer='rmsprop'" in capsys.readouterr().err
