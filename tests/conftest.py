"""Test setup: TensorFlow backend, quiet logs, seeded randomness."""

import ctypes
import gc
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# TensorFlow turns its oneDNN kernels on by default only on Intel CPUs. Its
# other CPU kernels (Eigen, e.g. on AMD) run no channels_first (NCHW)
# convolution: Keras' own Conv2D(data_format="channels_first") raises
# UnimplementedError there. With oneDNN on everywhere, the suite runs the
# same kernels on every x86 CPU (tests/layers/test_lora_conv.py).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
# The command lines the tests run in-process must not tune this process's
# malloc for the rest of the suite (keras_lowrank.finetune.allocator).
os.environ["KERAS_LOWRANK_KEEP_FREED_MEMORY"] = "0"
# One BLAS thread per test process (and the children it starts): `make test`
# runs two xdist workers on two cores, and OpenBLAS' second thread spins for
# a core the other worker holds. Measured on 2 cores, one of them busy:
# numpy's SVD of a 384x1536 kernel took 0.35-3.8 s with 2 threads, 0.05 s
# with one; test_pissa, test_adapter_shrinking, test_compression and
# tests/svd took 260 s with 2 threads, 116 s with one.
# Set before numpy is imported; an explicit setting is kept.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

# Keras (and with it TensorFlow, ~0.9 GB) is imported by the fixtures, in the
# test processes only: under xdist this file also loads in the controller,
# which runs no test.


# `make test` runs two xdist workers. The files that load a real pretrained
# model (marked `large`: MiniLM, SmolLM2) are one unit of work, run by one
# worker one file at a time, so that two real models never sit in memory
# together (each file peaks at 7-8 GB); every other file is a unit of its
# own, so its module fixtures are built once. Units are handed out in
# collection order (`--no-loadscope-reorder`; xdist would sort them by their
# number of tests): the real models first, then the slowest other files,
# longest first, so that the two workers end together.
TESTS = os.path.dirname(os.path.abspath(__file__))
REAL_MODELS = "real-models"
SLOWEST_FILES = (
    # seconds per file in an idle `make test` run on a 2-core AMD EPYC
    # (2026-12-07, `DURATIONS=0`)
    "tests/finetune/test_distribute.py",  # 81 s
    "tests/on_device/test_trainable_export.py",  # 73 s
    "tests/generation/test_runtime_family_adapters.py",  # ~65 s (new; alone)
    "tests/generation/test_export_generator.py",  # 54 s
    "tests/finetune/test_worker_death.py",  # 53 s
    "tests/distribute/test_multi_worker.py",  # 51 s
    "tests/cli/test_finetune_lowmem_flags.py",  # 48 s
    "tests/finetune/test_phone_artifacts.py",  # 45 s
    "tests/exporters/test_text_classifier_export.py",  # 44 s
    "tests/exporters/test_integer_quantization.py",  # 40 s
    "tests/backends/test_backends.py",  # 38 s
    "tests/generation/test_runtime_families.py",  # 36 s
    "tests/lm_finetune/test_lm_pipeline.py",  # 34 s
)


def real_model_files():
    """The test files that mark tests `large`, as `tests/...` paths."""
    found = set()
    for folder, _, files in os.walk(TESTS):
        for name in files:
            path = os.path.join(folder, name)
            if name.startswith("test_") and name.endswith(".py"):
                with open(path, encoding="utf-8") as file:
                    if "pytest.mark.large" in file.read():
                        found.add(os.path.relpath(path, os.path.dirname(TESTS)))
    return found


def pytest_xdist_make_scheduler(config, log):
    """xdist's file scheduling, with the real-model files as one unit."""
    from xdist.scheduler import LoadFileScheduling

    real = real_model_files()

    class RealModelsTogether(LoadFileScheduling):
        def _split_scope(self, nodeid):
            path = nodeid.split("::", 1)[0]
            return REAL_MODELS if path in real else path

    return RealModelsTogether(config, log)


def pytest_collection_modifyitems(session, config, items):
    """Under xdist, orders the files: the real-model ones first, then the
    `SLOWEST_FILES`, then the rest; the tests of a file keep their order.

    (SmolLM2's files first within the real-model unit was tried: memory in
    use then peaked at 16.2 GB on a fresh clone, against 12.4 GB in
    collection order.)"""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return
    real = real_model_files()
    rank = {path: index for index, path in enumerate(SLOWEST_FILES)}

    def file_rank(item):
        path = item.nodeid.split("::", 1)[0]
        return -1 if path in real else rank.get(path, len(SLOWEST_FILES))

    items.sort(key=file_rank)  # stable


@pytest.fixture(scope="session", autouse=True)
def _libraries_left_out_of_collections():
    """Imports TensorFlow, Keras and keras-hub, then freezes the objects they
    made (`gc.freeze`): ~450,000 that live as long as the process, which
    every full collection would walk again (`clear_session` runs one per
    test file, Keras one per variable a layer drops). Collections then walk
    what the tests made; measured 0.19 s -> 0.0 s a collection right after
    the imports."""
    import keras
    import keras_hub  # noqa: F401
    import tensorflow  # noqa: F401

    keras.backend.clear_session()  # collects the garbage of the imports
    gc.freeze()
    yield


@pytest.fixture(scope="module", autouse=True)
def _release_each_module():
    """Drops Keras' global state and the module's garbage (clear_session's
    own `gc.collect()`) after each test file: one process runs hundreds of
    models."""
    yield
    import keras

    keras.backend.clear_session()
    _return_freed_memory()


def _return_freed_memory():
    """glibc's `malloc_trim(0)`: gives the freed heap pages back to the
    system, so that the two test processes' resident memory does not keep
    each file's peak (a no-op off glibc)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


@pytest.fixture(scope="session")
def minilm_finetune_run(tmp_path_factory):
    """`(exit code, out folder, report)` of one `keras-lowrank finetune` run
    on real MiniLM and MR (`tests/minilm_run.py`), made once for the
    real-model files that read it."""
    from tests.minilm_run import finetune_minilm

    return finetune_minilm(tmp_path_factory.mktemp("finetune") / "run")


@pytest.fixture(autouse=True)
def _seed_and_policy():
    import keras

    keras.utils.set_random_seed(1234)
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def model_never_loaded(monkeypatch):
    """Fails the test if a CLI command loads its MODEL argument."""
    from keras_lowrank.cli import model_argument

    def never(*args):
        raise AssertionError("the model must not be loaded")

    monkeypatch.setattr(model_argument, "load_model_argument", never)


@pytest.fixture
def occupied_folder(tmp_path):
    """A folder holding a file of the user's: never to be replaced."""
    folder = tmp_path / "mywork"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    return folder
