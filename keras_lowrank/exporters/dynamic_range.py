"""Dynamic-range int8 of a LiteRT flatbuffer, with chosen layers left in float.

LiteRT's converter (`Optimize.DEFAULT` without calibration data) stores the
weight matrix of every FULLY_CONNECTED op as int8, one scale per output
channel, and quantizes the op's input on the fly (asymmetrically, per
row); it stores a GATHER's table (an embedding) as int8 with one scale,
followed by a DEQUANTIZE. It cannot leave a chosen layer in float.
`quantize_dynamic_range` writes that same artifact from the float
flatbuffer (the same bytes for the weights, the same outputs: see
tests/exporters/test_dynamic_range.py) and takes `keep_float`: layers whose
op output names match stay in float32, weights and inputs.

A weight buffer is quantized only where every op that reads it is of one
quantized kind (a buffer also read by another op, or by an op kept in
float, stays float), and only from `MIN_ELEMENTS` values up, as the
converter does.
"""

import re

import numpy as np

# The converter leaves smaller weights in float.
MIN_ELEMENTS = 1024
_FC = "FULLY_CONNECTED"
_GATHER = "GATHER"


def quantize_dynamic_range(flatbuffer, keep_float=()):
    """The dynamic-range int8 form of the float model `flatbuffer`.

    Args:
        flatbuffer: bytes of a float32 LiteRT model.
        keep_float: regular expressions (`re.search`) over op output tensor
            names, e.g. `"feedforward_output_dense"`: those FULLY_CONNECTED
            and GATHER ops keep float weights and float inputs.

    Returns:
        `(flatbuffer bytes, names)`: the quantized model, and the sorted op
        output names (of the first signature holding each weight) that
        matched `keep_float` and stayed in float.

    Raises:
        ValueError: a `keep_float` pattern that is not a valid regular
            expression, or one that matches no FULLY_CONNECTED or GATHER op
            (a misspelt layer name would otherwise quietly keep nothing; a
            matched op whose weights are too small to quantize is fine).
    """
    from ai_edge_litert import schema_py_generated as schema

    patterns = _compile(keep_float)
    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    readers, op_names = _weight_readers(model, schema)
    kept = set()
    for buffer, users in readers.items():
        names = [name for _, _, _, name in users]
        if any(p.search(name) for p in patterns for name in names):
            kept.add(names[0])
            continue
        _quantize_buffer(model, schema, buffer, users)
    unmatched = [p.pattern for p in patterns
                 if not any(p.search(name) for name in op_names)]
    if unmatched:
        raise ValueError(
            f"keep_float={list(keep_float)!r}: {unmatched} match no "
            "FULLY_CONNECTED or GATHER op of the model. Pass parts of the "
            "layer names as they appear in the op output names, e.g. "
            "'feedforward_output_dense'.")
    for subgraph in model.subgraphs:
        _dequantize_gathers(model, schema, subgraph)
    return _pack(model, len(flatbuffer)), tuple(sorted(kept))


def _compile(keep_float):
    if isinstance(keep_float, str):
        keep_float = (keep_float,)
    compiled = []
    for pattern in keep_float:
        try:
            compiled.append(re.compile(pattern))
        except (re.error, TypeError) as error:
            raise ValueError(f"keep_float holds {pattern!r}, not a regular "
                             f"expression: {error}") from None
    return compiled


def _weight_readers(model, schema):
    """`({buffer: [(subgraph, tensor, op, op output name)]}, names)`: the
    float weights that only quantizable inputs read (FC weights, GATHER
    tables), and the output names of every FC and GATHER op."""
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    readers, excluded, op_names = {}, set(), set()
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            kind = names[max(code.builtinCode, code.deprecatedBuiltinCode)]
            if kind in (_FC, _GATHER):
                op_names.add(subgraph.tensors[op.outputs[0]].name.decode())
            for position, index in enumerate(op.inputs):
                if index < 0:
                    continue
                tensor = subgraph.tensors[index]
                role = {(_FC, 1): _FC, (_GATHER, 0): _GATHER}.get((kind, position))
                if role is None:
                    excluded.add(tensor.buffer)
                    continue
                output = subgraph.tensors[op.outputs[0]].name.decode()
                readers.setdefault(tensor.buffer, []).append(
                    (subgraph, tensor, op, output, role))
    quantizable = {}
    for buffer, users in readers.items():
        data = model.buffers[buffer].data
        roles = {role for *_, role in users}
        if (buffer in excluded or len(roles) != 1 or data is None
                or len(data) < 4 * MIN_ELEMENTS
                or any(t.type != schema.TensorType.FLOAT32 for _, t, *_ in users)):
            continue
        quantizable[buffer] = [(s, t, op, name) for s, t, op, name, _ in users]
    return quantizable, op_names


def _quantize_buffer(model, schema, buffer, users):
    _, tensor, op, _ = users[0]
    weights = np.frombuffer(np.asarray(model.buffers[buffer].data, np.uint8).tobytes(),
                            np.float32).reshape(tensor.shape)
    per_channel = op.builtinOptionsType == schema.BuiltinOptions.FullyConnectedOptions
    if per_channel:
        scale = np.abs(weights).max(axis=tuple(range(1, weights.ndim))) / 127.0
    else:
        scale = np.abs(weights).max(keepdims=True).reshape(1) / 127.0
    scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
    shape = (-1,) + (1,) * (weights.ndim - 1)
    quantized = np.clip(np.round(weights / scale.reshape(shape)), -127, 127).astype(np.int8)
    model.buffers[buffer].data = np.frombuffer(quantized.tobytes(), np.uint8)
    for _, tensor, op, _ in users:
        tensor.type = schema.TensorType.INT8
        tensor.quantization = schema.QuantizationParametersT(
            scale=scale.tolist(), zeroPoint=[0] * scale.size, quantizedDimension=0)
        if per_channel:
            op.builtinOptions.asymmetricQuantizeInputs = True


def _dequantize_gathers(model, schema, subgraph):
    """A DEQUANTIZE after every GATHER that now reads an int8 table."""
    operators = []
    for op in subgraph.operators:
        operators.append(op)
        code = model.operatorCodes[op.opcodeIndex]
        if (max(code.builtinCode, code.deprecatedBuiltinCode) != schema.BuiltinOperator.GATHER
                or subgraph.tensors[op.inputs[0]].type != schema.TensorType.INT8):
            continue
        output = subgraph.tensors[op.outputs[0]]
        gathered = schema.TensorT()
        gathered.name = output.name + b";int8"
        gathered.shape, gathered.shapeSignature = output.shape, output.shapeSignature
        gathered.type = schema.TensorType.INT8
        gathered.quantization = subgraph.tensors[op.inputs[0]].quantization
        model.buffers.append(schema.BufferT())
        gathered.buffer = len(model.buffers) - 1
        subgraph.tensors.append(gathered)
        dequantize = schema.OperatorT()
        dequantize.opcodeIndex = _opcode(model, schema, schema.BuiltinOperator.DEQUANTIZE)
        dequantize.inputs = [len(subgraph.tensors) - 1]
        dequantize.outputs = [op.outputs[0]]
        op.outputs = [len(subgraph.tensors) - 1]
        operators.append(dequantize)
    subgraph.operators = operators


def _opcode(model, schema, builtin):
    for index, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return index
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _pack(model, size_hint):
    import flatbuffers

    builder = flatbuffers.Builder(size_hint + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    # One copy out of the builder (`Output()` slices a copy first).
    return bytes(memoryview(builder.Bytes)[builder.Head():])
