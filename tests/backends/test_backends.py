"""add_adapters, fit, adapter files, merging and `.keras` on JAX and PyTorch.

Keras picks its backend at import, so `backend_script.py` runs once per
backend in its own process (both at once) and prints what it measured; the
tests here assert on those numbers. This process is TensorFlow: it also loads
the adapter files written under JAX and PyTorch onto the base models saved
there, and compares with the predictions made there.
"""

import importlib.metadata
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_lowrank as klr
from tests.distribute.conftest import XLA_FAST_COMPILE

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BACKENDS = ("jax", "torch")
MODELS = ("mlp", "bert")
TIMEOUT_S = 600

# Rank 2. mlp: every Dense, 8 -> 16 -> 4 (300 parameters). bert: query and
# value of both blocks of tests/tiny_models.py's BERT (hidden 16), plus the
# classifier head (16 -> 2) that add_adapters keeps trainable.
FACTORS = {
    "mlp": ["hidden/lora_a", "hidden/lora_b", "out/lora_a", "out/lora_b"],
    "bert": [
        f"transformer_layer_{i}/self_attention_layer/{name}/{factor}"
        for i in range(2)
        for name in ("query", "value")
        for factor in ("lora_a", "lora_b")
    ],
}
HEAD = {"mlp": [], "bert": ["logits/kernel", "logits/bias"]}
EXPECTED = {
    "mlp": {"trainable_params": 2 * (8 + 16) + 2 * (16 + 4), "total_params": 300,
            "adapted_layers": 2, "frozen_weights": 4, "class": "Functional"},
    "bert": {"trainable_params": 2 * 2 * 2 * (16 + 16) + 16 * 2 + 2, "total_params": 6290,
             "adapted_layers": 4, "frozen_weights": 39, "class": "BertTextClassifier"},
}

pytestmark = pytest.mark.parametrize("backend", BACKENDS)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """`{backend: (out_dir, returncode, stdout, stderr)}`, both run at once."""
    started = {}
    for backend in BACKENDS:
        out_dir = tmp_path_factory.mktemp(backend)
        env = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu",
               "XLA_FLAGS": XLA_FAST_COMPILE,  # compiling is most of the JAX run
               "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONHASHSEED": "0"}
        command = [sys.executable, "-m", "tests.backends.backend_script", str(out_dir), *MODELS]
        # Files, not pipes: a pipe left unread while the other process is
        # awaited could fill up and stall its writer.
        with open(out_dir / "stdout.txt", "w") as stdout, open(out_dir / "stderr.txt", "w") as stderr:
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=stdout, stderr=stderr)
        started[backend] = (out_dir, process)
    finished = {}
    for backend, (out_dir, process) in started.items():
        try:
            process.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        finished[backend] = (
            out_dir,
            process.returncode,
            (out_dir / "stdout.txt").read_text(),
            (out_dir / "stderr.txt").read_text(),
        )
    return finished


def measured(runs, backend, model):
    """The script's numbers for `model`; fails with its error if it raised."""
    _, returncode, stdout, stderr = runs[backend]
    lines = stdout.strip().splitlines()
    assert returncode == 0 and lines, (
        f"KERAS_BACKEND={backend} script exited {returncode}:\n{stderr[-3000:]}"
    )
    results = json.loads(lines[-1])
    assert results["backend"] == backend
    record = results[model]
    assert "error" not in record, f"KERAS_BACKEND={backend}, {model}:\n{record.get('error')}"
    print(backend, model, json.dumps(record))
    return record


@pytest.mark.parametrize("model", MODELS)
def test_add_adapters_counts(runs, backend, model):
    record = measured(runs, backend, model)
    expected = EXPECTED[model]
    assert record["trainable_params"] == expected["trainable_params"], record["trainable_weights"]
    assert record["total_params"] == expected["total_params"]
    assert record["adapted_layers"] == expected["adapted_layers"]
    assert record["trainable_weights"] == sorted(FACTORS[model] + HEAD[model])
    assert record["frozen_weights"] == expected["frozen_weights"]


@pytest.mark.parametrize("model", MODELS)
def test_fit_moves_the_factors_and_nothing_frozen(runs, backend, model):
    record = measured(runs, backend, model)
    assert record["fit_steps"] == 4
    assert record["loss_finite"]
    # Adam at lr 1e-2 moves each factor ~1e-2 per step once it has a gradient.
    assert record["min_factor_move"] > 1e-3
    assert record["changed_weights"] == sorted(FACTORS[model] + HEAD[model]), "weights fit changed"
    assert record["frozen_max_abs_change"] == 0.0  # bit-identical
    assert record["base_max_abs_change"] == 0.0  # add_adapters' input untouched


@pytest.mark.parametrize("model", MODELS)
def test_adapter_file_round_trip(runs, backend, model):
    record = measured(runs, backend, model)
    assert record["adapter_file_bytes"] > 0
    assert record["loaded_max_abs_diff"] <= 1e-6


@pytest.mark.parametrize("model", MODELS)
def test_merge_keeps_predictions(runs, backend, model):
    record = measured(runs, backend, model)
    assert record["merged_adapters"] == 0
    assert record["merged_class"] == EXPECTED[model]["class"]
    assert record["merged_max_abs_diff"] <= 1e-5


@pytest.mark.parametrize("model", MODELS)
def test_keras_file_round_trip(runs, backend, model):
    record = measured(runs, backend, model)
    assert record["keras_file_class"] == EXPECTED[model]["class"]
    assert record["keras_file_max_abs_diff"] <= 1e-6


@pytest.mark.parametrize("model", MODELS)
def test_adapter_file_loads_under_tensorflow(runs, backend, model):
    record = measured(runs, backend, model)
    assert keras.backend.backend() == "tensorflow"
    out_dir = runs[backend][0]
    reference = np.load(out_dir / f"{model}_reference.npz")
    x = reference["x"] if "x" in reference.files else {
        key[2:]: reference[key] for key in reference.files if key.startswith("x_")
    }
    base = keras.saving.load_model(out_dir / f"{model}_base.keras")
    loaded = klr.load_adapters(base, out_dir / f"{model}.safetensors")
    diff = np.abs(np.asarray(loaded(x, training=False)) - reference["predictions"]).max()
    print(f"{backend} -> tensorflow, {model}: max abs diff {diff:.3g}")
    assert diff <= 1e-6 * max(1.0, record["prediction_max_abs"])


def test_dev_extra_installs_the_cpu_builds(backend):
    """setup.cfg's dev extra pins CPU builds: no CUDA wheel comes along."""
    pins = {"jax": {"jax": "0.10.2", "jaxlib": "0.10.2"}, "torch": {"torch": "2.13.0+cpu"}}
    for name, version in pins[backend].items():
        assert importlib.metadata.version(name) == version
    cuda = sorted(
        dist.metadata["Name"] for dist in importlib.metadata.distributions()
        if dist.metadata["Name"].lower().startswith("nvidia")
    )
    assert cuda == []
