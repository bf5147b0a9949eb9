import keras
import keras_hub
import numpy as np
import pytest

import keras_lowrank as klr
from keras_lowrank.cli.main import main
from tests import tiny_models as tiny


@pytest.fixture
def adapted_file(tmp_path):
    model = klr.add_adapters(tiny.bert_classifier(), rank=2)
    for w in model.trainable_weights:
        w.assign(np.full(w.shape, 0.05, "float32"))
    path = tmp_path / "adapted.keras"
    model.save(path)
    return model, path


def test_merge_keras_file(adapted_file, tmp_path, capsys):
    model, path = adapted_file
    out = tmp_path / "merged.keras"
    assert main(["merge", str(path), "--out", str(out)]) == 0
    merged = keras.models.load_model(out)
    assert type(merged) is keras_hub.models.BertTextClassifier
    x = tiny.bert_inputs()
    assert np.abs(merged.predict(x, verbose=0) - model.predict(x, verbose=0)).max() < 1e-5
    assert "merged 4 adapters" in capsys.readouterr().out


def test_merge_to_preset_folder(adapted_file, tmp_path):
    model, path = adapted_file
    out = tmp_path / "preset"
    assert main(["merge", str(path), "--out", str(out)]) == 0
    reloaded = keras_hub.models.BertTextClassifier.from_preset(str(out))
    x = tiny.bert_inputs()
    assert np.abs(reloaded.predict(x, verbose=0) - model.predict(x, verbose=0)).max() < 1e-5


def test_inspect_model_and_adapter_file(adapted_file, tmp_path, capsys):
    model, path = adapted_file
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "4 adapted layers" in out
    assert "transformer_layer_1/self_attention_layer/value  LoRAEinsumDense  2" in out
    assert "trainable params: 290 ||" in out  # 4 adapters x 2 x (16 + 16) + head 34
    klr.save_adapters(model, tmp_path / "a.safetensors")
    assert main(["inspect", str(tmp_path / "a.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "adapter file for BertTextClassifier: 4 adapted layers" in out
    assert "fully trained layers: logits" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["merge", "missing.keras", "--out", "x.keras"], "MODEL 'missing.keras' does not exist"),
        (["inspect", "setup.cfg"], "is a file but not a .keras file"),
    ],
)
def test_user_errors_are_one_line_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_merge_refuses_a_model_without_adapters(tmp_path, capsys):
    path = tmp_path / "plain.keras"
    tiny.sequential_mlp().save(path)
    assert main(["merge", str(path), "--out", str(tmp_path / "m.keras")]) == 2
    assert "holds no adapters to merge" in capsys.readouterr().err
    assert not (tmp_path / "m.keras").exists()
