"""The ops check of a trainable artifact: builtins only, read from the file.

Phones run LiteRT without the Flex delegate by default, so a trainable
artifact may hold no Flex op and no custom op. This reads the flatbuffer's
operator codes themselves (not what an interpreter reports).
"""

from keras_lowrank.exporters.tflite import UnsupportedOpsError


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
