"""The package's architecture, checked on its import graph.

- No import cycle, counting imports inside functions.
- No module imports another module's private name (`_name`), nor reaches
  for one through a module it imported; `_compat` is the one private
  package, and it is there to be imported.
- Each sub-package imports only from its own layer and the layers below
  (docs/architecture.md draws them).
"""

import pytest

from tests.architecture.imports import PACKAGE
from tests.architecture.imports import cycles
from tests.architecture.imports import modules

# Bottom first. A module may import from its own layer and those below.
LAYERS = (
    ("version", "utils", "_compat"),
    ("surgery",),
    ("svd",),
    ("layers",),
    ("adapters", "compression", "adaptive"),
    ("peft", "distribution", "models", "data"),
    ("exporters", "generation", "on_device"),
    ("",),  # keras_lowrank/__init__.py: the public API, `klr.*`
    ("runs", "finetune", "lm_finetune"),
    ("cli",),
)


@pytest.fixture(scope="module")
def package():
    return modules()


def _layer(name):
    part = name.split(".")[1] if "." in name else ""
    for level, members in enumerate(LAYERS):
        if part in members:
            return level
    raise AssertionError(
        f"{name}: sub-package '{part}' has no layer in LAYERS; add it where it belongs")


def test_the_graph_is_read(package):
    # A few edges everyone relies on, so that an empty graph cannot pass.
    assert "keras_lowrank.surgery.rewriting" in package["keras_lowrank.adapters.merge"].imports
    assert "keras_lowrank.layers.lora_adapter" in package["keras_lowrank.layers"].imports
    assert len(package) > 100


def test_no_import_cycles(package):
    graph = {name: module.imports for name, module in package.items()}
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_cycle_finder_finds_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_no_private_names_across_modules(package):
    found = [f"{module.path}:{line}: {text}" for module in package.values()
             for line, text in module.private_names]
    assert not found, "private names used across modules:\n" + "\n".join(found)


def test_every_module_imports_only_its_layer_and_below(package):
    upward = [
        f"{name} (layer {_layer(name)}) imports {target} (layer {_layer(target)})"
        for name, module in sorted(package.items())
        for target in sorted(module.imports)
        if target.startswith(PACKAGE) and _layer(target) > _layer(name)
    ]
    assert not upward, "imports against the layering:\n" + "\n".join(upward)
