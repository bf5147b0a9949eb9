"""Decode's share of the memory bound: bytes read per token, bandwidth.

A decode step at batch 1 reads every weight it multiplies by once per
token, so no runtime decodes faster than `bandwidth / bytes per token`:
the bound. Bytes per token of a LiteRT artifact (`litert_decode_bytes`)
are counted from its flatbuffer: the constant tensors (buffers holding
data) that the operators of its `decode` signature's subgraph take as
inputs, each buffer once, in the dtype stored (int8 weights of a
dynamic-range model count 1 byte). A table that a `GATHER` (axis 0) or
`EMBEDDING_LOOKUP` only looks rows up in counts the rows looked up per
step (one per token id), not the table: the token embedding. Left out:
quantization scales and zero points (in the tensors' quantization
parameters, not in buffers: a float per output channel), and the KV
cache, reported beside (`kv_cache_bytes`: the decode signature's `cache`
input, all `max_length` positions, which the fixed-shape attention reads
every step) with a second bound that adds it.

Keras `generate()` runs the same float32 weights with the same math, so
its bytes per token are the float32 artifact's. Bandwidth is the
`bandwidth` child's (STREAM's byte count): the best run of whichever
kernel, triad or copy, moved more (`bandwidth_kernel`; numpy's triad
can fall well below a `memcpy`, see `bandwidth.py`), the most this
machine was seen to move; `share_of_bound_median` uses that kernel's
median.
"""

import mmap

import numpy as np

from benchmarks.report import _f
from benchmarks.report import _table
from benchmarks.report import get

# `schema.TensorType` -> bytes per element.
_TYPE_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 9: 1, 10: 8, 16: 2}


def _builtin_code(model, operator):
    code = model.OperatorCodes(operator.OpcodeIndex())
    return max(code.BuiltinCode(), code.DeprecatedBuiltinCode())


def _buffer_bytes(model, tensor):
    """Bytes of `tensor`'s constant data, 0 when it has none."""
    index = tensor.Buffer()
    if index <= 0:
        return 0
    buffer = model.Buffers(index)
    if buffer.Offset() > 1:  # data stored after the flatbuffer (> 2 GB models)
        return buffer.Size()
    return buffer.DataLength()


def _gather_axis(schema, operator):
    table = operator.BuiltinOptions()
    if table is None:
        return 0
    options = schema.GatherOptions()
    options.Init(table.Bytes, table.Pos)
    return options.Axis()


def _tensor_bytes(tensor):
    kind = tensor.Type()
    if kind not in _TYPE_BYTES:
        raise ValueError(f"Unrecognized tensor type {kind} of tensor "
                         f"{tensor.Name().decode()!r}. Supported types are: "
                         f"{sorted(_TYPE_BYTES)}")
    return int(np.prod(tensor.ShapeAsNumpy())) * _TYPE_BYTES[kind]


def litert_decode_bytes(path, signature="decode") -> dict:
    """The bytes a LiteRT artifact's `signature` reads per token.

    Args:
        path: str. A `.tflite` file (`keras_lowrank.generation` writes one
            with `prefill_<n>` and `decode` signatures).
        signature: str. The signature that decodes one token.

    Returns:
        `{"constant_bytes", "bytes_per_token", "lookup_table_bytes",
        "kv_cache_bytes"}`: every constant input of the signature's ops
        (each buffer once); the same with lookup tables counted as the
        rows looked up; the lookup tables' whole size; the `cache`
        input's size (0 without one).

    Raises:
        ValueError: no such signature (the error lists the file's).
    """
    from ai_edge_litert import schema_py_generated as schema

    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0,
                                             access=mmap.ACCESS_READ) as data:
        model = schema.Model.GetRootAs(data, 0)
        signatures = {model.SignatureDefs(i).SignatureKey().decode():
                      model.SignatureDefs(i)
                      for i in range(model.SignatureDefsLength())}
        if signature not in signatures:
            raise ValueError(f"Unrecognized signature={signature!r} in {path}. "
                             f"Its signatures are: {sorted(signatures)}")
        definition = signatures[signature]
        subgraph = model.Subgraphs(definition.SubgraphIndex())
        whole, looked_up = {}, {}  # buffer index -> bytes read per token
        tables = {}
        for i in range(subgraph.OperatorsLength()):
            operator = subgraph.Operators(i)
            code = _builtin_code(model, operator)
            inputs = [int(t) for t in operator.InputsAsNumpy()] \
                if operator.InputsLength() else []
            lookup = None  # (table input position, ids input position)
            if code == schema.BuiltinOperator.GATHER and _gather_axis(schema, operator) == 0:
                lookup = (0, 1)
            elif code == schema.BuiltinOperator.EMBEDDING_LOOKUP:
                lookup = (1, 0)
            for position, index in enumerate(inputs):
                if index < 0:
                    continue  # an optional input left out
                tensor = subgraph.Tensors(index)
                size = _buffer_bytes(model, tensor)
                if not size:
                    continue
                if lookup and position == lookup[0]:
                    rows = int(tensor.ShapeAsNumpy()[0])
                    ids = int(np.prod(subgraph.Tensors(inputs[lookup[1]]).ShapeAsNumpy()))
                    looked_up[tensor.Buffer()] = size // rows * min(ids, rows)
                    tables[tensor.Buffer()] = size
                else:
                    whole[tensor.Buffer()] = size
        cache = 0
        for i in range(definition.InputsLength()):
            entry = definition.Inputs(i)
            if entry.Name().decode() == "cache":
                cache = _tensor_bytes(subgraph.Tensors(entry.TensorIndex()))
    # A table also read whole (by another op) counts whole.
    per_token = {**looked_up, **whole}
    return {
        "constant_bytes": sum({**tables, **whole}.values()),
        "bytes_per_token": sum(per_token.values()),
        "lookup_table_bytes": sum(size for index, size in tables.items()
                                  if index not in whole),
        "kv_cache_bytes": cache,
    }


def decode_bound(tokens_per_s, bytes_per_token, bytes_per_s) -> dict:
    """The memory bound of decode and the share of it reached.

    Args:
        tokens_per_s: float or None. Measured decode tokens/s.
        bytes_per_token: int or None. Bytes read per token.
        bytes_per_s: float or None. Memory bandwidth, bytes/s.

    Returns:
        `{"bound_tokens_per_s": bytes_per_s / bytes_per_token,
        "share_of_bound": tokens_per_s / bound}`, None where a figure is
        missing.
    """
    if not bytes_per_token or not bytes_per_s:
        return {"bound_tokens_per_s": None, "share_of_bound": None}
    bound = bytes_per_s / bytes_per_token
    return {"bound_tokens_per_s": bound,
            "share_of_bound": None if tokens_per_s is None else tokens_per_s / bound}


def bandwidth_used(bandwidth) -> tuple:
    """`(kernel, best GB/s, median GB/s)` of the kernel with the higher
    best run in a `bandwidth` child's result, or `(None, None, None)`."""
    kernels = {}
    if (bandwidth or {}).get("gb_per_s_best") is not None:
        kernels["triad"] = bandwidth
    if get(bandwidth, "copy", "gb_per_s_best") is not None:
        kernels["copy"] = bandwidth["copy"]
    if not kernels:
        return None, None, None
    kernel = max(kernels, key=lambda name: kernels[name]["gb_per_s_best"])
    return kernel, kernels[kernel]["gb_per_s_best"], kernels[kernel]["gb_per_s_median"]


def rows(results) -> dict:
    """Per generator of the `generation` child: its bound and share.

    Returns:
        `{"bandwidth_kernel", "bandwidth_gb_per_s_best",
        "bandwidth_gb_per_s_median", "rows": {name: {"decode_tokens_per_s", "bytes_per_token",
        "kv_cache_bytes", "bound_tokens_per_s", "share_of_bound",
        "share_of_bound_median", "bound_with_cache_tokens_per_s",
        "share_of_bound_with_cache"}}}`.
    """
    kernel, best, median = bandwidth_used(results.get("bandwidth"))
    best_bytes = None if best is None else best * 1e9
    median_bytes = None if median is None else median * 1e9
    generation = results.get("generation") or {}
    table = {}
    names = ("keras", *sorted(generation.get("speedup_vs_keras") or {}),
             *sorted(generation.get("other_runtimes_vs_keras") or {}))
    for name in (n for n in names if n in generation):
        entry = generation[name]
        counted = entry.get("decode_bytes") or {}
        speed = entry.get("decode_tokens_per_s")
        weights = counted.get("bytes_per_token")
        cache = counted.get("kv_cache_bytes")
        bound = decode_bound(speed, weights, best_bytes)
        with_cache = decode_bound(speed, None if weights is None else weights + (cache or 0),
                                  best_bytes)
        table[name] = {
            "decode_tokens_per_s": speed, "bytes_per_token": weights,
            "kv_cache_bytes": cache, **bound,
            "share_of_bound_median": decode_bound(speed, weights,
                                                  median_bytes)["share_of_bound"],
            "bound_with_cache_tokens_per_s": with_cache["bound_tokens_per_s"],
            "share_of_bound_with_cache": with_cache["share_of_bound"],
        }
    return {"bandwidth_kernel": kernel, "bandwidth_gb_per_s_best": best,
            "bandwidth_gb_per_s_median": median, "rows": table}


# The `generation` child's runners by their key's prefix.
_RUNNERS = {"litert": "LiteRT", "litertlm": "LiteRT-LM",
            "genai": "ONNX Runtime GenAI"}


def runner_label(name) -> str:
    """`"LiteRT-LM dynamic"` for `"litertlm_dynamic"`; Keras' for `"keras"`."""
    if name == "keras":
        return "Keras `generate()`"
    runner, _, precision = name.partition("_")
    return f"{_RUNNERS.get(runner, runner)} {precision}"


def _percent(fraction):
    return "-" if fraction is None else f"{100 * fraction:.1f}%"


def markdown(results) -> str:
    """RESULTS.md's paragraph and table: bandwidth, bound, share."""
    bandwidth = results.get("bandwidth") or {}
    if "gb_per_s_best" not in bandwidth:
        reason = bandwidth.get("skipped") or bandwidth.get("error") or "not run"
        return f"Memory bandwidth not measured: {reason}"
    bound = results.get("decode_bound") or rows(results)
    copied = bandwidth.get("copy") or {}
    copy_text = "" if "gb_per_s_best" not in copied else (
        f"; STREAM copy `a = c` (`np.copyto`, 2 x 8 per element): "
        f"{copied['gb_per_s_best']:.1f} GB/s best, "
        f"{copied['gb_per_s_median']:.1f} GB/s median")
    text = (
        f"Memory bandwidth (`benchmarks/bandwidth.py`, numpy on 3 float64 "
        f"arrays of {bandwidth['array_bytes'] / 2**20:,.0f} MiB, "
        f"{bandwidth['threads']} threads, {bandwidth['repeats']} runs, bytes "
        f"counted as STREAM does): STREAM triad `a = b + s·c` (3 x 8 bytes per "
        f"element) {bandwidth['gb_per_s_best']:.1f} GB/s best, "
        f"{bandwidth['gb_per_s_median']:.1f} GB/s median "
        f"({bandwidth['gb_per_s_best_write_allocate']:.1f} GB/s best counting "
        f"the write-allocate read of `a`){copy_text}. Bound = the best run of "
        f"the faster kernel ({bound['bandwidth_kernel']}, "
        f"{_f(bound['bandwidth_gb_per_s_best'], '.1f')} GB/s) / bytes read per "
        f"token: the constant tensors of the artifact's `decode` signature, the "
        f"token embedding counted as the one row looked up, KV cache left out "
        f"(with it: last column); Keras reads the float32 artifact's weights "
        f"(`benchmarks/decode_bound.py`). A share above 100% means the bound "
        f"is not one: part of the weights stayed in cache, or the kernels "
        f"moved less than the machine can.")
    if not bound["rows"]:
        return text
    table = _table(
        ["runner", "decode tokens/s", "weight MB read/token", "bound tokens/s",
         "share of bound", "share (median bandwidth)", "share with KV cache"],
        [[runner_label(name),
          _f(row["decode_tokens_per_s"], ".1f"),
          _f(None if row["bytes_per_token"] is None else row["bytes_per_token"] / 1e6,
             ",.1f"),
          _f(row["bound_tokens_per_s"], ".1f"), _percent(row["share_of_bound"]),
          _percent(row["share_of_bound_median"]),
          _percent(row["share_of_bound_with_cache"])]
         for name, row in bound["rows"].items()])
    return text + "\n\n" + table
