"""Processes that share one cache folder prepare the same data at once.

The workers of a multi-worker run on one machine (or on a shared disk) run
the same command with the same `--cache-dir`: each found the data
unprepared, each prepared it, and the later rename failed ("Cannot rename
... already exists"), which stopped that worker. Here three processes are
released together, after their imports, on a cold cache.
"""

import json
import os
import subprocess
import sys
import textwrap
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROCESSES = 3
# Imports on a busy 2-core machine, with room to spare (measured: ~5 s).
READY_LIMIT_S = 120

_CHILD = textwrap.dedent("""
    import json, os, sys, time
    from keras_lowrank.data import load_text_classification
    train, cache, go, ready = sys.argv[1:5]
    open(ready, "w").close()
    while not os.path.exists(go):
        time.sleep(0.01)
    started = time.monotonic()  # system-wide: comparable across processes
    data = load_text_classification(train, cache_dir=cache, seed=7)
    ended = time.monotonic()
    # Read in batches (the same texts in the same order): one element at a
    # time, the 20,000 rows took 4-7 s per process.
    texts = {split: [t.decode() for batch, _ in
                     getattr(data, split).batch(4096).as_numpy_iterator() for t in batch]
             for split in ("train", "validation", "test")}
    print(json.dumps({"num_examples": data.num_examples, "texts": texts,
                      "prepare": [started, ended]}))
""")


def test_three_processes_prepare_one_cold_cache_together(tmp_path):
    train = tmp_path / "train.csv"
    # Enough rows that preparing takes a while (~1 s) and the three overlap.
    train.write_text("text,label\n" + "".join(
        f"review number {i} of the set,{'pos' if i % 3 else 'neg'}\n"
        for i in range(20000)))
    cache, go = tmp_path / "cache", tmp_path / "go"
    environ = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    children = []
    for index in range(PROCESSES):
        ready = tmp_path / f"ready{index}"
        children.append((ready, subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(train), str(cache), str(go), str(ready)],
            cwd=ROOT, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)))
    deadline = time.monotonic() + READY_LIMIT_S
    while not all(ready.exists() for ready, _ in children):
        assert time.monotonic() < deadline, "the children did not start in time"
        assert all(child.poll() is None for _, child in children)
        time.sleep(0.05)
    go.touch()
    results = []
    for _, child in children:
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    # The three were inside `load_text_classification` at one moment: the
    # last to start did so before the first to finish was done.
    spans = [result.pop("prepare") for result in results]
    assert max(start for start, _ in spans) < min(end for _, end in spans), spans
    assert results[0]["num_examples"] == {"train": 14000, "validation": 2000,
                                          "test": 4000}
    assert results[1] == results[0] and results[2] == results[0]
    # One prepared copy, and nothing left half-written.
    builder_root = cache / "tfds" / "text_classification_builder"
    (config,) = os.listdir(builder_root)
    assert os.listdir(builder_root / config) == ["1.0.1"]
