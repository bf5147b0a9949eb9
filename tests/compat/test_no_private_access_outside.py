"""The claim of `keras_lowrank._compat`: outside it, no private attribute of
another library is used, and inside it, every function has its own test.

The names below are what `_compat` wraps today: a module that reaches one
of them directly fails here, naming the file and line. A new private access
goes into `_compat/<library>.py` with a test in `tests/compat/`, and its
name into this list.
"""

import ast
import importlib
import inspect
import pathlib
import pkgutil

import pytest

import keras_lowrank._compat

PACKAGE = pathlib.Path(keras_lowrank._compat.__file__).parents[1]
COMPAT = PACKAGE / "_compat"
TESTS = pathlib.Path(__file__).parent

# Private modules of the libraries (imported, or named in a string).
PRIVATE_MODULES = (
    "keras.src", "keras_hub.src", "tensorflow.python", "tensorflow.compiler",
    "tensorflow.lite.python",
    "tensorflow_datasets.core.utils.tqdm_utils", "mediapipe.tasks.cc",
    "ai_edge_litert._",
)
# Private attributes (read, written, or named in a string as for getattr).
PRIVATE_NAMES = {
    # keras
    "_layers", "_flatten_layers", "_trainable_variables", "_trainable", "_kernel",
    "_embeddings", "_tracker", "_inbound_nodes", "_outbound_nodes",
    "_operations", "_nodes", "_operations_by_depth", "_nodes_by_depth",
    "_keras_history", "_functional", "GLOBAL_CUSTOM_NAMES", "make_node_key",
    "_analyze_einsum_string", "_large_negative_number",
    "_orig_output_dim", "_int4_unpacked_column_size", "_int4_block_size",
    "_adjust_scale_for_dequant", "dequantize_with_sz_map",
    # keras-hub
    "_build_cache",
    # LiteRT
    "_get_ops_details", "_get_op_details",
    # tensorflow-datasets
    "tqdm_utils",
    # TensorFlow
    "configure_coordination_service", "coordination_service",
    "_experimental_calibrate_only", "_experimental_disable_per_channel",
    # mediapipe
    "_pywrap_metadata_version",
    # tf2onnx
    "_op",
}


def _docstrings(tree):
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                             ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(
                    body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _is_private_module(name):
    return any(name == module or name.startswith(module + ".")
               or (module.endswith("_") and name.startswith(module))
               for module in PRIVATE_MODULES)


def private_accesses(source):
    """`(line, what)` for each private access in Python `source`."""
    tree = ast.parse(source)
    docstrings = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in PRIVATE_NAMES:
            found.append((node.lineno, f".{node.attr}"))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names
                      if _is_private_module(alias.name)]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if _is_private_module(node.module):
                found.append((node.lineno, node.module))
            found += [(node.lineno, alias.name) for alias in node.names
                      if alias.name in PRIVATE_NAMES]
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in docstrings):
            if node.value in PRIVATE_NAMES or _is_private_module(node.value):
                found.append((node.lineno, repr(node.value)))
    return sorted(found)


def _outside_compat():
    for path in sorted(PACKAGE.rglob("*.py")):
        if COMPAT not in path.parents:
            yield path


def test_no_private_access_outside_compat():
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {what}"
        for path in _outside_compat()
        for line, what in private_accesses(path.read_text())
    ]
    assert found == [], "private accesses outside keras_lowrank/_compat/:\n" + "\n".join(found)


@pytest.mark.parametrize("source,expected", [
    ("model._build_cache(x)", [(1, "._build_cache")]),
    ("getattr(model, '_build_cache', None)", [(1, "'_build_cache'")]),
    ("from keras.src.ops.function import make_node_key", [
        (1, "keras.src.ops.function"), (1, "make_node_key")]),
    ("import tensorflow.python.eager", [(1, "tensorflow.python.eager")]),
    ("importlib.import_module('keras.src.backend.tensorflow.nn')",
     [(1, "'keras.src.backend.tensorflow.nn'")]),
    ("ops = interpreter._get_ops_details()", [(1, "._get_ops_details")]),
    ("layer._layers[:] = []", [(1, "._layers")]),
    ('"""Mentions `_build_cache` and keras.src."""\nx = 1', []),
    ("self._active = []\nkeras.layers.Dense(2).kernel", []),
])
def test_the_scan_finds_what_it_looks_for(source, expected):
    assert private_accesses(source) == expected


def _compat_modules():
    return [name for _, name, _ in pkgutil.iter_modules([str(COMPAT)])]


@pytest.mark.parametrize("name", _compat_modules())
def test_each_compat_function_has_its_own_test(name):
    module = importlib.import_module(f"keras_lowrank._compat.{name}")
    functions = [
        function for function, value in vars(module).items()
        if inspect.isfunction(value) and value.__module__ == module.__name__
        and not function.startswith("_")
    ]
    test_file = TESTS / f"test_{name}.py"
    assert test_file.exists(), f"no tests/compat/{test_file.name} for _compat.{name}"
    tests = [
        node.name for node in ast.walk(ast.parse(test_file.read_text()))
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    ]
    untested = [
        function for function in functions
        if not any(test == f"test_{function}" or test.startswith(f"test_{function}_")
                   for test in tests)
    ]
    assert functions and untested == []
