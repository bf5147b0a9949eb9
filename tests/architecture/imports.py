"""The import graph of keras_lowrank, read from its source with `ast`.

Every `import` counts, at module level or inside a function: an import
placed in a function to dodge a cycle is still an edge of the cycle.
"""

import ast
import dataclasses
import os

PACKAGE = "keras_lowrank"
ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                    PACKAGE)


@dataclasses.dataclass
class Module:
    name: str
    path: str
    tree: ast.Module
    imports: set = dataclasses.field(default_factory=set)  # module names
    private_names: list = dataclasses.field(default_factory=list)  # (line, text)


def modules():
    """`{dotted name: Module}` for every `.py` file of the package."""
    found = {}
    for folder, _, files in os.walk(ROOT):
        for file in sorted(files):
            if not file.endswith(".py"):
                continue
            path = os.path.join(folder, file)
            relative = os.path.relpath(path, os.path.dirname(ROOT))[:-3]
            name = relative.replace(os.sep, ".").removesuffix(".__init__")
            with open(path, encoding="utf-8") as source:
                found[name] = Module(name, path, ast.parse(source.read(), path))
    for module in found.values():
        _read_imports(module, found)
    return found


def _resolve(name, known):
    """The most specific known module `name` lies in, or None."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def _base(module, node):
    if not node.level:
        return node.module or ""
    package = module.name if module.path.endswith("__init__.py") else (
        module.name.rpartition(".")[0])
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _read_imports(module, known):
    aliases = {}  # local name -> module it stands for
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name, known)
                if target and alias.name.startswith(PACKAGE):
                    module.imports.add(target)
                    aliases[alias.asname or alias.name.split(".")[0]] = (
                        target if alias.asname else PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            base = _base(module, node)
            if not base.startswith(PACKAGE):
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in known:  # a submodule
                    module.imports.add(full)
                    aliases[alias.asname or alias.name] = full
                    if alias.name.startswith("_") and not _is_compat(full):
                        module.private_names.append((node.lineno, f"from {base} import {alias.name}"))
                else:
                    target = _resolve(base, known)
                    if target:
                        module.imports.add(target)
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        module.private_names.append((node.lineno, f"from {base} import {alias.name}"))
    for node in ast.walk(module.tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in aliases and aliases[node.value.id] != module.name
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            module.private_names.append((node.lineno, f"{node.value.id}.{node.attr}"))
    module.imports.discard(module.name)


def _is_compat(name):
    return name.split(".")[1:2] == ["_compat"]


def cycles(graph):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found
