"""The LoRA round trip on whichever backend `KERAS_BACKEND` names.

Run by `test_backends.py` in its own process (Keras picks its backend at
import): `python -m tests.backends.backend_script OUT_DIR MODEL...` from the
repository root, where MODEL is `mlp` (a Functional MLP of two Dense layers)
or `bert` (a tiny keras-hub `BertTextClassifier` built from config).

For each model it runs `add_adapters`, a few seeded `fit` steps,
`save_adapters` then `load_adapters` onto a fresh copy of the base,
`merge_adapters` and a `.keras` save/load, and measures each step. It writes
into OUT_DIR, for the TensorFlow test process to load:

- `<model>_base.keras`: the base model (untouched by `add_adapters`);
- `<model>.safetensors`: the adapter file of the trained model;
- `<model>_reference.npz`: the fixed inputs (`x`, or `x_<name>` for each
  input of a dict) and the trained adapted model's predictions on them
  (`predictions`).

Its last line of stdout is one JSON object: `{"backend": ..., model:
{measure: value}}`, or `{model: {"error": traceback}}` for a model whose run
raised (the other models still run).
"""

import json
import math
import os
import sys
import traceback

import keras
import numpy as np

import keras_lowrank as klr
from tests import tiny_models as tiny

SEED = 1234
RANK = 2
STEPS = 4
BATCH = 4


def functional_mlp():
    inputs = keras.Input((8,), name="features")
    x = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    outputs = keras.layers.Dense(4, name="out")(x)
    return keras.Model(inputs, outputs, name="mlp")


def mlp_case(rng):
    x = rng.normal(size=(STEPS * BATCH, 8)).astype("float32")
    y = rng.integers(0, 4, size=(STEPS * BATCH,)).astype("int32")
    # Every Dense adapted; nothing kept trainable (a plain Keras model).
    return functional_mlp, {"targets": "all-linear"}, x, y


def bert_case(rng):
    x = tiny.bert_inputs(batch=STEPS * BATCH, seed=1)
    y = rng.integers(0, 2, size=(STEPS * BATCH,)).astype("int32")
    # Query and value adapted (the default); the classifier head trainable.
    return tiny.bert_classifier, {}, x, y


CASES = {"mlp": mlp_case, "bert": bert_case}


def snapshot(weights):
    return {w.path: np.array(keras.ops.convert_to_numpy(w)) for w in weights}


def predict(model, x):
    # A direct call, not `predict`: on JAX each model's `predict` compiles.
    return np.asarray(keras.ops.convert_to_numpy(model(x, training=False)))


def max_abs_diff(a, b):
    return float(np.max(np.abs(a - b)))


def run_case(name, out_dir):
    keras.utils.set_random_seed(SEED)
    rng = np.random.default_rng(SEED)
    build, overrides, x, y = CASES[name](rng)
    base = build()
    base_before = snapshot(base.weights)

    # === add_adapters ===
    adapted = klr.add_adapters(base, rank=RANK, **overrides)
    trainable, total = klr.parameter_counts(adapted)
    before = snapshot(adapted.weights)
    trainable_paths = {w.path for w in adapted.trainable_weights}

    # === fit ===
    # epsilon far below the gradients: every factor that gets a gradient
    # moves by ~lr per step, one that gets none stays exactly where it was.
    adapted.compile(
        optimizer=keras.optimizers.Adam(1e-2, epsilon=1e-12),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = adapted.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    after = snapshot(adapted.weights)
    moves = {path: max_abs_diff(after[path], before[path]) for path in before}
    factor_moves = [
        move for path, move in moves.items() if path.rsplit("/", 1)[-1] in ("lora_a", "lora_b")
    ]
    frozen = [path for path in before if path not in trainable_paths]
    base_after = snapshot(base.weights)
    predictions = predict(adapted, x)

    # === adapter file onto a fresh copy of the base ===
    base_path = os.path.join(out_dir, f"{name}_base.keras")
    adapter_path = os.path.join(out_dir, f"{name}.safetensors")
    base.save(base_path)
    file_bytes = klr.save_adapters(adapted, adapter_path)
    loaded = klr.load_adapters(keras.saving.load_model(base_path), adapter_path)

    # === merge and .keras round trip ===
    merged = klr.merge_adapters(adapted)
    keras_path = os.path.join(out_dir, f"{name}_adapted.keras")
    adapted.save(keras_path)
    reloaded = keras.saving.load_model(keras_path)

    np.savez(
        os.path.join(out_dir, f"{name}_reference.npz"),
        predictions=predictions,
        **({f"x_{key}": value for key, value in x.items()} if isinstance(x, dict) else {"x": x}),
    )
    return {
        "trainable_params": trainable,
        "total_params": total,
        "adapted_layers": len(klr.adapter_paths(adapted)),
        "trainable_weights": sorted(trainable_paths),
        "fit_steps": int(keras.ops.convert_to_numpy(adapted.optimizer.iterations)),
        "loss_finite": all(math.isfinite(v) for v in history.history["loss"]),
        "changed_weights": sorted(path for path, move in moves.items() if move > 0),
        "min_factor_move": min(factor_moves),
        "frozen_weights": len(frozen),
        "frozen_max_abs_change": max((moves[path] for path in frozen), default=0.0),
        "base_max_abs_change": max(
            max_abs_diff(base_after[path], value) for path, value in base_before.items()
        ),
        "adapter_file_bytes": file_bytes,
        "loaded_max_abs_diff": max_abs_diff(predict(loaded, x), predictions),
        "merged_max_abs_diff": max_abs_diff(predict(merged, x), predictions),
        "merged_adapters": len(klr.adapter_paths(merged)),
        "merged_class": type(merged).__name__,
        "keras_file_max_abs_diff": max_abs_diff(predict(reloaded, x), predictions),
        "keras_file_class": type(reloaded).__name__,
        "prediction_max_abs": float(np.max(np.abs(predictions))),
    }


def main(out_dir, names):
    results = {"backend": keras.backend.backend()}
    for name in names:
        try:
            results[name] = run_case(name, out_dir)
        except Exception:  # reported per model; the other models still run
            results[name] = {"error": traceback.format_exc()}
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
