"""`export_session`: the exports of one model share merge, SavedModel and
Keras' outputs, and write the artifacts they write on their own (but for
the tensor names that hold Keras' layer counters).

The tiny raw-text BERT classifier of `text_models` with rank-2 adapters
(random `lora_b`, so the merge moves the logits) is exported as a run
exports it: LiteRT dynamic, the MediaPipe text classifier and LiteRT int8
(calibrated, judged on `eval_data`), once export by export and once in a
session.
"""

import os

import numpy as np
import pytest

import keras_lowrank as klr
from keras_lowrank.adapters.adapted_model import adapters
from keras_lowrank.exporters import artifact_checks
from keras_lowrank.exporters.session import export_session
from keras_lowrank.exporters.session import in_session
from keras_lowrank.exporters.session import shared_keras_outputs
from keras_lowrank.exporters.session import shared_saved_model
from keras_lowrank.exporters import text_classifier
from keras_lowrank.exporters import tflite
from tests import tiny_models as tiny
from tests.exporters.helpers import dense_model
from tests.exporters.helpers import keras_call
from tests.exporters.helpers import max_abs_diff
from tests.exporters.helpers import run_tflite
from tests.exporters.helpers import runtime_inputs
from tests.exporters.text_models import LABELS
from tests.exporters.text_models import TEXTS
from tests.exporters.text_models import toy_data

pytest.importorskip("mediapipe")

CALIBRATION = toy_data(32, seed=21)[0]
EVAL = toy_data(64, seed=22)
# Measured on this machine, or (the size) moved by the tensor names.
NOT_COMPARED = ("latency_ms", "latency_by_length", "size_bytes", "path")


@pytest.fixture(scope="module")
def adapted(text_model):
    return tiny.random_factors(klr.add_adapters(text_model, rank=2), seed=0, spread=0.2)


@pytest.fixture
def counts(monkeypatch):
    """Calls of `merge_adapters` and of the SavedModel writers."""
    counted = {"merges": 0, "saved_models": 0}

    def counting(name, function):
        def wrapper(*args, **kwargs):
            counted[name] += 1
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(artifact_checks, "merge_adapters",
                        counting("merges", artifact_checks.merge_adapters))
    for module in (tflite, text_classifier):
        monkeypatch.setattr(module, "write_saved_model",
                            counting("saved_models", module.write_saved_model))
    return counted


def _run_exports(model, folder):
    """What a run exports: `{file: report dict}`."""
    os.makedirs(folder, exist_ok=True)
    arguments = {
        "model.tflite": dict(quantize="dynamic", sample_inputs=TEXTS),
        "model_text_classifier.tflite": dict(
            metadata="text_classifier", labels=list(LABELS), eval_data=EVAL),
        "model_int8.tflite": dict(quantize="int8", calibration_data=CALIBRATION,
                                  eval_data=EVAL),
    }
    return {
        file: klr.export(model, os.path.join(folder, file), "tflite", **kwargs).to_dict()
        for file, kwargs in arguments.items()
    }


def _without_tensor_names(path):
    """The flatbuffer with every tensor name left out: the same ops, tensors,
    weights, quantization and metadata. Names hold Keras' process-wide
    layer counters (`softmax_4` in one merge, `softmax_6` in the next)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            tensor.name = None
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _compared(report):
    return {k: v for k, v in report.items() if k not in NOT_COMPARED}


def test_a_session_merges_once_and_writes_the_same_artifacts(adapted, counts, tmp_path):
    alone = _run_exports(adapted, tmp_path / "alone")
    assert counts == {"merges": 3, "saved_models": 3}
    with export_session():
        shared = _run_exports(adapted, tmp_path / "shared")
        # One merge; one SavedModel for the dynamic and int8 conversions,
        # one for the text classifier's fixed-length softmax signature.
        assert counts == {"merges": 4, "saved_models": 5}
    for file, report in alone.items():
        assert _compared(shared[file]) == _compared(report), file
        assert _without_tensor_names(tmp_path / "alone" / file) == (
            _without_tensor_names(tmp_path / "shared" / file)), file
    # The int8 artifact is judged against the Keras accuracy the text
    # classifier measured on the same texts, as on its own.
    assert shared["model_int8.tflite"]["keras_accuracy"] == (
        shared["model_text_classifier.tflite"]["keras_accuracy"])


def test_a_model_changed_after_a_session_is_merged_again(counts, tmp_path):
    model = klr.add_adapters(dense_model(), targets=("hidden", "value"), rank=1)
    layer = next(iter(adapters(model).values()))
    with export_session():
        klr.export(model, tmp_path / "a.tflite", "tflite")
    layer.lora_b.assign(np.full(tuple(layer.lora_b.shape), 0.5, "float32"))
    with export_session():
        klr.export(model, tmp_path / "b.tflite", "tflite")
    assert counts["merges"] == 2
    # The second artifact holds the changed adapter (a merge, SavedModel or
    # Keras outputs kept from the first session would not).
    inputs = runtime_inputs("dense", 4)
    expected = keras_call(model, "dense", inputs)
    for path, matches in (("a.tflite", False), ("b.tflite", True)):
        got = run_tflite(str(tmp_path / path), inputs)
        assert (max_abs_diff(expected, got) < 1e-4) is matches, path


def test_keras_outputs_are_computed_once_per_model_and_inputs():
    calls = []

    def compute(value):
        def run():
            calls.append(value)
            return {"output_0": np.full((2, 3), value, "float32")}
        return run

    model, other = object(), object()
    rows = {"token_ids": np.arange(6, dtype="int32").reshape(2, 3)}
    same_values = {"token_ids": np.arange(6, dtype="int32").reshape(2, 3)}
    changed = {"token_ids": np.arange(1, 7, dtype="int32").reshape(2, 3)}
    as_int64 = {"token_ids": np.arange(6, dtype="int64").reshape(2, 3)}
    outside = shared_keras_outputs(model, "k", rows, compute(0))
    assert outside["output_0"].flags.writeable  # no session: nothing kept
    with export_session():
        first = shared_keras_outputs(model, "k", rows, compute(1))
        again = shared_keras_outputs(model, "k", same_values, compute(2))
        assert again is first and not first["output_0"].flags.writeable
        shared_keras_outputs(model, "k", changed, compute(3))
        shared_keras_outputs(model, "k", as_int64, compute(4))
        shared_keras_outputs(model, "other key", rows, compute(5))
        shared_keras_outputs(other, "k", rows, compute(6))
        with export_session():  # shares nothing with the outer
            shared_keras_outputs(model, "k", rows, compute(7))
        assert shared_keras_outputs(model, "k", rows, compute(8)) is first
    shared_keras_outputs(model, "k", rows, compute(9))
    assert calls == [0, 1, 3, 4, 5, 6, 7, 9]


def test_a_session_removes_its_saved_models_when_it_ends(counts):
    folders = []

    def write(path):
        os.makedirs(path)
        folders.append(path)

    model = object()
    with export_session():
        assert in_session()
        for _ in range(2):
            with shared_saved_model("serving", model, write) as path:
                assert os.path.isdir(path)
    assert len(folders) == 1 and not os.path.exists(folders[0])
    assert not in_session()
    with shared_saved_model("serving", model, write) as path:
        assert path != folders[0]  # outside a session: a temporary folder
    assert not os.path.exists(path)
