"""The distributed runs, started early and together, and the reference.

`_start_early` starts, at the first test of this folder, the processes
that the collected tests' modules name in `PROCESSES`: the MirroredStrategy
run (two logical CPUs), two MultiWorkerMirroredStrategy workers on 127.0.0.1
(free ports, `TF_CONFIG`), the JAX run (four host devices). Under xdist,
which hands each worker whole files while every worker collects them all,
a file's processes start at its first test instead, in the worker that runs
it: each process starts once in the session. While they run, this process
trains the one-device reference on the TensorFlow backend, then runs its
own tests. Every process starts from the same weights (`case.write_start`)
and is bounded: waited for at most TIMEOUT_S, then killed.
"""

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_lowrank as klr
from tests.distribute import case

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT_S = 480
# Adapter weights after STEPS Adam steps, distributed vs one device: the
# runs differ only in the order float32 sums are taken (measured: 6e-8).
WEIGHT_TOLERANCE = 1e-6
PREDICTION_TOLERANCE = 1e-5
# The XLA flag of the tests' JAX processes: LLVM compiles XLA's CPU code
# unoptimized (XLA's own graph passes still run, and no fast-math is
# allowed at any level). Compiling is most of what these tiny models cost:
# the JAX run of `jax_script` took 23.6 s of CPU with the default level 3,
# 16.9 s with 0, `tests/backends`' 24.3 s and 13.6 s; the trained adapters
# moved by 6e-8, a sixteenth of WEIGHT_TOLERANCE.
XLA_FAST_COMPILE = "--xla_backend_optimization_level=0"


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class Runs:
    """The started processes; `result(name)` waits for one and reads it."""

    def __init__(self, folder):
        self.folder = folder
        self.start = str(folder / "start.npz")
        self.processes = {}

    def start_processes(self, needed):
        """Starts the processes of `needed` (PROCESSES names) not started yet."""
        if "mirrored" in needed and "mirrored" not in self.processes:
            self.launch("mirrored", "mirrored_script", {})
        if "workers" in needed and "worker0" not in self.processes:
            ports = free_ports(2)
            cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
            for index in range(2):
                config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
                self.launch(f"worker{index}", "worker_script",
                            {"TF_CONFIG": json.dumps(config)})
        if "jax" in needed and "jax" not in self.processes:
            self.launch("jax", "jax_script", {
                "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
                "XLA_FLAGS": f"--xla_force_host_platform_device_count=4 {XLA_FAST_COMPILE}",
            })

    def launch(self, name, module, env):
        out = self.folder / name
        out.mkdir()
        environ = {
            key: value for key, value in os.environ.items()
            if key not in ("TF_CONFIG", "XLA_FLAGS", "KERAS_BACKEND")
        }
        environ.update({"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONHASHSEED": "0",
                        "KERAS_BACKEND": "tensorflow", **env})
        # Files, not pipes: an unread pipe could fill up and stall a writer.
        with open(out / "stdout.txt", "w") as stdout, open(out / "stderr.txt", "w") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", f"tests.distribute.{module}", str(out), self.start],
                cwd=ROOT, env=environ, stdout=stdout, stderr=stderr,
            )
        self.processes[name] = (out, process)

    def wait(self, name):
        """`(folder, return code, stderr tail)` of a finished process."""
        assert name in self.processes, f"{name} was not started: add it to PROCESSES"
        out, process = self.processes[name]
        try:
            process.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        return out, process.returncode, (out / "stderr.txt").read_text()[-4000:]

    def result(self, name, file):
        """The JSON `file` the process `name` wrote; fails with its error."""
        out, code, stderr = self.wait(name)
        path = out / file
        assert path.exists(), f"{name} exited {code} without {file}:\n{stderr}"
        result = json.loads(path.read_text())
        assert "error" not in result or file.endswith("_phase2.json"), (
            f"{name} raised:\n{result['error']}"
        )
        print(name, file, json.dumps(result)[:2000])
        return result

    def stop(self):
        for _, process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def needed_processes(session, module=None):
    """The processes the collected tests name in their module's PROCESSES
    (only `module`'s tests, when given)."""
    return {
        name for item in session.items if "runs" in item.fixturenames
        and (module is None or item.module is module)
        for name in getattr(item.module, "PROCESSES", ())
    }


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """The session's `Runs`: `_start_early` starts its processes."""
    started = Runs(tmp_path_factory.mktemp("distribute"))
    case.write_start(started.start)
    yield started
    started.stop()


@pytest.fixture(scope="module", autouse=True)
def _start_early(request):
    """Starts the runs at the first test here that any test needs them for
    (under xdist: at the first test of a file whose tests need them, those
    of the file only), then trains the reference while they run.

    Without xdist the whole session's start together, so that they overlap
    with each other and with this process's tests. Under xdist every worker
    collects every file but runs only the files it is handed: starting
    every file's processes would run each once per worker.
    """
    if "PYTEST_XDIST_WORKER" in os.environ:
        needed = needed_processes(request.session, request.module)
    else:
        needed = needed_processes(request.session)
    if needed:
        request.getfixturevalue("runs").start_processes(needed)
        request.getfixturevalue("reference")


@pytest.fixture(scope="session")
def reference(runs):
    """The one-device run's adapter values (`{path: array}`).

    Its STEPS steps run eagerly: 1.5 s of CPU, where tracing the training
    step first took 5.4 s (measured in a fresh process); the weights differ
    from a traced run's by 3e-8, as much as from the distributed runs'.
    """
    _, model = case.load_start(runs.start)
    case.compile_model(model, run_eagerly=True)
    case.fit(model)
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == case.STEPS
    return case.adapter_values(model)


def base_model(start):
    """A one-device base model with the starting weights."""
    stored = np.load(start)
    base = case.build_base()
    base.set_weights([stored[f"base_{i}"] for i in range(len(base.weights))])
    return base


def load_and_predict(start, path):
    """`(loaded model values, predictions)` of an adapter file on one device.

    The predictions of a direct call: one device needs no traced `predict`
    step (0.7-1.3 s to trace, 0.1 s to call; they differ by 7e-9).
    """
    loaded = klr.load_adapters(base_model(start), path)
    x, _ = case.data()
    return case.adapter_values(loaded), np.asarray(loaded(x, training=False))
