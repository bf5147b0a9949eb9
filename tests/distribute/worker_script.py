"""One worker of the two-worker run of `case` (its `TF_CONFIG` names it).

Started twice by `conftest.py`, on 127.0.0.1: `python -m
tests.distribute.worker_script OUT_DIR START_NPZ`. Each worker stops by
itself: a watchdog ends it after LIMIT_S, and collectives give up after
COLLECTIVE_TIMEOUT_S.

Phase 1: the `case` run under `klr.distribution.tf_strategy("multi-worker")`,
an `evaluate`, then `klr.distribution.save_adapters` on both workers; the
chief then merges and exports outside the scope. Writes `worker<i>.npz` (trained
adapter weights, predictions) and `worker<i>.json` (what it measured).

Phase 2: a second epoch in which worker 1 dies (`os._exit`) as its second
step begins. The chief's `fit` fails; it would save only after a
successful epoch, so the adapter file must stay the one of phase 1. A
worker that lives through it writes `worker<i>_phase2.json` (the error
and how long it took).
"""

import faulthandler
import json
import os
import sys
import time
import traceback

LIMIT_S = 420
# Long enough for worker 1 to wait, at its first step of phase 2, while the
# chief merges and exports on a busy machine; a dead peer is seen sooner
# (its connection resets: ~1-15 s measured).
COLLECTIVE_TIMEOUT_S = 150
DEATH_EXIT_CODE = 17
if __name__ == "__main__":  # not when the tests import its constants
    faulthandler.dump_traceback_later(LIMIT_S, exit=True)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_lowrank as klr  # noqa: E402
from tests.distribute import case  # noqa: E402


def plain_reduce_error(strategy):
    """TensorFlow's own `reduce` on a nest, as Keras' `fit` calls it.

    The error it raises (before any collective starts) is why
    `tf_strategy("multi-worker")` overrides `reduce`; None once it works.
    """
    value = strategy.experimental_distribute_values_from_function(
        lambda context: tf.constant([1.0])
    )
    try:
        tf.distribute.MultiWorkerMirroredStrategy.reduce(
            strategy, "MEAN", {"a": value, "b": value}, axis=None
        )
    except (ValueError, TypeError) as error:
        return f"{type(error).__name__}: {str(error)[:200]}"
    return None


class DieAtStep(keras.callbacks.Callback):
    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_begin(self, batch, logs=None):
        if batch == self.step:
            os._exit(DEATH_EXIT_CODE)


def phase_1(strategy, out_dir, start, index):
    with strategy.scope():
        _, model = case.load_start(start)
        case.compile_model(model)
    kinds = sorted({type(w.value).__name__ for w in model.trainable_weights})
    checked = klr.distribution.check_distributed(model, strategy)
    history = case.fit(model, case.dataset())
    values = case.adapter_values(model)
    predictions = case.predict(model)
    case.save_values(os.path.join(out_dir, f"worker{index}.npz"), values, predictions=predictions)
    # evaluate reduces its logs across workers too (Keras' validation in fit).
    evaluated = model.evaluate(case.dataset(), verbose=0, return_dict=True)
    path = os.path.join(out_dir, "adapters.safetensors")
    result = {
        "replicas": strategy.num_replicas_in_sync,
        "factor_variable_kinds": kinds,
        "checked_weights": checked,
        "weights": len(model.weights),
        "steps": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
        "loss": [float(v) for v in history.history["loss"]],
        "evaluate_loss": float(evaluated["loss"]),
        "adapter_file_bytes": klr.distribution.save_adapters(model, path),
    }
    if klr.distribution.is_chief():
        merged = klr.merge_adapters(model)  # outside the scope: no collective
        result["merged_max_abs_diff"] = float(
            np.max(np.abs(case.predict(merged) - predictions))
        )
        exported = klr.export(model, os.path.join(out_dir, "saved_model"), "saved_model")
        result["export_max_abs_diff"] = float(exported.max_abs_diff)
    return model, result


def phase_2(model, out_dir, index):
    path = os.path.join(out_dir, "adapters.safetensors")
    began = time.perf_counter()
    try:
        case.fit(model, case.dataset(), callbacks=[DieAtStep(1)] if index == 1 else [])
    except Exception as error:  # the dead peer, seen by the chief
        return {
            "error": f"{type(error).__name__}: {str(error)[:300]}",
            "seconds": time.perf_counter() - began,
        }
    klr.distribution.save_adapters(model, path)
    return {"error": None, "seconds": time.perf_counter() - began}


def main(out_dir, start):
    index = klr.distribution.tf_config()["task"]["index"]
    result = {"task_index": index, "is_chief": klr.distribution.is_chief()}
    try:
        strategy = klr.distribution.tf_strategy(
            "multi-worker", timeout_seconds=COLLECTIVE_TIMEOUT_S
        )
        result["plain_reduce_error"] = plain_reduce_error(strategy)
        model, measured = phase_1(strategy, out_dir, start, index)
        result.update(measured)
    except Exception:  # reported to the test, which shows it
        result["error"] = traceback.format_exc()
        model = None
    with open(os.path.join(out_dir, f"worker{index}.json"), "w") as file:
        json.dump(result, file)
    if model is not None:
        outcome = phase_2(model, out_dir, index)
        with open(os.path.join(out_dir, f"worker{index}_phase2.json"), "w") as file:
            json.dump(outcome, file)
    sys.stdout.flush()
    # Not TensorFlow's exit: its shutdown barrier would wait for the dead peer.
    os._exit(0)


if __name__ == "__main__":
    main(*sys.argv[1:])
