import os

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
    merged = keras.models.load_model(out, compile=False)
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


def test_loading_a_keras_task_prints_no_compile_warning(adapted_file, recwarn,
                                                        capsys):
    _, path = adapted_file
    assert main(["inspect", str(path)]) == 0
    assert [str(w.message) for w in recwarn if "compile" in str(w.message)] == []
    assert capsys.readouterr().err == ""


def test_inspect_a_file_that_is_not_safetensors(tmp_path, capsys):
    path = tmp_path / "a.safetensors"
    path.write_text("not safetensors")
    assert main(["inspect", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"keras-lowrank inspect: error: '{path}' is not a safetensors adapter "
        "file (Error while deserializing header: header too large). Give a "
        "file written by save_adapters."
    ]


def test_merge_refuses_a_folder_holding_other_files_before_loading(
        tmp_path, occupied_folder, model_never_loaded, capsys):
    out = occupied_folder
    assert main(["merge", "adapted.keras", "--out", str(out)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"keras-lowrank merge: error: '{out}' is an existing folder holding "
        "other files (notes.txt), not an earlier output of this kind (a folder "
        "with config.json and metadata.json); it was left as it is. Choose "
        "another path or remove the folder."
    ]
    assert (out / "notes.txt").read_text() == "mine"
    assert os.listdir(tmp_path) == ["mywork"]


def test_merge_replaces_its_own_earlier_preset(adapted_file, tmp_path):
    _, path = adapted_file
    out = tmp_path / "preset"
    assert main(["merge", str(path), "--out", str(out)]) == 0
    first = sorted(os.listdir(out))
    (out / "model.weights.h5").write_bytes(b"stale")
    assert main(["merge", str(path), "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == first
    assert (out / "model.weights.h5").stat().st_size > 1000
    assert sorted(os.listdir(tmp_path)) == ["adapted.keras", "preset"]


@pytest.mark.parametrize(
    "out, line",
    [
        ("notes.txt/merged.keras",
         "Cannot write '{root}/notes.txt/merged.keras': '{root}/notes.txt' is a "
         "file, not a folder. Choose another path or remove that file."),
        ("notes.txt/preset",
         "Cannot write '{root}/notes.txt/preset': '{root}/notes.txt' is a file, "
         "not a folder. Choose another path or remove that file."),
        ("folder.keras",
         "Cannot write a file at '{root}/folder.keras': it is an existing "
         "folder. Choose another path or remove the folder."),
        ("notes.txt",
         "Cannot write a folder at '{root}/notes.txt': it is an existing file. "
         "Choose another path or remove the file."),
    ],
)
def test_merge_to_an_unwritable_out_is_one_line(adapted_file, tmp_path, capsys,
                                                out, line):
    _, path = adapted_file
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "folder.keras").mkdir()
    assert main(["merge", str(path), "--out", str(tmp_path / out)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "keras-lowrank merge: error: " + line.format(root=tmp_path)
    ]
    assert sorted(os.listdir(tmp_path)) == ["adapted.keras", "folder.keras", "notes.txt"]
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_inspect_lists_named_adapters_with_their_variant_and_params(tmp_path, capsys):
    from tests import tiny_models as tiny

    model = klr.add_adapters(tiny.bert_classifier(), rank=2, use_dora=True)
    model = klr.add_adapters(model, rank=3, targets=["key"], adapter_name="extra")
    path = tmp_path / "named.keras"
    model.save(path)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    # DoRA: 2 x (16 + 16) + the 16 magnitudes; the inactive adapter is marked.
    assert ("transformer_layer_0/self_attention_layer/query  LoRAEinsumDense  2     2      "
            "1      80      default (inactive)  dora") in out
    assert "transformer_layer_0/self_attention_layer/key    LoRAEinsumDense  3     3      1      96      extra               lora" in out
    klr.save_adapters(model, tmp_path / "named.safetensors")
    assert main(["inspect", str(tmp_path / "named.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "adapter file for BertTextClassifier: 6 adapted layers" in out
    assert ("transformer_layer_1/self_attention_layer/key    LoRAEinsumDense  3     3      "
            "16x2x8  extra    lora") in out
    assert "transformer_layer_1/self_attention_layer/value  LoRAEinsumDense  2     2      16x2x8  default  dora" in out
