"""A seed fixes a run: the same adapters whether the data cache was cold or warm.

Issue 13: tfds names the folder it prepares data into with draws from
Python's global generator, which Keras also seeds its initializers and
dropout from, so a run that prepared the cache trained other adapters than
one that read it back. Every run here is the whole `finetune` on the tiny
BERT preset (`conftest.tiny_preset`), 2 epochs of 40 texts, no export.
"""

import os

import numpy as np
import pytest
from safetensors.numpy import load_file

from keras_lowrank.finetune import FinetuneOptions
from keras_lowrank.finetune import finetune


def _run(folder, preset, train_csv, cache, seed, **options):
    options = FinetuneOptions(
        out=str(folder), model=preset, train_files=(train_csv,),
        cache_dir=str(cache), sequence_length=12, batch_size=8, epochs=2,
        patience=2, export=(), phone_artifacts=(), seed=seed, verbose=0,
        **options,
    )
    report = finetune(options, log=lambda line: None)
    return report, load_file(os.path.join(folder, "adapters.safetensors"))


def _max_abs_diff(first, second):
    assert sorted(first) == sorted(second)
    return max(float(np.max(np.abs(first[key] - second[key]))) for key in first)


def _prepared_configs(cache):
    root = os.path.join(cache, "tfds", "text_classification_builder")
    return sorted(os.listdir(root)) if os.path.isdir(root) else []


def test_cold_and_warm_data_cache_give_bit_identical_adapters(
        tiny_preset, tiny_train_csv, tmp_path):
    import random

    cache = tmp_path / "cache"
    cold_report, cold = _run(tmp_path / "cold", tiny_preset, tiny_train_csv, cache, 5)
    prepared = _prepared_configs(cache)
    assert len(prepared) == 1  # the first run prepared the splits
    # Draws made between runs (a caller's, a library's) change nothing.
    random.random()
    np.random.random(3)
    warm_report, warm = _run(tmp_path / "warm", tiny_preset, tiny_train_csv, cache, 5)
    assert _prepared_configs(cache) == prepared  # the second read them back

    assert _max_abs_diff(cold, warm) == 0.0
    assert cold_report["history"] == warm_report["history"]
    assert cold_report["test_accuracy"] == warm_report["test_accuracy"]
    assert cold_report["precision"] == {
        "requested": "float32", "train": "float32", "evaluate_and_export": "float32",
        "reason": cold_report["precision"]["reason"]}
    assert cold_report["deterministic"] is True

    _, other = _run(tmp_path / "other", tiny_preset, tiny_train_csv, cache, 6)
    assert _max_abs_diff(cold, other) > 1e-3
