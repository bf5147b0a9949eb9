"""The ops check of a trainable artifact: builtins only, read from the file.

Phones run LiteRT without the Flex delegate by default, so a trainable
artifact may hold no Flex op and no custom op. This reads the flatbuffer's
operator codes themselves (not what an interpreter reports).
"""

import re

from keras_lowrank.exporters.tflite import UnsupportedOpsError
from keras_lowrank.surgery.layer_paths import layer_paths

# The converter's location of a failing op: `fused["Op:", "scope/op@fn"]`.
_LOCATION = re.compile(r'fused\["(\w+):", "([^"@]+)@')


def operator_codes(flatbuffer):
    """`[(builtin name, custom code or None)]`, one per operator code."""
    from ai_edge_litert import schema_py_generated as schema

    names = {code: name for name, code in vars(schema.BuiltinOperator).items()
             if not name.startswith("_")}
    model = schema.Model.GetRootAsModel(flatbuffer, 0)
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        custom = code.CustomCode()
        codes.append((names.get(builtin, str(builtin)),
                      custom.decode("utf-8") if custom else None))
    return codes


def variable_names(flatbuffer):
    """The sorted names of the resource variables of `flatbuffer` (its
    `VAR_HANDLE` ops' shared names): what a signature can change."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    handle = schema.BuiltinOperator.VAR_HANDLE
    names = set()
    for subgraph in model.subgraphs or ():
        for op in subgraph.operators or ():
            code = model.operatorCodes[op.opcodeIndex]
            if max(code.builtinCode, code.deprecatedBuiltinCode) == handle:
                names.add(op.builtinOptions.sharedName.decode("utf-8"))
    return sorted(names)


def check_builtin_ops(flatbuffer):
    """The sorted builtin op names of `flatbuffer`.

    Raises:
        UnsupportedOpsError: the file holds a custom or Flex op, naming it.
    """
    codes = operator_codes(flatbuffer)
    custom = sorted({c for _, c in codes if c})
    if custom:
        raise UnsupportedOpsError(
            "The trainable artifact would hold ops outside LiteRT's builtins "
            f"({', '.join(custom)}), which phones lack by default. Nothing was "
            "written.", custom, flex=any(c.startswith("Flex") for c in custom))
    return tuple(sorted({name for name, _ in codes}))


def refusal(error, model):
    """`error` (the converter's `UnsupportedOpsError`) again, naming the
    layers of `model` whose ops (or whose ops' gradients) are not builtins."""
    message = str(error.__cause__ or error)
    names = {path.rsplit("/", 1)[-1]: path for path in layer_paths(model)}
    places = []
    for op, scope in _LOCATION.findall(message):
        if op not in error.ops:
            continue
        parts = scope.removeprefix("gradients/").split("/")
        layer = next((names[p] for p in _candidates(parts) if p in names), parts[0])
        where = f"{op} in layer '{layer}'"
        if scope.startswith("gradients/"):
            where += " (its gradient)"
        if where not in places:
            places.append(where)
    return UnsupportedOpsError(
        "The trainable artifact needs ops outside LiteRT's builtins, which "
        f"phones lack by default: {'; '.join(places) or ', '.join(error.ops)}. "
        "Keep that layer out of the trained path or replace its op. Nothing "
        "was written.", error.ops, flex=error.flex)


def _candidates(parts):
    """Scope components, each also without Keras' `_<n>` re-entry suffix."""
    for part in reversed(parts):
        yield part
        yield re.sub(r"_\d+$", "", part)
