"""The run of `case` under a MirroredStrategy over two logical CPUs.

Run by `conftest.py` in its own process, since the CPU must be split into
logical devices before TensorFlow starts: `python -m
tests.distribute.mirrored_script OUT_DIR START_NPZ`. Writes into OUT_DIR
`mirrored.npz` (trained adapter weights, predictions), the adapter file
`mirrored.safetensors` and `mirrored.json` (what it measured), or the
traceback in `mirrored.json` if it raised.
"""

import json
import os
import sys
import traceback

import tensorflow as tf

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * 2,
)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_lowrank as klr  # noqa: E402
from tests.distribute import case  # noqa: E402

DEVICES = ["/cpu:0", "/cpu:1"]


def run(out_dir, start):
    strategy = klr.distribution.tf_strategy("mirrored", devices=DEVICES)
    with strategy.scope():
        base, model = case.load_start(start)
        case.compile_model(model)
    kinds = sorted({type(w.value).__name__ for w in model.trainable_weights})
    checked = klr.distribution.check_distributed(model, strategy)
    # Adapted outside the scope: plain variables, which fit would not mirror.
    outside = klr.add_adapters(base, **case.CONFIG)
    try:
        klr.distribution.check_distributed(outside, strategy)
        outside_error = None
    except ValueError as error:
        outside_error = str(error)

    case.fit(model)
    values = case.adapter_values(model)
    predictions = case.predict(model)
    case.save_values(os.path.join(out_dir, "mirrored.npz"), values, predictions=predictions)
    written = klr.distribution.save_adapters(
        model, os.path.join(out_dir, "mirrored.safetensors")
    )

    merged = klr.merge_adapters(model)  # outside the scope: plain variables
    with strategy.scope():
        merged_in_scope = klr.merge_adapters(model)
    exported = klr.export(model, os.path.join(out_dir, "saved_model"), "saved_model")
    return {
        "replicas": strategy.num_replicas_in_sync,
        "factor_variable_kinds": kinds,
        "checked_weights": checked,
        "weights": len(model.weights),
        "outside_scope_error": outside_error,
        "steps": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
        "adapter_file_bytes": written,
        "merged_max_abs_diff": float(np.max(np.abs(case.predict(merged) - predictions))),
        "merged_in_scope_kinds": sorted({type(w.value).__name__ for w in merged_in_scope.weights}),
        "merged_in_scope_max_abs_diff": float(
            np.max(np.abs(case.predict(merged_in_scope) - predictions))
        ),
        "export_max_abs_diff": float(exported.max_abs_diff),
    }


def main(out_dir, start):
    try:
        result = run(out_dir, start)
    except Exception:  # reported to the test, which shows it
        result = {"error": traceback.format_exc()}
    with open(os.path.join(out_dir, "mirrored.json"), "w") as file:
        json.dump(result, file)


if __name__ == "__main__":
    main(*sys.argv[1:])
