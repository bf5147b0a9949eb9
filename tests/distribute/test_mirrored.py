"""MirroredStrategy over two logical CPUs: add_adapters, fit, files, merge, export."""

import pytest

import keras_lowrank as klr
from tests.distribute import case
from tests.distribute.conftest import PREDICTION_TOLERANCE
from tests.distribute.conftest import WEIGHT_TOLERANCE
from tests.distribute.conftest import load_and_predict

# The tiny BERT's 41 weights, plus A and B on each of its 13 Dense and
# EinsumDense layers but the head (kept trainable): 12 in the two blocks and
# the pooler.
WEIGHTS = 41 + 2 * 13

PROCESSES = ("mirrored",)  # started by conftest.runs


@pytest.fixture(scope="module")
def mirrored(runs):
    return runs.result("mirrored", "mirrored.json")


def test_adapters_are_mirrored_variables(mirrored):
    assert mirrored["replicas"] == 2
    assert mirrored["factor_variable_kinds"] == ["MirroredVariable"]
    assert mirrored["checked_weights"] == mirrored["weights"] == WEIGHTS


def test_a_model_adapted_outside_the_scope_is_refused(mirrored):
    message = mirrored["outside_scope_error"]
    assert message is not None
    assert "was not created in the scope of MirroredStrategy" in message
    assert "strategy.scope()" in message


def test_training_matches_one_device(runs, mirrored, reference):
    values, _ = case.load_values(runs.folder / "mirrored" / "mirrored.npz")
    assert mirrored["steps"] == case.STEPS
    diff = case.max_abs_diff(values, reference)
    print("mirrored vs one device, max abs diff of adapter weights:", diff)
    assert diff <= WEIGHT_TOLERANCE


def test_the_adapter_file_is_the_one_device_format(runs, mirrored):
    path = runs.folder / "mirrored" / "mirrored.safetensors"
    values, arrays = case.load_values(runs.folder / "mirrored" / "mirrored.npz")
    assert mirrored["adapter_file_bytes"] == path.stat().st_size
    assert klr.read_adapter_metadata(path)["format"] == "keras_lowrank.adapters/1"
    loaded_values, predictions = load_and_predict(runs.start, path)
    assert case.max_abs_diff(loaded_values, values) == 0.0
    assert abs(predictions - arrays["predictions"]).max() <= PREDICTION_TOLERANCE


def test_merge_and_export_keep_predictions(mirrored):
    assert mirrored["merged_max_abs_diff"] <= PREDICTION_TOLERANCE
    assert mirrored["merged_in_scope_kinds"] == ["MirroredVariable"]
    assert mirrored["merged_in_scope_max_abs_diff"] <= PREDICTION_TOLERANCE
    assert mirrored["export_max_abs_diff"] <= 1e-4
