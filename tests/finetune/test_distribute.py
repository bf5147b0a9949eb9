"""`keras-lowrank finetune --distribute mirrored|multi-worker` (issue 13, part 3).

The whole command, each distributed run in processes of its own
(`distribute_script`: TensorFlow sets devices up before it runs an op),
started together at the first test here, while this process trains the
one-device reference with the same global batch. The runs: 84 toy reviews
on the uncased tiny preset (no dropout anywhere, `--dropout 0`), 2 epochs
of 11 steps of 8, no export:
- mirrored over two logical CPU devices;
- two MultiWorkerMirroredStrategy workers on 127.0.0.1 (`TF_CONFIG`), one
  CPU each, both writing to the same `--out`.
Each gives the adapter weights of one device, up to float summation order.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file

from keras_lowrank.cli.main import main
from tests.distribute.conftest import free_ports

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT_S = 420
# Measured: 1.5e-8 (mirrored) after 22 AdamW steps.
WEIGHT_TOLERANCE = 1e-6
ARGS = ("--quiet", "--sequence-length", "16", "--batch-size", "8", "--epochs", "2",
        "--patience", "2", "--dropout", "0", "--export", "none", "--no-phone-artifacts")


def _launch(folder, name, devices, argv, env=None):
    environ = {key: value for key, value in os.environ.items()
               if key not in ("TF_CONFIG", "KERAS_BACKEND")}
    environ.update({"KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3",
                    "PYTHONHASHSEED": "0", **(env or {})})
    with open(folder / f"{name}.out", "w") as stdout, \
            open(folder / f"{name}.err", "w") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.finetune.distribute_script", str(devices),
             "finetune", *argv], cwd=ROOT, env=environ, stdout=stdout, stderr=stderr)


def _wait(folder, name, process):
    try:
        process.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    return process.returncode, (folder / f"{name}.err").read_text()[-3000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, uncased_preset, toy_csv):
    """`{name: (exit code, stderr tail)}` of the runs, and their folder."""
    folder = tmp_path_factory.mktemp("distribute")

    def argv(name):
        return ["--model", uncased_preset, "--train", toy_csv, "--cache-dir",
                str(folder / f"cache_{name}"), *ARGS]

    processes = {"mirrored": _launch(folder, "mirrored", 2, [
        *argv("mirrored"), "--out", str(folder / "mirrored"), "--distribute", "mirrored"])}
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    for index in range(2):
        scratch = folder / f"tmp{index}"
        scratch.mkdir()
        config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        processes[f"worker{index}"] = _launch(
            folder, f"worker{index}", 1,
            [*argv(f"worker{index}"), "--out", str(folder / "multi"),
             "--distribute", "multi-worker"],
            {"TF_CONFIG": json.dumps(config), "TMPDIR": str(scratch)})
    try:
        assert main(["finetune", *argv("one"), "--out", str(folder / "one")]) == 0
        results = {name: _wait(folder, name, process)
                   for name, process in processes.items()}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return folder, results


def _adapters(folder):
    return load_file(os.path.join(folder, "adapters.safetensors"))


def _max_abs_diff(first, second):
    assert sorted(first) == sorted(second)
    return max(float(np.max(np.abs(first[key] - second[key]))) for key in first)


def _report(folder):
    with open(os.path.join(folder, "report.json"), encoding="utf-8") as file:
        return json.load(file)


def test_mirrored_trains_the_adapters_of_one_device(runs):
    folder, results = runs
    code, stderr = results["mirrored"]
    assert code == 0, stderr
    diff = _max_abs_diff(_adapters(folder / "mirrored"), _adapters(folder / "one"))
    print("mirrored vs one device, max abs diff of adapter weights:", diff)
    assert diff <= WEIGHT_TOLERANCE
    report, one = _report(folder / "mirrored"), _report(folder / "one")
    assert report["distribute"] == {"kind": "mirrored", "replicas": 2, "workers": 1,
                                    "task": None}
    assert one["distribute"] is None
    assert report["options"]["distribute"] == "mirrored"
    np.testing.assert_allclose(report["history"]["loss"], one["history"]["loss"],
                               atol=1e-6)
    assert report["test_accuracy"] == one["test_accuracy"]


def test_multi_worker_trains_the_adapters_of_one_device(runs):
    folder, results = runs
    for name in ("worker0", "worker1"):
        code, stderr = results[name]
        assert code == 0, f"{name}: {stderr}"
    diff = _max_abs_diff(_adapters(folder / "multi"), _adapters(folder / "one"))
    print("multi-worker vs one device, max abs diff of adapter weights:", diff)
    assert diff <= WEIGHT_TOLERANCE
    report = _report(folder / "multi")
    assert report["distribute"] == {"kind": "multi-worker", "replicas": 2,
                                    "workers": 2, "task": {"type": "worker", "index": 0}}


def test_only_the_chief_writes(runs):
    folder, _ = runs
    # One run folder, the chief's; worker 1 wrote no file of its own there,
    # and its scratch folders (TMPDIR) are gone.
    assert sorted(os.listdir(folder / "multi")) == [
        "adapters.safetensors", "report.json", "training_curves.png"]
    assert not [name for name in os.listdir(folder / "tmp1") if name.startswith("klr-")]
    assert "the chief writes" in (folder / "worker1.out").read_text()
    assert not [name for name in os.listdir(folder) if name.startswith(".multi")]


def test_multi_worker_without_tf_config_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    code = main(["finetune", "--quiet", "--out", str(tmp_path / "run"),
                 "--distribute", "multi-worker"])
    assert code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].startswith(
        "keras-lowrank finetune: error: multi-worker training needs TF_CONFIG, "
        "the JSON naming every worker and this process's task")
    assert err[0].endswith("Received: TF_CONFIG unset. On one machine use 'mirrored'.")
    assert os.listdir(tmp_path) == []
