"""The commands on a `.keras` file of an adapted plain functional `keras.Model`.

`klr.add_adapters` on a Functional model gives a rewritten model whose
config records the base model's config. Loading the file used to leave that
record emptied (Keras' `Functional.from_config` pops "layers", ... out of the
dict it is given, and `rewritten_model.from_config` kept that very dict), so
the next rewrite of the loaded model (the merge inside `export`, `merge`)
failed with "Functional.__init__() missing 2 required positional arguments";
and a merged functional model lost the swapped layers' nodes from its config
(`Functional._nodes` is keyed by the layers' ids).
"""

import keras
import numpy as np
import pytest

import keras_lowrank as klr
from keras_lowrank.cli.main import main
from keras_lowrank.exporters import get_format
from tests import tiny_models as tiny


@pytest.fixture
def functional_file(tmp_path):
    model = klr.add_adapters(tiny.functional_with_attention(), rank=2,
                             targets="all-linear")
    rng = np.random.default_rng(0)
    for weight in model.trainable_weights:
        weight.assign(rng.normal(0.0, 0.1, weight.shape).astype("float32"))
    path = tmp_path / "functional.keras"
    model.save(path)
    return model, str(path)


def _inputs():
    return np.random.default_rng(1).normal(size=(4, 5, 16)).astype("float32")


def test_inspect_an_adapted_functional_file(functional_file, capsys):
    model, path = functional_file
    assert main(["inspect", path]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0] == (
        f"Functional 'functional': {len(klr.adapter_paths(model))} adapted layers")
    assert klr.trainable_summary(model) in printed


def test_export_an_adapted_functional_file(functional_file, tmp_path, capsys):
    model, path = functional_file
    out = tmp_path / "functional.onnx"
    assert main(["export", path, "--format", "onnx", "--out", str(out)]) == 0
    runner = get_format("onnx").runner(str(out))
    (name,) = runner.input_names
    outputs = runner({name: _inputs()})[runner.output_names[0]]
    expected = np.asarray(model.predict(_inputs(), verbose=0))
    assert float(np.abs(outputs - expected).max()) < 1e-5


def test_merge_an_adapted_functional_file(functional_file, tmp_path, capsys):
    model, path = functional_file
    out = tmp_path / "merged.keras"
    assert main(["merge", path, "--out", str(out)]) == 0
    merged = keras.models.load_model(out, compile=False)
    # The plain Keras class again, not keras_lowrank's rewritten one.
    assert type(merged).__module__.startswith("keras.")
    assert klr.adapter_paths(merged) == []
    difference = merged.predict(_inputs(), verbose=0) - model.predict(_inputs(), verbose=0)
    assert float(np.abs(difference).max()) < 1e-5
