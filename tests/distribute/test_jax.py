"""keras.distribution on four JAX host devices: DataParallel, ModelParallel."""

import pytest

from tests.distribute import case
from tests.distribute.conftest import PREDICTION_TOLERANCE
from tests.distribute.conftest import WEIGHT_TOLERANCE
from tests.distribute.conftest import load_and_predict
from tests.distribute.test_mirrored import WEIGHTS

PROCESSES = ("jax",)  # started by conftest.runs
RUNS = ("data_parallel", "model_parallel")
# Megatron-style: A follows the kernel's input sharding, B its output
# sharding, the rank axis is replicated.
COLUMN = {"lora_a": [None, None], "lora_b": [None, "model"]}
ROW = {"lora_a": ["model", None], "lora_b": [None, None]}
REPLICATED = {"lora_a": [None, None], "lora_b": [None, None]}
LAYERS = {
    **{f"transformer_layer_{i}/self_attention_layer/{name}": COLUMN
       for i in range(2) for name in ("query", "key", "value")},
    **{f"transformer_layer_{i}/self_attention_layer/attention_output": ROW for i in range(2)},
    **{f"transformer_layer_{i}/feedforward_intermediate_dense": COLUMN for i in range(2)},
    **{f"transformer_layer_{i}/feedforward_output_dense": ROW for i in range(2)},
    "pooled_dense": REPLICATED,
}


@pytest.fixture(scope="module")
def jax_run(runs):
    return runs.result("jax", "jax.json")


@pytest.mark.parametrize("name", RUNS)
def test_every_weight_is_on_every_device(jax_run, name):
    assert jax_run["devices"] == 4
    assert jax_run[name]["checked_weights"] == jax_run[name]["weights"] == WEIGHTS
    assert jax_run[name]["steps"] == case.STEPS


@pytest.mark.parametrize("name", RUNS)
def test_training_matches_one_device(runs, jax_run, reference, name):
    values, _ = case.load_values(runs.folder / "jax" / f"{name}.npz")
    # The reference ran on TensorFlow, one device, from the same weights.
    diff = case.max_abs_diff(values, reference)
    print(f"JAX {name} vs one device, max abs diff of adapter weights:", diff)
    assert diff <= WEIGHT_TOLERANCE


def test_model_parallel_factors_follow_their_kernels(jax_run):
    expected = {
        f"{layer}/{factor}": axes
        for layer, factors in LAYERS.items() for factor, axes in factors.items()
    }
    assert jax_run["model_parallel"]["factor_layouts"] == expected


def test_the_layout_map_alone_gives_factors_the_kernels_layout(jax_run):
    # Its patterns for query/key/value match `.../query/lora_a` too: the 2-D
    # factor gets the 3-D kernel's layout (keras-team/keras#19496's kind).
    error = jax_run["layout_map_alone_error"]
    assert error is not None and "rank" in error


@pytest.mark.parametrize("name", RUNS)
def test_adapter_files_load_on_one_tensorflow_device(runs, jax_run, name):
    assert jax_run["is_chief"]
    values, arrays = case.load_values(runs.folder / "jax" / f"{name}.npz")
    loaded_values, predictions = load_and_predict(
        runs.start, runs.folder / "jax" / f"{name}.safetensors"
    )
    assert case.max_abs_diff(loaded_values, values) == 0.0
    assert abs(predictions - arrays["predictions"]).max() <= PREDICTION_TOLERANCE
