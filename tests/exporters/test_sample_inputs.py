"""Sample inputs made from the input specs, and the user's own."""

import json

import keras
import numpy as np
import pytest

from keras_lowrank.exporters import ExportReport
from keras_lowrank.exporters import export
from keras_lowrank.exporters import make_sample_inputs
from keras_lowrank.exporters.sample_inputs import verification_batches
from keras_lowrank.exporters.signature import input_signature


def test_bert_token_batches_are_realistic(models):
    model = models["bert"]
    inputs = make_sample_inputs(model, input_signature(model), batch_size=8)
    assert sorted(inputs) == ["padding_mask", "segment_ids", "token_ids"]
    # max_sequence_length=32 caps the default length of 64.
    assert {k: v.shape for k, v in inputs.items()} == {
        "padding_mask": (8, 32), "segment_ids": (8, 32), "token_ids": (8, 32)
    }
    assert all(v.dtype == np.int32 for v in inputs.values())
    mask, ids, segments = (inputs[k] for k in ("padding_mask", "token_ids",
                                               "segment_ids"))
    assert set(np.unique(mask)) == {0, 1}
    assert np.all(np.diff(mask, axis=1) <= 0)  # ones, then zeros
    assert mask[0].all()  # one row without padding
    assert np.all(mask.sum(axis=1) >= 16)
    assert ids.max() < 120 and np.all(ids[mask == 1] >= 1)
    assert np.all(ids[mask == 0] == 0)
    assert set(np.unique(segments)) == {0, 1}  # a sentence pair
    assert np.all(segments[mask == 0] == 0)


def test_gpt2_inputs_and_dense_inputs(models):
    gpt2 = make_sample_inputs(models["gpt2"], input_signature(models["gpt2"]), 2)
    assert sorted(gpt2) == ["padding_mask", "token_ids"]
    dense = make_sample_inputs(models["dense"], input_signature(models["dense"]), 3)
    assert dense["features"].shape == (3, 6)
    assert dense["features"].dtype == np.float32


def test_sample_inputs_are_seeded(models):
    signature = input_signature(models["bert"])
    first = make_sample_inputs(models["bert"], signature, 4, seed=1)
    again = make_sample_inputs(models["bert"], signature, 4, seed=1)
    other = make_sample_inputs(models["bert"], signature, 4, seed=2)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not np.array_equal(first["token_ids"], other["token_ids"])


def test_user_rows_are_cycled_up_to_eight(models):
    signature = input_signature(models["dense"])
    rows = np.arange(18, dtype="float32").reshape(3, 6)
    small, large = verification_batches(models["dense"], signature, rows)
    assert small["features"].tolist() == rows[:1].tolist()
    assert large["features"].shape == (8, 6)
    assert large["features"][3].tolist() == rows[0].tolist()


def test_user_inputs_are_used_for_verification(models, tmp_path):
    rows = np.linspace(-1, 1, 60, dtype="float32").reshape(10, 6)
    report = export(models["dense"], tmp_path / "d.onnx", "onnx", sample_inputs=rows)
    assert report.batch_sizes_checked == (1, 10)
    assert report.max_abs_diff <= 1e-6


def test_inputs_must_share_a_batch_size(models):
    signature = input_signature(models["gpt2"])
    with pytest.raises(ValueError, match="share one non-zero batch size"):
        verification_batches(models["gpt2"], signature, {
            "token_ids": np.ones((2, 4)), "padding_mask": np.ones((3, 4))})


class _Scale(keras.Model):
    """A subclassed model: no symbolic inputs."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(2)

    def call(self, x):
        return self.dense(x) * 2.0


def test_subclassed_model_needs_sample_inputs(tmp_path):
    model = _Scale()
    model(np.zeros((1, 4), "float32"))
    with pytest.raises(ValueError, match="Pass `sample_inputs`"):
        export(model, tmp_path / "s.onnx", "onnx")
    report = export(model, tmp_path / "s.onnx", "onnx",
                    sample_inputs=np.ones((2, 4), "float32"))
    assert report.input_names == ("input_0",)
    assert report.max_abs_diff <= 1e-6
    # The model's name starts with "_": tracing it must not leave its name
    # scope behind, or every layer built later would get a wrong path.
    later = keras.layers.Dense(2, name="later")
    later.build((None, 4))
    assert later.kernel.path == "later/kernel"


def test_report_to_dict_and_str(exported):
    report = exported("dense", "tflite")
    data = report.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["batch_sizes_checked"] == [1, 8]
    assert data["ops"] == list(report.ops)
    text = str(report)
    assert text.splitlines()[0] == "Export report: tflite"
    assert f"({report.size_bytes:,} bytes)" in text
    assert "max abs diff:" in text and "(tolerance 0.0001)" in text
    assert "latency:" in text and "(median, batch 1)" in text
    assert isinstance(report, ExportReport)
