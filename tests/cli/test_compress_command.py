"""`keras-lowrank compress` on a tiny model saved to .keras."""

import os

import keras
import keras_hub
import numpy as np
import pytest
from matplotlib import image as mpimg

import keras_lowrank as klr
from keras_lowrank.cli.main import main
from keras_lowrank.compression.compress import compress
from keras_lowrank.layers import LowRankDense
from keras_lowrank.surgery.layer_paths import layer_paths
from tests import tiny_models as tiny


@pytest.fixture
def saved(tmp_path):
    model = tiny.bert_classifier()
    path = tmp_path / "model.keras"
    model.save(path)
    return model, path


def test_compress_prints_the_report_and_saves(saved, tmp_path, capsys):
    model, path = saved
    out, plot = tmp_path / "small.keras", tmp_path / "spectrum.png"
    argv = ["compress", str(path), "--param-ratio", "0.5", "--targets",
            "feedforward_*", "--out", str(out), "--plot", str(plot)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Compression (param_ratio=0.5): 4 of 4 targeted layers factorized" in printed
    row = next(line for line in printed.splitlines()
               if line.startswith("transformer_layer_0/feedforward_intermediate_dense"))
    assert row.split() == ["transformer_layer_0/feedforward_intermediate_dense", "16x32",
                           "5", "544", "272", row.split()[5], "factorized"]
    assert f"compressed model -> {out}" in printed
    assert f"spectra of 4 layers -> {plot}" in printed
    loaded = keras.models.load_model(out, compile=False)
    assert isinstance(loaded, keras_hub.models.BertTextClassifier)
    assert isinstance(layer_paths(loaded)["transformer_layer_1/feedforward_output_dense"],
                      LowRankDense)
    expected, _ = compress(model, targets="feedforward_*", param_ratio=0.5)
    x = tiny.bert_inputs()
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected.predict(x, verbose=0),
                               atol=1e-6)
    pixels = mpimg.imread(plot)
    assert pixels.shape[0] > 300 and pixels[..., :3].std() > 0.05


def test_adapters_are_merged_first(tmp_path, capsys):
    adapted = klr.add_adapters(tiny.bert_classifier(), rank=2)
    for weight in adapted.trainable_weights:
        weight.assign(np.full(weight.shape, 0.05, "float32"))
    path, out = tmp_path / "adapted.keras", tmp_path / "out.keras"
    adapted.save(path)
    assert main(["compress", str(path), "--rank", "2", "--out", str(out)]) == 0
    assert "merged 4 adapters before compressing" in capsys.readouterr().out
    expected, _ = compress(klr.merge_adapters(adapted), rank=2)
    x = tiny.bert_inputs()
    loaded = keras.models.load_model(out, compile=False)
    np.testing.assert_allclose(loaded.predict(x, verbose=0),
                               expected.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--rank", "2", "--energy", "0.9"],
         "give exactly one of --rank, --energy or --param-ratio. Received: "
         "--rank=2, --energy=0.9, --param-ratio=None"),
        ([], "give exactly one of --rank, --energy or --param-ratio."),
        (["--energy", "1.5"], "compress expected `energy` in (0, 1]. Received: energy=1.5"),
        (["--rank", "2", "--targets", "nothing"], "No layer matched targets=['nothing']"),
        (["--rank", "2", "--plot", "x.jpg"], "--plot writes a PNG"),
    ],
)
def test_user_errors_are_one_line(saved, tmp_path, capsys, extra, message):
    _, path = saved
    out = tmp_path / "out.keras"
    assert main(["compress", str(path), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("keras-lowrank compress: error: ") and message in err
    assert "\n" not in err
    assert not out.exists()


def test_out_must_be_a_keras_file(saved, tmp_path, capsys):
    _, path = saved
    assert main(["compress", str(path), "--rank", "2", "--out", str(tmp_path / "x.h5")]) == 2
    assert "--out must end with .keras" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--out", "--plot"])
def test_an_unwritable_output_fails_before_loading(tmp_path, capsys, flag):
    taken = tmp_path / ("taken.keras" if flag == "--out" else "taken.png")
    taken.mkdir()
    paths = {"--out": str(tmp_path / "c.keras"), "--plot": str(tmp_path / "p.png"),
             flag: str(taken)}
    argv = ["compress", str(tmp_path / "missing.keras"), "--rank", "2",
            "--out", paths["--out"], "--plot", paths["--plot"]]
    assert main(argv) == 2  # not "MODEL ... does not exist": checked first
    assert capsys.readouterr().err.splitlines() == [
        f"keras-lowrank compress: error: Cannot write a file at '{taken}': it is "
        "an existing folder. Choose another path or remove the folder."
    ]
    assert os.listdir(tmp_path) == [taken.name]
