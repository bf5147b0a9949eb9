"""Every private LiteRT (`ai_edge_litert`) attribute keras_lowrank relies on.

The test of each function is in `tests/compat/test_litert.py`, so a LiteRT
upgrade that changes one breaks a named test. Pinned: ai-edge-litert==2.3.0.
"""


def ops_details(interpreter):
    """The operators of an interpreter's model (`Interpreter._get_ops_details`).

    LiteRT has no public list of a model's operators. Read without
    delegates (`OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES`), the list
    has every operator of the flatbuffer, none replaced by `DELEGATE`.

    Args:
        interpreter: an `ai_edge_litert.interpreter.Interpreter`.

    Returns:
        One dict per operator, in execution order: `"index"`, `"op_name"`
        (e.g. `"FULLY_CONNECTED"`), `"inputs"` and `"outputs"` (numpy arrays
        of tensor indices, as in `get_tensor_details()`).
    """
    return interpreter._get_ops_details()
